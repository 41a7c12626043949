"""RegistryService over gRPC: parse the request, call the use case, convert the result."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc as rpc_grpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1.error_reasons import ErrorReason

from ..domain.errors import InvalidArgument
from ..domain.names import parse_alias_name, parse_model_name, parse_version_name
from ..service.registry import Registry
from . import convert
from .paging import fit

Ctx = Any  # grpc.aio.ServicerContext


def _full_view(view: int) -> bool:
    """Whether GetModel's `view` asks for storage usage; a value the enum
    does not define is INVALID_ARGUMENT rather than a silent BASIC."""
    if view not in rpc.ModelView.values():
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"view: {view} is not a ModelView (0 to {max(rpc.ModelView.values())})",
            "view",
        )
    return view == rpc.MODEL_VIEW_FULL


class RegistryServicer(rpc_grpc.RegistryServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def CreateModel(self, request: rpc.CreateModelRequest, context: Ctx) -> pb.Model:
        fields = convert.model_fields(request.model)
        model = await self._registry.create_model(request.model_id, fields)
        return convert.model_to_pb(model)

    async def GetModel(self, request: rpc.GetModelRequest, context: Ctx) -> pb.Model:
        name = parse_model_name(request.name)
        full = _full_view(request.view)
        model = await self._registry.get_model(name)
        out = convert.model_to_pb(model)
        if full:
            storage = await self._registry.model_storage(name)
            if storage is not None:
                out.storage_limit_bytes = storage.limit_bytes
                out.storage_used_bytes = storage.used_bytes
        else:
            out.storage_limit_bytes = self._registry.storage_limit(model)
        return out

    async def ListModels(
        self, request: rpc.ListModelsRequest, context: Ctx
    ) -> rpc.ListModelsResponse:
        listing = await self._registry.list_models(
            request.page_size, request.page_token, request.filter
        )
        models, token = fit(listing, convert.model_to_pb)
        return rpc.ListModelsResponse(models=models, next_page_token=token)

    async def UpdateModel(self, request: rpc.UpdateModelRequest, context: Ctx) -> pb.Model:
        name = parse_model_name(request.model.name, "model.name")
        model = await self._registry.update_model(
            name,
            convert.model_fields(request.model),
            list(request.update_mask.paths),
            request.model.etag,
        )
        return convert.model_to_pb(model)

    async def DeleteModel(self, request: rpc.DeleteModelRequest, context: Ctx) -> empty_pb2.Empty:
        name = parse_model_name(request.name)
        await self._registry.delete_model(name, request.etag, request.force)
        return empty_pb2.Empty()

    async def CreateModelVersion(
        self, request: rpc.CreateModelVersionRequest, context: Ctx
    ) -> pb.ModelVersion:
        parent = parse_model_name(request.parent, "parent")
        version = await self._registry.create_version(
            parent, convert.version_fields(request.model_version)
        )
        return convert.version_to_pb(version)

    async def GetModelVersion(
        self, request: rpc.GetModelVersionRequest, context: Ctx
    ) -> pb.ModelVersion:
        version = await self._registry.get_version(parse_version_name(request.name))
        return convert.version_to_pb(version)

    async def ListModelVersions(
        self, request: rpc.ListModelVersionsRequest, context: Ctx
    ) -> rpc.ListModelVersionsResponse:
        parent = parse_model_name(request.parent, "parent")
        listing = await self._registry.list_versions(
            parent, request.page_size, request.page_token, request.filter
        )
        versions, token = fit(listing, convert.version_to_pb)
        return rpc.ListModelVersionsResponse(model_versions=versions, next_page_token=token)

    async def UpdateModelVersion(
        self, request: rpc.UpdateModelVersionRequest, context: Ctx
    ) -> pb.ModelVersion:
        name = parse_version_name(request.model_version.name, "model_version.name")
        version = await self._registry.update_version(
            name,
            convert.version_fields(request.model_version),
            list(request.update_mask.paths),
            request.model_version.etag,
        )
        return convert.version_to_pb(version)

    async def DeleteModelVersion(
        self, request: rpc.DeleteModelVersionRequest, context: Ctx
    ) -> empty_pb2.Empty:
        name = parse_version_name(request.name)
        await self._registry.delete_version(name, request.etag, request.force)
        return empty_pb2.Empty()

    async def SetAlias(self, request: rpc.SetAliasRequest, context: Ctx) -> pb.Alias:
        name = parse_alias_name(request.alias.name, "alias.name")
        version = parse_version_name(request.alias.version, "alias.version")
        alias = await self._registry.set_alias(name, version, request.etag)
        return convert.alias_to_pb(alias)

    async def GetAlias(self, request: rpc.GetAliasRequest, context: Ctx) -> pb.Alias:
        alias = await self._registry.get_alias(parse_alias_name(request.name))
        return convert.alias_to_pb(alias)

    async def ListAliases(
        self, request: rpc.ListAliasesRequest, context: Ctx
    ) -> rpc.ListAliasesResponse:
        parent = parse_model_name(request.parent, "parent")
        listing = await self._registry.list_aliases(parent, request.page_size, request.page_token)
        aliases, token = fit(listing, convert.alias_to_pb)
        return rpc.ListAliasesResponse(aliases=aliases, next_page_token=token)

    async def DeleteAlias(self, request: rpc.DeleteAliasRequest, context: Ctx) -> empty_pb2.Empty:
        await self._registry.delete_alias(parse_alias_name(request.name), request.etag)
        return empty_pb2.Empty()

    async def ResolveAlias(
        self, request: rpc.ResolveAliasRequest, context: Ctx
    ) -> rpc.ResolveAliasResponse:
        read_time_us = 0
        if request.HasField("read_time"):
            read_time_us = convert.timestamp_us(request.read_time, "read_time")
        resolution = await self._registry.resolve_alias(
            parse_alias_name(request.name), read_time_us
        )
        response = rpc.ResolveAliasResponse(
            alias=convert.alias_to_pb(resolution.alias),
            model_version=convert.version_to_pb(resolution.version),
            revision=resolution.revision,
        )
        if resolution.rollout is not None and resolution.candidate is not None:
            response.rollout.CopyFrom(convert.rollout_to_pb(resolution.rollout))
            response.candidate_version.CopyFrom(convert.version_to_pb(resolution.candidate))
        return response

    async def BatchSetAliases(
        self, request: rpc.BatchSetAliasesRequest, context: Ctx
    ) -> rpc.BatchSetAliasesResponse:
        parent = parse_model_name(request.parent, "parent")
        moves = [
            (
                parse_alias_name(r.alias.name, f"requests[{i}].alias.name"),
                parse_version_name(r.alias.version, f"requests[{i}].alias.version"),
                r.etag,
            )
            for i, r in enumerate(request.requests)
        ]
        aliases = await self._registry.batch_set_aliases(parent, moves)
        return rpc.BatchSetAliasesResponse(aliases=[convert.alias_to_pb(a) for a in aliases])

    async def ApproveModelVersion(
        self, request: rpc.ApproveModelVersionRequest, context: Ctx
    ) -> pb.ModelVersion:
        version = await self._registry.review_version(
            parse_version_name(request.name), True, request.comment, request.etag
        )
        return convert.version_to_pb(version)

    async def RejectModelVersion(
        self, request: rpc.RejectModelVersionRequest, context: Ctx
    ) -> pb.ModelVersion:
        version = await self._registry.review_version(
            parse_version_name(request.name), False, request.comment, request.etag
        )
        return convert.version_to_pb(version)
