"""The supervisor's HTTP side with `--workers N`: one endpoint for the server.

Each worker runs its own exporter on a private loopback port; the
supervisor answers on --metrics-listen:

- /metrics: every worker's metrics, each sample labelled `worker="<i>"`, so
  that Prometheus sums (`sum without (worker)`) give the server's totals and
  per-worker series stay visible; plus `modelreg_workers` (configured) and
  `modelreg_workers_up` (answering this scrape).
- /healthz: 200 while every worker's own /healthz answers 200.
- /readyz: 200 while every worker is SERVING (their /readyz) and the server
  is not shutting down: a load balancer sends traffic only when any
  connection the kernel hands to any worker would be served.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from wsgiref.simple_server import make_server

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from .exporter import _IPv6Server, _QuietHandler, _ThreadingServer, split_listen

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
FETCH_TIMEOUT_S = 2.0


class _Workers(Protocol):
    count: int
    workers: list[Any]

    @property
    def stopping(self) -> bool: ...


def _fetch(port: int, path: str) -> tuple[int, str]:
    try:
        url = f"http://127.0.0.1:{port}{path}"
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def merge(texts: Iterable[tuple[int, str]]) -> str:
    """Prometheus text from several workers' exposition, samples labelled by worker."""
    families: dict[str, tuple[str, str, list[str]]] = {}
    for index, text in texts:
        for family in text_string_to_metric_families(text):
            kind = "untyped" if family.type == "unknown" else family.type
            _, _, lines = families.setdefault(family.name, (family.documentation, kind, []))
            for sample in family.samples:
                labels = {**sample.labels, "worker": str(index)}
                body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                value = floatToGoString(sample.value)  # type: ignore[no-untyped-call]
                lines.append(f"{sample.name}{{{body}}} {value}")
    out: list[str] = []
    for name, (doc, kind, lines) in families.items():
        out.append(f"# HELP {name} {_escape(doc)}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n"


class WorkersHttp:
    def __init__(self, listen: str, workers: _Workers) -> None:
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="workers-http")
        host, port = split_listen(listen)
        server_class = _IPv6Server if ":" in host else _ThreadingServer
        self._httpd = make_server(
            host, port, self._app, server_class=server_class, handler_class=_QuietHandler
        )
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()

    def _ask(self, path: str) -> list[tuple[int, int, str]]:
        """(worker, status, body) from every worker, asked in parallel."""
        workers = list(self._workers.workers)
        answers = self._pool.map(lambda w: _fetch(w.metrics_port, path), workers)
        return [(w.index, status, body) for w, (status, body) in zip(workers, answers, strict=True)]

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            answers = self._ask("/metrics")
            up = [(i, body) for i, status, body in answers if status == 200]
            text = merge(up) + (
                "# HELP modelreg_workers Worker processes this server is configured with.\n"
                "# TYPE modelreg_workers gauge\n"
                f"modelreg_workers {self._workers.count}\n"
                "# HELP modelreg_workers_up Workers whose metrics this scrape could read.\n"
                "# TYPE modelreg_workers_up gauge\n"
                f"modelreg_workers_up {len(up)}\n"
            )
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
            return [text.encode()]
        if path in ("/healthz", "/readyz"):
            answers = self._ask(path)
            failing = [i for i, status, _ in answers if status != 200]
            if path == "/readyz" and self._workers.stopping:
                return _text(start_response, "503 Service Unavailable", "shutting down\n")
            if failing or len(answers) < self._workers.count:
                names = ", ".join(str(i) for i in failing) or "starting"
                return _text(start_response, "503 Service Unavailable", f"workers: {names}\n")
            return _text(start_response, "200 OK", "ok\n")
        return _text(start_response, "404 Not Found", "try /metrics, /healthz or /readyz\n")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._httpd.shutdown()
        self._httpd.server_close()
        self._pool.shutdown(wait=False)


def _text(start_response: StartResponse, status: str, body: str) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]


def start(listen: str, workers: _Workers) -> WorkersHttp:
    return WorkersHttp(listen, workers)
