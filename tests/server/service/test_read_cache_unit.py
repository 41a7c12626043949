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


def test_the_size_limit_counts_what_a_page_holds() -> None:
    cache = ReadCache(ttl_s=60, max_entries=4)
    for name in ("a", "b"):
        cache.put(name, ("model", name), name, cache.generation(name))
    cache.put("a", ("versions", "a|p1"), ["v3", "v2", "v1"], cache.generation("a"), weight=3)
    assert cache.get(("model", "a")) is None  # evicted to make room for the page
    assert cache.get(("model", "b")) == "b"
    assert cache.get(("versions", "a|p1")) == ["v3", "v2", "v1"]
    cache.put("a", ("versions", "a|all"), ["v"] * 5, cache.generation("a"), weight=5)
    assert cache.get(("versions", "a|all")) is None  # heavier than the whole cache
    assert cache.get(("model", "b")) == "b"  # and it evicted nothing
    cache.invalidate({"a"})
    for name in "cde":  # the page's weight was given back with it
        cache.put(name, ("model", name), name, cache.generation(name))
    assert [cache.get(("model", n)) for n in "bcde"] == ["b", "c", "d", "e"]
