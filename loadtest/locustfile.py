"""Locust users for the registry: the seed's traffic, over gRPC.

    locust -f loadtest/locustfile.py --headless -u 1000 -r 50 -t 2m --host 127.0.0.1:50051

The registry must hold the fleet that loadtest/seed.py builds (same --fleet-*
options). Every call is reported to Locust under its RPC name, so the stats
read per RPC. Outcomes a real client expects and handles are successes under
a distinct name: a conditional write that lost a race ("SetAlias (lost
race)", ABORTED/ETAG_MISMATCH), a direct move of an alias that is being
rolled out ("SetAlias (rollout in progress)", FAILED_PRECONDITION/
ROLLOUT_IN_PROGRESS). Anything else that is not OK is a failure.

User classes (ServingInstance takes every user the others do not):
- ServingInstance: resolves `production` of one model at start, then again
  every --resolve-every seconds (its cache TTL). The default, 20 s, is the
  seed's deploy window: 1,000 instances making 3,000 reads a minute.
- TrainingPipeline (--pipelines): every --pipeline-every seconds, a burst
  of --burst new versions of a model, each with a small artifact pushed
  (blob, then manifest) and then approved with its etag.
- ReleaseEngineer (--engineers): on the --fleet-hot models, moves `staging`
  and `production` with etags and drives production rollouts (start,
  advance, pause, resume, roll back) with the rollout's etag.
- Watcher (--watchers): holds a Watch stream on a hot model open for
  --watch-hold seconds, then resumes it from the next revision; reports the
  time to the first message ("Watch (open)"), every batch of events with
  its commit-to-receipt lag ("Watch (events)", response_length = events)
  and progress messages ("Watch (progress)", counted with time 0).
- ArtifactDownloader (--downloaders): every --download-every seconds,
  downloads the `production` artifact of a model nobody promotes: the
  manifest by alias ("Download"), then its file by digest ("Download
  (blob)"), checking CRC32C and SHA-256.
"""

from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any gRPC use: gRPC's I/O must yield to gevent

import hashlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import gevent
import google_crc32c
import grpc
from common import Fleet, artifact_bytes, blob_requests, manifest_requests
from locust import User, events, task
from locust.env import Environment
from modelregistry.errors import RegistryError, from_rpc_error
from modelregistry.manifest import parse_manifest
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc as apb_grpc
from modelregistry.v1 import event_service_pb2 as epb
from modelregistry.v1 import event_service_pb2_grpc as epb_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc as rpc_grpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1 import rollout_service_pb2 as rrpc
from modelregistry.v1 import rollout_service_pb2_grpc as rrpc_grpc
from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

T = TypeVar("T")
CALL_TIMEOUT_S = 30.0
# Reasons a client expects and handles, and the name its call is counted under.
LOST_RACE: dict[str, str] = {ErrorReason.ETAG_MISMATCH: "lost race"}
ALIAS_EXPECTED: dict[str, str] = {
    **LOST_RACE,
    ErrorReason.ROLLOUT_IN_PROGRESS: "rollout in progress",
}


def _options(parser: Any) -> None:
    d = Fleet()
    g = parser.add_argument_group("modelreg")
    for flag, kind, default, text in (
        ("--fleet-models", int, d.models, "models in the seeded fleet"),
        ("--fleet-versions", int, d.versions, "versions per seeded model"),
        ("--fleet-prefix", str, d.prefix, "model id prefix of the fleet"),
        ("--fleet-hot", int, d.hot, "models release engineers and watchers work on"),
        ("--resolve-every", float, 20.0, "ServingInstance: seconds between resolves (TTL)"),
        ("--pipelines", int, 2, "TrainingPipeline users"),
        ("--pipeline-every", float, 30.0, "TrainingPipeline: seconds between bursts"),
        ("--burst", int, 3, "TrainingPipeline: versions per burst"),
        ("--engineers", int, 2, "ReleaseEngineer users"),
        ("--engineer-every", float, 2.0, "ReleaseEngineer: mean seconds between actions"),
        ("--watchers", int, 10, "Watcher users"),
        ("--watch-hold", float, 60.0, "Watcher: seconds a stream stays open"),
        ("--downloaders", int, 2, "ArtifactDownloader users"),
        ("--download-every", float, 5.0, "ArtifactDownloader: seconds between downloads"),
        ("--channels", int, 4, "gRPC channels (connections) per Locust process"),
        ("--latency-json", str, "", "write per-RPC latency histograms (10 us bins) here"),
    ):
        g.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")


