"""Settlements in a real browser: an admin closes March and downloads a brand's statement (the JSON's
signature verifies under the exchange key; the PDF is a PDF); an auditor sees no close button and a
close sent by hand is refused. Screenshots 70-7x."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from alliance.settlement.signing import verify_statement_file
from tests.alliance.settlement.support import MARCH, Alliance
from tests.browser.conftest import ADMIN, AUDITOR, LiveConsole, Tab
from tests.browser.finance_seed import seed_march


def _real_problems(tab: Tab) -> list[str]:
    return [p for p in tab.problems if "Failed to load resource" not in p]


@pytest.fixture(scope="module")
def alliance(live: LiveConsole) -> Alliance:
    return seed_march(live)


def test_an_auditor_cannot_close_a_month(tab: Tab, alliance: Alliance) -> None:
    page = tab.page
    tab.sign_in(*AUDITOR)
    page.get_by_role("link", name="Settlements", exact=True).click()
    expect(page.get_by_role("cell", name=MARCH, exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Run the close")).to_have_count(0)
    tab.shot("70-settlements-auditor")
    token = page.locator('input[name="_csrf_token"]').first.input_value()
    response = page.request.post(
        tab.live.base + "/console/settlements/close", form={"_csrf_token": token, "month": MARCH}, max_redirects=0
    )
    assert response.status == 403
    tab.goto("/console/settlements")
    expect(page.get_by_role("link", name=MARCH)).to_have_count(0)  # still open


def test_close_march_and_download_a_statement(tab: Tab, alliance: Alliance, tmp_path: Path) -> None:
    page = tab.page
    tab.sign_in(*ADMIN)
    tab.goto("/console/settlements")
    expect(page.get_by_label("Month (UTC)")).to_have_value(MARCH)
    tab.shot("71-settlements-open")
    page.get_by_role("button", name="Run the close").click()
    expect(page.get_by_role("heading", name=f"Settlement {MARCH}")).to_be_visible()
    expect(page.get_by_text("is closed and every brand's statement is signed")).to_be_visible()
    expect(page.locator("table.data tbody tr")).to_have_count(3)
    expect(page.locator("svg rect.net-chart__pos, svg rect.net-chart__neg")).not_to_have_count(0)
    tab.shot("72-settlement-run")

    with page.expect_download() as json_download:
        page.get_by_role("link", name=f"Download the JSON statement of {alliance.a.name}").click()
    signed = Path(json_download.value.path()).read_bytes()
    key = httpx.get(f"{tab.live.base}/v1/exchange-key", headers=alliance.a.headers).json()
    statement = verify_statement_file(signed, base64.b64decode(key["public_key"]))
    assert statement["brand"]["id"] == alliance.a.id and statement["period"] == MARCH
    api = httpx.get(f"{tab.live.base}/v1/statements/{MARCH}?format=json", headers=alliance.a.headers)
    assert api.content == signed  # the same bytes the brand downloads

    with page.expect_download() as pdf_download:
        page.get_by_role("link", name=f"Download the PDF statement of {alliance.a.name}").click()
    assert pdf_download.value.suggested_filename == f"statement-{MARCH}-{alliance.a.id}.pdf"
    assert Path(pdf_download.value.path()).read_bytes().startswith(b"%PDF")

    tab.goto("/console/settlements")
    expect(page.get_by_role("link", name=MARCH)).to_be_visible()
    tab.shot("73-settlements-closed")
    page.get_by_role("button", name="中文").click()
    tab.goto(f"/console/settlements/{MARCH}")
    expect(page.get_by_role("heading", name=f"{MARCH} 结算")).to_be_visible()
    tab.shot("74-settlement-run-zh")
    page.get_by_role("button", name="English").click()
    assert not _real_problems(tab), tab.problems
