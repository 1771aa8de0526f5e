"""Redemption: every check with its own problem type, idempotent replays, the ledger transaction in the
same database transaction, budget exhaustion, and reversals that give budget back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.db.models import AuditEntry, Benefit, IdempotencyRecord, LedgerPosting, LedgerTransaction, Redemption
from tests.alliance.benefits.support import idem, issue, make_contract, publish, redeem
from tests.helpers import BrandHandle, assert_problem


async def _postings(session: AsyncSession, transaction_id: str) -> dict[str, int]:
    rows = (
        await session.execute(
            select(LedgerPosting.account, LedgerPosting.amount).where(LedgerPosting.transaction_id == transaction_id)
        )
    ).all()
    totals: dict[str, int] = {}
    for account, amount in rows:
        totals[account] = totals.get(account, 0) + amount
    return totals


async def _counts(session: AsyncSession) -> tuple[int, int, int, int]:
    session.expire_all()
    redemptions = await session.scalar(select(func.count()).select_from(Redemption))
    ledger = await session.scalar(select(func.count()).select_from(LedgerTransaction))
    records = await session.scalar(select(func.count()).select_from(IdempotencyRecord))
    spent = await session.scalar(select(func.coalesce(func.sum(Benefit.spent_count), 0)))
    return int(redemptions or 0), int(ledger or 0), int(records or 0), int(spent or 0)


@pytest.fixture
async def setup(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    redemption_store: str,
) -> dict[str, Any]:
    """Brand A funds a 10-yuan-off benefit (min spend 50) that brand B distributes under a contract:
    B bears 30 % of the discount and earns 2 % of the order as commission. Every test using it runs
    through each redemption store (``redemption_store``: the fast path and the portable path)."""
    await make_contract(sessions, brand_a, brand_b, distributor_bp=3_000)
    benefit = await publish(client, brand_a, [brand_b])
    return {"benefit": benefit, "codes": await issue(client, brand_b, benefit["id"], 5)}


async def test_redemption_posts_the_priced_ledger_transaction_and_replays_exactly(
    client: AsyncTestClient[Litestar],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    setup: dict[str, Any],
) -> None:
    code = setup["codes"][0]
    body = {
        "code": code.lower(),
        "order_reference": "till-7/0042",
        "order_amount": 12_000,
        "channel": "store",
        "store_id": "sh-01",
    }
    headers = {**brand_a.headers, "Idempotency-Key": "redeem-0042"}
    first = await client.post("/v1/redemptions", json=body, headers=headers)
    assert first.status_code == 201, first.text
    redemption = first.json()
    assert redemption["discount"] == 1_000
    assert redemption["commission"] == 240  # 2 % of 120.00
    assert redemption["distributor_brand_id"] == brand_b.id
    assert "idempotent-replayed" not in first.headers

    postings = await _postings(session, redemption["ledger_transaction_id"])
    # B owes A its 30 % share of the discount; A owes B the commission.
    assert postings == {
        f"brand:{brand_b.id}:payable": 300,
        f"brand:{brand_a.id}:receivable": -300,
        f"brand:{brand_a.id}:payable": 240,
        f"brand:{brand_b.id}:receivable": -240,
        "alliance:clearing": 0,
    }
    before = await _counts(session)
    assert before == (1, 1, 1, 1)

    replay = await client.post("/v1/redemptions", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    assert await _counts(session) == before

    changed = await client.post("/v1/redemptions", json={**body, "order_amount": 13_000}, headers=headers)
    assert_problem(changed, 422, "idempotency-key-reused")
    other_key = await client.post("/v1/redemptions", json=body, headers={**brand_a.headers, **idem()})
    assert_problem(other_key, 409, "coupon-already-redeemed")
    reused_for_another_code = await client.post(
        "/v1/redemptions", json={**body, "code": setup["codes"][1]}, headers=headers
    )
    assert_problem(reused_for_another_code, 422, "idempotency-key-reused")
    assert await _counts(session) == before

    fetched = await client.get(f"/v1/redemptions/{redemption['id']}", headers=brand_a.headers)
    assert fetched.json() == redemption
    listed = (await client.get("/v1/redemptions", headers=brand_a.headers)).json()
    assert [r["id"] for r in listed] == [redemption["id"]]
    assert_problem(
        await client.get(f"/v1/redemptions/{redemption['id']}", headers=brand_b.headers), 404, "redemption-not-found"
    )
    audit = (
        await session.execute(select(AuditEntry.details).where(AuditEntry.action == "redemption.create"))
    ).scalar_one()
    assert code.replace("-", "") not in str(audit)


@pytest.mark.parametrize(
    ("changes", "status", "slug"),
    [
        ({"order_amount": 4_999}, 422, "below-minimum-spend"),
        ({"channel": "mini_program"}, 422, "channel-not-allowed"),
        ({"currency": "USD"}, 422, "currency-mismatch"),
        ({"code": "7K3M9Q-XW2HBD-T4N8ZZ"}, 400, "malformed-coupon-code"),
        ({"code": "short"}, 400, "malformed-coupon-code"),
        ({"order_amount": -100}, 400, "invalid-request"),
        ({"order_amount": 120.5}, 400, "invalid-request"),
        ({"order_amount": 10**12 + 1}, 400, "invalid-request"),  # contracts.bounds.MAX_AMOUNT + 1
        ({"order_amount": 10**30}, 400, "invalid-request"),
        ({"order_amount": "12000"}, 400, "invalid-request"),
        ({"order_amount": 12000.0}, 400, "invalid-request"),
        ({"channel": "fax"}, 400, "invalid-request"),
        ({"extra": 1}, 400, "invalid-request"),
    ],
)
async def test_bad_redemptions_are_refused_with_their_own_type_and_write_nothing(
    client: AsyncTestClient[Litestar],
    session: AsyncSession,
    brand_a: BrandHandle,
    setup: dict[str, Any],
    changes: dict[str, Any],
    status: int,
    slug: str,
) -> None:
    before = await _counts(session)
    changes = dict(changes)
    code = changes.pop("code", setup["codes"][0])
    response = await redeem(client, brand_a, code, 12_000, **changes)
    assert_problem(response, status, slug)
    assert await _counts(session) == before


async def test_unknown_codes_and_missing_keys(
    client: AsyncTestClient[Litestar],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    setup: dict[str, Any],
) -> None:
    from alliance.benefits import codes

    unknown = codes.display(codes.generate_code())
    assert_problem(await redeem(client, brand_a, unknown), 404, "coupon-not-found")
    # The distributor cannot redeem (it is not the funding brand): the code does not exist for it.
    assert_problem(await redeem(client, brand_b, setup["codes"][0]), 404, "coupon-not-found")
    body = {"code": setup["codes"][0], "order_reference": "o-1", "order_amount": 12_000, "channel": "store"}
    assert_problem(
        await client.post("/v1/redemptions", json=body, headers=brand_a.headers), 400, "idempotency-key-required"
    )
    long_key = {**brand_a.headers, "Idempotency-Key": "k" * 300}
    assert_problem(await client.post("/v1/redemptions", json=body, headers=long_key), 400, "invalid-idempotency-key")
    assert await _counts(session) == (0, 0, 0, 0)


async def test_state_window_distributor_member_and_new_customer_rules(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    setup: dict[str, Any],
) -> None:
    benefit_id = setup["benefit"]["id"]
    code = setup["codes"][0]
    # Paused.
    await client.post(f"/v1/benefits/{benefit_id}/pause", headers=brand_a.headers)
    assert_problem(await redeem(client, brand_a, code), 409, "benefit-paused")
    await client.post(f"/v1/benefits/{benefit_id}/resume", headers=brand_a.headers)
    # The distributor was removed from the benefit after it issued the code.
    await client.put(f"/v1/benefits/{benefit_id}/distributors", json={"distributors": []}, headers=brand_a.headers)
    assert_problem(await redeem(client, brand_a, code), 409, "distributor-not-allowed")
    await client.put(
        f"/v1/benefits/{benefit_id}/distributors", json={"distributors": [brand_b.id]}, headers=brand_a.headers
    )
    assert (await redeem(client, brand_a, code)).status_code == 201

    # Not valid yet, and expired.
    later = await publish(client, brand_a, [brand_b], valid_from=(datetime.now(UTC) + timedelta(days=1)).isoformat())
    [early] = await issue(client, brand_b, later["id"])
    assert_problem(await redeem(client, brand_a, early), 409, "benefit-not-yet-valid")
    soon = datetime.now(UTC) + timedelta(seconds=1)
    short = await publish(client, brand_a, [brand_b], valid_to=soon.isoformat())
    [late] = await issue(client, brand_b, short["id"])
    import asyncio

    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)
    assert_problem(await redeem(client, brand_a, late), 409, "benefit-expired")

    # One use per member, and new customers only.
    limited = await publish(client, brand_a, [brand_b], per_member_limit=1, new_customers_only=True)
    first, second, third = await issue(client, brand_b, limited["id"], 3)
    assert_problem(await redeem(client, brand_a, first), 409, "new-customers-only")
    assert_problem(await redeem(client, brand_a, first, new_customer=True), 422, "member-token-required")
    ok = await redeem(client, brand_a, first, new_customer=True, member_token="member-8812")
    assert ok.status_code == 201
    over = await redeem(client, brand_a, second, new_customer=True, member_token="member-8812")
    assert_problem(over, 409, "member-limit-reached")
    assert (await redeem(client, brand_a, third, new_customer=True, member_token="member-0001")).status_code == 201
    # The member token is kept only as a digest.
    stored = (await session.scalars(select(Redemption.member_hash).where(Redemption.member_hash.is_not(None)))).all()
    assert len(stored) == 2
    assert all("member-" not in h for h in stored)
    # The refused attempts left the coupon usable.
    assert (await redeem(client, brand_a, second, new_customer=True, member_token="member-0002")).status_code == 201


async def test_budget_exhaustion_stops_redemption_and_issuance_until_a_reversal(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    redemption_store: str,
) -> None:
    await make_contract(sessions, brand_a, brand_b)
    benefit = await publish(client, brand_a, [brand_b], budget_count=10, budget_amount=2_500)
    codes = await issue(client, brand_b, benefit["id"], 4)
    first = await redeem(client, brand_a, codes[0])
    second = await redeem(client, brand_a, codes[1])
    assert first.status_code == second.status_code == 201
    # 500 left: not enough for another 10-yuan discount.
    assert_problem(await redeem(client, brand_a, codes[2]), 409, "budget-exhausted")
    state = (await client.get(f"/v1/benefits/{benefit['id']}", headers=brand_a.headers)).json()
    assert (state["status"], state["remaining_amount"], state["remaining_count"]) == ("exhausted", 500, 8)
    assert_problem(
        await client.post(f"/v1/benefits/{benefit['id']}/coupons", json={"count": 1}, headers=brand_b.headers),
        409,
        "budget-exhausted",
    )
    reversed_ = await client.post(
        f"/v1/redemptions/{first.json()['id']}/reversal", json={}, headers={**brand_a.headers, **idem()}
    )
    assert reversed_.status_code == 201, reversed_.text
    state = (await client.get(f"/v1/benefits/{benefit['id']}", headers=brand_a.headers)).json()
    assert (state["status"], state["remaining_amount"], state["remaining_count"]) == ("active", 1_500, 9)
    assert (await redeem(client, brand_a, codes[2])).status_code == 201


async def test_percentage_benefit_is_capped(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    redemption_store: str,
) -> None:
    await make_contract(sessions, brand_a, brand_b)
    benefit = await publish(
        client, brand_a, [brand_b], value_kind="percent", value=1_500, max_discount=2_000, min_spend=0
    )
    small, large = await issue(client, brand_b, benefit["id"], 2)
    assert (await redeem(client, brand_a, small, 9_999)).json()["discount"] == 1_499
    assert (await redeem(client, brand_a, large, 100_000)).json()["discount"] == 2_000


async def test_reversals_post_balancing_entries_and_restore_budget(
    client: AsyncTestClient[Litestar],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    setup: dict[str, Any],
) -> None:
    benefit_id = setup["benefit"]["id"]
    redeemed = (await redeem(client, brand_a, setup["codes"][0], 12_000)).json()
    original = await _postings(session, redeemed["ledger_transaction_id"])
    path = f"/v1/redemptions/{redeemed['id']}/reversal"

    assert_problem(
        await client.post(path, json={"refund_amount": 3_000}, headers=brand_a.headers), 400, "idempotency-key-required"
    )
    assert_problem(
        await client.post(path, json={"refund_amount": 3_000}, headers={**brand_b.headers, **idem()}),
        404,
        "redemption-not-found",
    )
    key = {**brand_a.headers, "Idempotency-Key": f"refund-{uuid.uuid4()}"}
    partial = await client.post(path, json={"refund_amount": 3_000, "reason": "one item back"}, headers=key)
    assert partial.status_code == 201, partial.text
    body = partial.json()
    assert (body["refund_amount"], body["restored_discount"], body["commission_delta"], body["full"]) == (
        3_000,
        250,
        -60,
        False,
    )
    assert body["redemption"]["status"] == "partially_reversed"
    replay = await client.post(path, json={"refund_amount": 3_000, "reason": "one item back"}, headers=key)
    assert replay.content == partial.content
    assert replay.headers["idempotent-replayed"] == "true"

    assert_problem(
        await client.post(path, json={"refund_amount": 9_001}, headers={**brand_a.headers, **idem()}),
        422,
        "refund-exceeds-remaining",
    )
    rest = await client.post(path, json={}, headers={**brand_a.headers, **idem()})
    assert rest.status_code == 201
    assert (rest.json()["refund_amount"], rest.json()["full"]) == (9_000, True)
    assert_problem(await client.post(path, json={}, headers={**brand_a.headers, **idem()}), 409, "already-reversed")

    # The two reversals together exactly cancel the original transaction.
    combined: dict[str, int] = dict(original)
    for reversal in (body, rest.json()):
        for account, amount in (await _postings(session, reversal["ledger_transaction_id"])).items():
            combined[account] = combined.get(account, 0) + amount
    assert set(combined.values()) == {0}
    state = (await client.get(f"/v1/benefits/{benefit_id}", headers=brand_a.headers)).json()
    assert (state["remaining_amount"], state["remaining_count"]) == (1_000_000, 1_000)
    kinds = (await session.scalars(select(LedgerTransaction.kind).order_by(LedgerTransaction.posted_at))).all()
    assert sorted(kinds) == ["coupon_redemption", "coupon_reversal", "coupon_reversal"]


async def test_reversal_window(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    redemption_store: str,
) -> None:
    await make_contract(sessions, brand_a, brand_b, coupon_commission=contracts.FixedCommission(amount=100))
    benefit = await publish(client, brand_a, [brand_b], reversal_window_days=0)
    [code] = await issue(client, brand_b, benefit["id"])
    redeemed = (await redeem(client, brand_a, code)).json()
    response = await client.post(
        f"/v1/redemptions/{redeemed['id']}/reversal", json={}, headers={**brand_a.headers, **idem()}
    )
    assert_problem(response, 409, "reversal-window-closed")
