"""The monthly close on both backends: statements equal the ledger, net positions sum to zero, late
events become adjustments of the next period, re-runs are byte-identical, signatures verify."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from pypdf import PdfReader
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.cli import main as cli_main
from alliance.db.models import LedgerPeriod, SettlementStatement
from alliance.settlement.service import build_statements
from tests.alliance.ledger.support import owes
from tests.alliance.settlement.support import APRIL, MARCH, in_march, ledger_net, march_activity, post
from tests.helpers import assert_problem


async def statement(client: AsyncTestClient[Litestar], headers: dict[str, str], month: str, fmt: str = "json") -> Any:
    response = await client.get(f"/v1/statements/{month}?format={fmt}", headers=headers)
    assert response.status_code == 200, response.text
    return response


async def test_close_nets_every_brand_and_statements_equal_the_ledger(
    client: AsyncTestClient[Litestar], sessions: async_sessionmaker[AsyncSession], admin_headers: dict[str, str]
) -> None:
    alliance = await march_activity(sessions)
    response = await client.post(f"/admin/v1/settlements/{MARCH}/close", headers=admin_headers)
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["transactions"] == 7 and run["statements"] == 3 and run["next_period"] == APRIL

    totals: dict[str, int] = defaultdict(int)
    expected_positions = []
    for brand in (alliance.a, alliance.b, alliance.c):
        doc = (await statement(client, brand.headers, MARCH)).json()["statement"]
        assert doc["brand"] == {"id": brand.id, "name": brand.name}
        ledger = await ledger_net(sessions, brand.id, MARCH)
        summary = {s["currency"]: s for s in doc["summary"]}
        assert {c: s["net"] for c, s in summary.items()} == ledger
        expected_positions += [(brand.id, c, v) for c, v in ledger.items()]
        for currency, s in summary.items():
            assert s["net"] == s["receivable"] - s["payable"]
            lines = sum(
                (line["amount"] if line["direction"] == "receivable" else -line["amount"])
                for line in doc["lines"]
                if line["currency"] == currency
            )
            partners = sum(p["net"] for p in doc["partners"] if p["currency"] == currency)
            adjustments = sum(a["amount"] for a in doc["adjustments"] if a["currency"] == currency)
            assert lines + adjustments == s["net"] == partners + adjustments
            totals[currency] += s["net"]
    assert dict(totals) == {"CNY": 0, "USD": 0}
    assert sorted((n["brand_id"], n["currency"], n["net"]) for n in run["net_positions"]) == sorted(expected_positions)
    assert sum(n["net"] for n in run["net_positions"] if n["currency"] == "CNY") == 0

    a_doc = (await statement(client, alliance.a.headers, MARCH)).json()["statement"]
    lines = {line["line_id"]: line for line in a_doc["lines"]}
    coupon = lines[f"payable:{alliance.b.id}:coupon:CNY"]
    assert (coupon["amount"], coupon["count"]) == (11_234, 2)
    assert lines[f"payable:{alliance.b.id}:coupon_reversal:CNY"]["amount"] == -1_234
    assert lines["receivable:alliance:other:CNY"]["amount"] == 50
    assert {s["currency"]: s["net"] for s in a_doc["summary"]} == {"CNY": -10_000 + 700 + 50, "USD": 999}

    listed = (await client.get("/admin/v1/settlements", headers=admin_headers)).json()
    assert [r["period"] for r in listed] == [MARCH]
    one = (await client.get(f"/admin/v1/settlements/{MARCH}", headers=admin_headers)).json()
    assert one["digest"] == run["digest"]


async def test_late_event_lands_in_the_next_period_as_a_linked_adjustment(
    client: AsyncTestClient[Litestar], sessions: async_sessionmaker[AsyncSession], admin_headers: dict[str, str]
) -> None:
    alliance = await march_activity(sessions)
    await client.post(f"/admin/v1/settlements/{MARCH}/close", headers=admin_headers)
    late = await post(
        sessions,
        "late-1",
        owes(alliance.a.id, alliance.b.id, 4_200),
        kind="coupon",
        occurred_at=in_march(30),
        brand_id=alliance.b.id,
    )
    assert late.period == APRIL
    march = (await statement(client, alliance.b.headers, MARCH)).json()["statement"]
    assert all(a["transaction_id"] != late.id for a in march["adjustments"])
    await client.post(f"/admin/v1/settlements/{APRIL}/close", headers=admin_headers)
    april = (await statement(client, alliance.b.headers, APRIL)).json()["statement"]
    [adjustment] = april["adjustments"]
    assert adjustment["transaction_id"] == late.id
    assert adjustment["original_period"] == MARCH
    assert adjustment["amount"] == 4_200
    assert adjustment["occurred_at"] == "2026-03-30T12:00:00Z"
    assert (
        {s["currency"]: s["net"] for s in april["summary"]}
        == {"CNY": 4_200}
        == await ledger_net(sessions, alliance.b.id, APRIL)
    )
    assert april["lines"] == []  # the late event is an adjustment, not a regular April line


async def test_rerun_is_byte_identical_and_rebuilds_the_same_bytes(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    admin_headers: dict[str, str],
    settings: Any,
) -> None:
    alliance = await march_activity(sessions)
    first = (await client.post(f"/admin/v1/settlements/{MARCH}/close", headers=admin_headers)).json()
    before = {fmt: (await statement(client, alliance.a.headers, MARCH, fmt)).content for fmt in ("json", "csv", "pdf")}
    again = await client.post(f"/admin/v1/settlements/{MARCH}/close", headers=admin_headers)
    assert again.status_code == 200, again.text
    assert again.json()["already_closed"] is True and again.json()["digest"] == first["digest"]
    after = {fmt: (await statement(client, alliance.a.headers, MARCH, fmt)).content for fmt in ("json", "csv", "pdf")}
    assert before == after
    async with sessions() as session:
        rebuilt, _ = await build_statements(session, MARCH, key_file="", alliance_id=settings.alliance_id)
        stored = {r.brand_id: r.document for r in (await session.scalars(select(SettlementStatement))).all()}
        assert {b: d for b, (d, _, _) in rebuilt.items()} == stored
        assert await session.scalar(select(func.count()).select_from(LedgerPeriod)) == 1


async def test_statement_formats_csv_bom_and_pdf_with_chinese(
    client: AsyncTestClient[Litestar], sessions: async_sessionmaker[AsyncSession], admin_headers: dict[str, str]
) -> None:
    alliance = await march_activity(sessions)
    await client.post(f"/admin/v1/settlements/{MARCH}/close", headers=admin_headers)
    csv_response = await client.get(f"/v1/statements/{MARCH}", headers={**alliance.a.headers, "Accept": "text/csv"})
    assert csv_response.headers["content-type"] == "text/csv; charset=utf-8"  # once, not twice
    assert csv_response.content.startswith(b"\xef\xbb\xbf")
    text = csv_response.content.decode("utf-8-sig")
    assert alliance.a.name in text and alliance.b.name in text

    pdf_response = await client.get(
        f"/v1/statements/{MARCH}", headers={**alliance.a.headers, "Accept": "application/pdf"}
    )
    assert pdf_response.headers["content-type"] == "application/pdf"
    assert pdf_response.content.startswith(b"%PDF-")
    extracted = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf_response.content)).pages)
    for name in (alliance.a.name, alliance.b.name, alliance.c.name):
        assert name in extracted, (name, extracted[:400])
    assert "星巴克咖啡" in extracted

    assert_problem(
        await client.get(f"/v1/statements/{MARCH}?format=xml", headers=alliance.a.headers), 400, "invalid-format"
    )
    assert_problem(await client.get("/v1/statements/2026-02", headers=alliance.a.headers), 404, "statement-not-found")
    assert_problem(await client.get("/v1/statements/2026-13", headers=alliance.a.headers), 400, "invalid-period")


async def test_signature_verifies_and_fails_when_edited(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    admin_headers: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alliance = await march_activity(sessions)
    await client.post(f"/admin/v1/settlements/{MARCH}/close", headers=admin_headers)
    body = (await statement(client, alliance.b.headers, MARCH)).content
    key = (await client.get("/v1/exchange-key", headers=alliance.b.headers)).json()
    assert key["algorithm"] == "Ed25519" and json.loads(body)["signature"]["key_id"] == key["key_id"]
    original = tmp_path / "statement.json"
    original.write_bytes(body)
    assert cli_main(["statement", "verify", str(original), "--public-key", key["public_key"]]) == 0
    assert "signature OK" in capsys.readouterr().out

    document = json.loads(body)
    document["statement"]["summary"][0]["net"] += 1
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
    assert cli_main(["statement", "verify", str(edited)]) == 1
    assert "signature INVALID" in capsys.readouterr().err

    # Re-indented but unchanged still verifies: the signature is over the canonical form.
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(json.loads(body), ensure_ascii=False, indent=2), encoding="utf-8")
    assert cli_main(["statement", "verify", str(pretty)]) == 0
    other_key = "00" * 32
    assert cli_main(["statement", "verify", str(pretty), "--public-key", other_key]) == 1


async def test_close_refusals(client: AsyncTestClient[Litestar], admin_headers: dict[str, str], brand_a: Any) -> None:
    assert_problem(
        await client.post("/admin/v1/settlements/2999-01/close", headers=admin_headers), 409, "month-not-over"
    )
    assert_problem(
        await client.post("/admin/v1/settlements/2026-1/close", headers=admin_headers), 400, "invalid-period"
    )
    await client.post(f"/admin/v1/settlements/{APRIL}/close", headers=admin_headers)
    assert_problem(
        await client.post(f"/admin/v1/settlements/{MARCH}/close", headers=admin_headers), 409, "later-month-closed"
    )
    assert_problem(await client.get("/admin/v1/settlements/2026-02", headers=admin_headers), 404, "run-not-found")
    assert (await client.post(f"/admin/v1/settlements/{APRIL}/close", headers=brand_a.headers)).status_code in (
        401,
        403,
    )
