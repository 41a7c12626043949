"""The outbox relay against a real nats-server: every event reaches the stream
once, in revision order, through a relay crash and through a NATS outage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from modelregistry_server.config import ServerConfig
from modelregistry_server.domain.events import verify_chain
from modelregistry_server.domain.names import ModelName
from modelregistry_server.domain.resources import ModelFields
from modelregistry_server.events.nats_relay import RelaySettings
from modelregistry_server.store import migrate
from modelregistry_server.store.engine import make_engine
from modelregistry_server.store.event_log import SqlEventLog
from modelregistry_server.store.relay_cursors import SqlRelayCursors
from modelregistry_server.store.sqlalchemy_store import SqlRegistryStore
from support.in_process import start_server
from support.ports import free_port, port_open
from support.processes import ServeProcess
from support.services import require

SHARED_NATS = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class Stream:
    name: str
    prefix: str


@dataclass(frozen=True)
class Received:
    revision: int
    subject: str
    msg_id: str
    event: dict[str, Any]


@pytest.fixture
def stream() -> Iterator[Stream]:
    """A stream and subject prefix of this test's own, deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    yield Stream(f"MODELREG_TEST_{tag}", f"modelreg.test{tag}")


async def delete_stream(url: str, name: str) -> None:
    with contextlib.suppress(Exception):
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
        try:
            await nc.jetstream().delete_stream(name)
        finally:
            await nc.close()


class NatsServer:
    """A private nats-server with JetStream, so a test can stop and start it."""

    def __init__(self, store_dir: Path, port: int) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            require("nats-server is not installed (apt-get install nats-server)")
        self.binary, self.store_dir, self.port = binary, store_dir, port
        self.url = f"nats://127.0.0.1:{port}"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            *("-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(100):
            if port_open("127.0.0.1", self.port):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        self.proc = None


@pytest.fixture
async def private_nats(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """Not started: each test decides when NATS comes up."""
    server = NatsServer(tmp_path / "jetstream", free_port())
    try:
        yield server
    finally:
        await server.stop()


async def stream_count(url: str, name: str) -> int:
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    try:
        return int((await nc.jetstream().stream_info(name)).state.messages)
    except nats.js.errors.NotFoundError:
        return 0
    finally:
        await nc.close()


async def consume_all(url: str, stream: Stream) -> list[Received]:
    """Everything in the stream, through a pull consumer, in stream order."""
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    try:
        js = nc.jetstream()
        total = (await js.stream_info(stream.name)).state.messages
        sub = await js.pull_subscribe(f"{stream.prefix}.>", stream=stream.name)
        received: list[Received] = []
        while len(received) < total:
            for msg in await sub.fetch(min(256, total - len(received)), timeout=5):
                await msg.ack()
                event = json.loads(msg.data)
                msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
                received.append(Received(event["revision"], msg.subject, msg_id, event))
        await sub.unsubscribe()
        return received
    finally:
        await nc.close()


async def wait_for_count(url: str, name: str, count: int, within: float = 30) -> None:
    """Poll the stream: the relay in another process has no way to tell us."""
    for _ in range(int(within / 0.05)):
        if await stream_count(url, name) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"stream {name} has {await stream_count(url, name)} < {count}")


async def write_events(
    store: SqlRegistryStore, count: int, tag: str = "m", writers: int = 1
) -> None:
    """`count` events from `writers` concurrent writers (several overlap the
    commits' fsyncs on a slow disk)."""

    async def write(first: int) -> None:
        for i in range(first, count, writers):
            await store.create_model(ModelName(f"{tag}-{i}"), ModelFields(description=f"#{i}"))

    await asyncio.gather(*(write(w) for w in range(writers)))


async def assert_stream_matches_log(url: str, stream: Stream, database_url: str) -> None:
    """Each revision of the log is in the stream exactly once, in order, with
    its subject, message id and every field of the row."""
    engine = make_engine(database_url)
    try:
        log = await SqlEventLog(engine).read(0, 100_000)
        cursor = await SqlRelayCursors(engine).get(RelaySettings(url, stream.name).cursor_name)
    finally:
        await engine.dispose()
    received = await consume_all(url, stream)
    assert [r.revision for r in received] == [e.revision for e in log.items]
    assert [r.msg_id for r in received] == [str(e.revision) for e in log.items]
    for got, event in zip(received, log.items, strict=True):
        model_id = event.model.removeprefix("models/")
        assert got.subject == f"{stream.prefix}.{model_id}.{event.type}"
        assert got.event == {
            "revision": event.revision,
            "type": event.type,
            "resource": event.resource,
            "model": event.model,
            "actor": event.actor,
            "time_us": event.time_us,
            "before_json": event.before_json,
            "after_json": event.after_json,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        }
    assert verify_chain(log.items) is None
    assert cursor == log.items[-1].revision, "the cursor reaches the last event"


async def test_every_event_reaches_nats_once_in_order(
    db_url: str, tmp_path: Path, stream: Stream
) -> None:
    if not port_open("127.0.0.1", 4222):
        require("nats-server is not reachable at 127.0.0.1:4222")
    running = await start_server(
        ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "data",
            database_url=db_url,
            events_nats=SHARED_NATS,
            events_nats_stream=stream.name,
            events_nats_subject_prefix=stream.prefix,
        )
    )
    try:
        await write_events(running.store, 45)
        await wait_for_count(SHARED_NATS, stream.name, 45, within=10)
        await asyncio.sleep(0.3)  # nothing more arrives
        await assert_stream_matches_log(SHARED_NATS, stream, db_url)
        # What makes a republished event harmless: the stream drops it.
        nc = await nats.connect(SHARED_NATS)
        try:
            ack = await nc.jetstream().publish(
                f"{stream.prefix}.m-0.MODEL_CREATED", b"{}", headers={"Nats-Msg-Id": "1"}
            )
            assert ack.duplicate
        finally:
            await nc.close()
        assert await stream_count(SHARED_NATS, stream.name) == 45
    finally:
        await running.stop(grace=1)
        await delete_stream(SHARED_NATS, stream.name)


