"""Rows to domain values, and filters to SQL conditions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table, and_, or_, true
from sqlalchemy.engine import Row

from ..domain.etags import Etag
from ..domain.filters import Filter, LabelEquals, LabelPresent, StateEquals
from ..domain.names import AliasName, ModelName, RolloutName, VersionName
from ..domain.resources import (
    Alias,
    Approval,
    ApprovalState,
    Artifact,
    Model,
    ModelVersion,
    Rollout,
    RolloutState,
    VersionState,
)
from .tables import model_versions


def etag_of(row: Row[Any]) -> str:
    return str(Etag(row.id, row.row_version))


def to_model(row: Row[Any]) -> Model:
    return Model(
        name=ModelName(row.name),
        uid=row.uid,
        display_name=row.display_name,
        description=row.description,
        labels=dict(row.labels or {}),
        create_time_us=row.create_time_us,
        update_time_us=row.update_time_us,
        etag=etag_of(row),
        latest_version=row.latest_version,
        protected_aliases=tuple(row.protected_aliases or ()),
        separation_of_duties=bool(row.separation_of_duties),
        storage_quota_bytes=row.storage_quota_bytes,
    )


def to_version(row: Row[Any], model: str) -> ModelVersion:
    artifact = None
    if row.artifact_digest:
        artifact = Artifact(
            digest=row.artifact_digest,
            size_bytes=row.artifact_size or 0,
            chunk_size_bytes=row.artifact_chunk_size or 0,
            media_type=row.artifact_media_type or "",
        )
    return ModelVersion(
        name=VersionName(model, row.version),
        uid=row.uid,
        state=VersionState(row.state),
        source_uri=row.source_uri,
        description=row.description,
        labels=dict(row.labels or {}),
        metadata=dict(row.metadata or {}),
        artifact=artifact,
        create_time_us=row.create_time_us,
        update_time_us=row.update_time_us,
        etag=etag_of(row),
        approval=Approval(
            state=ApprovalState(row.approval_state),
            actor=row.approval_actor,
            comment=row.approval_comment,
            time_us=row.approval_time_us,
        ),
        creator=row.creator,
    )


def to_alias(row: Row[Any], model: str, alias: str, version: int) -> Alias:
    return Alias(
        name=AliasName(model, alias),
        version=VersionName(model, version),
        create_time_us=row.create_time_us,
        update_time_us=row.update_time_us,
        etag=etag_of(row),
    )


def filter_condition(table: Table, flt: Filter) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    for term in flt.terms:
        if isinstance(term, LabelEquals):
            value = table.c.labels[term.key].as_string()
            if term.negate:
                conditions.append(or_(value.is_(None), value != term.value))
            else:
                conditions.append(value == term.value)
        elif isinstance(term, LabelPresent):
            conditions.append(table.c.labels[term.key].as_string().is_not(None))
        elif isinstance(term, StateEquals):
            if term.negate:
                conditions.append(model_versions.c.state != term.state.value)
            else:
                conditions.append(model_versions.c.state == term.state.value)
    return and_(true(), *conditions)


def to_rollout(row: Row[Any], model: str, stable: int, candidate: int) -> Rollout:
    return Rollout(
        name=RolloutName(model, row.rollout_id),
        alias=AliasName(model, row.alias),
        stable_version=VersionName(model, stable),
        candidate_version=VersionName(model, candidate),
        steps=tuple(row.steps),
        percent=row.percent,
        state=RolloutState(row.state),
        create_time_us=row.create_time_us,
        update_time_us=row.update_time_us,
        etag=etag_of(row),
    )