def _opt(env: Environment, name: str) -> Any:
    return getattr(env.parsed_options, name)


def _on_init(environment: Environment, **_: Any) -> None:
    if environment.parsed_options is None:
        return
    for cls, opt in (
        (TrainingPipeline, "pipelines"),
        (ReleaseEngineer, "engineers"),
        (Watcher, "watchers"),
        (ArtifactDownloader, "downloaders"),
    ):
        cls.fixed_count = max(0, _opt(environment, opt))
    Histograms.path = _opt(environment, "latency_json")


class Histograms:
    """Latency per request name in 10 us bins: Locust's own percentiles are
    rounded to whole milliseconds, too coarse for a 2 ms target."""

    path = ""
    bins: ClassVar[defaultdict[str, Counter[int]]] = defaultdict(Counter)
    failures: ClassVar[Counter[str]] = Counter()

    @classmethod
    def record(cls, name: str, ms: float, failed: bool) -> None:
        if failed:
            cls.failures[name] += 1
        else:
            cls.bins[name][round(ms * 100)] += 1

    @classmethod
    def dump(cls) -> None:
        if not cls.path:
            return
        doc = {
            "bin_ms": 0.01,
            "ok": {n: {str(k): v for k, v in sorted(c.items())} for n, c in cls.bins.items()},
            "failures": dict(cls.failures),
        }
        Path(cls.path).write_text(json.dumps(doc))


def _on_request(name: str, response_time: float, exception: Any = None, **_: Any) -> None:
    Histograms.record(name, response_time, exception is not None)


def _on_quitting(**_: Any) -> None:
    Histograms.dump()


def _on_reset_stats(**_: Any) -> None:
    """--reset-stats: measure the steady state, not the ramp-up."""
    Histograms.bins.clear()
    Histograms.failures.clear()


events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.request.add_listener(_on_request)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_on_quitting)  # type: ignore[no-untyped-call]
events.reset_stats.add_listener(_on_reset_stats)  # type: ignore[no-untyped-call]


_channels: dict[str, list[grpc.Channel]] = {}


def _channel(host: str, count: int) -> grpc.Channel:
    """One of `count` channels to `host` shared by this process's users: a
    connection per simulated user would measure the client, not the registry."""
    target = host.removeprefix("grpc://").removeprefix("http://").rstrip("/")
    pool = _channels.setdefault(target, [])
    if len(pool) < count:
        # Separate subchannel pools: otherwise channels to one target share a connection.
        pool.append(grpc.insecure_channel(target, [("grpc.use_local_subchannel_pool", 1)]))
        return pool[-1]
    return random.choice(pool)


