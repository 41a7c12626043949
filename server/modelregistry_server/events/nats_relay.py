"""Outbox relay: every event of the log, published to NATS JetStream at least once.

Pipelines (retraining, audits, deployment bots) consume events from a durable
queue rather than holding a Watch open. The event log table is the truth; the
relay copies it, in revision order, to one stream:

- stream `MODELREG_EVENTS` (`--events-nats-stream`), file storage, subjects
  `modelreg.events.>` (`--events-nats-subject-prefix`), and a duplicate
  window of ten minutes;
- subject `modelreg.events.<model id>.<EVENT_TYPE>`, e.g.
  `modelreg.events.fraud.ALIAS_SET`, so a consumer filters by model
  (`modelreg.events.fraud.>`) or by type (`modelreg.events.*.ALIAS_SET`);
- header `Nats-Msg-Id: <revision>`, so JetStream drops a message it already
  stored within the window;
- payload: the event as one JSON object with every field of the log row:
  `revision`, `type`, `resource`, `model` (`models/{model}`), `actor`,
  `time_us`, `before_json` and `after_json` (the resource before and after,
  canonical JSON text, "" when absent), `prev_hash` and `hash`. The JSON
  texts are kept verbatim so a consumer can recompute the hash chain.

Each event is published and its acknowledgement awaited before the next one,
so the stream holds revisions in order even across retries. After each
acknowledged batch the cursor (the last acknowledged revision) is saved in
`relay_cursors`; a restart resumes from it. Events acknowledged but not yet
saved when the process died are published again and dropped by JetStream as
duplicates; beyond the duplicate window, the relay also trusts the stream's
last message when its hash matches the log, so they are not republished at
all. A NATS outage stops the relay, never makes it skip: it retries with
backoff from the same revision. To replay everything into a new stream,
start with a new stream name (each stream has its own cursor).

The relay wakes on local commits for low latency and polls as a fallback
(events written by other replicas). On PostgreSQL only one replica publishes
at a time (an advisory lock); the others stand by.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import DEFAULTS, ServerConfig
from ..domain import errors
from ..domain.events import Event
from ..observability import metrics
from ..store.base import EventLog, RelayCursors, RelayLeadership

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

log = logging.getLogger("modelreg.events.nats")

MSG_ID = "Nats-Msg-Id"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class RelaySettings:
    url: str
    stream: str = DEFAULTS.events_nats_stream
    subject_prefix: str = DEFAULTS.events_nats_subject_prefix
    batch_size: int = 256
    # Fallback wake-up when no local commit hook fires (other replicas).
    poll_interval_s: float = 1.0
    duplicate_window_s: float = 600.0
    publish_timeout_s: float = 5.0
    max_backoff_s: float = 10.0
    # How often a standby replica retries the lock, and the leader checks it.
    standby_interval_s: float = 5.0
    leader_check_s: float = 5.0
    # A status line at most this often, when something was published.
    status_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("nats://", "tls://")):
            raise ValueError(f"--events-nats must be a nats:// or tls:// URL, not {self.url!r}")
        if not _TOKEN.match(self.stream):
            raise ValueError(f"invalid NATS stream name {self.stream!r}")
        if not all(_TOKEN.match(t) for t in self.subject_prefix.split(".")):
            raise ValueError(f"invalid NATS subject prefix {self.subject_prefix!r}")

    @property
    def cursor_name(self) -> str:
        return f"nats:{self.stream}"


def relay_settings(config: ServerConfig) -> RelaySettings | None:
    """The relay's settings from the serve flags (None: relay disabled)."""
    if not config.events_nats:
        return None
    return RelaySettings(
        url=config.events_nats,
        stream=config.events_nats_stream,
        subject_prefix=config.events_nats_subject_prefix,
    )


def subject_for(prefix: str, event: Event) -> str:
    """`<prefix>.<model id>.<EVENT_TYPE>`; ids never hold a dot, but a subject
    token must not, whatever the data says."""
    model = _UNSAFE.sub("_", event.model.removeprefix("models/")) or "_"
    return f"{prefix}.{model}.{_UNSAFE.sub('_', event.type) or '_'}"


