"""Serving-side client: resolve and cache, watch, prefetch, atomic flip, rollback."""

from .agent import AgentStatus, Loaded, ServingAgent, Target, choose
from .cache import ArtifactCache
from .cohort import bucket, serves_candidate

__all__ = [
    "AgentStatus",
    "ArtifactCache",
    "Loaded",
    "ServingAgent",
    "Target",
    "bucket",
    "choose",
    "serves_candidate",
]
