"""The finance pages of the console: benefits (with the budget burn-down), redemptions, the ledger
explorer with chain verification, and settlements (the close and the statement downloads). Data is made
through the real services and the partner API; the console only reads it, and its two changes (a
verification, a close) go through the same service functions as the operator API."""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import UTC, datetime, timedelta

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.console.pages.benefits import redemption_page
from alliance.console.pages.ledger import current_job, transaction_page
from alliance.db.models import AuditEntry, LedgerPosting, SettlementRun
from alliance.settlement.signing import verify_statement_file
from tests.alliance.benefits.support import idem, issue, make_contract, publish, redeem
from tests.alliance.console.console_helpers import ConsoleUser, sign_in
from tests.alliance.settlement.support import MARCH, march_activity
from tests.helpers import BrandHandle


def _rows(html: str) -> int:
    """Rows of the page's last data table (0 when there is none)."""
    if '<table class="data">' not in html:
        return 0
    table = html.rsplit('<table class="data">', 1)[1].split("</table>", 1)[0]
    return table.split("<tbody>", 1)[1].count("<tr>")


async def _benefit_with_redemptions(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    funder: BrandHandle,
    distributor: BrandHandle,
) -> dict[str, object]:
    await make_contract(sessions, funder, distributor)
    benefit = await publish(client, funder, [distributor], budget_amount=1_000_000)
    codes = await issue(client, distributor, benefit["id"], 3)
    redeemed = []
    for code in codes:
        response = await redeem(client, funder, code)
        assert response.status_code == 201, response.text
        redeemed.append(response.json())
    reversal = await client.post(
        f"/v1/redemptions/{redeemed[0]['id']}/reversal", json={}, headers={**funder.headers, **idem()}
    )
    assert reversal.status_code == 201, reversal.text
    return benefit


