"""RegistryService end to end over a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from google.protobuf import field_mask_pb2
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from support.grpc_errors import expect_error

if TYPE_CHECKING:
    from modelregistry.v1.registry_service_pb2_grpc import (
        RegistryServiceAsyncStub as Stub,
    )


async def make_model(registry: Stub, model_id: str = "fraud") -> pb.Model:
    return await registry.CreateModel(
        rpc.CreateModelRequest(model_id=model_id, model=pb.Model(display_name="Fraud"))
    )


async def make_ready_version(registry: Stub, model: str = "models/fraud") -> pb.ModelVersion:
    return await registry.CreateModelVersion(
        rpc.CreateModelVersionRequest(
            parent=model, model_version=pb.ModelVersion(source_uri="s3://bucket/run/model")
        )
    )


async def test_model_lifecycle(registry: Stub) -> None:
    created = await registry.CreateModel(
        rpc.CreateModelRequest(
            model_id="fraud",
            model=pb.Model(display_name="Fraud", labels={"team": "risk"}),
        )
    )
    assert created.name == "models/fraud"
    assert created.uid and created.etag
    got = await registry.GetModel(rpc.GetModelRequest(name="models/fraud"))
    assert got == created
    await expect_error(
        registry.CreateModel(rpc.CreateModelRequest(model_id="fraud")),
        grpc.StatusCode.ALREADY_EXISTS,
        "MODEL_ALREADY_EXISTS",
    )
    updated = await registry.UpdateModel(
        rpc.UpdateModelRequest(
            model=pb.Model(name="models/fraud", description="new", etag=created.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
    )
    assert updated.description == "new"
    assert updated.display_name == "Fraud"  # not in the mask: unchanged
    assert updated.etag != created.etag
    # The old etag is stale now.
    await expect_error(
        registry.UpdateModel(
            rpc.UpdateModelRequest(
                model=pb.Model(name="models/fraud", description="lost", etag=created.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            )
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    await registry.DeleteModel(rpc.DeleteModelRequest(name="models/fraud", etag=updated.etag))
    await expect_error(
        registry.GetModel(rpc.GetModelRequest(name="models/fraud")),
        grpc.StatusCode.NOT_FOUND,
        "MODEL_NOT_FOUND",
    )


async def test_versions_are_numbered_and_aliases_resolve(registry: Stub) -> None:
    await make_model(registry)
    v1 = await make_ready_version(registry)
    v2 = await make_ready_version(registry)
    assert (v1.version, v2.version) == (1, 2)
    assert v2.name == "models/fraud/versions/2"
    assert v2.state == pb.ModelVersion.READY
    alias = await registry.SetAlias(
        rpc.SetAliasRequest(alias=pb.Alias(name="models/fraud/aliases/production", version=v1.name))
    )
    resolved = await registry.ResolveAlias(rpc.ResolveAliasRequest(name=alias.name))
    assert resolved.model_version.name == v1.name
    assert resolved.alias.etag == alias.etag
    moved = await registry.SetAlias(
        rpc.SetAliasRequest(alias=pb.Alias(name=alias.name, version=v2.name), etag=alias.etag)
    )
    assert moved.etag != alias.etag
    resolved = await registry.ResolveAlias(rpc.ResolveAliasRequest(name=alias.name))
    assert resolved.model_version.version == 2
    # Moving again from the stale etag loses.
    await expect_error(
        registry.SetAlias(
            rpc.SetAliasRequest(alias=pb.Alias(name=alias.name, version=v1.name), etag=alias.etag)
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )


async def test_bad_input_gets_a_reason_and_changes_nothing(registry: Stub) -> None:
    await make_model(registry)
    await expect_error(
        registry.CreateModel(rpc.CreateModelRequest(model_id="Not_Valid")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_NAME",
    )
    await expect_error(
        registry.ListModels(rpc.ListModelsRequest(page_size=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_SIZE",
    )
    await expect_error(
        registry.ListModels(rpc.ListModelsRequest(page_token="forged.token")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    await expect_error(
        registry.ListModels(rpc.ListModelsRequest(filter="labels.team ~ x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FILTER",
    )
    await expect_error(
        registry.UpdateModel(
            rpc.UpdateModelRequest(
                model=pb.Model(name="models/fraud", description="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["uid"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_UPDATE_MASK",
    )
    await expect_error(
        registry.UpdateModel(
            rpc.UpdateModelRequest(
                model=pb.Model(name="models/fraud", labels={"k": "x" * 64}),
                update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_LABELS",
    )
    model = await registry.GetModel(rpc.GetModelRequest(name="models/fraud"))
    assert model.labels == {} and model.description == ""
    await make_ready_version(registry)
    await expect_error(
        registry.DeleteModel(rpc.DeleteModelRequest(name="models/fraud")),
        grpc.StatusCode.FAILED_PRECONDITION,
        "MODEL_HAS_VERSIONS",
    )
    await make_model(registry, "other")
    await make_ready_version(registry, "models/other")
    await expect_error(
        registry.SetAlias(
            rpc.SetAliasRequest(
                alias=pb.Alias(name="models/fraud/aliases/prod", version="models/other/versions/1")
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    )
    await expect_error(
        registry.SetAlias(
            rpc.SetAliasRequest(
                alias=pb.Alias(name="models/fraud/aliases/prod", version="models/fraud/versions/9")
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "VERSION_NOT_FOUND",
    )
    aliases = await registry.ListAliases(rpc.ListAliasesRequest(parent="models/fraud"))
    assert list(aliases.aliases) == []
    await registry.GetModel(rpc.GetModelRequest(name="models/fraud"))
