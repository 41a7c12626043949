"""`modelreg push` and `modelreg pull`: artifacts in and out, with a progress bar.

The bar goes to stderr (when it is a terminal, or with `--progress always`)
so that stdout carries only the result: a short table ending with the
artifact digest, or with `--output json` one JSON object for scripts.
Failures print `error: CODE REASON: message` and exit with the same
statuses as every other command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from ..artifacts import DEFAULT_CHUNK_BYTES, PullResult, PushResult, pull, push_files
from ..client import RegistryClient
from ..errors import RegistryError
from ..manifest import is_digest
from ..ranged_downloads import MAX_STREAMS
from ..signing import SignatureVerificationError, Trust, sign_files, verify_pulled
from .args import model_name
from .connection import EXIT_CODES, EXIT_ERROR, EXIT_USAGE, UsageError, client_from_args
from .output import align
from .progress import ProgressBar

EXIT_INTERRUPTED = 130

Handler = Callable[[RegistryClient, argparse.Namespace, ProgressBar | None], Awaitable[Any]]


def _bar(args: argparse.Namespace, label: str) -> ProgressBar | None:
    wanted = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    return ProgressBar(sys.stderr, label) if wanted else None


def _as_json(result: PushResult | PullResult, args: argparse.Namespace) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if getattr(args, "signature", None) is not None:
        extra["signature"] = json_format.MessageToDict(
            args.signature, preserving_proto_field_name=True
        )
    if getattr(args, "verified_by", None):
        extra["verified_by"] = args.verified_by
    if isinstance(result, PullResult):
        return extra | {
            "digest": result.digest,
            "version": result.version,
            "paths": [str(p) for p in result.paths],
            "total_bytes": result.total_bytes,
            "bytes_received": result.bytes_received,
            "bytes_cached": result.bytes_cached,
            "resumed_bytes": result.resumed_bytes,
        }
    return extra | {
        "digest": result.digest,
        "model_version": json_format.MessageToDict(
            result.version, preserving_proto_field_name=True
        ),
        "files": result.files,
        "total_bytes": result.total_bytes,
        "bytes_sent": result.bytes_sent,
        "bytes_skipped": result.bytes_skipped,
        "resumed_bytes": result.resumed_bytes,
    }


def _table(result: PushResult | PullResult, args: argparse.Namespace) -> str:
    if isinstance(result, PullResult):
        rows = [
            ("target", args.target),
            ("version", result.version),
            ("dest", str(args.dest)),
            ("files", str(len(result.paths))),
            ("bytes", str(result.total_bytes)),
            ("received", str(result.bytes_received)),
            ("cached", str(result.bytes_cached)),
            ("resumed", str(result.resumed_bytes)),
        ]
    else:
        rows = [
            ("version", result.version.name),
            ("state", result.version.State.Name(result.version.state)),
            ("files", str(result.files)),
            ("bytes", str(result.total_bytes)),
            ("sent", str(result.bytes_sent)),
            ("skipped", str(result.bytes_skipped)),
            ("resumed", str(result.resumed_bytes)),
        ]
    if getattr(args, "signature", None) is not None:
        rows.append(("signed by", args.signature.signer))
    if getattr(args, "verified_by", None):
        rows.append(("verified", f"signed by {args.verified_by}"))
    return align([*rows, ("digest", result.digest)])


async def _push(client: RegistryClient, args: argparse.Namespace, bar: ProgressBar | None) -> Any:
    if bar is not None:
        bar.note(f"hashing {args.path}")
    result = await push_files(
        client,
        model_name(args.version),
        args.path,
        progress=bar,
        chunk_size=args.chunk_size,
        state_dir=args.state_dir,
        streams=args.streams,
    )
    if args.sign_key and result.manifest is not None:
        files = [(f.path, f.hex) for f in result.manifest.files]
        bundle = await asyncio.to_thread(
            sign_files, files, args.sign_key, Path(args.path).name or "model"
        )
        if args.signature_out:
            await asyncio.to_thread(Path(args.signature_out).write_bytes, bundle)
        args.signature = await client.attach_signature(result.version.name, bundle)
    return result


def _trust(args: argparse.Namespace) -> Trust:
    trust = Trust.from_key_files(*args.verify_key)
    for path in args.trust_file:
        trust = trust + Trust.from_file(path)
    return trust


async def _pull(client: RegistryClient, args: argparse.Namespace, bar: ProgressBar | None) -> Any:
    target = args.target if is_digest(args.target) else model_name(args.target)
    trust = _trust(args)
    if trust and is_digest(target):
        raise UsageError("--verify-key and --trust-file need a version or an alias, not a digest")
    result = await pull(client, target, args.dest, progress=bar, streams=args.streams)
    if trust:
        args.verified_by = await verify_pulled(client, result.version, Path(args.dest), trust)
    return result


def _command(handler: Handler, label: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if (args.cert is None) != (args.key is None):
            print("error: --cert and --key go together (mutual TLS)", file=sys.stderr)
            return EXIT_USAGE
        bar = _bar(args, label)
        try:
            result = asyncio.run(_run(handler, args, bar))
        except RegistryError as err:
            _end(bar)
            print(f"error: {err}", file=sys.stderr)
            return EXIT_CODES.get(err.code, EXIT_ERROR)
        except SignatureVerificationError as err:
            _end(bar)
            print(f"error: signature verification failed: {err}", file=sys.stderr)
            return EXIT_ERROR
        except (OSError, ValueError, UsageError) as err:
            _end(bar)
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            _end(bar)
            print("interrupted: run the same command again to resume", file=sys.stderr)
            return EXIT_INTERRUPTED
        _end(bar)
        if args.output == "json":
            print(json.dumps(_as_json(result, args), indent=2))
        else:
            sys.stdout.write(_table(result, args))
        return 0

    return run


def _end(bar: ProgressBar | None) -> None:
    if bar is not None:
        bar.close()


async def _run(handler: Handler, args: argparse.Namespace, bar: ProgressBar | None) -> Any:
    client = client_from_args(args)
    async with client:
        return await handler(client, args, bar)


def _chunk_size(value: str) -> int:
    size = int(value)
    if not 0 < size <= 4 * 1024 * 1024:
        raise argparse.ArgumentTypeError("chunk size is 1 to 4194304 bytes")
    return size


def _streams(value: str) -> int:
    streams = int(value)
    if not 0 <= streams <= MAX_STREAMS:
        raise argparse.ArgumentTypeError(f"streams is 0 (automatic) to {MAX_STREAMS}")
    return streams


def _streams_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--streams",
        type=_streams,
        default=0,
        metavar="N",
        help=f"{what} (default 0: chosen by size and the machine's cores)",
    )


def _progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr (auto: when stderr is a terminal)",
    )


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "push",
        parents=[parent],
        help="upload a file or directory as a version's artifact (resumable)",
        description="Uploads PATH as the artifact of a PENDING_UPLOAD version, which "
        "becomes READY. Run the same command again after an interruption to resume.",
    )
    p.add_argument("version", metavar="VERSION", help="models/fraud/versions/3 or fraud/versions/3")
    p.add_argument("path", metavar="PATH", help="a model file or directory")
    p.add_argument(
        "--chunk-size",
        type=_chunk_size,
        default=DEFAULT_CHUNK_BYTES,
        help="bytes per chunk (default %(default)s, at most 4 MiB)",
    )
    p.add_argument(
        "--state-dir", help="where unfinished uploads are remembered (default ~/.cache/modelreg)"
    )
    _streams_option(p, "files uploaded at once")
    p.add_argument(
        "--sign-key",
        metavar="KEY",
        help="EC private key (PEM): sign the files pushed (OpenSSF model signing) and"
        " attach the signature to the version",
    )
    p.add_argument(
        "--signature-out", metavar="FILE", help="with --sign-key, also write the bundle here"
    )
    _progress_option(p)
    p.set_defaults(func=_command(_push, "push"))

    p = sub.add_parser(
        "pull",
        parents=[parent],
        help="download an artifact into a directory (verified, resumable)",
        description="Downloads the files of a version, of the version an alias points "
        "at, or one blob by digest into DEST. Files appear under their final names "
        "only once verified; files already in place are kept.",
    )
    p.add_argument(
        "target",
        metavar="TARGET",
        help="models/fraud/versions/3, models/fraud/aliases/production or sha256:<hex>",
    )
    p.add_argument("dest", metavar="DEST", help="directory to write the files into")
    _streams_option(p, "ranged streams per large file")
    p.add_argument(
        "--verify-key",
        action="append",
        default=[],
        metavar="KEY",
        help="PEM public key: after pulling, hash the files again and require a signature"
        " of the version by this key (repeat for several)",
    )
    p.add_argument(
        "--trust-file",
        action="append",
        default=[],
        metavar="FILE",
        help='JSON {"keys": [...], "chains": [{"certificates": FILE, "identity": REGEX}]}:'
        " keys and certificate chains to verify with, as --verify-key",
    )
    _progress_option(p)
    p.set_defaults(func=_command(_pull, "pull"))
