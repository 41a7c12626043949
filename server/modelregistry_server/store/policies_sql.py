"""IAM policies in SQL: functions over a connection, run in the caller's transaction.

A policy write locks the model row (for a model's or alias's policy) and
the policy row, checks the etag, replaces the bindings and appends a
POLICY_SET event, all in one transaction. A resource that never had a
policy has the etag `0-0`, so even the first write can be conditional.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain import errors
from ..domain.etags import Etag
from ..domain.events import EventType
from ..domain.names import ModelName
from ..domain.permissions import Role
from ..domain.policies import Binding, Policy, PolicyResource, parse_policy_resource
from .event_log import append_event
from .tables import IB, IP, M, iam_bindings, iam_policies
from .transactions import dialect_insert, now_us

NEVER_SET = Etag(0, 0)


def _policy(resource: PolicyResource, row: Any, pairs: Sequence[tuple[str, str]]) -> Policy:
    by_role: dict[str, list[str]] = {}
    for role, member in pairs:
        by_role.setdefault(role, []).append(member)
    bindings = tuple(
        Binding(Role(role), tuple(sorted(members))) for role, members in sorted(by_role.items())
    )
    etag = Etag(row.id, row.row_version) if row is not None else NEVER_SET
    return Policy(resource, bindings, str(etag))


def as_event(policy: Policy) -> dict[str, Any]:
    return {
        "resource": str(policy.resource),
        "bindings": [{"role": b.role.value, "members": list(b.members)} for b in policy.bindings],
        "etag": policy.etag,
    }


async def read_policies(
    conn: AsyncConnection, resources: Sequence[PolicyResource]
) -> dict[PolicyResource, Policy]:
    """The policies that exist among `resources` (one query)."""
    wanted = {str(r): r for r in resources}
    rows = (
        await conn.execute(
            select(IP.id, IP.resource, IP.row_version, IB.role, IB.member)
            .select_from(iam_policies.outerjoin(iam_bindings, IB.policy_id == IP.id))
            .where(IP.resource.in_(list(wanted)))
        )
    ).all()
    heads: dict[str, Any] = {}
    pairs: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        heads[row.resource] = row
        if row.role is not None:
            pairs.setdefault(row.resource, []).append((row.role, row.member))
    return {
        wanted[name]: _policy(wanted[name], head, pairs.get(name, ()))
        for name, head in heads.items()
    }


async def member_grants(
    conn: AsyncConnection, members: Sequence[str]
) -> list[tuple[PolicyResource, Role]]:
    rows = (
        await conn.execute(
            select(IP.resource, IB.role)
            .select_from(iam_bindings.join(iam_policies, IB.policy_id == IP.id))
            .where(IB.member.in_(list(members)))
        )
    ).all()
    return [(parse_policy_resource(r.resource), Role(r.role)) for r in rows]


async def policy_resources(conn: AsyncConnection) -> frozenset[PolicyResource]:
    """Every resource that has a policy row (one short read, cached by the
    authorizer until a policy changes)."""
    rows = await conn.execute(select(IP.resource))
    return frozenset(parse_policy_resource(r) for r in rows.scalars())


async def _model_must_exist(conn: AsyncConnection, model: str, lock: bool) -> None:
    stmt = select(M.id).where(M.name == model)
    if lock:
        stmt = stmt.with_for_update()
    if (await conn.execute(stmt)).scalar() is None:
        raise errors.model_not_found(str(ModelName(model)))


async def get_policy(conn: AsyncConnection, resource: PolicyResource) -> Policy:
    if resource.model:
        await _model_must_exist(conn, resource.model, lock=False)
    found = await read_policies(conn, [resource])
    return found.get(resource) or Policy(resource, (), str(NEVER_SET))


def _upsert_head(conn: AsyncConnection, resource: PolicyResource) -> Any:
    return (
        dialect_insert(conn, iam_policies)
        .values(resource=str(resource), model=resource.model, row_version=0, update_time_us=0)
        .on_conflict_do_nothing(index_elements=["resource"])
    )


async def write_policy(
    conn: AsyncConnection,
    resource: PolicyResource,
    bindings: tuple[Binding, ...],
    etag: Etag | None,
) -> Policy:
    """Replace the policy of `resource`; the caller's transaction is a write."""
    if resource.model:
        await _model_must_exist(conn, resource.model, lock=True)
    head_stmt = select(iam_policies).where(IP.resource == str(resource)).with_for_update()
    head = (await conn.execute(head_stmt)).one_or_none()
    before = (await read_policies(conn, [resource])).get(resource) or Policy(
        resource, (), str(NEVER_SET)
    )
    current = Etag(head.id, head.row_version) if head is not None else NEVER_SET
    if etag is not None and etag != current:
        raise errors.EtagMismatch(str(resource))
    if head is None:
        # A concurrent first write may win the insert: then lock its row.
        await conn.execute(_upsert_head(conn, resource))
        head = (await conn.execute(head_stmt)).one()
        if etag is not None and head.row_version != 0:
            raise errors.EtagMismatch(str(resource))
    row = (
        await conn.execute(
            update(iam_policies)
            .where(IP.id == head.id)
            .values(row_version=IP.row_version + 1, update_time_us=now_us())
            .returning(IP.id, IP.row_version)
        )
    ).one()
    await conn.execute(delete(iam_bindings).where(IB.policy_id == row.id))
    values = [
        {"policy_id": row.id, "role": b.role.value, "member": m}
        for b in bindings
        for m in b.members
    ]
    if values:
        await conn.execute(insert(iam_bindings), values)
    after = Policy(resource, bindings, str(Etag(row.id, row.row_version)))
    model = ModelName(resource.model) if resource.model else None
    await append_event(
        conn, EventType.POLICY_SET, model, str(resource), as_event(before), as_event(after)
    )
    return after


async def delete_model_policies(conn: AsyncConnection, model: str) -> None:
    """A deleted model takes its and its aliases' policies along: a model
    created later under the same name starts with none."""
    await conn.execute(delete(iam_policies).where(IP.model == model))