async def test_benefits_and_redemptions_pages(
    web: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    auditor: ConsoleUser,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    await sign_in(web, auditor)
    empty = await web.get("/console/benefits")
    assert "No benefits yet" in empty.text and "POST /v1/benefits" in empty.text
    assert "No redemptions yet" in (await web.get("/console/redemptions")).text

    benefit = await _benefit_with_redemptions(web, sessions, brand_a, brand_b)
    listing = (await web.get("/console/benefits")).text
    assert _rows(listing) == 1
    assert "10 yuan off bedding 床品立减" in listing
    assert brand_a.name in listing and brand_b.name in listing
    # Three 10-yuan discounts redeemed, one given back by a full reversal.
    assert "CN¥20.00" in listing and "CN¥10,000.00" in listing
    assert _rows((await web.get("/console/benefits?tag=home&status=active")).text) == 1
    assert _rows((await web.get(f"/console/benefits?brand={brand_b.id}")).text) == 0
    assert "No benefit matches these filters" in (await web.get("/console/benefits?tag=winter")).text
    assert (await web.get("/console/benefits?status=bogus")).status_code == 400

    detail = (await web.get(f"/console/benefits/{benefit['id']}")).text
    assert detail.count('class="chart__bar"') == 30
    assert 'class="chart__reference"' in detail  # the budget line
    bars = re.findall(r'class="chart__bar"><title>[^<]*: (\d+)</title>', detail)
    assert bars[-1] == "20"  # whole CNY spent by now: the last bar is the benefit's spent amount
    assert 'data-testid="spent">CN¥20.00' in detail
    assert _rows(detail) == 3
    assert (await web.get("/console/benefits/bnf_missing")).status_code == 404

    redemptions = (await web.get("/console/redemptions")).text
    assert _rows(redemptions) == 3
    assert redemptions.count("badge--reversed") == 1
    assert _rows((await web.get("/console/redemptions?status=reversed")).text) == 1
    assert _rows((await web.get("/console/redemptions?status=any_reversal")).text) == 1
    assert _rows((await web.get("/console/redemptions?status=redeemed")).text) == 2
    assert _rows((await web.get(f"/console/redemptions?brand={brand_b.id}&role=distributing")).text) == 3
    assert _rows((await web.get(f"/console/redemptions?brand={brand_b.id}&role=funding")).text) == 0
    assert _rows((await web.get(f"/console/redemptions?benefit={benefit['id']}&since=2020-01-01")).text) == 3
    assert "No redemption matches" in (await web.get("/console/redemptions?until=2020-01-01")).text

    # Keyset pages: every redemption once, newest first, whatever the page size.
    async with sessions() as db:
        first = await redemption_page(db, limit=2)
        assert len(first.rows) == 2 and first.next_after == first.rows[-1].id
        second = await redemption_page(db, limit=2, after=first.next_after)
        assert len(second.rows) == 1 and second.next_after is None
        seen = [r.id for r in first.rows + second.rows]
        assert len(set(seen)) == 3
        times = [r.redeemed_at for r in first.rows + second.rows]
        assert times == sorted(times, reverse=True)
    assert 'rel="next"' not in (await web.get("/console/redemptions")).text  # one page: no pager


async def test_ledger_explorer_and_verification(
    app: Litestar,
    web: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    admin: ConsoleUser,
) -> None:
    token = await sign_in(web, admin)
    assert "The ledger is empty" in (await web.get("/console/ledger")).text
    alliance = await march_activity(sessions)

    page = (await web.get("/console/ledger")).text
    assert _rows(page) == 7
    assert "Verify the ledger now" in page
    assert "has not been verified yet" in page
    a_only = (await web.get(f"/console/ledger?brand={alliance.a.id}")).text
    async with sessions() as db:
        expected = await transaction_page(db, brand=alliance.a.id)
        assert _rows(a_only) == len(expected.rows) == 6  # every March transaction but B -> C
        assert all(alliance.a.id in row.brands for row in expected.rows)
        # Keyset pages walk every transaction once, newest first.
        seen: list[str] = []
        before = None
        while True:
            chunk = await transaction_page(db, limit=3, before=before)
            seen += [row.tx.id for row in chunk.rows]
            before = chunk.next_before
            if before is None:
                break
        assert len(seen) == len(set(seen)) == 7
    payable = f"brand:{alliance.c.id}:payable"
    async with sessions() as db:
        on_account = set(
            (await db.scalars(select(LedgerPosting.transaction_id).where(LedgerPosting.account == payable))).all()
        )
    assert len(on_account) == 2  # C owes A (m3) and the operator's correction (m7)
    by_account = (await web.get(f"/console/ledger?account={payable}")).text
    assert set(re.findall(r'href="/console/ledger/transactions/([^"]+)"', by_account)) == on_account
    # Dates are posting dates (UTC): everything was booked today.
    today = datetime.now(UTC).date()
    assert _rows((await web.get(f"/console/ledger?account=alliance:clearing&since={today}&until={today}")).text) == 7
    assert _rows((await web.get(f"/console/ledger?since={today + timedelta(days=1)}")).text) == 0
    unknown = (await web.get("/console/ledger?account=brand:brd_nobody:payable")).text
    assert "The ledger has no such account" in unknown
    assert "No transaction matches" in (await web.get("/console/ledger?until=2001-01-01")).text

    tx_id = re.search(r'href="/console/ledger/transactions/([^"]+)"', page)
    assert tx_id
    detail = (await web.get(f"/console/ledger/transactions/{tx_id.group(1)}")).text
    assert "CNY balances" in detail and "alliance:clearing" in detail
    assert (await web.get("/console/ledger/transactions/ltx_missing")).status_code == 404

    started = await web.post("/console/ledger/verification", data={"_csrf_token": token})
    assert started.status_code == 303 and started.headers["location"] == "/console/ledger/verification"
    job = current_job(app.state)
    assert job is not None and job.task is not None
    for _ in range(400):  # the task runs on the app's event loop; wait for it from outside
        if not job.running:
            break
        await asyncio.sleep(0.05)
    assert job.report is not None and job.report.ok and job.report.transactions == 7
    status = (await web.get("/console/ledger/verification")).text
    assert 'data-testid="head-seq">7' in status and "passed" in status and "console:ada" in status
    fragment = await web.get("/console/ledger/verification", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<div id="verification"')
    async with sessions() as db:
        row = await db.scalar(select(AuditEntry).where(AuditEntry.action == "ledger.verify"))
        assert row is not None and row.actor == "console:ada" and row.details["ok"] is True


async def test_auditor_sees_the_ledger_but_cannot_verify_or_close(
    web: AsyncTestClient[Litestar], sessions: async_sessionmaker[AsyncSession], auditor: ConsoleUser
) -> None:
    await march_activity(sessions)
    token = await sign_in(web, auditor)
    page = (await web.get("/console/ledger")).text
    assert _rows(page) == 7 and "Verify the ledger now" not in page
    assert (await web.post("/console/ledger/verification", data={"_csrf_token": token})).status_code == 403
    listing = (await web.get("/console/settlements")).text
    assert MARCH in listing and "Run the close" not in listing
    refused = await web.post("/console/settlements/close", data={"_csrf_token": token, "month": MARCH})
    assert refused.status_code == 403
    async with sessions() as db:
        assert await db.get(SettlementRun, MARCH) is None


async def test_close_a_month_and_download_the_statements(
    web: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    admin: ConsoleUser,
) -> None:
    token = await sign_in(web, admin)
    assert "Nothing to settle yet" in (await web.get("/console/settlements")).text
    alliance = await march_activity(sessions)
    listing = (await web.get("/console/settlements")).text
    assert f'<option value="{MARCH}" selected>' in listing  # the oldest open month is offered first

    early = await web.post("/console/settlements/close", data={"_csrf_token": token, "month": "2099-01"})
    assert early.status_code == 409 and "has not ended yet" in early.text
    bad = await web.post("/console/settlements/close", data={"_csrf_token": token, "month": "March"})
    assert bad.status_code == 400 and "The close did not run" in bad.text

    closed = await web.post("/console/settlements/close", data={"_csrf_token": token, "month": MARCH})
    assert closed.status_code == 303 and closed.headers["location"] == f"/console/settlements/{MARCH}?notice=closed"
    run = (await web.get(closed.headers["location"])).text
    assert "is closed and every brand" in run
    assert _rows(run) == 3 and run.count("net-chart__") >= 3
    for brand in (alliance.a, alliance.b, alliance.c):
        assert brand.name in run
    async with sessions() as db:
        audit_row = await db.scalar(select(AuditEntry).where(AuditEntry.action == "settlement.close"))
        assert audit_row is not None and audit_row.actor == "console:ada" and audit_row.target == MARCH
    again = await web.post("/console/settlements/close", data={"_csrf_token": token, "month": MARCH})
    assert again.headers["location"].endswith("notice=already_closed")
    assert "closed" in (await web.get("/console/settlements")).text

    # The console's downloads are the very bytes the brand gets from the partner API.
    for fmt in ("json", "csv", "pdf"):
        mine = await web.get(f"/console/settlements/{MARCH}/statements/{alliance.a.id}/{fmt}")
        assert mine.status_code == 200, mine.text
        api = await web.get(f"/v1/statements/{MARCH}?format={fmt}", headers=alliance.a.headers)
        assert mine.content == api.content, fmt
        assert mine.headers["content-type"].split(";")[0] == api.headers["content-type"].split(";")[0]
        assert f"statement-{MARCH}-{alliance.a.id}.{fmt}" in mine.headers["content-disposition"]
    signed = (await web.get(f"/console/settlements/{MARCH}/statements/{alliance.a.id}/json")).content
    key = (await web.get("/v1/exchange-key", headers=alliance.a.headers)).json()
    statement = verify_statement_file(signed, base64.b64decode(key["public_key"]))
    assert statement["brand"]["id"] == alliance.a.id and statement["period"] == MARCH
    assert (await web.get(f"/console/settlements/{MARCH}/statements/{alliance.a.id}/pdf")).content.startswith(b"%PDF")
    assert (await web.get(f"/console/settlements/{MARCH}/statements/{alliance.a.id}/xml")).status_code == 404
    assert (await web.get(f"/console/settlements/{MARCH}/statements/brd_nobody/json")).status_code == 404
    assert (await web.get("/console/settlements/2026-02")).status_code == 404