def payload_for(event: Event) -> bytes:
    return json.dumps(dataclasses.asdict(event), sort_keys=True, ensure_ascii=False).encode()


@dataclass
class RelayStatus:
    """What an operator asks: is it publishing, and how far has it got."""

    state: str = "starting"  # standby | connecting | publishing | retrying
    cursor: int = 0
    published: int = 0
    duplicates: int = 0
    last_error: str = ""


async def _quiet(_exc: Exception) -> None:
    """nats-py logs every failed attempt itself; the relay logs once per outage."""


class NatsRelay:
    """Run it once the schema is ready; call `wake` from the stores' commit hooks."""

    def __init__(self, events: EventLog, cursors: RelayCursors, settings: RelaySettings) -> None:
        self.settings = settings
        self.status = RelayStatus()
        self._log = events
        self._cursors = cursors
        self._wake = asyncio.Event()
        self._cursor = 0
        self._saved = 0
        self._next_check = 0.0
        self._next_status = 0.0
        self._reported = 0
        self._extra = {"stream": settings.stream, "nats": settings.url}

    def wake(self) -> None:
        """Commit hook: something was written, look now rather than at the next poll."""
        self._wake.set()

    async def _disconnected(self) -> None:
        """The connection dropped: say so now, not at the next publish."""
        if self.status.state == "publishing":
            log.warning("nats relay lost its connection", extra=self._extra)
            self._wake.set()

    async def run(self) -> None:
        """Publish forever; every failure is retried with capped backoff."""
        delay = 0.2
        while True:
            published = self.status.published
            try:
                async with self._cursors.leadership() as leadership:
                    await self._lead(leadership)
            except asyncio.CancelledError:
                metrics.relay_standby()  # a stopped relay shows no lag
                raise
            except Exception as exc:
                if self.status.published > published:
                    delay = 0.2
                error = f"{type(exc).__name__}: {exc}"
                if self.status.state != "retrying" or error != self.status.last_error:
                    log.warning(
                        "nats relay retrying",
                        extra={
                            **self._extra,
                            "error": error,
                            "cursor": self._cursor,
                            "retry_in_s": delay,
                        },
                    )
                self.status.state, self.status.last_error = "retrying", error
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.max_backoff_s)

    async def _lead(self, leadership: RelayLeadership | None) -> None:
        """Publish while leading; leaving `leadership`'s session ends the lead."""
        if leadership is not None:
            await self._wait_for_the_lead(leadership)
        await self._connect_and_publish(leadership)

    async def _wait_for_the_lead(self, leadership: RelayLeadership) -> None:
        name = self.settings.cursor_name
        metrics.relay_standby()
        while not await leadership.try_lead(name):
            if self.status.state != "standby":
                self.status.state = "standby"
                log.info("nats relay standing by: another replica publishes", extra=self._extra)
            await asyncio.sleep(self.settings.standby_interval_s)
        self._next_check = time.monotonic() + self.settings.leader_check_s

    async def _connect_and_publish(self, leadership: RelayLeadership | None) -> None:
        import nats  # only a server with --events-nats pays for nats-py and aiohttp

        self.status.state = "connecting"
        # One attempt per call: nats-py's own connect loop would retry for two
        # minutes before the relay could say anything; the relay's loop
        # retries instead, warning at once and backing off. Pings find a
        # connection that died without a reset within half a minute.
        nc = await nats.connect(
            self.settings.url,
            name="modelreg-relay",
            allow_reconnect=False,
            max_reconnect_attempts=1,
            connect_timeout=2,
            ping_interval=10,
            max_outstanding_pings=2,
            error_cb=_quiet,
            disconnected_cb=self._disconnected,
        )
        try:
            js = nc.jetstream(timeout=self.settings.publish_timeout_s)
            await self._ensure_stream(js)
            saved = await self._cursors.get(self.settings.cursor_name)
            self._cursor = max(self._cursor, saved, await self._stream_position(js))
            self._saved = saved
            if self._cursor > saved:  # the stream (or this process) was ahead of the table
                await self._cursors.advance(self.settings.cursor_name, self._cursor)
                self._saved = self._cursor
            self.status.state, self.status.cursor = "publishing", self._cursor
            metrics.relay_at(self._cursor)
            log.info("nats relay publishing", extra={**self._extra, "cursor": self._cursor})
            await self._publish_forever(js, leadership)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        import nats.js.errors
        from nats.js.api import StorageType, StreamConfig

        subjects = f"{self.settings.subject_prefix}.>"
        try:
            info = await js.stream_info(self.settings.stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=self.settings.stream,
                    subjects=[subjects],
                    storage=StorageType.FILE,
                    duplicate_window=self.settings.duplicate_window_s,
                )
            )
            log.info("nats stream created", extra={**self._extra, "subjects": subjects})
            return
        if subjects not in (info.config.subjects or []):
            log.warning(
                "nats stream does not capture the relay's subjects",
                extra={**self._extra, "subjects": info.config.subjects, "expected": subjects},
            )

    async def _stream_position(self, js: JetStreamContext) -> int:
        """The revision of the stream's last message when it matches the log
        (0 otherwise): messages acknowledged before a crash, past the
        duplicate window, are then not published twice."""
        import nats.js.errors

        info = await js.stream_info(self.settings.stream)
        if not info.state.last_seq:
            return 0
        try:
            msg = await js.get_msg(self.settings.stream, seq=info.state.last_seq)
            revision = int((msg.headers or {}).get(MSG_ID, "0"))
            stored_hash = json.loads(msg.data or b"{}").get("hash")
        except (nats.js.errors.NotFoundError, ValueError, AttributeError):
            return 0
        event = await self._cursors.event(revision) if revision > 0 else None
        if event is None or event.hash != stored_hash:
            log.warning(
                "nats stream's last message is not in this event log; using the saved cursor",
                extra={**self._extra, "stream_revision": revision},
            )
            return 0
        return revision

    async def _publish_forever(
        self, js: JetStreamContext, leadership: RelayLeadership | None
    ) -> None:
        while True:
            self._wake.clear()
            try:
                page = await self._log.read(self._cursor, self.settings.batch_size)
            except errors.OutOfRange:
                await self._skip_compacted()
                continue
            if page.items:
                await self._publish_batch(js, page.items)
            self._report()
            if leadership is not None and time.monotonic() >= self._next_check:
                await leadership.still_leading()
                self._next_check = time.monotonic() + self.settings.leader_check_s
            if page.more:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)

    async def _publish_batch(self, js: JetStreamContext, batch: list[Event]) -> None:
        try:
            for event in batch:
                ack = await js.publish(
                    subject_for(self.settings.subject_prefix, event),
                    payload_for(event),
                    stream=self.settings.stream,
                    headers={MSG_ID: str(event.revision)},
                )
                self._cursor = event.revision
                self.status.cursor = event.revision
                metrics.relay_at(event.revision)
                self.status.published += 1
                self.status.duplicates += int(bool(ack.duplicate))
        finally:
            if self._cursor > self._saved:
                # Also on failure or cancellation: what was acknowledged stays so.
                await asyncio.wait_for(
                    self._cursors.advance(self.settings.cursor_name, self._cursor), 10
                )
                self._saved = self._cursor
        log.debug(
            "nats relay batch acknowledged",
            extra={**self._extra, "count": len(batch), "cursor": self._cursor},
        )

    async def _skip_compacted(self) -> None:
        """Events compacted before they were published cannot be sent; say so
        loudly and go on from the oldest that remains."""
        _, compacted = await self._log.head()
        log.error(
            "events were compacted before the relay published them",
            extra={**self._extra, "from": self._cursor + 1, "to": compacted},
        )
        self._cursor = max(self._cursor, compacted)

    def _report(self) -> None:
        now = time.monotonic()
        if now < self._next_status or self.status.published == self._reported:
            return
        self._next_status = now + self.settings.status_interval_s
        self._reported = self.status.published
        log.info(
            "nats relay status",
            extra={
                **self._extra,
                "state": self.status.state,
                "cursor": self._cursor,
                "published": self.status.published,
                "duplicates": self.status.duplicates,
            },
        )
