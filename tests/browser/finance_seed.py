"""Data for the browser tests of the finance pages, made the way the exchange makes it: brands and signed
contracts through the services (on the live server's database), benefits, coupons, redemptions and a
reversal through the partner API of the live server, March ledger activity through the ledger service.

The async service calls run on a thread of their own, away from Playwright's synchronous API.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.db.session import create_engine, create_session_factory
from tests.alliance.benefits.support import benefit_body, make_contract
from tests.alliance.settlement.support import Alliance, march_activity
from tests.browser.conftest import LiveConsole
from tests.helpers import BrandHandle, make_brand

T = TypeVar("T")


def run_with_sessions(live: LiveConsole, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """Run ``work(sessions)`` against the live server's database, on its own thread and event loop."""

    async def main() -> T:
        engine = create_engine(live.env["ALLIANCE_DATABASE_URL"])
        try:
            return await work(create_session_factory(engine))
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result(timeout=120)


@dataclass(frozen=True)
class BenefitSeed:
    funder: BrandHandle
    distributor: BrandHandle
    benefit_id: str
    benefit_name: str
    redemption_ids: list[str]


def _post(live: LiveConsole, path: str, body: dict[str, Any], brand: BrandHandle) -> dict[str, Any]:
    response = httpx.post(
        live.base + path,
        json=body,
        headers={**brand.headers, "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def seed_benefit(live: LiveConsole) -> BenefitSeed:
    """Two brands under a signed contract; a benefit of the first handed out by the second; three
    coupons redeemed at the first brand's tills and one of them refunded in full."""

    async def brands(sessions: async_sessionmaker[AsyncSession]) -> tuple[BrandHandle, BrandHandle]:
        funder = await make_brand(sessions, "Cotton Home 棉家", "home")
        distributor = await make_brand(sessions, "Fresh Fruit 鲜果", "fruit")
        await make_contract(sessions, funder, distributor)
        return funder, distributor

    funder, distributor = run_with_sessions(live, brands)
    benefit = _post(live, "/v1/benefits", benefit_body([distributor.id]), funder)
    coupons = _post(live, f"/v1/benefits/{benefit['id']}/coupons", {"count": 3}, distributor)["coupons"]
    redeemed = []
    for n, coupon in enumerate(coupons):
        body = {
            "code": coupon["code"],
            "order_reference": f"ord-browser-{n}",
            "order_amount": 12_000,
            "channel": "store",
        }
        redeemed.append(_post(live, "/v1/redemptions", body, funder)["id"])
    _post(live, f"/v1/redemptions/{redeemed[0]}/reversal", {}, funder)
    return BenefitSeed(funder, distributor, benefit["id"], benefit["name"], redeemed)


def seed_march(live: LiveConsole) -> Alliance:
    """Three brands trading in March 2026 (seven ledger transactions, CNY and USD)."""
    return run_with_sessions(live, march_activity)
