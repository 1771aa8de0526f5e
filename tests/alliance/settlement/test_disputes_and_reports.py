"""Disputes (a brand flags a line, an operator resolves it with an adjustment in the next period) and
the finance report (JSON and CSV)."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.alliance.settlement.support import APRIL, MARCH, ledger_net, march_activity
from tests.helpers import assert_problem


async def test_dispute_is_resolved_by_an_adjustment_in_the_next_period(
    client: AsyncTestClient[Litestar], sessions: async_sessionmaker[AsyncSession], admin_headers: dict[str, str]
) -> None:
    alliance = await march_activity(sessions)
    await client.post(f"/admin/v1/settlements/{MARCH}/close", headers=admin_headers)
    line_id = f"payable:{alliance.b.id}:coupon:CNY"
    opened = await client.post(
        f"/v1/statements/{MARCH}/disputes",
        json={"line_id": line_id, "reason": "we were charged for a coupon that was never redeemed"},
        headers=alliance.a.headers,
    )
    assert opened.status_code == 201, opened.text
    dispute = opened.json()
    assert dispute["status"] == "open" and dispute["brand_id"] == alliance.a.id

    assert_problem(
        await client.post(
            f"/v1/statements/{MARCH}/disputes", json={"line_id": "nope", "reason": "x"}, headers=alliance.a.headers
        ),
        422,
        "unknown-line",
    )
    assert (await client.get("/v1/disputes", headers=alliance.b.headers)).json() == []
    assert [d["id"] for d in (await client.get("/v1/disputes", headers=alliance.a.headers)).json()] == [dispute["id"]]

    resolved = await client.post(
        f"/admin/v1/disputes/{dispute['id']}/resolve",
        json={
            "action": "adjust",
            "note": "refund one coupon",
            "payer": alliance.b.id,
            "payee": alliance.a.id,
            "amount": 1_000,
            "currency": "CNY",
        },
        headers=admin_headers,
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "adjusted"
    tx_id = resolved.json()["adjustment_transaction_id"]
    assert_problem(
        await client.post(
            f"/admin/v1/disputes/{dispute['id']}/resolve",
            json={"action": "reject", "note": "again"},
            headers=admin_headers,
        ),
        409,
        "dispute-resolved",
    )

    await client.post(f"/admin/v1/settlements/{APRIL}/close", headers=admin_headers)
    for brand, amount in ((alliance.a, 1_000), (alliance.b, -1_000)):
        april = (await client.get(f"/v1/statements/{APRIL}", headers=brand.headers)).json()["statement"]
        [adjustment] = april["adjustments"]
        assert adjustment["transaction_id"] == tx_id
        assert adjustment["dispute_id"] == dispute["id"]
        assert adjustment["original_period"] == MARCH
        assert adjustment["amount"] == amount
        assert {s["currency"]: s["net"] for s in april["summary"]} == await ledger_net(sessions, brand.id, APRIL)


async def test_monthly_report_json_and_csv(
    client: AsyncTestClient[Litestar], sessions: async_sessionmaker[AsyncSession], admin_headers: dict[str, str]
) -> None:
    alliance = await march_activity(sessions)
    assert_problem(await client.get(f"/admin/v1/reports/{MARCH}", headers=admin_headers), 404, "run-not-found")
    await client.post(f"/admin/v1/settlements/{MARCH}/close", headers=admin_headers)
    report = (await client.get(f"/admin/v1/reports/{MARCH}", headers=admin_headers)).json()
    nets = {(b["brand_id"], b["currency"]): b["net"] for b in report["brands"]}
    assert nets[(alliance.a.id, "CNY")] == -10_000 + 700 + 50
    assert sum(v for (_, c), v in nets.items() if c == "CNY") == 0
    top = report["top_pairs"][0]
    assert (top["payer"], top["payee"], top["amount"]) == (alliance.a.id, alliance.b.id, 10_000)
    assert report["redemptions"] == 0  # ledger-only activity here; the benefits tests book real redemptions

    csv_response = await client.get(f"/admin/v1/reports/{MARCH}?format=csv", headers=admin_headers)
    assert csv_response.status_code == 200
    assert csv_response.content.startswith(b"\xef\xbb\xbf")
    assert alliance.a.name in csv_response.content.decode("utf-8-sig")
