"""Prometheus metrics and HTTP health for `modelreg serve --metrics-listen`.

`metrics` defines what is counted where it happens (RPCs, bytes, relay
progress); `live` reads the figures that are state rather than events (open
watch streams, the event-log head, the read cache, the database pool) from
the running server at scrape time; `rpc` is the interceptor that counts
RPCs; `exporter` serves /metrics, /healthz and /readyz from a thread of its
own so that a scrape never waits on, or blocks, the event loop's RPCs.
"""
