"""Storage administration methods of `RegistryClient`: garbage collection.

Kept apart from client.py so each stays small; `RegistryClient` inherits
them and supplies the core.
"""

from __future__ import annotations

from datetime import timedelta

from google.protobuf import duration_pb2

from .core import Core
from .v1 import artifact_service_pb2 as apb


class GcMethods:
    _core: Core

    async def collect_garbage(
        self,
        *,
        dry_run: bool = False,
        grace: timedelta | None = None,
        request_id: str | None = None,
    ) -> apb.CollectGarbageResponse:
        """Delete unreferenced blobs older than `grace` (None: the server's
        default); `dry_run` only reports. Admins only."""
        request = apb.CollectGarbageRequest(dry_run=dry_run)
        if grace is not None:
            request.grace.CopyFrom(duration_pb2.Duration(seconds=int(grace.total_seconds())))
        return await self._core.call(
            self._core.stubs.artifacts.CollectGarbage, request, request_id, read=False
        )
