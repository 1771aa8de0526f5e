"""API-key lifecycle: issue, list (prefix only), rotate, revoke; never another brand's key."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.auth import digest_key
from alliance.db.models import ApiKey
from tests.helpers import BrandHandle, assert_problem, bearer


async def test_keys_are_random_and_stored_only_as_digests(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, session: AsyncSession
) -> None:
    issued = await client.post("/v1/api-keys", json={"label": "pos"}, headers=brand_a.headers)
    assert issued.status_code == 201
    secret = issued.json()["secret"]
    assert secret.startswith("bax_")
    assert len(secret.split("_", 2)[2]) >= 43  # 32 random bytes, url-safe base64
    rows = (await session.scalars(select(ApiKey))).all()
    assert {r.digest for r in rows} >= {digest_key(secret), digest_key(brand_a.key)}
    for row in rows:
        assert secret not in (row.digest, row.prefix, row.label)
    listed = await client.get("/v1/api-keys", headers=brand_a.headers)
    assert listed.status_code == 200
    assert secret not in listed.text and brand_a.key not in listed.text
    assert sorted(k["label"] for k in listed.json()) == ["initial", "pos"]
    assert all(k["prefix"].endswith("…") for k in listed.json())


async def test_rotation_replaces_the_key(client: AsyncTestClient[Litestar], brand_a: BrandHandle) -> None:
    [initial] = (await client.get("/v1/api-keys", headers=brand_a.headers)).json()
    rotated = await client.post(f"/v1/api-keys/{initial['id']}/rotation", headers=brand_a.headers)
    assert rotated.status_code == 201, rotated.text
    new_secret = rotated.json()["secret"]
    assert_problem(await client.get("/v1/me", headers=brand_a.headers), 401, "unauthenticated")
    assert (await client.get("/v1/me", headers=bearer(new_secret))).status_code == 200
    again = await client.post(f"/v1/api-keys/{initial['id']}/rotation", headers=bearer(new_secret))
    assert_problem(again, 409, "api-key-revoked")


async def test_revocation_and_the_last_key_rule(client: AsyncTestClient[Litestar], brand_a: BrandHandle) -> None:
    [initial] = (await client.get("/v1/api-keys", headers=brand_a.headers)).json()
    lockout = await client.delete(f"/v1/api-keys/{initial['id']}", headers=brand_a.headers)
    assert_problem(lockout, 409, "last-active-key")
    second = (await client.post("/v1/api-keys", json={"label": "second"}, headers=brand_a.headers)).json()
    revoked = await client.delete(f"/v1/api-keys/{initial['id']}", headers=bearer(second["secret"]))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert_problem(await client.get("/v1/me", headers=brand_a.headers), 401, "unauthenticated")
    assert (await client.get("/v1/me", headers=bearer(second["secret"]))).status_code == 200


async def test_admin_can_issue_a_brand_key(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, admin_headers: dict[str, str]
) -> None:
    issued = await client.post(
        f"/admin/v1/brands/{brand_a.id}/api-keys", json={"label": "ops-issued"}, headers=admin_headers
    )
    assert issued.status_code == 201
    me = await client.get("/v1/me", headers=bearer(issued.json()["secret"]))
    assert me.json()["brand"]["id"] == brand_a.id
