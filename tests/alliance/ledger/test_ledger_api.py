"""The ledger over HTTP: each brand sees only its own side; operators post adjustments and verify."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.db.models import AuditEntry, LedgerPosting, LedgerTransaction
from tests.alliance.contracts.support import third_brand
from tests.alliance.ledger.support import post, seal
from tests.helpers import BrandHandle, assert_problem


async def _counts(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions() as session:
        txs = await session.scalar(select(func.count()).select_from(LedgerTransaction))
        legs = await session.scalar(select(func.count()).select_from(LedgerPosting))
    return int(txs or 0), int(legs or 0)


async def test_each_brand_sees_only_its_own_side(
    client: AsyncTestClient[Litestar],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    c = await third_brand(client)
    ab = await post(sessions, brand_a.id, brand_b.id, 500, "ab-1")
    await post(sessions, brand_b.id, c.id, 700, "bc-1")
    await seal(sessions)
    await post(sessions, c.id, brand_a.id, 900, "ca-1", occurred_at=datetime(2026, 4, 2, tzinfo=UTC))

    page = (await client.get("/v1/ledger/transactions", headers=brand_a.headers)).json()
    assert [t["reference"]["event_id"] for t in page["items"]] == ["ca-1", "ab-1"]
    for tx in page["items"]:
        assert {p["account"].split(":")[1] for p in tx["postings"]} == {brand_a.id}
        assert "seq" not in tx and "prev_hash" not in tx
    mine, theirs = page["items"][1], page["items"][0]
    assert mine["idempotency_key"] == "ab-1" and mine["sealed"] and mine["hash"]
    assert "idempotency_key" not in theirs  # posted by C: not ours to see (sealed or not, as it happens)
    assert mine["postings"] == [{"account": f"brand:{brand_a.id}:payable", "amount": 500, "currency": "CNY"}]
    assert c.id not in str(mine) and brand_b.id not in str(theirs["postings"])
    text = (await client.get("/v1/ledger/transactions", headers=brand_b.headers)).text
    assert "ca-1" not in text and ab.id in text

    balances = (await client.get("/v1/balances", headers=brand_a.headers)).json()
    assert balances["brand_id"] == brand_a.id
    assert {(b["account"], b["balance"]) for b in balances["accounts"]} == {
        (f"brand:{brand_a.id}:payable", 500),
        (f"brand:{brand_a.id}:receivable", -900),
    }
    assert balances["net"] == [{"currency": "CNY", "net": 400}]
    assert c.id not in str(balances)


async def test_filters_and_cursor_pagination(
    client: AsyncTestClient[Litestar],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    for i in range(7):
        month = 3 if i < 4 else 5
        await post(
            sessions,
            brand_a.id,
            brand_b.id,
            10 + i,
            f"k{i}",
            kind="coupon" if i % 2 else "referral",
            occurred_at=datetime(2026, month, 1 + i, tzinfo=UTC),
        )
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(f"/v1/ledger/transactions{query}", headers=brand_b.headers)).json()
        seen += [t["reference"]["event_id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"k{i}" for i in reversed(range(7))]

    async def ids(query: str) -> list[str]:
        response = await client.get(f"/v1/ledger/transactions?{query}", headers=brand_a.headers)
        assert response.status_code == 200, response.text
        return [t["reference"]["event_id"] for t in response.json()["items"]]

    assert await ids("kind=coupon") == ["k5", "k3", "k1"]
    assert await ids("period=2026-05") == ["k6", "k5", "k4"]
    assert await ids("occurred_from=2026-03-02T00:00:00Z&occurred_to=2026-03-04T00:00:00Z") == ["k2", "k1"]
    assert await ids("currency=USD") == []
    assert_problem(
        await client.get("/v1/ledger/transactions?cursor=bogus", headers=brand_a.headers), 400, "invalid-cursor"
    )
    assert_problem(
        await client.get("/v1/ledger/transactions?period=2026-13", headers=brand_a.headers), 400, "invalid-period"
    )
    assert_problem(await client.get("/v1/ledger/transactions?limit=0", headers=brand_a.headers), 400, "invalid-request")
    assert_problem(
        await client.get("/v1/ledger/transactions?occurred_from=2026-03-01T00:00:00", headers=brand_a.headers),
        400,
        "invalid-request",
    )


def _adjustment(a: str, b: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "idempotency_key": "adj-1",
        "occurred_at": "2026-03-05T10:00:00Z",
        "postings": [
            {"account": f"brand:{a}:payable", "amount": 250, "currency": "CNY"},
            {"account": f"brand:{b}:receivable", "amount": -250, "currency": "CNY"},
        ],
        "reference": {"ticket": "OPS-17"},
    }
    body.update(overrides)
    return body


def _legs(*legs: tuple[str, Any, str]) -> list[dict[str, Any]]:
    return [{"account": acc, "amount": amount, "currency": cur} for acc, amount, cur in legs]


BAD_ADJUSTMENTS: list[tuple[list[tuple[str, Any, str]], int, str]] = [
    ([("brand:{a}:payable", 250, "CNY"), ("brand:{b}:receivable", -249, "CNY")], 422, "unbalanced-transaction"),
    ([("brand:{a}:payable", 250, "ABC"), ("brand:{b}:receivable", -250, "ABC")], 422, "unknown-currency"),
    ([("brand:{a}:payable", 2.5, "CNY"), ("brand:{b}:receivable", -2.5, "CNY")], 400, "invalid-request"),
    ([("brand:{a}:payable", 250.0, "CNY"), ("brand:{b}:receivable", -250.0, "CNY")], 400, "invalid-request"),
    ([("brand:{a}:payable", "250", "CNY"), ("brand:{b}:receivable", "-250", "CNY")], 400, "invalid-request"),
    ([("brand:{a}:payable", 2**63, "CNY"), ("brand:{b}:receivable", -(2**63), "CNY")], 400, "invalid-request"),
    ([("brand:{a}:payable", 10**30, "CNY"), ("brand:{b}:receivable", -(10**30), "CNY")], 400, "invalid-request"),
    # The overflow scenario: amounts that fit a bigint once but not twice, and past the money bound.
    ([("brand:{a}:payable", 2**63 - 1, "CNY"), ("brand:{b}:receivable", 1 - 2**63, "CNY")], 400, "invalid-request"),
    (
        [("brand:{a}:payable", 10**12 + 1, "CNY"), ("brand:{b}:receivable", -(10**12) - 1, "CNY")],
        400,
        "invalid-request",
    ),
    ([("somewhere", 1, "CNY"), ("brand:{b}:receivable", -1, "CNY")], 422, "invalid-account"),
    ([("brand:brd_nosuchbrand:payable", 1, "CNY"), ("brand:{b}:receivable", -1, "CNY")], 422, "unknown-brand"),
]


async def test_bad_adjustments_get_a_problem_and_write_nothing(
    client: AsyncTestClient[Litestar],
    admin_headers: dict[str, str],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    for legs, status, slug in BAD_ADJUSTMENTS:
        postings = _legs(*[(acc.format(a=brand_a.id, b=brand_b.id), amount, cur) for acc, amount, cur in legs])
        response = await client.post(
            "/admin/v1/ledger/transactions",
            json=_adjustment(brand_a.id, brand_b.id, postings=postings),
            headers=admin_headers,
        )
        assert_problem(response, status, slug)
    assert await _counts(sessions) == (0, 0)


async def test_operator_adjusts_lists_and_verifies(
    client: AsyncTestClient[Litestar],
    admin_headers: dict[str, str],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = _adjustment(brand_a.id, brand_b.id)
    first = await client.post("/admin/v1/ledger/transactions", json=body, headers=admin_headers)
    assert first.status_code == 201, first.text
    tx = first.json()
    assert tx["kind"] == "adjustment" and tx["period"] == "2026-03" and len(tx["postings"]) == 2
    again = await client.post("/admin/v1/ledger/transactions", json=body, headers=admin_headers)
    assert again.json()["id"] == tx["id"]
    conflict = await client.post(
        "/admin/v1/ledger/transactions", json={**body, "reference": {"ticket": "OPS-18"}}, headers=admin_headers
    )
    assert_problem(conflict, 409, "idempotency-key-reused")
    assert await _counts(sessions) == (1, 2)

    report = await client.post("/admin/v1/ledger/verification", headers=admin_headers)
    assert report.status_code == 200, report.text
    assert report.json()["ok"] is True and report.json()["transactions"] == 1
    listed = (await client.get("/admin/v1/ledger/transactions", headers=admin_headers)).json()["items"]
    assert listed[0]["seq"] == 1 and listed[0]["prev_hash"] == "0" * 64
    balances = (await client.get("/admin/v1/ledger/balances", headers=admin_headers)).json()
    assert {b["account"]: b["balance"] for b in balances} == {
        f"brand:{brand_a.id}:payable": 250,
        f"brand:{brand_b.id}:receivable": -250,
    }
    # Brands see the adjustment on their side; B's view does not show A's account.
    b_view = (await client.get("/v1/ledger/transactions", headers=brand_b.headers)).json()["items"]
    assert b_view[0]["postings"] == [{"account": f"brand:{brand_b.id}:receivable", "amount": -250, "currency": "CNY"}]
    async with sessions() as session:
        actions = (await session.scalars(select(AuditEntry.action))).all()
    assert actions.count("ledger.adjustment") == 1 and actions.count("ledger.verify") == 1


async def test_the_apps_sealer_chains_new_transactions_by_itself(
    client: AsyncTestClient[Litestar],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    posted = await post(sessions, brand_a.id, brand_b.id, 42, "background")
    for _ in range(100):  # the lifespan's sealer runs every 200 ms
        items = (await client.get("/v1/ledger/transactions", headers=brand_a.headers)).json()["items"]
        if items[0]["sealed"]:
            break
        await asyncio.sleep(0.05)
    assert items[0]["id"] == posted.id and items[0]["sealed"] and len(items[0]["hash"]) == 64
