"""A small read cache for the hot reads: GetModel, GetModelVersion, GetAlias
and ResolveAlias (what serving fleets and deploy windows hammer).

Entries are dropped per model: at once, synchronously, when a write on this
replica commits (before the writer gets its answer, so a client always
reads its own writes), and when the watch hub reads another replica's events
from the log (woken by NOTIFY, or by its poll if a notification is lost).
Across replicas a read may therefore trail a commit by that delay; the TTL
bounds the rest. A read that raced with an invalidation is not stored: each
model has a generation that an invalidation bumps, and a result is kept only
if the generation it started with is still current.

Conditional writes never consult the cache: etags are checked by the
database.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

Key = tuple[str, str]  # (kind, resource name)


class ReadCache:
    def __init__(self, ttl_s: float, max_entries: int = 20_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, tuple[str, float, Any]] = OrderedDict()
        self._keys_by_model: dict[str, set[Key]] = {}
        self._generations: dict[str, int] = {}
        self._epoch = 0  # bumped by clear(): covers models never seen before
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def generation(self, model: str) -> tuple[int, int]:
        return self._epoch, self._generations.get(model, 0)

    def get(self, key: Key) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] < time.monotonic():
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[2]

    def put(self, model: str, key: Key, value: Any, generation: tuple[int, int]) -> None:
        if not self.enabled or self.generation(model) != generation:
            return
        self._entries[key] = (model, time.monotonic() + self.ttl_s, value)
        self._entries.move_to_end(key)
        self._keys_by_model.setdefault(model, set()).add(key)
        while len(self._entries) > self.max_entries:
            old_key, (old_model, _, _) = self._entries.popitem(last=False)
            keys = self._keys_by_model.get(old_model)
            if keys is not None:
                keys.discard(old_key)

    def invalidate(self, models: Iterable[Hashable]) -> None:
        for model in models:
            name = str(model)
            self._generations[name] = self._generations.get(name, 0) + 1
            for key in self._keys_by_model.pop(name, ()):
                self._entries.pop(key, None)

    def clear(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self._keys_by_model.clear()
