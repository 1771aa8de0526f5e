"""The two redemption paths write the same thing.

On PostgreSQL a redemption takes the two-statement fast path (`redemption_store.AsyncpgStore`); on
SQLite the portable path through the session (`CoreStore`). This test makes the same assertions, with
literal expected values, on both backends - so both paths must leave the same rows behind: coupon, budget, member usage,
month-to-date total, ledger transaction and postings, redemption, webhook outbox, idempotency record and
audit row.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.benefits import redemption, redemption_rules, redemption_store, rules
from alliance.core.settings import Settings
from alliance.db.models import (
    AuditEntry,
    Benefit,
    BenefitMemberUsage,
    CommissionMonthTotal,
    Coupon,
    IdempotencyRecord,
    LedgerPosting,
    LedgerTransaction,
    Redemption,
    WebhookDelivery,
)
from alliance.db.session import create_engine, create_session_factory
from tests.alliance.benefits.support import idem, issue, make_contract, publish, redeem
from tests.conftest import Database
from tests.helpers import BrandHandle, assert_problem


async def _written(session: AsyncSession, redemption_id: str) -> dict[str, Any]:
    """Everything one redemption wrote, with its own ids and timestamps blanked out."""
    session.expire_all()
    redemption = await session.get(Redemption, redemption_id)
    assert redemption is not None
    coupon = await session.get(Coupon, redemption.coupon_id)
    assert coupon is not None
    tx = await session.get(LedgerTransaction, redemption.ledger_transaction_id)
    assert tx is not None
    postings = (
        await session.execute(
            select(LedgerPosting.line, LedgerPosting.account, LedgerPosting.brand_id, LedgerPosting.amount)
            .where(LedgerPosting.transaction_id == tx.id)
            .order_by(LedgerPosting.line)
        )
    ).all()
    record = (
        await session.execute(select(IdempotencyRecord).where(IdempotencyRecord.resource_id == redemption_id))
    ).scalar_one()
    audit = (
        await session.execute(
            select(AuditEntry).where(AuditEntry.action == "redemption.create", AuditEntry.target == redemption_id)
        )
    ).scalar_one()
    reference = {k: v for k, v in dict(tx.reference).items() if k not in ("event_id", "redemption_id", "coupon_id")}
    return {
        "redemption": {
            k: getattr(redemption, k)
            for k in (
                "benefit_id",
                "funding_brand_id",
                "distributor_brand_id",
                "order_amount",
                "discount",
                "currency",
                "channel",
                "store_id",
                "member_hash",
                "contract_id",
                "contract_version",
                "commission",
                "refunded_amount",
                "restored_discount",
                "status",
            )
        },
        "coupon": (coupon.status, coupon.redeemed_at == redemption.redeemed_at),
        "ledger": (
            tx.kind,
            tx.brand_id,
            tx.idempotency_scope,
            tx.idempotency_key == f"coupon_redemption:{redemption_id}",
            tx.occurred_at == redemption.redeemed_at,
            tx.period,
            reference,
            tx.reference["event_id"] == redemption_id,
            tx.reference["redemption_id"] == redemption_id,
            tx.reference["coupon_id"] == redemption.coupon_id,
        ),
        "postings": [tuple(p) for p in postings],
        "idempotency": (record.brand_id, record.operation, record.status_code, len(record.fingerprint)),
        "audit": (
            audit.actor.startswith(f"brand:{redemption.funding_brand_id}/key:"),
            audit.brand_id,
            {k: v for k, v in audit.details.items() if k != "coupon_id"},
            audit.details["coupon_id"] == redemption.coupon_id,
        ),
    }


async def test_fast_and_general_paths_write_the_same_rows(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast_answers: list[bool] = []  # which requests the fast path answered (it is only watched, not replaced)
    redeem_direct = redemption.redeem_direct

    async def watched(*args: Any) -> Any:
        try:
            answer = await redeem_direct(*args)
        except Exception:
            fast_answers.append(True)  # a refusal, answered by the fast path itself
            raise
        fast_answers.append(answer is not None)
        return answer

    monkeypatch.setattr(redemption, "redeem_direct", watched)
    await make_contract(sessions, brand_a, brand_b, distributor_bp=3_000)
    benefit = await publish(client, brand_a, [brand_b], per_member_limit=2)
    first_code, second_code, third_code = await issue(client, brand_b, benefit["id"], 3)

    def body(code: str) -> dict[str, Any]:
        return {
            "code": code,
            "order_reference": "till-1",
            "order_amount": 12_000,
            "channel": "store",
            "store_id": "sh-01",
            "member_token": "member-7",
        }

    plain = await client.post("/v1/redemptions", json=body(first_code), headers={**brand_a.headers, **idem()})
    assert plain.status_code == 201, plain.text
    for brand in (brand_a, brand_b):
        hook = await client.post("/v1/webhooks", json={"url": "https://hooks.example.com/bax"}, headers=brand.headers)
        assert hook.status_code == 201, hook.text
    notified = await client.post("/v1/redemptions", json=body(second_code), headers={**brand_a.headers, **idem()})
    assert notified.status_code == 201, notified.text
    assert fast_answers == ([True, True] if database.backend == "postgresql" else [])

    expected = {
        "redemption": {
            "benefit_id": benefit["id"],
            "funding_brand_id": brand_a.id,
            "distributor_brand_id": brand_b.id,
            "order_amount": 12_000,
            "discount": 1_000,
            "currency": "CNY",
            "channel": "store",
            "store_id": "sh-01",
            "member_hash": rules.member_digest(brand_a.id, "member-7"),
            "contract_id": plain.json()["contract_id"],
            "contract_version": 1,
            "commission": 240,
            "refunded_amount": 0,
            "restored_discount": 0,
            "status": "redeemed",
        },
        "coupon": ("redeemed", True),
        "ledger": (
            "coupon_redemption",
            brand_a.id,
            brand_a.id,
            True,
            True,
            plain.json()["redeemed_at"][:7],
            {
                "contract_id": plain.json()["contract_id"],
                "contract_version": 1,
                "commission": 240,
                "commission_kind": "coupon",
                "commission_payer": brand_a.id,
                "commission_payee": brand_b.id,
                "commission_month": plain.json()["redeemed_at"][:7],
                "benefit_id": benefit["id"],
            },
            True,
            True,
            True,
        ),
        "idempotency": (brand_a.id, redemption_rules.REDEEM_OPERATION, 201, 64),
        "audit": (
            True,
            brand_a.id,
            {"benefit_id": benefit["id"], "discount": 1_000, "currency": "CNY"},
            True,
        ),
    }
    legs = []
    for response in (plain, notified):
        written = await _written(session, response.json()["id"])
        postings = written.pop("postings")
        legs.append(postings)
        assert written == expected
        assert sum(amount for _, _, _, amount in postings) == 0
        assert {(account, amount) for _, account, _, amount in postings if account.startswith("brand:")} == {
            (f"brand:{brand_b.id}:payable", 300),
            (f"brand:{brand_a.id}:receivable", -300),
            (f"brand:{brand_a.id}:payable", 240),
            (f"brand:{brand_b.id}:receivable", -240),
        }
    assert legs[0] == legs[1]
    spent = (await session.execute(select(Benefit.spent_count, Benefit.spent_amount))).one()
    assert tuple(spent) == (2, 2_000)
    usage = await session.scalar(select(BenefitMemberUsage.count))
    assert usage == 2
    total = await session.scalar(select(func.sum(CommissionMonthTotal.total)))
    assert total == 2 * 240

    # The outbox: nothing for the first (nobody listened), one delivery per brand for the second, each
    # with its own view of the same event.
    deliveries = (await session.execute(select(WebhookDelivery))).scalars().all()
    assert {d.brand_id for d in deliveries} == {brand_a.id, brand_b.id}
    by_brand = {d.brand_id: msgspec.json.decode(d.payload) for d in deliveries}
    assert all(d.status == "pending" and d.event_type == "redemption.created" for d in deliveries)
    assert by_brand[brand_a.id]["data"] == notified.json()
    assert by_brand[brand_b.id]["data"]["id"] == notified.json()["id"]
    assert "order_reference" not in by_brand[brand_b.id]["data"]
    assert by_brand[brand_a.id]["id"] == by_brand[brand_b.id]["id"]

    # The member has used the benefit twice, its limit: refused (by the fast path itself), nothing written.
    refused = await client.post("/v1/redemptions", json=body(third_code), headers={**brand_a.headers, **idem()})
    assert_problem(refused, 409, "member-limit-reached")
    assert fast_answers == ([True, True, True] if database.backend == "postgresql" else [])
    session.expire_all()
    assert await session.scalar(select(func.count()).select_from(Redemption)) == 2
    assert await session.scalar(select(Coupon.status).where(Coupon.status == "issued")) == "issued"
    assert await session.scalar(select(func.sum(CommissionMonthTotal.total))) == 2 * 240


@pytest.mark.parametrize(
    ("race", "slug"),
    [("coupon", "coupon-already-redeemed"), ("budget", "budget-exhausted"), ("pause", "benefit-paused")],
)
async def test_a_race_lost_at_write_time_is_read_and_decided_again(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    race_store: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    race: str,
    slug: str,
) -> None:
    """Between a redemption's read and its write a concurrent request changes what it read: the write's
    guard fails, nothing is written, and the redemption is read and decided again by the same rules (on
    PostgreSQL the fast path hands it to the portable path for that)."""
    await make_contract(sessions, brand_a, brand_b)
    benefit = await publish(client, brand_a, [brand_b])
    [code] = await issue(client, brand_b, benefit["id"])
    concurrent = {
        "coupon": update(Coupon).values(status="redeemed"),
        "budget": update(Benefit).values(spent_count=Benefit.budget_count),
        "pause": update(Benefit).values(status="paused"),
    }[race]
    writes: list[str] = []
    for store in (redemption_store.AsyncpgStore, redemption_store.CoreStore):
        original = store.write

        async def racing(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if not writes:  # the first write only: the concurrent request commits just before it
                engine = create_engine(settings.database_url)  # on the app's event loop, as the server
                async with create_session_factory(engine)() as other, other.begin():
                    await other.execute(concurrent)
                await engine.dispose()
            writes.append(type(self).__name__)
            return await _original(self, *args, **kwargs)

        monkeypatch.setattr(store, "write", racing)
    response = await redeem(client, brand_a, code, 12_000)
    assert_problem(response, 409, slug)
    first = "AsyncpgStore" if race_store == "direct" else "CoreStore"
    assert writes == [first]  # the second read refused it: no second write
    session.expire_all()
    assert await session.scalar(select(func.count()).select_from(Redemption)) == 0
    assert await session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
    assert await session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 0