class GrpcUser(User):
    """A registry client: stubs on a shared channel, every call reported to Locust."""

    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        ch = _channel(self.host or "127.0.0.1:50051", max(1, _opt(environment, "channels")))
        self.registry = rpc_grpc.RegistryServiceStub(ch)
        self.artifacts = apb_grpc.ArtifactServiceStub(ch)
        self.rollouts = rrpc_grpc.RolloutServiceStub(ch)
        self.events = epb_grpc.EventServiceStub(ch)
        self.fleet = Fleet(
            models=_opt(environment, "fleet_models"),
            versions=_opt(environment, "fleet_versions"),
            prefix=_opt(environment, "fleet_prefix"),
            hot=_opt(environment, "fleet_hot"),
        )

    def opt(self, name: str) -> Any:
        return _opt(self.environment, name)

    def report(
        self, name: str, ms: float, length: int = 0, exception: BaseException | None = None
    ) -> None:
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=ms,
            response_length=length,
            exception=exception,
            context={},
        )

    def call(
        self,
        name: str,
        method: Callable[..., T],
        request: Any,
        expected: dict[str, str] | None = None,
    ) -> T | None:
        """`method(request)`, reported as `name`. None when it failed, or ended
        with an expected reason (then reported as "name (what)")."""
        start = time.perf_counter()
        try:
            reply = method(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            ms = (time.perf_counter() - start) * 1000
            err = from_rpc_error(exc)
            what = (expected or {}).get(err.reason)
            if what is not None:
                self.report(f"{name} ({what})", ms)
            else:
                self.report(name, ms, exception=describe(err))
            return None
        ms = (time.perf_counter() - start) * 1000
        self.report(name, ms, reply.ByteSize() if hasattr(reply, "ByteSize") else 0)
        return reply

    def stream(self, name: str, method: Callable[..., Iterable[T]], request: Any) -> list[T] | None:
        """A call whose replies are a stream, read to the end and timed whole."""
        start = time.perf_counter()
        try:
            replies = list(method(request, timeout=CALL_TIMEOUT_S))
        except grpc.RpcError as exc:
            err = from_rpc_error(exc)
            self.report(name, (time.perf_counter() - start) * 1000, exception=describe(err))
            return None
        size = sum(r.ByteSize() for r in replies)  # type: ignore[attr-defined]
        self.report(name, (time.perf_counter() - start) * 1000, size)
        return replies

    def paced(self, period: float) -> float:
        """Wait so that tasks start every `period` s (jittered 10 %), whatever they take."""
        now = time.monotonic()
        last = getattr(self, "_last_start", None)
        if last is None:  # first wait: spread users over a period, no thundering herd
            wait = random.uniform(0, period)
        else:
            wait = max(0.0, period * random.uniform(0.9, 1.1) - (now - last))
        self._last_start = now + wait
        return wait


def describe(err: RegistryError) -> RegistryError:
    """The error as Locust shows it: code, reason and message."""
    err.args = (f"{err.code.name} {err.reason or '-'}: {err.message}",)
    return err


class ServingInstance(GrpcUser):
    """A serving process: resolve production at start, then on every TTL expiry."""

    weight = 1

    def on_start(self) -> None:
        self.alias = self.fleet.alias(random.randrange(self.fleet.models), "production")
        self.resolve()

    def wait_time(self) -> float:
        return self.paced(self.opt("resolve_every"))

    @task
    def resolve(self) -> None:
        self.call(
            "ResolveAlias", self.registry.ResolveAlias, rpc.ResolveAliasRequest(name=self.alias)
        )


class TrainingPipeline(GrpcUser):
    """Retraining: bursts of new versions, each pushed (a small artifact) and approved."""

    fixed_count = 2

    def wait_time(self) -> float:
        return random.expovariate(1 / max(self.opt("pipeline_every"), 0.001))

    @task
    def burst(self) -> None:
        model = self.fleet.model(random.randrange(self.fleet.models))
        for _ in range(max(1, self.opt("burst"))):
            self.register(model)

    def register(self, model: str) -> None:
        mv = pb.ModelVersion(description="retrained", labels={"pipeline": "load"})
        created = self.call(
            "CreateModelVersion",
            self.registry.CreateModelVersion,
            rpc.CreateModelVersionRequest(parent=model, model_version=mv),
        )
        if created is None:
            return
        data = artifact_bytes(f"{created.name}/{created.uid}")
        if self.upload("Upload", blob_requests(data)) is None:
            return
        finished = self.upload(
            "Upload (manifest)", manifest_requests(created.name, "model.bin", data)
        )
        if finished is None:
            return
        version = finished.model_version
        self.call(
            "ApproveModelVersion",
            self.registry.ApproveModelVersion,
            rpc.ApproveModelVersionRequest(name=version.name, etag=version.etag, comment="load"),
            LOST_RACE,
        )

    def upload(self, name: str, requests: list[apb.UploadRequest]) -> apb.UploadFinished | None:
        replies = self.stream(name, self.artifacts.Upload, iter(requests))
        if replies is None:
            return None
        for r in replies:
            if r.WhichOneof("kind") == "finished":
                return r.finished
        self.report(name + " (no finish)", 0, exception=RuntimeError("stream ended early"))
        return None


class ReleaseEngineer(GrpcUser):
    """Promotions and rollouts on the hot models, always with etags."""

    fixed_count = 2

    def wait_time(self) -> float:
        return random.expovariate(1 / max(self.opt("engineer_every"), 0.001))

    def pick(self) -> int:
        return random.randrange(min(self.fleet.hot, self.fleet.models))

    def candidate(self, current: int) -> int:
        """An approved, READY version of the seeded ones, not `current`."""
        choices = [v for v in self.fleet.approved_versions if v != current]
        return random.choice(choices or [current])

    def think(self) -> None:
        """A person (or a CI job) between reading and writing: races happen here."""
        gevent.sleep(random.uniform(0, 0.3))

    @task(3)
    def promote_staging(self) -> None:
        self.move_alias("staging")

    @task(1)
    def hotfix_production(self) -> None:
        """A direct production move: refused while a rollout runs."""
        self.move_alias("production")

    def move_alias(self, alias_id: str) -> None:
        i = self.pick()
        alias = self.fleet.alias(i, alias_id)
        current = self.call(
            "ResolveAlias", self.registry.ResolveAlias, rpc.ResolveAliasRequest(name=alias)
        )
        if current is None:
            return
        self.think()
        target = pb.Alias(
            name=alias,
            version=self.fleet.version(i, self.candidate(current.model_version.version)),
        )
        self.call(
            "SetAlias",
            self.registry.SetAlias,
            rpc.SetAliasRequest(alias=target, etag=current.alias.etag),
            ALIAS_EXPECTED,
        )

    @task(6)
    def drive_rollout(self) -> None:
        i = self.pick()
        listed = self.call(
            "ListRollouts",
            self.rollouts.ListRollouts,
            rrpc.ListRolloutsRequest(parent=self.fleet.model(i), active_only=True, page_size=1),
        )
        if listed is None:
            return
        if not listed.rollouts:
            self.start_rollout(i)
            return
        r = listed.rollouts[0]
        self.think()
        roll = random.random()
        if r.state == pb.Rollout.PAUSED:
            if roll < 0.7:
                self.rollout_call("ResumeRollout", self.rollouts.ResumeRollout, r)
            else:
                self.rollout_call("RollbackRollout", self.rollouts.RollbackRollout, r)
        elif roll < 0.7:
            self.rollout_call("AdvanceRollout", self.rollouts.AdvanceRollout, r)
        elif roll < 0.85:
            self.rollout_call("PauseRollout", self.rollouts.PauseRollout, r)
        else:
            self.rollout_call("RollbackRollout", self.rollouts.RollbackRollout, r)

    def rollout_call(self, name: str, method: Callable[..., Any], r: pb.Rollout) -> None:
        request_type = getattr(rrpc, f"{name}Request")
        self.call(name, method, request_type(name=r.name, etag=r.etag), LOST_RACE)

    def start_rollout(self, i: int) -> None:
        alias = self.fleet.alias(i, "production")
        current = self.call(
            "ResolveAlias", self.registry.ResolveAlias, rpc.ResolveAliasRequest(name=alias)
        )
        if current is None:
            return
        self.think()
        candidate = self.fleet.version(i, self.candidate(current.model_version.version))
        self.call(
            "StartRollout",
            self.rollouts.StartRollout,
            rrpc.StartRolloutRequest(
                alias=alias, candidate_version=candidate, alias_etag=current.alias.etag
            ),
            ALIAS_EXPECTED,
        )


class Watcher(GrpcUser):
    """A rollout controller or serving instance listening for promotions."""

    fixed_count = 10

    def wait_time(self) -> float:
        return 0.0

    def on_start(self) -> None:
        self.model = self.fleet.model(random.randrange(min(self.fleet.hot, self.fleet.models)))
        self.next_revision = 0  # 0: from now
        self.events_seen = 0

    @task
    def watch(self) -> None:
        request = epb.WatchRequest(
            filter=epb.EventFilter(model=self.model), start_revision=self.next_revision
        )
        start = time.perf_counter()
        call: Any = self.events.Watch(request)
        timer = gevent.spawn_later(self.opt("watch_hold"), call.cancel)
        first = True
        try:
            for reply in call:
                now = time.perf_counter()
                if first:
                    self.report("Watch (open)", (now - start) * 1000, reply.ByteSize())
                    first = False
                self.batch(reply)
        except grpc.RpcError as exc:
            self.ended(exc, start)
        finally:
            timer.kill()
            call.cancel()

    def batch(self, reply: epb.WatchResponse) -> None:
        self.next_revision = reply.revision + 1
        if not reply.events:
            self.report("Watch (progress)", 0.0, reply.ByteSize())
            return
        self.events_seen += len(reply.events)
        newest = max(e.time.seconds + e.time.nanos / 1e9 for e in reply.events)
        lag_ms = max(0.0, (time.time() - newest) * 1000)
        self.report("Watch (events)", lag_ms, len(reply.events))

    def ended(self, exc: grpc.RpcError, start: float) -> None:
        err = from_rpc_error(exc)
        ms = (time.perf_counter() - start) * 1000
        if err.code == grpc.StatusCode.CANCELLED:
            return  # our own hold timer: resume from next_revision
        if err.reason == ErrorReason.WATCH_TOO_SLOW:
            resume = err.metadata.get(ErrorMetadataKey.RESUME_REVISION, "")
            self.next_revision = int(resume) if resume.isdigit() else self.next_revision
            self.report("Watch (too slow)", ms)
            return
        self.report("Watch", ms, exception=describe(err))
        gevent.sleep(1.0)  # do not spin on a broken server


class ArtifactDownloader(GrpcUser):
    """Prefetching a model: the production manifest by alias, then its files."""

    fixed_count = 2

    def wait_time(self) -> float:
        return self.paced(self.opt("download_every"))

    @task
    def download(self) -> None:
        cold = self.fleet.cold
        alias = self.fleet.alias(random.choice(cold), "production")
        replies = self.stream("Download", self.artifacts.Download, apb.DownloadRequest(alias=alias))
        if replies is None:
            return
        body = self.check("Download", replies)
        if body is None:
            return
        for f in parse_manifest(body).files:
            blob = self.stream(
                "Download (blob)", self.artifacts.Download, apb.DownloadRequest(digest=f.digest)
            )
            if blob is None:
                return
            data = self.check("Download (blob)", blob)
            if data is not None and "sha256:" + hashlib.sha256(data).hexdigest() != f.digest:
                self.report("Download (blob)", 0, exception=RuntimeError("digest mismatch"))

    def check(self, name: str, replies: list[apb.DownloadResponse]) -> bytes | None:
        """The bytes of a download, or None (a failure reported) if a chunk is corrupt."""
        parts = []
        for r in replies:
            if r.WhichOneof("kind") == "chunk":
                if google_crc32c.value(r.chunk.data) != r.chunk.crc32c:
                    self.report(name, 0, exception=RuntimeError("chunk CRC32C mismatch"))
                    return None
                parts.append(r.chunk.data)
        return b"".join(parts)
