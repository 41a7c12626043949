"""Use cases of the control plane: one unit of work per RPC.

Validates what the transport handed over (field limits, masks, filters,
page tokens), applies the domain rules and calls the store. Knows nothing
of gRPC or SQL.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar, cast

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from ..domain import request_context
from ..domain import validation as check
from ..domain.errors import FailedPrecondition, InvalidArgument, NotFound
from ..domain.etags import Etag, parse_etag
from ..domain.events import EventType
from ..domain.filters import parse_filter
from ..domain.names import (
    AliasName,
    ModelName,
    VersionName,
    parse_version_name,
    validate_id,
)
from ..domain.quotas import StorageUsage, UploadLimits, check_quota
from ..domain.resources import (
    Alias,
    Model,
    ModelFields,
    ModelVersion,
    Resolution,
    VersionFields,
    VersionState,
)
from ..domain.rules import initial_state
from ..store.base import EventLog, RegistryStore
from .page_tokens import Listing, PageTokens, coerce_page_size
from .read_cache import ReadCache
from .update_masks import resolve_mask

MODEL_PATHS = frozenset(
    {
        "display_name",
        "description",
        "labels",
        "protected_aliases",
        "separation_of_duties",
        "storage_quota_bytes",
    }
)
T = TypeVar("T")
MAX_BATCH = 100


VERSION_PATHS = frozenset({"description", "labels", "metadata", "source_uri", "state"})


def _checked_model_fields(fields: ModelFields, prefix: str) -> ModelFields:
    protected = check.check_protected_aliases(
        fields.protected_aliases, f"{prefix}.protected_aliases"
    )
    return ModelFields(
        display_name=check.check_display_name(fields.display_name, f"{prefix}.display_name"),
        description=check.check_description(fields.description, f"{prefix}.description"),
        labels=check.check_labels(fields.labels, f"{prefix}.labels"),
        protected_aliases=protected,
        separation_of_duties=fields.separation_of_duties,
        storage_quota_bytes=check_quota(
            fields.storage_quota_bytes, f"{prefix}.storage_quota_bytes"
        ),
    )


def _checked_version_fields(fields: VersionFields, prefix: str) -> VersionFields:
    return replace(
        fields,
        source_uri=check.check_source_uri(fields.source_uri, f"{prefix}.source_uri"),
        description=check.check_description(fields.description, f"{prefix}.description"),
        labels=check.check_labels(fields.labels, f"{prefix}.labels"),
        metadata=check.check_metadata(fields.metadata, f"{prefix}.metadata"),
    )


def _cursor_str(cursor: str | int | None) -> str | None:
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise InvalidArgument(
            ErrorReason.INVALID_PAGE_TOKEN, "page_token is malformed", "page_token"
        )
    return cursor


def _cursor_int(cursor: str | int | None) -> int | None:
    if cursor is None:
        return None
    if not isinstance(cursor, int):
        raise InvalidArgument(
            ErrorReason.INVALID_PAGE_TOKEN, "page_token is malformed", "page_token"
        )
    return cursor


class Registry:
    def __init__(
        self,
        store: RegistryStore,
        tokens: PageTokens,
        history: EventLog | None = None,
        cache: ReadCache | None = None,
        storage: Callable[[ModelName], Awaitable[StorageUsage]] | None = None,
        limits: UploadLimits | None = None,
    ) -> None:
        self._store = store
        # A model's stored bytes against its quota (None: not reported).
        self._storage = storage
        self._limits = limits or UploadLimits()
        self._tokens = tokens
        self._history = history
        self._cache = cache or ReadCache(ttl_s=0)

    # -- models ---------------------------------------------------------------

    async def create_model(self, model_id: str, fields: ModelFields) -> Model:
        name = ModelName(validate_id(model_id, "model_id"))
        # A quota is an owner's or admin's decision, made with UpdateModel.
        fields = replace(fields, storage_quota_bytes=0)
        return await self._store.create_model(name, _checked_model_fields(fields, "model"))

    async def _cached(
        self,
        model: str,
        key: tuple[str, str],
        read: Callable[[], Awaitable[T]],
        weight: Callable[[T], int] = lambda _: 1,
    ) -> T:
        found = self._cache.get(key)
        if found is not None:
            return cast(T, found)
        generation = self._cache.generation(model)
        value = await read()
        self._cache.put(model, key, value, generation, weight(value))
        return value

    async def get_model(self, name: ModelName) -> Model:
        return await self._cached(
            str(name), ("model", str(name)), lambda: self._store.get_model(name)
        )

    async def model_storage(self, name: ModelName) -> StorageUsage | None:
        """Usage against quota; read fresh each time (uploads change it
        without changing the model), so it is not part of a plain read."""
        return None if self._storage is None else await self._storage(name)

    def storage_limit(self, model: Model) -> int:
        """The quota in force for `model` (0: unlimited), without a query."""
        return self._limits.limit(model.storage_quota_bytes)

    async def list_models(
        self, page_size: int, page_token: str, filter_text: str
    ) -> Listing[Model]:
        limit = coerce_page_size(page_size)
        flt = parse_filter(filter_text, allow_state=False)
        scope = f"ListModels|{flt.text}"
        after = _cursor_str(self._tokens.decode(scope, page_token))
        only = await request_context.visible_models()
        page = await self._store.list_models(flt, after, limit, only)
        return Listing(page.items, page.more, lambda m: self._tokens.encode(scope, m.name.model))

    async def update_model(
        self, name: ModelName, fields: ModelFields, mask: list[str], etag: str
    ) -> Model:
        populated = {
            "display_name": bool(fields.display_name),
            "description": bool(fields.description),
            "labels": bool(fields.labels),
            "protected_aliases": bool(fields.protected_aliases),
            "separation_of_duties": fields.separation_of_duties,
            "storage_quota_bytes": bool(fields.storage_quota_bytes),
        }
        paths = resolve_mask(mask, MODEL_PATHS, populated, MODEL_PATHS)
        checked = _checked_model_fields(fields, "model")
        return await self._store.update_model(name, checked, paths, parse_etag(etag, "model.etag"))

    async def delete_model(self, name: ModelName, etag: str, force: bool) -> None:
        await self._store.delete_model(name, parse_etag(etag), force)

    # -- versions -------------------------------------------------------------

    async def create_version(self, parent: ModelName, fields: VersionFields) -> ModelVersion:
        checked = _checked_version_fields(fields, "model_version")
        checked = replace(checked, state=initial_state(checked.source_uri))
        return await self._store.create_version(parent, checked)

    async def get_version(self, name: VersionName) -> ModelVersion:
        return await self._cached(
            str(name.parent), ("version", str(name)), lambda: self._store.get_version(name)
        )

    async def list_versions(
        self, parent: ModelName, page_size: int, page_token: str, filter_text: str
    ) -> Listing[ModelVersion]:
        limit = coerce_page_size(page_size)
        flt = parse_filter(filter_text, allow_state=True)
        scope = f"ListModelVersions|{parent}|{flt.text}"
        before = _cursor_int(self._tokens.decode(scope, page_token))
        page = await self._cached(
            str(parent),
            ("versions", f"{scope}|{before}|{limit}"),
            lambda: self._store.list_versions(parent, flt, before, limit),
            lambda p: 1 + len(p.items),
        )
        return Listing(page.items, page.more, lambda v: self._tokens.encode(scope, v.name.version))

    async def update_version(
        self, name: VersionName, fields: VersionFields, mask: list[str], etag: str
    ) -> ModelVersion:
        populated = {
            "description": bool(fields.description),
            "labels": bool(fields.labels),
            "metadata": bool(fields.metadata),
            "source_uri": bool(fields.source_uri),
            "state": fields.state is not None,
        }
        paths = resolve_mask(mask, VERSION_PATHS, populated, VERSION_PATHS - {"state"})
        if "state" in paths and fields.state not in (VersionState.READY, VersionState.ARCHIVED):
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD,
                "model_version.state: only READY or ARCHIVED can be set",
                "model_version.state",
            )
        checked = _checked_version_fields(fields, "model_version")
        return await self._store.update_version(
            name, checked, paths, parse_etag(etag, "model_version.etag")
        )

    async def delete_version(self, name: VersionName, etag: str, force: bool) -> None:
        await self._store.delete_version(name, parse_etag(etag), force)

    # -- aliases --------------------------------------------------------------

    async def set_alias(self, name: AliasName, version: VersionName, etag: str) -> Alias:
        if version.model != name.model:
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD,
                f"alias.version: {version} belongs to another model than {name}",
                "alias.version",
            )
        return await self._store.set_alias(name, version.version, parse_etag(etag))

    async def get_alias(self, name: AliasName) -> Alias:
        return await self._cached(
            str(name.parent), ("alias", str(name)), lambda: self._store.get_alias(name)
        )

    async def list_aliases(
        self, parent: ModelName, page_size: int, page_token: str
    ) -> Listing[Alias]:
        limit = coerce_page_size(page_size)
        scope = f"ListAliases|{parent}"
        after = _cursor_str(self._tokens.decode(scope, page_token))
        page = await self._store.list_aliases(parent, after, limit)
        return Listing(page.items, page.more, lambda a: self._tokens.encode(scope, a.name.alias))

    async def delete_alias(self, name: AliasName, etag: str) -> None:
        await self._store.delete_alias(name, parse_etag(etag))

    async def batch_set_aliases(
        self, parent: ModelName, moves: list[tuple[AliasName, VersionName, str]]
    ) -> list[Alias]:
        if not 0 < len(moves) <= MAX_BATCH:
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD, f"requests: 1 to {MAX_BATCH} moves", "requests"
            )
        seen: set[AliasName] = set()
        checked: list[tuple[AliasName, int, Etag | None]] = []
        for i, (alias, version, etag) in enumerate(moves):
            field = f"requests[{i}]"
            if alias.parent != parent or version.parent != parent:
                raise InvalidArgument(
                    ErrorReason.INVALID_FIELD,
                    f"{field}: every alias and version must be in {parent}",
                    field,
                )
            if alias in seen:
                raise InvalidArgument(
                    ErrorReason.INVALID_FIELD, f"{field}: {alias} appears twice", field
                )
            seen.add(alias)
            checked.append((alias, version.version, parse_etag(etag, f"{field}.etag")))
        return await self._store.batch_set_aliases(parent, checked)

    async def review_version(
        self, name: VersionName, approve: bool, comment: str, etag: str
    ) -> ModelVersion:
        check.check_comment(comment, "comment")
        return await self._store.review_version(name, approve, comment, parse_etag(etag))

    async def resolve_alias(self, name: AliasName, read_time_us: int = 0) -> Resolution:
        if not read_time_us:
            return await self._cached(
                str(name.parent), ("resolve", str(name)), lambda: self._store.resolve_alias(name)
            )
        if self._history is None:
            raise FailedPrecondition(ErrorReason.NO_HISTORY, "this server keeps no event history")
        event = await self._history.last_event_before(str(name), read_time_us)
        if event is None or event.type != EventType.ALIAS_SET.value:
            raise NotFound(
                ErrorReason.ALIAS_NOT_FOUND,
                f"alias {name} did not exist at the requested time",
                {ErrorMetadataKey.RESOURCE: str(name)},
            )
        recorded = json.loads(event.after_json)
        version = await self._store.get_version(parse_version_name(recorded["version"]))
        alias = Alias(
            name=name,
            version=version.name,
            create_time_us=recorded["create_time_us"],
            update_time_us=recorded["update_time_us"],
            etag=recorded["etag"],
        )
        return Resolution(alias, version, None, None, event.revision)
