"""Authentication and authorisation of the partner and operator APIs."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.helpers import BrandHandle, assert_problem


async def test_missing_or_malformed_credentials_get_401(client: AsyncTestClient[Litestar]) -> None:
    assert_problem(await client.get("/v1/me"), 401, "unauthenticated")
    assert_problem(await client.get("/v1/me", headers={"Authorization": "Basic abc"}), 401, "unauthenticated")
    assert_problem(await client.get("/v1/me", headers={"Authorization": "Bearer nope"}), 401, "unauthenticated")
    unknown = await client.get("/v1/me", headers={"Authorization": "Bearer bax_00000000_" + "x" * 43})
    assert_problem(unknown, 401, "unauthenticated")
    assert unknown.headers["www-authenticate"].startswith("Bearer")


async def test_brand_key_resolves_the_calling_brand(client: AsyncTestClient[Litestar], brand_a: BrandHandle) -> None:
    response = await client.get("/v1/me", headers=brand_a.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["brand"]["id"] == brand_a.id
    assert body["brand"]["name"] == "Cotton Home 棉家"
    assert body["key"]["last_used_at"] is not None
    assert brand_a.key not in response.text


async def test_suspended_brand_is_refused_and_can_be_reactivated(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, admin_headers: dict[str, str]
) -> None:
    suspended = await client.post(
        f"/admin/v1/brands/{brand_a.id}/suspend", json={"reason": "unpaid"}, headers=admin_headers
    )
    assert suspended.status_code == 200
    assert suspended.json()["status"] == "suspended"
    assert_problem(await client.get("/v1/me", headers=brand_a.headers), 403, "brand-suspended")
    reactivated = await client.post(f"/admin/v1/brands/{brand_a.id}/reactivate", headers=admin_headers)
    assert reactivated.json()["status"] == "active"
    assert (await client.get("/v1/me", headers=brand_a.headers)).status_code == 200


async def test_operator_and_brand_keys_stay_on_their_own_api(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, admin_headers: dict[str, str]
) -> None:
    assert_problem(await client.get("/admin/v1/brands", headers=brand_a.headers), 403, "forbidden")
    assert_problem(await client.get("/v1/me", headers=admin_headers), 403, "forbidden")
    assert_problem(await client.get("/admin/v1/brands"), 401, "unauthenticated")
    listed = await client.get("/admin/v1/brands", headers=admin_headers)
    assert [b["id"] for b in listed.json()] == [brand_a.id]


async def test_admin_onboarding_returns_a_working_key_once(
    client: AsyncTestClient[Litestar], admin_headers: dict[str, str]
) -> None:
    created = await client.post(
        "/admin/v1/brands", json={"name": "Golden Bakery 金麦", "category": "bakery"}, headers=admin_headers
    )
    assert created.status_code == 201, created.text
    secret = created.json()["api_key"]["secret"]
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.json()["brand"]["name"] == "Golden Bakery 金麦"
    again = await client.post("/admin/v1/brands", json={"name": "Golden Bakery 金麦"}, headers=admin_headers)
    assert_problem(again, 409, "brand-exists")
    listed = await client.get("/admin/v1/brands", headers=admin_headers)
    assert secret not in listed.text
    missing = await client.post("/admin/v1/brands/brd_nope/suspend", headers=admin_headers)
    assert_problem(missing, 404, "brand-not-found")
