"""Authentication for the control-plane benchmark: a test identity provider
(keys made per run), the server flags that trust it, and callers' tokens.

The benchmarked caller is `user:bench`, owner on the registry: every read
and write it makes passes through token verification (cached per token) and
a policy decision (cached per principal, permission and resource), as a real
caller's would. Seeding runs as the bootstrap admin; `compare` puts the read
p95s of the two servers side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common  # noqa: F401  # puts tests/support on the path
import grpc
from modelregistry.v1 import access_service_pb2 as acc
from modelregistry.v1 import access_service_pb2_grpc
from support.jwt_issuer import AUDIENCE, ISSUER, Issuer

# Read p95 with authentication on may be at most this many times that without.
AUTH_RATIO = 1.2
ADMIN = "bench-admin"
CALLER = "bench"
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BenchAuth:
    issuer: Issuer
    jwks: Path

    def flags(self) -> list[str]:
        return [
            *("--auth", "required", "--jwt-jwks", str(self.jwks)),
            *("--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE),
            *("--bootstrap-admin", f"user:{ADMIN}"),
        ]

    def metadata(self, who: str) -> Metadata:
        return (("authorization", f"Bearer {self.issuer.token(who)}"),)

    async def grant_caller(self, address: str) -> None:
        """roles/owner on the registry for the benchmarked caller."""
        policy = acc.Policy(bindings=[acc.Binding(role="roles/owner", members=[f"user:{CALLER}"])])
        async with grpc.aio.insecure_channel(address) as channel:
            stub = access_service_pb2_grpc.AccessServiceStub(channel)
            await stub.SetIamPolicy(
                acc.SetIamPolicyRequest(resource="registry", policy=policy),
                metadata=self.metadata(ADMIN),
            )


def bench_auth(tmp: Path) -> BenchAuth:
    issuer = Issuer()
    return BenchAuth(issuer, issuer.write_jwks(tmp / "jwks.json"))


def compare(off: list[dict[str, Any]], jwt: list[dict[str, Any]], reads: Sequence[str]) -> None:
    """Read p95 with authentication on next to off, per operation and mode."""
    print(f"\nread p95, auth on (JWT) / off; target: within {AUTH_RATIO:g}x")
    on = {(r["op"], r["mode"]): r for r in jwt}
    for r in off:
        if r["op"] not in reads:
            continue
        other = on[(r["op"], r["mode"])]
        ratio = other["p95"] / r["p95"]
        verdict = "PASS" if ratio <= AUTH_RATIO else "MISS"
        print(
            f"  {r['op']:<19} {r['mode']:<14} off {r['p95']:6.2f} ms  "
            f"on {other['p95']:6.2f} ms  x{ratio:4.2f}  {verdict}"
        )
