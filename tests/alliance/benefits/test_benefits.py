"""Publishing benefits, the catalogue each brand sees, pause/resume/end, and coupon issuance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.benefits import codes
from alliance.db.models import AuditEntry, Benefit, Coupon
from tests.alliance.benefits.support import benefit_body, issue, make_contract, publish
from tests.helpers import BrandHandle, assert_problem, make_brand


async def test_catalogue_shows_a_benefit_to_its_funder_and_distributors_only(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    outsider = await make_brand(sessions, "Tea House 茶馆", "food")
    benefit = await publish(client, brand_a, [brand_b], tags=["home", "bedding"])
    other = await publish(client, brand_b, [brand_a], name="Fruit box 5 off", tags=["fruit"])
    assert benefit["status"] == "active"
    assert benefit["distributors"] == [brand_b.id]
    assert benefit["remaining_count"] == 1_000

    as_b = (await client.get("/v1/benefits", headers=brand_b.headers)).json()
    assert {b["id"] for b in as_b} == {benefit["id"], other["id"]}
    seen_by_b = next(b for b in as_b if b["id"] == benefit["id"])
    assert seen_by_b["distributors"] is None  # the distributor list is the funder's business

    assert (await client.get("/v1/benefits", headers=outsider.headers)).json() == []
    assert_problem(
        await client.get(f"/v1/benefits/{benefit['id']}", headers=outsider.headers), 404, "benefit-not-found"
    )
    assert (await client.get(f"/v1/benefits/{benefit['id']}", headers=brand_b.headers)).status_code == 200

    def ids(response: object) -> set[str]:
        return {b["id"] for b in response.json()}  # type: ignore[attr-defined]

    assert ids(await client.get("/v1/benefits?tag=bedding", headers=brand_b.headers)) == {benefit["id"]}
    assert ids(await client.get(f"/v1/benefits?brand={brand_b.id}", headers=brand_b.headers)) == {other["id"]}
    assert ids(await client.get("/v1/benefits?role=distributable", headers=brand_b.headers)) == {benefit["id"]}
    assert ids(await client.get("/v1/benefits?role=funded", headers=brand_b.headers)) == {other["id"]}
    assert ids(await client.get("/v1/benefits?status=paused", headers=brand_b.headers)) == set()
    assert_problem(await client.get("/v1/benefits?status=bogus", headers=brand_b.headers), 400, "invalid-request")
    assert_problem(await client.get("/v1/benefits?limit=0", headers=brand_b.headers), 400, "invalid-request")


@pytest.mark.parametrize(
    ("changes", "status", "slug"),
    [
        ({"value_kind": "percent", "value": 1_500}, 422, "invalid-benefit"),  # no cap
        ({"value_kind": "percent", "value": 10_001, "max_discount": 100}, 422, "invalid-benefit"),
        ({"max_discount": 100}, 422, "invalid-benefit"),  # a cap on a fixed amount
        ({"valid_to": "2020-01-01T00:00:00Z"}, 422, "invalid-benefit"),
        ({"currency": "XYZ"}, 422, "unknown-currency"),
        ({"distributors": ["brd_nobody"]}, 422, "invalid-distributors"),
        ({"value": 10.5}, 400, "invalid-request"),
        ({"value": -1}, 400, "invalid-request"),
        ({"budget_amount": 10**16}, 400, "invalid-request"),
        ({"channels": ["telepathy"]}, 400, "invalid-request"),
        ({"channels": []}, 400, "invalid-request"),
        ({"valid_to": "2030-01-01T00:00:00"}, 400, "invalid-request"),  # no time zone
        ({"surprise": True}, 400, "invalid-request"),
    ],
)
async def test_benefits_that_could_never_be_honoured_are_refused(
    client: AsyncTestClient[Litestar],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    changes: dict[str, object],
    status: int,
    slug: str,
) -> None:
    response = await client.post("/v1/benefits", json=benefit_body([brand_b.id], **changes), headers=brand_a.headers)
    assert_problem(response, status, slug)
    assert await session.scalar(select(func.count()).select_from(Benefit)) == 0


async def test_funder_cannot_list_itself_as_distributor(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle
) -> None:
    response = await client.post("/v1/benefits", json=benefit_body([brand_a.id]), headers=brand_a.headers)
    assert_problem(response, 422, "invalid-distributors")


async def test_pause_resume_end(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    await make_contract(sessions, brand_a, brand_b)
    benefit = await publish(client, brand_a, [brand_b])
    path = f"/v1/benefits/{benefit['id']}"
    assert_problem(await client.post(f"{path}/pause", headers=brand_b.headers), 403, "not-funding-brand")

    paused = await client.post(f"{path}/pause", json={"reason": "stock check"}, headers=brand_a.headers)
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    assert_problem(
        await client.post(f"{path}/coupons", json={"count": 1}, headers=brand_b.headers), 409, "benefit-paused"
    )
    resumed = await client.post(f"{path}/resume", headers=brand_a.headers)
    assert resumed.json()["status"] == "active"
    assert len(await issue(client, brand_b, benefit["id"], 2)) == 2

    ended = await client.post(f"{path}/end", headers=brand_a.headers)
    assert ended.json()["status"] == "ended"
    assert ended.json()["ended_at"] is not None
    assert_problem(await client.post(f"{path}/resume", headers=brand_a.headers), 409, "benefit-ended")
    assert_problem(
        await client.post(f"{path}/coupons", json={"count": 1}, headers=brand_b.headers), 409, "benefit-ended"
    )
    actions = (
        await session.scalars(
            select(AuditEntry.action).where(AuditEntry.target == benefit["id"]).order_by(AuditEntry.id)
        )
    ).all()
    assert actions == ["benefit.create", "benefit.pause", "benefit.resume", "benefit.end"]


async def test_coupons_are_issued_once_and_stored_only_as_digests(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    contract = await make_contract(sessions, brand_a, brand_b)
    benefit = await publish(client, brand_a, [brand_b])
    response = await client.post(f"/v1/benefits/{benefit['id']}/coupons", json={"count": 25}, headers=brand_b.headers)
    assert response.status_code == 201, response.text
    batch = response.json()
    assert batch["count"] == 25
    assert batch["contract_id"] == contract.contract_id
    issued = [c["code"] for c in batch["coupons"]]
    assert len(set(issued)) == 25
    assert all(codes.normalize_code(code) for code in issued)

    stored = (await session.execute(select(Coupon.code_hash, Coupon.status))).all()
    assert len(stored) == 25
    assert {h for h, _ in stored} == {codes.code_digest(codes.normalize_code(c)) for c in issued}
    dump = " ".join(str(value) for row in stored for value in row)
    assert not any(codes.normalize_code(c) in dump for c in issued)
    audit = (await session.execute(select(AuditEntry.details).where(AuditEntry.action == "coupons.issue"))).scalar_one()
    assert not any(codes.normalize_code(c) in str(audit) for c in issued)
    listed = (await client.get(f"/v1/benefits/{benefit['id']}", headers=brand_a.headers)).json()
    assert listed["issued_count"] == 25

    for count in (0, 5_001, "ten"):
        bad = await client.post(f"/v1/benefits/{benefit['id']}/coupons", json={"count": count}, headers=brand_b.headers)
        assert_problem(bad, 400, "invalid-request")


async def test_issuance_needs_a_distributor_and_a_contract_covering_the_benefit(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    outsider = await make_brand(sessions, "Tea House 茶馆", "food")
    benefit = await publish(client, brand_a, [brand_b, outsider])
    path = f"/v1/benefits/{benefit['id']}/coupons"
    # A listed distributor without any contract with the funder.
    assert_problem(await client.post(path, json={"count": 1}, headers=brand_b.headers), 409, "no-contract-in-force")
    # The funder cannot issue its own benefit to itself.
    assert_problem(await client.post(path, json={"count": 1}, headers=brand_a.headers), 409, "own-benefit")
    # A contract that funds only another benefit does not cover this one.
    await make_contract(sessions, brand_a, outsider, benefit="ben_someotherbenefit")
    assert_problem(await client.post(path, json={"count": 1}, headers=outsider.headers), 409, "benefit-not-covered")
    # A brand that is not a distributor does not see the benefit at all.
    stranger = await make_brand(sessions, "Sunny Travel 阳光旅行", "travel")
    assert_problem(await client.post(path, json={"count": 1}, headers=stranger.headers), 404, "benefit-not-found")
    assert await session.scalar(select(func.count()).select_from(Coupon)) == 0

    await make_contract(sessions, brand_a, brand_b, benefit=benefit["id"])
    assert len(await issue(client, brand_b, benefit["id"], 3)) == 3


async def test_expired_benefit_issues_nothing(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    await make_contract(sessions, brand_a, brand_b)
    soon = datetime.now(UTC) + timedelta(seconds=3)  # the publish must land before it, on a busy machine too
    benefit = await publish(client, brand_a, [brand_b], valid_to=soon.isoformat())
    await asyncio_sleep_until(soon)
    response = await client.post(f"/v1/benefits/{benefit['id']}/coupons", json={"count": 1}, headers=brand_b.headers)
    assert_problem(response, 409, "benefit-expired")
    listed = (await client.get("/v1/benefits?status=expired", headers=brand_a.headers)).json()
    assert [b["id"] for b in listed] == [benefit["id"]]


async def test_distributors_can_be_replaced_by_the_funder(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    outsider = await make_brand(sessions, "Tea House 茶馆", "food")
    benefit = await publish(client, brand_a, [brand_b])
    path = f"/v1/benefits/{benefit['id']}/distributors"
    assert_problem(await client.put(path, json={"distributors": []}, headers=brand_b.headers), 403, "not-funding-brand")
    changed = await client.put(path, json={"distributors": [outsider.id]}, headers=brand_a.headers)
    assert changed.status_code == 200
    assert changed.json()["distributors"] == [outsider.id]
    assert_problem(await client.get(f"/v1/benefits/{benefit['id']}", headers=brand_b.headers), 404, "benefit-not-found")


async def asyncio_sleep_until(moment: datetime) -> None:
    import asyncio

    delay = (moment - datetime.now(UTC)).total_seconds() + 0.05
    if delay > 0:
        await asyncio.sleep(delay)
