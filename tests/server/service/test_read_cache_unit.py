"""The read cache keeps nothing that raced with an invalidation."""

from __future__ import annotations

import time

from modelregistry_server.service.read_cache import ReadCache


def test_hits_until_the_model_changes() -> None:
    cache = ReadCache(ttl_s=60)
    gen = cache.generation("models/a")
    cache.put("models/a", ("model", "models/a"), "v1", gen)
    assert cache.get(("model", "models/a")) == "v1"
    cache.invalidate({"models/b"})
    assert cache.get(("model", "models/a")) == "v1"
    cache.invalidate({"models/a"})
    assert cache.get(("model", "models/a")) is None


def test_a_read_that_raced_with_a_write_is_not_kept() -> None:
    cache = ReadCache(ttl_s=60)
    gen = cache.generation("models/a")  # the read starts...
    cache.invalidate({"models/a"})  # ...a write commits meanwhile...
    cache.put("models/a", ("model", "models/a"), "stale", gen)  # ...the read ends
    assert cache.get(("model", "models/a")) is None
    gen = cache.generation("models/new")
    cache.clear()  # also covers models the cache had never seen
    cache.put("models/new", ("model", "models/new"), "stale", gen)
    assert cache.get(("model", "models/new")) is None


def test_ttl_size_limit_and_disabled() -> None:
    cache = ReadCache(ttl_s=0.01, max_entries=2)
    for name in ("a", "b", "c"):
        cache.put(name, ("model", name), name, cache.generation(name))
    assert cache.get(("model", "a")) is None  # evicted: over the size limit
    assert cache.get(("model", "c")) == "c"
    time.sleep(0.02)
    assert cache.get(("model", "c")) is None  # expired
    off = ReadCache(ttl_s=0)
    off.put("a", ("model", "a"), "a", off.generation("a"))
    assert off.get(("model", "a")) is None
