"""Benefits and redemptions in a real browser: the empty states, the catalogue with its filters, a
benefit's budget burn-down and the redemption list with the reversed filter. Screenshots 50-5x."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN, AUDITOR, LiveConsole, Tab
from tests.browser.finance_seed import BenefitSeed, seed_benefit


def _real_problems(tab: Tab) -> list[str]:
    return [p for p in tab.problems if "Failed to load resource" not in p]


@pytest.fixture(scope="module")
def seeded(live: LiveConsole) -> list[BenefitSeed]:
    return []  # filled by the first test, after it has seen the empty pages


def test_empty_pages_say_what_to_do(tab: Tab, seeded: list[BenefitSeed]) -> None:
    page = tab.page
    tab.sign_in(*ADMIN)
    page.get_by_role("link", name="Benefits", exact=True).click()
    expect(page.get_by_text("No benefits yet")).to_be_visible()
    tab.shot("50-benefits-empty")
    page.get_by_role("link", name="Redemptions", exact=True).click()
    expect(page.get_by_text("No redemptions yet")).to_be_visible()
    assert not _real_problems(tab), tab.problems
    seeded.append(seed_benefit(tab.live))


def test_benefit_list_burn_down_and_redemptions(tab: Tab, seeded: list[BenefitSeed]) -> None:
    data = seeded[0]
    page = tab.page
    tab.sign_in(*AUDITOR)
    page.get_by_role("link", name="Benefits", exact=True).click()
    row = page.locator("table.data tbody tr", has_text=data.benefit_name)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Cotton Home 棉家")
    expect(row).to_contain_text("Fresh Fruit 鲜果")
    expect(row).to_contain_text("CN¥20.00")  # 3 x 10 yuan redeemed, one given back
    tab.shot("51-benefits")

    page.get_by_label("Status").select_option("paused")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("No benefit matches these filters")).to_be_visible()
    page.get_by_role("link", name="Clear filters").first.click()
    page.get_by_label("Tag").fill("home")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("table.data tbody tr")).to_have_count(1)

    page.get_by_role("link", name=data.benefit_name).click()
    expect(page.get_by_role("heading", name="Budget burn-down")).to_be_visible()
    expect(page.locator("svg.chart__svg rect.chart__bar")).to_have_count(30)
    expect(page.locator("svg.chart__svg line.chart__reference")).to_have_count(1)
    expect(page.get_by_test_id("spent")).to_have_text("CN¥20.00")
    expect(page.locator("table.data").last.locator("tbody tr")).to_have_count(3)
    tab.shot("52-benefit-burn-down")

    page.get_by_role("link", name="All redemptions of this benefit").click()
    expect(page.locator("table.data tbody tr")).to_have_count(3)
    tab.shot("53-redemptions")
    page.get_by_label("Status").select_option("reversed")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("table.data tbody tr")).to_have_count(1)
    expect(page.locator("table.data tbody tr .badge")).to_have_text("reversed")
    tab.shot("54-redemptions-reversed")
    page.locator("table.data tbody tr").get_by_role("link", name="Transaction").click()
    expect(page.get_by_role("heading", name="Postings")).to_be_visible()

    page.get_by_role("button", name="中文").click()
    tab.goto(f"/console/benefits/{data.benefit_id}")
    expect(page.get_by_role("heading", name="预算消耗")).to_be_visible()
    tab.shot("55-benefit-burn-down-zh")
    page.get_by_role("button", name="English").click()
    assert not _real_problems(tab), tab.problems
