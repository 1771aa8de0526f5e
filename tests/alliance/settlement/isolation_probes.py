"""Isolation probes for the settlement routes: brand A trades with a third brand C in March, March is
closed; brand B asks for March's statement, flags a line of it, and lists disputes - and sees nothing
of A (a statement B does not have answers 404 exactly like a month never closed)."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Litestar
from litestar.testing import AsyncTestClient

from alliance.core.audit import AuditContext
from alliance.ledger import service as ledger
from alliance.settlement import service as settlement
from alliance.settlement.schemas import DisputeIn
from tests.alliance.contracts.support import app_sessions, third_brand
from tests.alliance.ledger.support import owes
from tests.helpers import BrandHandle
from tests.isolation import Probe

MONTH = "2026-03"
PROBE_AUDIT = AuditContext(actor="test:probe", source_ip="local")


async def a_has_a_statement(client: AsyncTestClient[Litestar], a: BrandHandle) -> dict[str, str]:
    c = await third_brand(client)
    engine, factory = await app_sessions(client)
    try:
        async with factory() as session, session.begin():
            await ledger.post_transaction(
                session,
                brand_id=a.id,
                idempotency_key="probe-statement",
                kind="coupon",
                postings=owes(a.id, c.id, 500),
                occurred_at=datetime(2026, 3, 3, tzinfo=UTC),
            )
        async with factory() as session, session.begin():
            await settlement.close_month(session, PROBE_AUDIT, MONTH, key_file="", alliance_id="demo-alliance")
        async with factory() as session, session.begin():
            await settlement.open_dispute(
                session, PROBE_AUDIT, a.id, MONTH, DisputeIn(line_id=f"payable:{c.id}:coupon:CNY", reason="A's own")
            )
    finally:
        await engine.dispose()
    return {"month": MONTH}


async def a_has_a_dispute(client: AsyncTestClient[Litestar], a: BrandHandle) -> dict[str, str]:
    await a_has_a_statement(client, a)
    return {}


async def a_disputes_unchanged(client: AsyncTestClient[Litestar], a: BrandHandle, params: dict[str, str]) -> None:
    disputes = (await client.get("/v1/disputes", headers=a.headers)).json()
    assert [d["reason"] for d in disputes] == ["A's own"], disputes


PROBES: dict[tuple[str, str], Probe] = {
    ("GET", "/v1/statements/{month}"): Probe(setup=a_has_a_statement),
    ("POST", "/v1/statements/{month}/disputes"): Probe(
        setup=a_has_a_statement, verify=a_disputes_unchanged, body={"line_id": "summary", "reason": "B's attempt"}
    ),
    ("GET", "/v1/disputes"): Probe(setup=a_has_a_dispute),
    ("GET", "/v1/exchange-key"): Probe(),
}
