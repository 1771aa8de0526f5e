"""The ledger explorer in a real browser: search by brand and account, a transaction with its postings,
the chain's state, and a verification run from the console (admins only). Screenshots 60-6x."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.alliance.settlement.support import Alliance
from tests.browser.conftest import ADMIN, AUDITOR, LiveConsole, Tab
from tests.browser.finance_seed import seed_march


def _real_problems(tab: Tab) -> list[str]:
    return [p for p in tab.problems if "Failed to load resource" not in p]


@pytest.fixture(scope="module")
def alliance(live: LiveConsole) -> Alliance:
    return seed_march(live)


def test_search_the_ledger_and_open_a_transaction(tab: Tab, alliance: Alliance) -> None:
    page = tab.page
    tab.sign_in(*ADMIN)
    page.get_by_role("link", name="Ledger", exact=True).click()
    expect(page.locator("table.data tbody tr")).to_have_count(7)
    # The app's sealer chains new transactions within a second.
    expect(page.get_by_test_id("head-seq")).to_have_text("7", timeout=15_000)
    tab.shot("60-ledger")

    page.get_by_label("Brand").select_option(label=alliance.c.name)
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("table.data tbody tr")).to_have_count(3)  # B -> C, C -> A, the correction
    page.get_by_role("link", name="Clear filters").first.click()
    page.get_by_label("Account").fill(f"brand:{alliance.c.id}:payable")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("table.data tbody tr")).to_have_count(2)
    tab.shot("61-ledger-by-account")
    page.get_by_label("Account").fill("brand:brd_nobody:payable")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("The ledger has no such account")).to_be_visible()

    tab.goto("/console/ledger")
    page.locator("table.data tbody tr").first.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name="Postings")).to_be_visible()
    expect(page.get_by_text("balances")).to_have_count(1)
    tab.shot("62-ledger-transaction")
    assert not _real_problems(tab), tab.problems


def test_an_admin_verifies_the_chain(tab: Tab, alliance: Alliance) -> None:
    page = tab.page
    tab.sign_in(*ADMIN)
    tab.goto("/console/ledger/verification")
    expect(page.get_by_text("has not been verified yet")).to_be_visible()
    page.get_by_role("button", name="Verify the ledger now").click()
    page.wait_for_url("**/console/ledger/verification")
    # Small ledger: done at once; a long one shows progress and the panel refreshes itself over HTMX.
    expect(page.get_by_test_id("last-verification")).to_contain_text("passed", timeout=20_000)
    expect(page.get_by_test_id("last-verification")).to_contain_text("ada")
    tab.shot("63-ledger-verified")
    assert not _real_problems(tab), tab.problems


def test_an_auditor_cannot_run_a_verification(tab: Tab, alliance: Alliance) -> None:
    page = tab.page
    tab.sign_in(*AUDITOR)
    tab.goto("/console/ledger")
    expect(page.locator("table.data tbody tr")).to_have_count(7)
    expect(page.get_by_role("button", name="Verify the ledger now")).to_have_count(0)
    tab.shot("64-ledger-auditor")
    token = page.locator('input[name="_csrf_token"]').first.input_value()
    response = page.request.post(
        tab.live.base + "/console/ledger/verification", form={"_csrf_token": token}, max_redirects=0
    )
    assert response.status == 403
