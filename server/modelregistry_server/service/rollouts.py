"""Use cases of progressive rollouts."""

from __future__ import annotations

from collections.abc import Sequence

from modelregistry.v1.error_reasons import ErrorReason

from ..domain.errors import InvalidArgument
from ..domain.etags import parse_etag
from ..domain.names import AliasName, ModelName, RolloutName, VersionName
from ..domain.resources import Rollout
from ..domain.rollouts import check_steps
from ..store.base import RegistryStore
from .page_tokens import PageTokens, coerce_page_size


class Rollouts:
    def __init__(self, store: RegistryStore, tokens: PageTokens) -> None:
        self._store = store
        self._tokens = tokens

    async def start(
        self, alias: AliasName, candidate: VersionName, steps: Sequence[int], alias_etag: str
    ) -> Rollout:
        if candidate.parent != alias.parent:
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD,
                f"candidate_version: {candidate} belongs to another model than {alias}",
                "candidate_version",
            )
        return await self._store.start_rollout(
            alias, candidate, check_steps(steps), parse_etag(alias_etag, "alias_etag")
        )

    async def get(self, name: RolloutName) -> Rollout:
        return await self._store.get_rollout(name)

    async def list(
        self, parent: ModelName, page_size: int, page_token: str, active_only: bool
    ) -> tuple[list[Rollout], str]:
        limit = coerce_page_size(page_size)
        scope = f"ListRollouts|{parent}|{active_only}"
        cursor = self._tokens.decode(scope, page_token)
        if cursor is not None and not isinstance(cursor, int):
            raise InvalidArgument(
                ErrorReason.INVALID_PAGE_TOKEN, "page_token is malformed", "page_token"
            )
        page, last_id = await self._store.list_rollouts(parent, active_only, cursor, limit)
        token = self._tokens.encode(scope, last_id) if last_id is not None else ""
        return page.items, token

    async def advance(self, name: RolloutName, etag: str, percent: int) -> Rollout:
        return await self._store.advance_rollout(name, parse_etag(etag), percent)

    async def pause(self, name: RolloutName, etag: str) -> Rollout:
        return await self._store.pause_rollout(name, parse_etag(etag))

    async def resume(self, name: RolloutName, etag: str) -> Rollout:
        return await self._store.resume_rollout(name, parse_etag(etag))

    async def rollback(self, name: RolloutName, etag: str) -> Rollout:
        return await self._store.rollback_rollout(name, parse_etag(etag))
