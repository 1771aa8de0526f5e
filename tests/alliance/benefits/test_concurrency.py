"""Exactly once and never overspent, through the real HTTP server with concurrent clients.

``alliance serve`` runs as a subprocess on the test database (shared by this module's tests); many httpx
requests race at once. On
SQLite the server must queue writers (busy timeout), never answer 500.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.db.models import Benefit, CommissionMonthTotal, Redemption
from tests.alliance.benefits.support import issue, make_contract, publish
from tests.conftest import LiveServer
from tests.helpers import BrandHandle


async def _race(base: str, headers: dict[str, str], bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        return await asyncio.gather(
            *(
                http.post("/v1/redemptions", json=body, headers={**headers, "Idempotency-Key": str(uuid.uuid4())})
                for body in bodies
            )
        )


def _body(code: str, amount: int = 10_000) -> dict[str, Any]:
    return {"code": code, "order_reference": f"ord-{uuid.uuid4().hex[:10]}", "order_amount": amount, "channel": "store"}


async def test_fifty_concurrent_redemptions_of_one_code_succeed_once(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    live_server: LiveServer,
) -> None:
    await make_contract(sessions, brand_a, brand_b)
    benefit = await publish(client, brand_a, [brand_b])
    [code] = await issue(client, brand_b, benefit["id"], 1)
    responses = await _race(live_server.base, brand_a.headers, [_body(code) for _ in range(50)])
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 49}, statuses
    assert {r.json()["type"] for r in responses if r.status_code == 409} == {"urn:bax:problem:coupon-already-redeemed"}
    assert await session.scalar(select(func.count()).select_from(Redemption)) == 1
    row = (await session.execute(select(Benefit.spent_count, Benefit.spent_amount))).one()
    assert tuple(row) == (1, 1_000)


async def test_two_hundred_concurrent_redemptions_never_overspend_a_budget_of_one_hundred(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    live_server: LiveServer,
) -> None:
    # A monthly cap on the commission too: 40 x 100 would exceed it, so it must stop at exactly 1000.
    await make_contract(
        sessions, brand_a, brand_b, coupon_commission=contracts.FixedCommission(amount=100, monthly_cap=1_000)
    )
    benefit = await publish(client, brand_a, [brand_b], budget_count=100, budget_amount=1_000_000)
    codes = await issue(client, brand_b, benefit["id"], 200)
    responses = await _race(live_server.base, brand_a.headers, [_body(code) for code in codes])
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 100, 409: 100}, statuses
    assert {r.json()["type"] for r in responses if r.status_code == 409} == {"urn:bax:problem:budget-exhausted"}
    commissions = [r.json()["commission"] for r in responses if r.status_code == 201]
    assert sum(commissions) == 1_000
    row = (await session.execute(select(Benefit.spent_count, Benefit.spent_amount, Benefit.status))).one()
    assert tuple(row) == (100, 100_000, "exhausted")
    assert await session.scalar(select(func.count()).select_from(Redemption)) == 100
    assert await session.scalar(select(CommissionMonthTotal.total)) == 1_000
