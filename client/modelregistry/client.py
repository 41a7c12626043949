"""`RegistryClient`: the async SDK for models, versions and aliases.

Methods take and return the protobuf messages of `modelregistry.v1` so that
what a caller holds is exactly what went over the wire (including the etag
to send back). Failures raise `modelregistry.errors.RegistryError`
subclasses; reads are retried on UNAVAILABLE, writes never.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import grpc
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from . import artifacts
from .access_methods import AccessMethods
from .core import Core
from .credentials import find_token, token_interceptors
from .event_methods import EventMethods
from .gc_methods import GcMethods
from .messages import field_mask, to_struct, version_name, with_etag
from .rollout_methods import RolloutMethods
from .signature_methods import SignatureMethods
from .transport import DEFAULT_TARGET, Pem, RetryPolicy, channel_credentials
from .v1 import registry_service_pb2 as rpc
from .v1 import resources_pb2 as pb

if TYPE_CHECKING:
    from .v1.registry_service_pb2_grpc import RegistryServiceAsyncStub

Page = TypeVar("Page", bound=Message)
Item = TypeVar("Item")


class RegistryClient(EventMethods, RolloutMethods, AccessMethods, GcMethods, SignatureMethods):
    """Async client for `modelregistry.v1.RegistryService`.

    Use it as an async context manager, or call `close()`. `timeout` applies
    to each attempt of each call (None: no deadline). Give `root_ca` (and
    for mutual TLS `client_cert` plus `client_key`), or `tls=True` for the
    system roots; otherwise the channel is plaintext. On a registry with
    authentication on, give `token` (a JWT or a service-account token) or
    `token_file`, or set `$MODELREG_TOKEN` / `$MODELREG_TOKEN_FILE` (see
    credentials.py). Every method accepts `request_id`, sent as
    `x-request-id` so the server logs can be matched. With
    `read_your_writes`, every read asks the server (a regional edge, say)
    for at least the revision of this client's last write.
    """

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        tls: bool = False,
        root_ca: Pem | None = None,
        client_cert: Pem | None = None,
        client_key: Pem | None = None,
        timeout: float | None = 10.0,
        retry: RetryPolicy | None = None,
        options: Sequence[tuple[str, Any]] = (),
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        read_your_writes: bool = False,
    ) -> None:
        credentials = channel_credentials(
            tls=tls, root_ca=root_ca, client_cert=client_cert, client_key=client_key
        )
        self._core = Core(
            target,
            credentials=credentials,
            options=options,
            timeout=timeout,
            retry=retry,
            interceptors=token_interceptors(find_token(token, token_file)),
        )
        # Reads ask for the revision of this client's last write (see
        # Core.min_revision_for_reads): for reads from regional edges.
        self._core.read_your_writes = read_your_writes

    @property
    def core(self) -> Core:
        """The connection this client works through, shared with the artifact transfers."""
        return self._core

    @property
    def target(self) -> str:
        return self._core.target

    @property
    def timeout(self) -> float | None:
        return self._core.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._core.timeout = value

    @property
    def retry(self) -> RetryPolicy:
        return self._core.retry

    @retry.setter
    def retry(self, value: RetryPolicy) -> None:
        self._core.retry = value

    async def __aenter__(self) -> Self:
        self._core.channel()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        await self._core.close()

    def channel(self) -> grpc.aio.Channel:
        """The client's channel (opened on first use), shared with the artifact transfers."""
        return self._core.channel()

    @property
    def _registry(self) -> RegistryServiceAsyncStub:
        return self._core.stubs.registry

    @staticmethod
    async def _iterate(
        fetch: Callable[[str], Awaitable[Page]],
        items: Callable[[Page], Iterable[Item]],
        next_token: Callable[[Page], str],
    ) -> AsyncIterator[Item]:
        token = ""
        while True:
            page = await fetch(token)
            for item in items(page):
                yield item
            token = next_token(page)
            if not token:
                return

    # Models

    async def create_model(
        self,
        model_id: str,
        *,
        display_name: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
        protected_aliases: Iterable[str] = (),
        separation_of_duties: bool = False,
        request_id: str | None = None,
    ) -> pb.Model:
        """Creates `models/{model_id}`; AlreadyExistsError if the name is taken.
        `protected_aliases` take APPROVED versions only; with
        `separation_of_duties` a version's creator may not review it."""
        model = pb.Model(
            display_name=display_name,
            description=description,
            labels=labels,
            protected_aliases=list(protected_aliases),
            separation_of_duties=separation_of_duties,
        )
        request = rpc.CreateModelRequest(model_id=model_id, model=model)
        return await self._core.call(self._registry.CreateModel, request, request_id, read=False)

    async def get_model(
        self, name: str, *, storage_usage: bool = False, request_id: str | None = None
    ) -> pb.Model:
        """Returns `models/{model}`; NotFoundError (MODEL_NOT_FOUND) if absent.
        With `storage_usage`, `storage_used_bytes` is filled too (the server
        then sums the model's blobs: a database read, not a cached one)."""
        view = rpc.MODEL_VIEW_FULL if storage_usage else rpc.MODEL_VIEW_BASIC
        request = rpc.GetModelRequest(name=name, view=view)
        return await self._core.call(self._registry.GetModel, request, request_id, read=True)

    async def list_models_page(
        self,
        *,
        filter: str = "",
        page_size: int = 0,
        page_token: str = "",
        request_id: str | None = None,
    ) -> rpc.ListModelsResponse:
        """One page of models in name order, for callers that keep the token themselves."""
        request = rpc.ListModelsRequest(filter=filter, page_size=page_size, page_token=page_token)
        return await self._core.call(self._registry.ListModels, request, request_id, read=True)

    def list_models(
        self, *, filter: str = "", page_size: int = 0, request_id: str | None = None
    ) -> AsyncIterator[pb.Model]:
        """Every model matching `filter`, in name order, fetching pages as needed."""

        async def fetch(token: str) -> rpc.ListModelsResponse:
            return await self.list_models_page(
                filter=filter, page_size=page_size, page_token=token, request_id=request_id
            )

        return self._iterate(fetch, lambda p: p.models, lambda p: p.next_page_token)

    async def update_model(
        self,
        model: pb.Model,
        update_mask: Iterable[str],
        *,
        etag: str | None = None,
        request_id: str | None = None,
    ) -> pb.Model:
        """Updates the fields of `model` named in `update_mask`.

        Conditional on `model.etag` (as returned by a read) unless `etag`
        overrides it; "" makes the write unconditional. ConflictError
        (ETAG_MISMATCH) if the model changed in between.
        """
        if etag is not None:
            model = with_etag(model, etag)
        request = rpc.UpdateModelRequest(model=model, update_mask=field_mask(update_mask))
        return await self._core.call(self._registry.UpdateModel, request, request_id, read=False)

    async def delete_model(
        self,
        name: str,
        *,
        etag: str = "",
        force: bool = False,
        request_id: str | None = None,
    ) -> None:
        """Deletes a model; FailedPreconditionError (MODEL_HAS_VERSIONS) unless
        it has no versions or `force` is set (which deletes them and their aliases)."""
        request = rpc.DeleteModelRequest(name=name, etag=etag, force=force)
        await self._core.call(self._registry.DeleteModel, request, request_id, read=False)

    # Versions

    async def create_model_version(
        self,
        parent: str,
        *,
        source_uri: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | struct_pb2.Struct | None = None,
        request_id: str | None = None,
    ) -> pb.ModelVersion:
        """Creates the next version of model `parent`; the server picks the number.

        A version with a `source_uri` is READY at once. `metadata` is any
        JSON-like mapping (metrics, parameters...).
        """
        version = pb.ModelVersion(
            source_uri=source_uri,
            description=description,
            labels=labels,
            metadata=to_struct(metadata),
        )
        request = rpc.CreateModelVersionRequest(parent=parent, model_version=version)
        return await self._core.call(
            self._registry.CreateModelVersion, request, request_id, read=False
        )

    async def get_model_version(
        self, name: str, *, request_id: str | None = None
    ) -> pb.ModelVersion:
        """Returns `models/{model}/versions/{version}`; NotFoundError if absent."""
        request = rpc.GetModelVersionRequest(name=name)
        return await self._core.call(self._registry.GetModelVersion, request, request_id, read=True)

    async def list_model_versions_page(
        self,
        parent: str,
        *,
        filter: str = "",
        page_size: int = 0,
        page_token: str = "",
        request_id: str | None = None,
    ) -> rpc.ListModelVersionsResponse:
        """One page of a model's versions, newest first."""
        request = rpc.ListModelVersionsRequest(
            parent=parent, filter=filter, page_size=page_size, page_token=page_token
        )
        return await self._core.call(
            self._registry.ListModelVersions, request, request_id, read=True
        )

    def list_model_versions(
        self,
        parent: str,
        *,
        filter: str = "",
        page_size: int = 0,
        request_id: str | None = None,
    ) -> AsyncIterator[pb.ModelVersion]:
        """Every version of model `parent` matching `filter`, newest first."""

        async def fetch(token: str) -> rpc.ListModelVersionsResponse:
            return await self.list_model_versions_page(
                parent, filter=filter, page_size=page_size, page_token=token, request_id=request_id
            )

        return self._iterate(fetch, lambda p: p.model_versions, lambda p: p.next_page_token)

    async def update_model_version(
        self,
        model_version: pb.ModelVersion,
        update_mask: Iterable[str],
        *,
        etag: str | None = None,
        request_id: str | None = None,
    ) -> pb.ModelVersion:
        """Updates the fields of `model_version` named in `update_mask`
        (description, labels, metadata, source_uri, state).

        Conditional on `model_version.etag` unless `etag` overrides it, as
        for `update_model`.
        """
        if etag is not None:
            model_version = with_etag(model_version, etag)
        request = rpc.UpdateModelVersionRequest(
            model_version=model_version, update_mask=field_mask(update_mask)
        )
        return await self._core.call(
            self._registry.UpdateModelVersion, request, request_id, read=False
        )

    async def delete_model_version(
        self,
        name: str,
        *,
        etag: str = "",
        force: bool = False,
        request_id: str | None = None,
    ) -> None:
        """Deletes a version; FailedPreconditionError (VERSION_HAS_ALIASES) if an
        alias points at it, unless `force` is set. Its number is never reused."""
        request = rpc.DeleteModelVersionRequest(name=name, etag=etag, force=force)
        await self._core.call(self._registry.DeleteModelVersion, request, request_id, read=False)

    # Aliases

    async def set_alias(
        self,
        name: str,
        version: int | str,
        *,
        etag: str = "",
        request_id: str | None = None,
    ) -> pb.Alias:
        """Points alias `name` (`models/{model}/aliases/{alias}`) at `version`.

        `version` is a number of the same model or a full version name. With
        `etag` (from a read of the alias) this is a compare-and-set: exactly
        one of many concurrent callers wins, the others get ConflictError.
        """
        alias = pb.Alias(name=name, version=version_name(name, version))
        request = rpc.SetAliasRequest(alias=alias, etag=etag)
        return await self._core.call(self._registry.SetAlias, request, request_id, read=False)

    async def get_alias(self, name: str, *, request_id: str | None = None) -> pb.Alias:
        """Returns an alias; NotFoundError (ALIAS_NOT_FOUND) if it is not set."""
        request = rpc.GetAliasRequest(name=name)
        return await self._core.call(self._registry.GetAlias, request, request_id, read=True)

    async def list_aliases_page(
        self,
        parent: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        request_id: str | None = None,
    ) -> rpc.ListAliasesResponse:
        """One page of a model's aliases, in name order."""
        request = rpc.ListAliasesRequest(parent=parent, page_size=page_size, page_token=page_token)
        return await self._core.call(self._registry.ListAliases, request, request_id, read=True)

    def list_aliases(
        self, parent: str, *, page_size: int = 0, request_id: str | None = None
    ) -> AsyncIterator[pb.Alias]:
        """Every alias of model `parent`, in name order."""

        async def fetch(token: str) -> rpc.ListAliasesResponse:
            return await self.list_aliases_page(
                parent, page_size=page_size, page_token=token, request_id=request_id
            )

        return self._iterate(fetch, lambda p: p.aliases, lambda p: p.next_page_token)

    async def delete_alias(
        self, name: str, *, etag: str = "", request_id: str | None = None
    ) -> None:
        """Deletes an alias, only if it still matches `etag` when one is given."""
        request = rpc.DeleteAliasRequest(name=name, etag=etag)
        await self._core.call(self._registry.DeleteAlias, request, request_id, read=False)

    async def resolve_alias(
        self, name: str, *, request_id: str | None = None
    ) -> rpc.ResolveAliasResponse:
        """The alias and the version it points at (with its artifact), in one read."""
        request = rpc.ResolveAliasRequest(name=name)
        return await self._core.call(self._registry.ResolveAlias, request, request_id, read=True)

    # Artifacts

    async def push(
        self,
        version: str,
        path: str | os.PathLike[str],
        *,
        progress: artifacts.Progress | None = None,
        chunk_size: int = artifacts.DEFAULT_CHUNK_BYTES,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> pb.ModelVersion:
        """Uploads a file or directory as `version`'s artifact; see `artifacts.push`."""
        return await artifacts.push(self, version, path, progress, chunk_size, state_dir)

    async def pull(
        self,
        target: str,
        dest_dir: str | os.PathLike[str],
        *,
        progress: artifacts.Progress | None = None,
        streams: int | None = None,
    ) -> artifacts.PullResult:
        """Downloads a version's, alias's or digest's files; see `artifacts.pull`
        (`streams`: ranged streams per file, None for a number chosen by size)."""
        return await artifacts.pull(self, target, dest_dir, progress, streams=streams)
