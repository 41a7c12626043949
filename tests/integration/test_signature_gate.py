"""The signature gate over a real server on SQLite and PostgreSQL: aliases a
trust policy requires a signature for reach only versions signed under the
policy as it is at that moment, through every way an alias moves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from modelregistry.client import RegistryClient
from modelregistry.errors import RegistryError
from modelregistry.v1.error_reasons import ErrorMetadataKey
from modelregistry_server.server import Running
from support.signing import make_key, sign_dir, write_model

PROD = "models/fraud/aliases/production"
FAILED = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture
async def client(server: Running) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(f"127.0.0.1:{server.port}") as c:
        yield c


async def versions(client: RegistryClient, tmp_path: Path, n: int) -> list[Path]:
    """`n` READY versions of fraud, each of its own files; their directories."""
    await client.create_model("fraud")
    dirs = []
    for i in range(1, n + 1):
        version = await client.create_model_version("models/fraud")
        model = write_model(tmp_path / f"m{i}", {"weights.bin": f"v{i}".encode() * 100})
        await client.push(version.name, model)
        dirs.append(model)
    return dirs


async def required(call: object, what: str) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        await call  # type: ignore[misc]
    err = caught.value
    assert (err.code, err.reason) == (FAILED, "SIGNATURE_REQUIRED"), err
    assert what in err.message, err.message
    return err


async def test_unsigned_versions_cannot_reach_a_signature_required_alias(
    client: RegistryClient, tmp_path: Path
) -> None:
    dirs = await versions(client, tmp_path, 3)
    key = make_key(tmp_path)
    await client.set_alias(PROD, 1)  # before the policy: left alone
    await client.set_alias("models/fraud/aliases/staging", 1)
    await client.update_trust_policy(
        "fraud", trusted_keys=[key.public_pem], require_signature_aliases=["production"]
    )
    err = await required(client.set_alias(PROD, 2), "models/fraud/versions/2 carries no signature")
    assert err.metadata[ErrorMetadataKey.ALIAS] == "production"
    await required(
        client.batch_set_aliases(
            "models/fraud",
            [(PROD, 2, ""), ("models/fraud/aliases/staging", 2, "")],
        ),
        "carries no signature",
    )
    await required(client.start_rollout(PROD, 2), "carries no signature")
    # Aliases the policy does not name are not gated.
    await client.set_alias("models/fraud/aliases/canary", 2)
    assert (await client.get_alias("models/fraud/aliases/staging")).version.endswith("/1")
    bundle = sign_dir(dirs[1], key.private, tmp_path / "v2.sig")
    await client.attach_signature("models/fraud/versions/2", bundle)
    assert (await client.set_alias(PROD, 2)).version == "models/fraud/versions/2"
    bundle = sign_dir(dirs[2], key.private, tmp_path / "v3.sig")
    await client.attach_signature("models/fraud/versions/3", bundle)
    rollout = await client.start_rollout(PROD, 3)
    await client.advance_rollout(rollout.name, percent=100)
    assert (await client.get_alias(PROD)).version == "models/fraud/versions/3"


async def test_removing_a_key_stops_new_promotions_and_leaves_serving_alone(
    client: RegistryClient, tmp_path: Path
) -> None:
    dirs = await versions(client, tmp_path, 2)
    old, new = make_key(tmp_path, "old"), make_key(tmp_path, "new")
    await client.update_trust_policy(
        "fraud",
        trusted_keys=[old.public_pem, new.public_pem],
        require_signature_aliases=["production"],
    )
    for i, model in enumerate(dirs, start=1):
        bundle = sign_dir(model, old.private, tmp_path / f"v{i}.sig")
        await client.attach_signature(f"models/fraud/versions/{i}", bundle)
    await client.set_alias(PROD, 1)
    await client.update_trust_policy("fraud", trusted_keys=[new.public_pem])
    assert (await client.get_alias(PROD)).version == "models/fraud/versions/1"
    await required(client.set_alias(PROD, 2), "is no longer trusted")
    listed = await client.list_signatures("models/fraud/versions/2")
    assert [s.trusted for s in listed] == [False]
    assert "no longer trusted" in listed[0].untrusted_reason
    events = [
        e async for e in client.list_events(model="models/fraud", types=["TRUST_POLICY_UPDATED"])
    ]
    assert events[-1].resource == "models/fraud/trustPolicy"
    after = json.loads(events[-1].after_json)
    assert after["left_serving_unsigned"] == [f"{PROD} -> models/fraud/versions/1"]
    # Signed again with the trusted key, it may be promoted.
    bundle = sign_dir(dirs[1], new.private, tmp_path / "v2-new.sig")
    await client.attach_signature("models/fraud/versions/2", bundle)
    await client.set_alias(PROD, 2)


async def test_the_default_policy_applies_to_models_without_their_own(
    client: RegistryClient, tmp_path: Path
) -> None:
    dirs = await versions(client, tmp_path, 1)
    key = make_key(tmp_path)
    await client.update_trust_policy(
        "", trusted_keys=[key.public_pem], require_signature_aliases=["production"]
    )
    default = await client.get_trust_policy("")
    assert default.name == "trustPolicies/default" and default.etag
    await required(client.set_alias(PROD, 1), "carries no signature")
    await client.attach_signature(
        "models/fraud/versions/1", sign_dir(dirs[0], key.private, tmp_path / "s.sig")
    )
    await client.set_alias(PROD, 1)
