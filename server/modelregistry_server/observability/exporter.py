"""The HTTP side: /metrics for Prometheus, /healthz and /readyz for load
balancers and orchestrators that cannot speak the gRPC health protocol.

- /metrics: Prometheus text (or OpenMetrics, if the scraper asks for it).
- /healthz: 200 while the event loop answers within two seconds. A wedged
  loop serves no RPC, so restarting the process is the right response.
- /readyz: 200 while gRPC health reports SERVING: the database answers, the
  schema is current, and the server is not draining. The same answer a
  gRPC health probe gets.

It runs a small threaded WSGI server of its own, so neither a scrape nor a
slow reader ever waits on, or blocks, the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from .live import ServerCollector, Sources, on_loop, sample_staging_forever

log = logging.getLogger("modelreg.metrics")
STAGING_SAMPLE_S = 30.0
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # server_close() runs on the event loop: it must not wait for a request
    # thread, which may itself be waiting for the loop.
    block_on_close = False


class _IPv6Server(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Scrapes and probes arrive every few seconds: no access log for them."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def split_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or `:PORT` (all interfaces)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--metrics-listen must be HOST:PORT, not {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _text(start_response: StartResponse, status: str, body: str) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]


class Exporter:
    """Bound at construction (a taken port fails start-up at once); serves
    from `run`, which the server runs as one of its background tasks."""

    def __init__(self, listen: str, sources: Sources) -> None:
        self._loop = asyncio.get_running_loop()
        self._sources = sources
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ServerCollector(self._loop, sources))
        self._metrics = make_wsgi_app(registry)
        host, port = split_listen(listen)
        server_class = _IPv6Server if ":" in host else _ThreadingServer
        self._httpd = make_server(
            host, port, self._app, server_class=server_class, handler_class=_QuietHandler
        )
        self.port = int(self._httpd.server_address[1])

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path in ("/healthz", "/readyz"):
            snap = on_loop(self._loop, self._sources)
            if snap is None:
                return _text(start_response, "503 Service Unavailable", "event loop unresponsive\n")
            if path == "/readyz" and not snap.serving:
                return _text(start_response, "503 Service Unavailable", "not serving\n")
            return _text(start_response, "200 OK", "ok\n")
        return _text(start_response, "404 Not Found", "try /metrics, /healthz or /readyz\n")

    async def run(self) -> None:
        thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        thread.start()
        log.info("metrics listening", extra={"port": self.port})
        try:
            await sample_staging_forever(self._sources.blobs, STAGING_SAMPLE_S)
        finally:
            # shutdown() waits for serve_forever to notice: off the loop.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._httpd.shutdown)
            self._httpd.server_close()


def start(listen: str, sources: Sources) -> list[asyncio.Task[None]]:
    """The exporter's task, or none when `listen` is empty (metrics off)."""
    if not listen:
        return []
    exporter = Exporter(listen, sources)
    return [asyncio.create_task(exporter.run(), name="metrics-exporter")]