def relay_process(database_url: str, data_dir: Path, nats_url: str, s: Stream) -> ServeProcess:
    """`modelreg serve` relaying to `nats_url`, launched (not waited for)."""
    server = ServeProcess(
        data_dir,
        *("--database-url", database_url, "--events-nats", nats_url),
        *("--events-nats-stream", s.name, "--events-nats-subject-prefix", s.prefix),
    )
    server.launch()
    return server


@pytest.mark.timeout(300)
async def test_relay_killed_mid_stream_loses_and_repeats_nothing(
    pg_url: str, tmp_path: Path, stream: Stream, private_nats: NatsServer
) -> None:
    await private_nats.start()
    engine = make_engine(pg_url)
    await migrate.upgrade(engine)
    store = SqlRegistryStore(engine)  # another replica, writing
    server = relay_process(pg_url, tmp_path / "data", private_nats.url, stream)
    try:
        # In bursts, so that the relay (polling once a second for another
        # replica's writes) is mid-stream for a while whenever it starts.
        async def paced() -> None:
            for burst in range(5):
                await write_events(store, 40, f"b{burst}", writers=4)
                await asyncio.sleep(0.4)

        writer = asyncio.create_task(paced())
        await wait_for_count(private_nats.url, stream.name, 40)
        server.kill()
        at_kill = await stream_count(private_nats.url, stream.name)
        await writer
        assert at_kill < 200, "killed while events were still to be published"

        server = relay_process(pg_url, tmp_path / "data", private_nats.url, stream)
        await wait_for_count(private_nats.url, stream.name, 200)
        await asyncio.sleep(1.5)  # a poll interval: nothing more arrives
        server.kill()
        await assert_stream_matches_log(private_nats.url, stream, pg_url)
    finally:
        server.kill()
        await store.close()


async def test_events_written_during_a_nats_outage_arrive_later(
    sqlite_url: str, tmp_path: Path, stream: Stream, private_nats: NatsServer
) -> None:
    running = await start_server(
        ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "data",
            database_url=sqlite_url,
            events_nats=private_nats.url,
            events_nats_stream=stream.name,
            events_nats_subject_prefix=stream.prefix,
        )
    )
    try:
        await write_events(running.store, 30, "before")
        await asyncio.sleep(1)  # the relay fails to connect and backs off
        await private_nats.start()
        await wait_for_count(private_nats.url, stream.name, 30)

        # NATS goes away mid-life, events keep coming, NATS returns.
        await private_nats.stop()
        await write_events(running.store, 30, "during")
        await asyncio.sleep(0.5)
        await private_nats.start()
        await wait_for_count(private_nats.url, stream.name, 40)
        await asyncio.sleep(0.3)
        await assert_stream_matches_log(private_nats.url, stream, sqlite_url)
    finally:
        await running.stop(grace=1)


async def test_one_replica_publishes_and_another_takes_over(
    pg_url: str, tmp_path: Path, stream: Stream, caplog: pytest.LogCaptureFixture
) -> None:
    if not port_open("127.0.0.1", 4222):
        require("nats-server is not reachable at 127.0.0.1:4222")
    caplog.set_level(logging.INFO, logger="modelreg.events.nats")

    def config(name: str) -> ServerConfig:
        return ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / name,
            database_url=pg_url,
            events_nats=SHARED_NATS,
            events_nats_stream=stream.name,
            events_nats_subject_prefix=stream.prefix,
        )

    first = await start_server(config("a"))
    second = await start_server(config("b"))
    try:
        await write_events(first.store, 10, "a")
        await write_events(second.store, 10, "b")
        await wait_for_count(SHARED_NATS, stream.name, 20)
        standby = [r for r in caplog.records if r.getMessage().startswith("nats relay standing")]
        assert standby, "one replica publishes, the other stands by"

        await first.stop(grace=1)
        await write_events(second.store, 10, "c")
        await wait_for_count(SHARED_NATS, stream.name, 30, within=60)
        await asyncio.sleep(0.3)
        await assert_stream_matches_log(SHARED_NATS, stream, pg_url)
    finally:
        await first.stop(grace=1)
        await second.stop(grace=1)
        await delete_stream(SHARED_NATS, stream.name)
