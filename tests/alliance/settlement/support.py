"""Helpers for settlement tests: a small alliance of three brands with a month of ledger activity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.ledger import service as ledger
from tests.alliance.ledger.support import owes
from tests.helpers import BrandHandle, make_brand

MARCH = "2026-03"
APRIL = "2026-04"


def in_march(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, 0, 0, tzinfo=UTC)


def reversed_(postings: tuple[contracts.Posting, ...]) -> tuple[contracts.Posting, ...]:
    """A full reversal: the exact negation of the original's postings (as pricing books it)."""
    return tuple(contracts.Posting(p.account, -p.amount, p.currency) for p in postings)


@dataclass
class Alliance:
    a: BrandHandle
    b: BrandHandle
    c: BrandHandle


async def post(
    sessions: async_sessionmaker[AsyncSession],
    key: str,
    postings: tuple[contracts.Posting, ...],
    *,
    kind: str,
    occurred_at: datetime,
    brand_id: str,
) -> ledger.PostedTransaction:
    async with sessions() as session, session.begin():
        return await ledger.post_transaction(
            session,
            brand_id=brand_id,
            idempotency_key=key,
            kind=kind,
            postings=postings,
            occurred_at=occurred_at,
            reference={"event_id": key},
        )


async def march_activity(sessions: async_sessionmaker[AsyncSession]) -> Alliance:
    """A, B and C (Chinese names) trade in March in CNY and USD: coupon funding, commissions, a reversal,
    and one manual operator correction."""
    a = await make_brand(sessions, "星巴克咖啡 Star Coffee")
    b = await make_brand(sessions, "Lingo 语言学校")
    c = await make_brand(sessions, "Café Crème 咖啡馆")
    await post(sessions, "m1", owes(a.id, b.id, 10_000), kind="coupon", occurred_at=in_march(2), brand_id=b.id)
    await post(sessions, "m2", owes(b.id, c.id, 2_500), kind="referral", occurred_at=in_march(5), brand_id=c.id)
    await post(sessions, "m3", owes(c.id, a.id, 700), kind="coupon", occurred_at=in_march(9), brand_id=a.id)
    await post(sessions, "m4", owes(a.id, b.id, 1_234), kind="coupon", occurred_at=in_march(10), brand_id=b.id)
    await post(
        sessions,
        "m5",
        reversed_(owes(a.id, b.id, 1_234)),
        kind="coupon_reversal",
        occurred_at=in_march(11),
        brand_id=b.id,
    )
    await post(sessions, "m6", owes(b.id, a.id, 999, "USD"), kind="referral", occurred_at=in_march(20), brand_id=a.id)
    # An operator's correction booked in another order than pricing's: it does not pair up and shows as
    # "other" lines with the alliance, so the lines still add up to the ledger.
    correction = (
        contracts.Posting(contracts.receivable_account(a.id), -50, "CNY"),
        contracts.Posting(contracts.payable_account(c.id), 50, "CNY"),
        contracts.Posting("alliance:clearing", -50, "CNY"),
        contracts.Posting("alliance:clearing", 50, "CNY"),
    )
    await post(sessions, "m7", correction, kind="correction", occurred_at=in_march(31, 23), brand_id=c.id)
    return Alliance(a=a, b=b, c=c)


async def ledger_net(sessions: async_sessionmaker[AsyncSession], brand_id: str, period: str) -> dict[str, int]:
    """A brand's net position in a period, straight from its ledger postings (positive: owed to it)."""
    net: dict[str, int] = {}
    async with sessions() as session:
        cursor = None
        while True:
            page = await ledger.list_transactions(session, brand_id=brand_id, period=period, limit=500, cursor=cursor)
            for tx in page.items:
                for posting in tx.postings:
                    net[posting.currency] = net.get(posting.currency, 0) - posting.amount
            cursor = page.next_cursor
            if cursor is None:
                return net


async def close(client: AsyncTestClient[Litestar], admin: dict[str, str], month: str) -> dict[str, Any]:
    response = await client.post(f"/admin/v1/settlements/{month}/close", headers=admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
