"""`modelreg signatures attach|list|policy`, and the trust options that
`modelreg models update` shares."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ..client import RegistryClient
from ..v1 import signature_service_pb2 as srpc
from .args import model_name
from .connection import UsageError, command
from .output import Listing, Result

VERSION_HELP = "models/fraud/versions/3 or fraud/versions/3"


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        metavar="FILE",
        help="PEM public key whose signatures count; repeat; replaces the list",
    )
    parser.add_argument("--no-trusted-keys", action="store_true", help="trust no key any more")
    parser.add_argument(
        "--trusted-chain",
        action="append",
        default=[],
        metavar="FILE",
        help="PEM certificates (root first) of a signing CA; repeat, each with"
        " --signer-identity; replaces the list",
    )
    parser.add_argument(
        "--signer-identity",
        action="append",
        default=[],
        metavar="PATTERN",
        help="regular expression the signer certificate's e-mail or URI must match",
    )
    parser.add_argument(
        "--no-trusted-chains", action="store_true", help="trust no certificate chain any more"
    )
    parser.add_argument(
        "--require-signature",
        action="append",
        default=[],
        metavar="ALIAS",
        help="alias that only signed versions may reach; repeat; replaces the list",
    )
    parser.add_argument(
        "--no-require-signature",
        action="store_true",
        help="no alias requires a signature any more",
    )


def trust_requested(args: argparse.Namespace) -> bool:
    return bool(
        args.trusted_key
        or args.no_trusted_keys
        or args.trusted_chain
        or args.no_trusted_chains
        or args.require_signature
        or args.no_require_signature
    )


def _read(path: str) -> str:
    return Path(path).read_text()


async def update_trust(
    client: RegistryClient, model: str, args: argparse.Namespace, etag: str = ""
) -> srpc.TrustPolicy:
    """Apply the trust options to `model`'s policy ("" for the default)."""
    if len(args.trusted_chain) != len(args.signer_identity):
        raise UsageError("give one --signer-identity for each --trusted-chain")
    keys = chains = aliases = None
    if args.trusted_key or args.no_trusted_keys:
        keys = [_read(p) for p in args.trusted_key]
    if args.trusted_chain or args.no_trusted_chains:
        chains = [
            (_read(p), pattern)
            for p, pattern in zip(args.trusted_chain, args.signer_identity, strict=True)
        ]
    if args.require_signature or args.no_require_signature:
        aliases = list(args.require_signature)
    return await client.update_trust_policy(
        model,
        trusted_keys=keys,
        trusted_chains=chains,
        require_signature_aliases=aliases,
        etag=etag,
        request_id=args.request_id,
    )


async def attach(client: RegistryClient, args: argparse.Namespace) -> Result:
    bundle = await asyncio.to_thread(Path(args.signature).read_bytes)
    return await client.attach_signature(
        model_name(args.version), bundle, request_id=args.request_id
    )


async def list_(client: RegistryClient, args: argparse.Namespace) -> Result:
    listed = await client.list_signatures(model_name(args.version), request_id=args.request_id)
    return Listing(srpc.Signature, listed)


async def policy(client: RegistryClient, args: argparse.Namespace) -> Result:
    model = "" if args.model == "default" else model_name(args.model)
    if trust_requested(args):
        return await update_trust(client, model, args, args.etag)
    return await client.get_trust_policy(model, request_id=args.request_id)


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    signatures = sub.add_parser(
        "signatures", help="attach and list model signatures; trust policies"
    )
    cmds = signatures.add_subparsers(dest="signatures_command", required=True, metavar="COMMAND")

    p = cmds.add_parser(
        "attach",
        parents=[parent],
        help="attach a model-signing bundle to a version (verified by the server)",
        description="Attaches SIGNATURE (a bundle made by `model_signing sign` or "
        "`modelreg push --sign-key`) to VERSION. The server checks it under the model's "
        "trust policy and against the version's files, and refuses it otherwise.",
    )
    p.add_argument("version", metavar="VERSION", help=VERSION_HELP)
    p.add_argument("signature", metavar="SIGNATURE", help="the bundle file, e.g. model.sig")
    p.set_defaults(func=command(attach))

    p = cmds.add_parser(
        "list", parents=[parent], help="who signed a version, and whether it counts now"
    )
    p.add_argument("version", metavar="VERSION", help=VERSION_HELP)
    p.set_defaults(func=command(list_))

    p = cmds.add_parser(
        "policy",
        parents=[parent],
        help="show or change a model's trust policy, or the registry-wide default",
        description="Without options, shows the policy. A model trusts its own keys and "
        "chains if it lists any, otherwise the default's; the aliases requiring a "
        "signature are the model's and the default's together.",
    )
    p.add_argument("model", metavar="MODEL", help="models/fraud, fraud, or default")
    add_trust_options(p)
    p.add_argument("--etag", default="", help="only if the policy still has this etag")
    p.set_defaults(func=command(policy))
