"""The two redemption paths write the same thing.

On PostgreSQL a redemption without webhook listeners takes the two-statement fast path
(`alliance.benefits.redeem_pg`); one whose brands have webhook endpoints takes the general path through
the session. Both must leave identical rows behind: coupon, budget, member usage, month-to-date total,
ledger transaction and postings, redemption, idempotency record and audit row. On SQLite both requests
take the general path, which this checks against itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.benefits import redeem_pg
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
)
from tests.alliance.benefits.support import idem, issue, make_contract, publish
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
            audit.actor,
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
    try_redeem = redeem_pg.try_redeem

    async def watched(*args: Any) -> Any:
        answer = await try_redeem(*args)
        fast_answers.append(answer is not None)
        return answer

    monkeypatch.setattr(redeem_pg, "try_redeem", watched)
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

    fast = await client.post("/v1/redemptions", json=body(first_code), headers={**brand_a.headers, **idem()})
    assert fast.status_code == 201, fast.text
    hook = await client.post("/v1/webhooks", json={"url": "https://hooks.example.com/bax"}, headers=brand_a.headers)
    assert hook.status_code == 201, hook.text
    general = await client.post("/v1/redemptions", json=body(second_code), headers={**brand_a.headers, **idem()})
    assert general.status_code == 201, general.text

    assert fast_answers == ([True, False] if database.backend == "postgresql" else [])
    assert await _written(session, fast.json()["id"]) == await _written(session, general.json()["id"])
    spent = (await session.execute(select(Benefit.spent_count, Benefit.spent_amount))).one()
    assert tuple(spent) == (2, 2_000)
    usage = await session.scalar(select(BenefitMemberUsage.count))
    assert usage == 2
    total = await session.scalar(select(func.sum(CommissionMonthTotal.total)))
    assert total == 2 * 240

    # The member has used the benefit twice, its limit: refused on either path, nothing written.
    disabled = await client.delete(f"/v1/webhooks/{hook.json()['webhook']['id']}", headers=brand_a.headers)
    assert disabled.status_code == 200, disabled.text
    refused = await client.post("/v1/redemptions", json=body(third_code), headers={**brand_a.headers, **idem()})
    assert_problem(refused, 409, "member-limit-reached")
    session.expire_all()
    assert await session.scalar(select(func.count()).select_from(Redemption)) == 2
    assert await session.scalar(select(Coupon.status).where(Coupon.status == "issued")) == "issued"
    assert await session.scalar(select(func.sum(CommissionMonthTotal.total))) == 2 * 240
