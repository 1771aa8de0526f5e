"""Isolation probes for the ledger routes: brand A has transactions with a third brand C; brand B's
listing and balances must not mention A (nor C's side of anything)."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Litestar
from litestar.testing import AsyncTestClient

from alliance.ledger import service as ledger
from tests.alliance.contracts.support import app_sessions, third_brand
from tests.alliance.ledger.support import owes
from tests.helpers import BrandHandle
from tests.isolation import Probe


async def a_trades_with_c(client: AsyncTestClient[Litestar], a: BrandHandle) -> dict[str, str]:
    c = await third_brand(client)
    engine, factory = await app_sessions(client)
    try:
        async with factory() as session, session.begin():
            for n, (payer, payee) in enumerate(((a.id, c.id), (c.id, a.id))):
                await ledger.post_transaction(
                    session,
                    brand_id=payer,
                    idempotency_key=f"probe-{n}",
                    kind="referral",
                    postings=owes(payer, payee, 100 + n),
                    occurred_at=datetime(2026, 3, 1, tzinfo=UTC),
                )
    finally:
        await engine.dispose()
    return {}


PROBES: dict[tuple[str, str], Probe] = {
    ("GET", "/v1/ledger/transactions"): Probe(setup=a_trades_with_c, extra_ids=["probe-0", "probe-1"]),
    ("GET", "/v1/balances"): Probe(setup=a_trades_with_c),
}
