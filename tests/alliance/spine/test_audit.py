"""Every state-changing call leaves an audit row naming who, what, when and from where - and no secret."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.db.models import AuditEntry
from tests.helpers import BrandHandle, bearer


async def test_state_changes_are_audited_without_secrets(
    client: AsyncTestClient[Litestar],
    brand_a: BrandHandle,
    admin_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    secrets_seen = [brand_a.key]
    created = await client.post("/admin/v1/brands", json={"name": "Travel 旅行"}, headers=admin_headers)
    secrets_seen.append(created.json()["api_key"]["secret"])
    issued = (await client.post("/v1/api-keys", json={"label": "pos"}, headers=brand_a.headers)).json()
    secrets_seen.append(issued["secret"])
    rotated = (await client.post(f"/v1/api-keys/{issued['key']['id']}/rotation", headers=brand_a.headers)).json()
    secrets_seen.append(rotated["secret"])
    await client.delete(f"/v1/api-keys/{rotated['key']['id']}", headers=bearer(brand_a.key))
    await client.post(f"/admin/v1/brands/{brand_a.id}/suspend", json={"reason": "test"}, headers=admin_headers)
    await client.post(f"/admin/v1/brands/{brand_a.id}/reactivate", headers=admin_headers)

    rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
    actions = [r.action for r in rows]
    for expected in (
        "brand.create",
        "api_key.create",
        "api_key.rotate",
        "api_key.revoke",
        "brand.suspend",
        "brand.reactivate",
    ):
        assert expected in actions
    api_rows = [r for r in rows if r.request_id is not None]
    assert api_rows, "rows written through the API carry the request id"
    for row in api_rows:
        assert row.actor.startswith(("brand:", "admin:"))
        assert row.source_ip
        assert row.at is not None
    rotate = next(r for r in rows if r.action == "api_key.rotate")
    assert rotate.actor == f"brand:{brand_a.id}/key:" + rotate.actor.split("/key:")[1]
    assert rotate.brand_id == brand_a.id
    dumped = " ".join(f"{r.actor} {r.target} {r.details} {r.source_ip}" for r in rows)
    for secret in secrets_seen:
        assert secret not in dumped


async def test_audit_log_is_readable_by_operators_with_paging(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, admin_headers: dict[str, str]
) -> None:
    for label in ("a", "b", "c"):
        await client.post("/v1/api-keys", json={"label": label}, headers=brand_a.headers)
    first = (await client.get("/admin/v1/audit?limit=2", headers=admin_headers)).json()
    assert len(first["items"]) == 2
    assert first["next_before_id"] is not None
    second = (
        await client.get(f"/admin/v1/audit?limit=50&before_id={first['next_before_id']}", headers=admin_headers)
    ).json()
    ids = [i["id"] for i in first["items"]] + [i["id"] for i in second["items"]]
    assert ids == sorted(ids, reverse=True)
    # the fixtures wrote brand.create, api_key.create and admin_key.create; the calls three api_key.create
    assert len(ids) == len(set(ids)) == 6
    only_brand = (await client.get(f"/admin/v1/audit?brand_id={brand_a.id}", headers=admin_headers)).json()
    assert all(i["brand_id"] == brand_a.id for i in only_brand["items"])
