"""Build the seed's example fleet in a registry: 500 models, 5,000 versions,
aliases and a few rollouts in progress.

Per model (see `Fleet` in common.py): versions 1..10, version 8 with a small
managed artifact (pushed through ArtifactService), the others READY through
a `source_uri`; versions 1..9 approved; `production` (protected) on version 8
and `staging` on version 9; the first few models roll production out to
version 9 (started, then advanced once).

Rerunning it completes what is missing and leaves the rest alone (existing
models, versions, approvals, aliases and active rollouts are kept), so it
also repairs a fleet that an interrupted run left half-built.

    .venv/bin/python loadtest/seed.py --host 127.0.0.1:50051 [--models 500] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import grpc
from common import Fleet, artifact_bytes, blob_requests, manifest_requests
from modelregistry.errors import from_rpc_error
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc as apb_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc as rpc_grpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1 import rollout_service_pb2 as rrpc
from modelregistry.v1 import rollout_service_pb2_grpc as rrpc_grpc
from modelregistry.v1.error_reasons import ErrorReason

if TYPE_CHECKING:
    from modelregistry.v1.artifact_service_pb2_grpc import ArtifactServiceAsyncStub
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub
    from modelregistry.v1.rollout_service_pb2_grpc import RolloutServiceAsyncStub

Req = TypeVar("Req")
Resp = TypeVar("Resp")
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
ARTIFACT_FILE = "model.bin"


@dataclass
class Stubs:
    registry: RegistryServiceAsyncStub
    artifacts: ArtifactServiceAsyncStub
    rollouts: RolloutServiceAsyncStub


@dataclass
class Tally:
    """What a seeding run created (and so what a rerun skipped)."""

    created: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        return ", ".join(f"{n} {what}" for what, n in sorted(self.created.items())) or "nothing"


def reason(exc: grpc.aio.AioRpcError) -> str:
    return from_rpc_error(exc).reason


async def retry(call: Callable[[Req], Awaitable[Resp]], request: Req, attempts: int = 6) -> Resp:
    """`call(request)`, again after a pause while the registry answers UNAVAILABLE
    (as it asks: "retry with backoff"), e.g. SQLite writers queueing past its
    busy timeout."""
    for attempt in range(attempts):
        try:
            return await call(request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


async def upload(args: tuple[ArtifactServiceAsyncStub, list[apb.UploadRequest]]) -> None:
    stub, requests = args
    async for _ in stub.Upload(iter(requests)):
        pass


async def seed_model(stubs: Stubs, fleet: Fleet, i: int, tally: Tally) -> None:
    reg = stubs.registry
    name = fleet.model(i)
    model = pb.Model(
        display_name=f"Fleet model {i}",
        description="Seeded for load tests.",
        labels={"team": f"team-{i % 10}", "fleet": fleet.prefix},
        protected_aliases=["production"],
    )
    try:
        await retry(
            reg.CreateModel, rpc.CreateModelRequest(model_id=fleet.model_id(i), model=model)
        )
        tally.created["models"] += 1
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    latest = (await retry(reg.GetModel, rpc.GetModelRequest(name=name))).latest_version
    while latest < fleet.versions:
        v = latest + 1
        mv = pb.ModelVersion(description=f"training run {v}", labels={"run": f"r{v}"})
        if v != fleet.artifact_version:
            mv.source_uri = f"s3://training-runs/{fleet.model_id(i)}/{v}/model"
        created = await retry(
            reg.CreateModelVersion, rpc.CreateModelVersionRequest(parent=name, model_version=mv)
        )
        latest = created.version
        tally.created["versions"] += 1

    listed = await retry(
        reg.ListModelVersions, rpc.ListModelVersionsRequest(parent=name, page_size=1000)
    )
    by_number = {v.version: v for v in listed.model_versions}
    art = by_number.get(fleet.artifact_version)
    if art is not None and art.state == pb.ModelVersion.PENDING_UPLOAD:
        data = artifact_bytes(art.name, fleet.artifact_size)
        await retry(upload, (stubs.artifacts, blob_requests(data)))
        await retry(upload, (stubs.artifacts, manifest_requests(art.name, ARTIFACT_FILE, data)))
        tally.created["artifacts"] += 1
    for v in fleet.approved_versions:
        version = by_number.get(v)
        if version is not None and version.approval.state != pb.Approval.APPROVED:
            await retry(
                reg.ApproveModelVersion,
                rpc.ApproveModelVersionRequest(name=version.name, comment="seeded"),
            )
            tally.created["approvals"] += 1

    aliases = await retry(reg.ListAliases, rpc.ListAliasesRequest(parent=name, page_size=1000))
    have = {a.name for a in aliases.aliases}
    for alias, v in (("production", fleet.artifact_version), ("staging", fleet.staging_version)):
        alias_name = fleet.alias(i, alias)
        if alias_name not in have:
            target = pb.Alias(name=alias_name, version=fleet.version(i, v))
            await retry(reg.SetAlias, rpc.SetAliasRequest(alias=target))
            tally.created["aliases"] += 1

    if i < fleet.rollouts:
        await seed_rollout(stubs, fleet, i, tally)


async def seed_rollout(stubs: Stubs, fleet: Fleet, i: int, tally: Tally) -> None:
    """A production rollout in progress, unless one is already running."""
    active = await stubs.rollouts.ListRollouts(
        rrpc.ListRolloutsRequest(parent=fleet.model(i), active_only=True)
    )
    if active.rollouts:
        return
    alias = fleet.alias(i, "production")
    resolved = await stubs.registry.ResolveAlias(rpc.ResolveAliasRequest(name=alias))
    stable = resolved.model_version.version
    candidate = fleet.staging_version if stable != fleet.staging_version else fleet.artifact_version
    if candidate == stable:  # a one-version fleet has nothing to roll out
        return
    try:
        rollout = await stubs.rollouts.StartRollout(
            rrpc.StartRolloutRequest(
                alias=alias,
                candidate_version=fleet.version(i, candidate),
                alias_etag=resolved.alias.etag,
            )
        )
        await stubs.rollouts.AdvanceRollout(
            rrpc.AdvanceRolloutRequest(name=rollout.name, etag=rollout.etag)
        )
        tally.created["rollouts"] += 1
    except grpc.aio.AioRpcError as exc:
        # Someone else (a load test running meanwhile) moved the alias first.
        if reason(exc) not in (ErrorReason.ETAG_MISMATCH, ErrorReason.ROLLOUT_IN_PROGRESS):
            raise


async def seed(host: str, fleet: Fleet, concurrency: int = 32, quiet: bool = False) -> Tally:
    """Build `fleet` on the registry at `host`; returns what was created."""
    channels = [grpc.aio.insecure_channel(host, CHANNEL_OPTIONS) for _ in range(4)]
    tally = Tally()
    sem = asyncio.Semaphore(concurrency)
    done = 0
    started = time.perf_counter()

    async def one(i: int) -> None:
        nonlocal done
        ch = channels[i % len(channels)]
        stubs = Stubs(
            rpc_grpc.RegistryServiceStub(ch),
            apb_grpc.ArtifactServiceStub(ch),
            rrpc_grpc.RolloutServiceStub(ch),
        )
        async with sem:
            await seed_model(stubs, fleet, i, tally)
        done += 1
        if not quiet and done % 50 == 0:
            rate = done / (time.perf_counter() - started)
            print(f"  {done}/{fleet.models} models ({rate:.0f}/s)", file=sys.stderr)

    try:
        await asyncio.gather(*(one(i) for i in range(fleet.models)))
    finally:
        for ch in channels:
            await ch.close(None)
    return tally


def add_fleet_arguments(ap: argparse.ArgumentParser) -> None:
    d = Fleet()
    ap.add_argument("--models", type=int, default=d.models, help="models (%(default)s)")
    ap.add_argument(
        "--versions", type=int, default=d.versions, help="versions per model (%(default)s)"
    )
    ap.add_argument("--prefix", default=d.prefix, help="model id prefix (%(default)s)")
    ap.add_argument(
        "--hot", type=int, default=d.hot, help="models release engineers work on (%(default)s)"
    )
    ap.add_argument(
        "--rollouts", type=int, default=d.rollouts, help="rollouts in progress (%(default)s)"
    )
    ap.add_argument(
        "--artifact-kib",
        type=int,
        default=d.artifact_size // 1024,
        help="KiB per artifact (%(default)s)",
    )


def fleet_from(ns: argparse.Namespace) -> Fleet:
    if ns.versions < 3:
        raise SystemExit("--versions must be at least 3 (production, staging, one unapproved)")
    art = min(Fleet.artifact_version, ns.versions - 2)
    size = getattr(ns, "artifact_kib", Fleet.artifact_size // 1024) * 1024
    return Fleet(ns.models, ns.versions, ns.prefix, ns.hot, ns.rollouts, art, size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--host", required=True, help="registry address, HOST:PORT")
    ap.add_argument(
        "--concurrency", type=int, default=32, help="models seeded at once (%(default)s)"
    )
    add_fleet_arguments(ap)
    ns = ap.parse_args()
    fleet = fleet_from(ns)
    started = time.perf_counter()
    try:
        tally = asyncio.run(seed(ns.host, fleet, ns.concurrency))
    except grpc.aio.AioRpcError as exc:
        err = from_rpc_error(exc)
        sys.exit(f"seeding failed: {err.code.name} {err.reason}: {err.message}")
    print(f"seeded {fleet.models} models on {ns.host} in {time.perf_counter() - started:.1f} s:")
    print(f"  created {tally}")


if __name__ == "__main__":
    main()
