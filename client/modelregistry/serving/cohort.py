"""Which instances serve a rollout's candidate.

The rule is part of the contract (see `Rollout` in resources.proto) so that
every client, in any language, splits a fleet the same way: an instance is
in the candidate's cohort when its bucket is below `percent * 100`. The
bucket depends only on the rollout and the instance, so as the percent grows
an instance can join the cohort but never leave it.
"""

from __future__ import annotations

import hashlib

BUCKETS = 10_000


def bucket(rollout_name: str, instance_id: str) -> int:
    digest = hashlib.sha256(f"{rollout_name}/{instance_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def serves_candidate(rollout_name: str, instance_id: str, percent: int) -> bool:
    return bucket(rollout_name, instance_id) < percent * (BUCKETS // 100)
