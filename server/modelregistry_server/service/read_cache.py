"""A small read cache for the hot reads: GetModel, GetModelVersion, GetAlias,
ResolveAlias and ListModelVersions pages (what serving fleets, deploy
windows and dashboards hammer).

Entries are dropped per model: at once, synchronously, when a write on this
replica commits (before the writer gets its answer, so a client always
reads its own writes), and when the watch hub reads another replica's events
from the log (woken by NOTIFY, or by its poll if a notification is lost).
Across replicas a read may therefore trail a commit by that delay; the TTL
bounds the rest. A read that raced with an invalidation is not stored: each
model has a generation that an invalidation bumps, and a result is kept only
if the generation it started with is still current.

Conditional writes never consult the cache: etags are checked by the
database. The size bound counts resources, not entries: a listing page of
50 versions weighs 50.
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
        # key -> (model, expiry, value, weight)
        self._entries: OrderedDict[Key, tuple[str, float, Any, int]] = OrderedDict()
        self._weight = 0
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

    def put(
        self, model: str, key: Key, value: Any, generation: tuple[int, int], weight: int = 1
    ) -> None:
        """Keep `value` unless the model changed since `generation` was
        taken; `weight`: how many resources it holds (a page: its items)."""
        if not self.enabled or self.generation(model) != generation:
            return
        if weight > self.max_entries:
            return
        self._drop(key)
        self._entries[key] = (model, time.monotonic() + self.ttl_s, value, weight)
        self._weight += weight
        self._keys_by_model.setdefault(model, set()).add(key)
        while self._weight > self.max_entries:
            old_key, (old_model, _, _, old_weight) = self._entries.popitem(last=False)
            self._weight -= old_weight
            keys = self._keys_by_model.get(old_model)
            if keys is not None:
                keys.discard(old_key)

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._weight -= entry[3]

    def invalidate(self, models: Iterable[Hashable]) -> None:
        for model in models:
            name = str(model)
            self._generations[name] = self._generations.get(name, 0) + 1
            for key in self._keys_by_model.pop(name, ()):
                self._drop(key)

    def clear(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self._weight = 0
        self._keys_by_model.clear()
