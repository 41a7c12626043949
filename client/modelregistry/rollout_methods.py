"""Promotion methods of `RegistryClient`: approvals, atomic alias moves, rollouts.

Kept apart from client.py so each stays small; `RegistryClient` inherits
them and supplies the core (channel, stubs, unary calls). Writes are never
retried; pass the etag you read to make them conditional.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

from .core import Core
from .v1 import registry_service_pb2 as rpc
from .v1 import resources_pb2 as pb
from .v1 import rollout_service_pb2 as rrpc


def _version(model: str, version: int | str) -> str:
    return f"{model}/versions/{version}" if isinstance(version, int) else version


class RolloutMethods:
    _core: Core

    # Approvals

    async def approve_model_version(
        self, name: str, *, comment: str = "", etag: str = "", request_id: str | None = None
    ) -> pb.ModelVersion:
        request = rpc.ApproveModelVersionRequest(name=name, comment=comment, etag=etag)
        return await self._core.call(
            self._core.stubs.registry.ApproveModelVersion, request, request_id, read=False
        )

    async def reject_model_version(
        self, name: str, *, comment: str = "", etag: str = "", request_id: str | None = None
    ) -> pb.ModelVersion:
        request = rpc.RejectModelVersionRequest(name=name, comment=comment, etag=etag)
        return await self._core.call(
            self._core.stubs.registry.RejectModelVersion, request, request_id, read=False
        )

    # Atomic alias moves

    async def batch_set_aliases(
        self,
        model: str,
        moves: Iterable[tuple[str, int | str, str]],
        *,
        request_id: str | None = None,
    ) -> list[pb.Alias]:
        """Move several aliases of `model` at once: (alias name, version, etag)
        for each; all move or none does."""
        request = rpc.BatchSetAliasesRequest(
            parent=model,
            requests=[
                rpc.SetAliasRequest(
                    alias=pb.Alias(name=alias, version=_version(model, version)), etag=etag
                )
                for alias, version, etag in moves
            ],
        )
        reply = await self._core.call(
            self._core.stubs.registry.BatchSetAliases, request, request_id, read=False
        )
        return list(reply.aliases)

    # Rollouts

    async def start_rollout(
        self,
        alias: str,
        candidate: int | str,
        *,
        steps: Sequence[int] = (),
        alias_etag: str = "",
        request_id: str | None = None,
    ) -> pb.Rollout:
        model = alias.split("/aliases/")[0]
        request = rrpc.StartRolloutRequest(
            alias=alias,
            candidate_version=_version(model, candidate),
            steps=list(steps),
            alias_etag=alias_etag,
        )
        return await self._core.call(
            self._core.stubs.rollouts.StartRollout, request, request_id, read=False
        )

    async def get_rollout(self, name: str, *, request_id: str | None = None) -> pb.Rollout:
        request = rrpc.GetRolloutRequest(name=name)
        return await self._core.call(
            self._core.stubs.rollouts.GetRollout, request, request_id, read=True
        )

    async def list_rollouts(
        self, model: str, *, active_only: bool = False, request_id: str | None = None
    ) -> AsyncIterator[pb.Rollout]:
        token = ""
        while True:
            request = rrpc.ListRolloutsRequest(
                parent=model, active_only=active_only, page_token=token
            )
            page = await self._core.call(
                self._core.stubs.rollouts.ListRollouts, request, request_id, read=True
            )
            for rollout in page.rollouts:
                yield rollout
            token = page.next_page_token
            if not token:
                return

    async def advance_rollout(
        self,
        name: str,
        *,
        percent: int = 0,
        etag: str = "",
        require_warm: bool = False,
        request_id: str | None = None,
    ) -> pb.Rollout:
        """To the next step, or to `percent`; 100 completes the rollout. With
        `require_warm`, only once every live regional edge holds the
        candidate's artifact (NOT_WARM otherwise)."""
        request = rrpc.AdvanceRolloutRequest(
            name=name, percent=percent, etag=etag, require_warm=require_warm
        )
        return await self._core.call(
            self._core.stubs.rollouts.AdvanceRollout, request, request_id, read=False
        )

    async def pause_rollout(
        self, name: str, *, etag: str = "", request_id: str | None = None
    ) -> pb.Rollout:
        request = rrpc.PauseRolloutRequest(name=name, etag=etag)
        return await self._core.call(
            self._core.stubs.rollouts.PauseRollout, request, request_id, read=False
        )

    async def resume_rollout(
        self, name: str, *, etag: str = "", request_id: str | None = None
    ) -> pb.Rollout:
        request = rrpc.ResumeRolloutRequest(name=name, etag=etag)
        return await self._core.call(
            self._core.stubs.rollouts.ResumeRollout, request, request_id, read=False
        )

    async def rollback_rollout(
        self, name: str, *, etag: str = "", request_id: str | None = None
    ) -> pb.Rollout:
        request = rrpc.RollbackRolloutRequest(name=name, etag=etag)
        return await self._core.call(
            self._core.stubs.rollouts.RollbackRollout, request, request_id, read=False
        )
