"""A gRPC health probe for container health checks and exec probes:
`python -m modelregistry_server.probe` exits 0 when the server reports
SERVING, 1 otherwise.

Container runtimes and some orchestrators can only run a command, and a
slim image has no grpcurl. Kubelet's own gRPC probe cannot do TLS; this one
can. Every option has an environment variable, so an image's HEALTHCHECK
can stay fixed while the deployment chooses TLS.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m modelregistry_server.probe", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--address",
        default=env("MODELREG_PROBE_ADDRESS", "127.0.0.1:50051"),
        help="HOST:PORT (MODELREG_PROBE_ADDRESS, default %(default)s)",
    )
    parser.add_argument(
        "--service", default="", help="health service name (default: the whole server)"
    )
    parser.add_argument(
        "--tls-ca",
        type=Path,
        default=env("MODELREG_PROBE_TLS_CA") or None,
        help="speak TLS, trusting this CA (PEM) (MODELREG_PROBE_TLS_CA)",
    )
    parser.add_argument(
        "--tls-server-name",
        default=env("MODELREG_PROBE_TLS_SERVER_NAME", ""),
        help="name the certificate must carry, when not the address's host",
    )
    parser.add_argument(
        "--client-cert",
        type=Path,
        default=env("MODELREG_PROBE_CLIENT_CERT") or None,
        help="client certificate (PEM) for a server that requires mutual TLS",
    )
    parser.add_argument("--client-key", type=Path, default=env("MODELREG_PROBE_CLIENT_KEY") or None)
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    return parser


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if args.tls_ca is None:
        return grpc.insecure_channel(args.address)
    pair = (
        (args.client_key.read_bytes(), args.client_cert.read_bytes())
        if args.client_cert and args.client_key
        else (None, None)
    )
    creds = grpc.ssl_channel_credentials(args.tls_ca.read_bytes(), *pair)
    options = (
        [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    )
    return grpc.secure_channel(args.address, creds, options)


def check(args: argparse.Namespace) -> tuple[bool, str]:
    """Whether the server says SERVING, and what to print."""
    with _channel(args) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as err:
            return False, f"{args.address}: {err.code().name}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{args.address}: {status}"


def main(argv: list[str] | None = None) -> int:
    ok, message = check(_parser().parse_args(argv))
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
