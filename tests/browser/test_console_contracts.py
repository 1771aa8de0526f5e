"""Contracts in a real browser: the list, a contract's versions (terms diff, signatures with key
fingerprints), approving one contract, rejecting another and seeing it out of force, and an auditor who
can neither see the review buttons nor post a review by hand. Screenshots at 1366x768.

Brands, keys, contracts and signatures are made through the CLI and the partner API (``seed_alliance``);
the tests run in file order on one server per backend."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN, AUDITOR, LiveConsole, Tab
from tests.browser.seed_alliance import Agent, add_brand, propose, sign


@dataclass
class Seeded:
    cotton: Agent
    fruit: Agent
    tea: Agent
    approved: dict[str, Any]  # cotton-fruit: v1 in force, v2 proposed (a terms diff)
    rejected: dict[str, Any]  # cotton-tea: v1 in force, to be rejected


@pytest.fixture(scope="module")
def seeded(live: LiveConsole) -> Seeded:
    cotton = add_brand(live, "Cotton Home 棉家", "home")
    fruit = add_brand(live, "Fresh Fruit 鲜果", "fruit")
    tea = add_brand(live, "Tea House 茶馆", "tea")
    first = sign(live, propose(live, cotton, fruit), 1, cotton, fruit)
    later = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    body = {
        "settlement_currency": "CNY",
        "effective_from": later,
        "coupon_commission": {"kind": "rate", "rate_bp": 300, "per_event_cap": 800},
        "referral": {"kind": "fixed", "amount": 1500},
        "note": "spring campaign 春季活动",
    }
    second = httpx.post(f"{live.base}/v1/contracts/{first['contract_id']}/versions", json=body, headers=fruit.headers)
    assert second.status_code == 201, second.text
    sign(live, second.json(), 2, fruit)
    other = sign(live, propose(live, cotton, tea), 1, cotton, tea)
    return Seeded(cotton, fruit, tea, second.json(), other)


def _real_problems(tab: Tab) -> list[str]:
    return [p for p in tab.problems if "Failed to load resource" not in p]


def test_walk_the_contracts_and_approve_one(tab: Tab, seeded: Seeded) -> None:
    page = tab.page
    tab.sign_in(*ADMIN)
    page.get_by_role("link", name="Contracts", exact=True).click()
    expect(page.get_by_role("heading", name="Contracts", exact=True)).to_be_visible()
    expect(page.locator("#contracts tbody tr")).to_have_count(2)
    tab.shot("50-contracts-list")

    page.get_by_role("link", name=re.compile("Open the contract between .*Fresh Fruit")).click()
    expect(page.get_by_role("heading", name="Version 2")).to_be_visible()
    v1, v2 = page.locator("#v1"), page.locator("#v2")
    expect(v2.get_by_text("partially signed")).to_be_visible()
    expect(v1.locator(".badge", has_text="in force")).to_be_visible()
    diff = v2.locator("table.diff")
    expect(diff.get_by_role("row", name=re.compile("Coupon commission › Rate"))).to_contain_text("2.50%")
    expect(diff.get_by_role("row", name=re.compile("Coupon commission › Rate"))).to_contain_text("3.00%")
    expect(diff.get_by_role("row", name=re.compile("Referral commission › Amount"))).to_contain_text("CN¥15.00")
    expect(diff.get_by_role("row", name=re.compile("Funding split"))).to_have_count(5)  # removed in v2
    expect(v1.locator("table.signatures code.hash")).to_have_count(2)  # both parties' key fingerprints
    expect(v2.locator("table.signatures").get_by_text("not signed yet")).to_be_visible()
    tab.shot("51-contract-detail-diff")

    v1.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("The version is approved.")).to_be_visible()
    expect(page.locator("#v1").get_by_text(re.compile("Approved by console:ada"))).to_be_visible()
    expect(page.locator("#v1").get_by_role("button", name="Approve")).to_have_count(0)
    tab.shot("52-contract-approved")
    seen = httpx.get(f"{tab.live.base}/v1/contracts/{seeded.approved['contract_id']}", headers=seeded.fruit.headers)
    assert seen.json()["versions"][0]["review"]["decision"] == "approved"
    assert seen.json()["in_force_version"] == 1
    assert not _real_problems(tab), tab.problems


def test_reject_a_contract_and_see_it_out_of_force(tab: Tab, seeded: Seeded) -> None:
    page = tab.page
    tab.sign_in(*ADMIN)
    contract_id = seeded.rejected["contract_id"]
    tab.goto(f"/console/contracts/{contract_id}")
    expect(page.locator("#v1 .badge", has_text="in force")).to_be_visible()
    page.get_by_label("Reason for rejecting (the parties will read it)").fill("commission above the alliance cap")
    page.get_by_role("button", name="Reject").click()
    expect(page.get_by_text("The version is rejected and out of force.")).to_be_visible()
    expect(page.locator("#v1 h2 .badge--ctr-rejected")).to_be_visible()
    expect(page.get_by_text("no version in force")).to_be_visible()
    expect(page.get_by_role("button", name="Reject")).to_have_count(0)
    tab.shot("53-contract-rejected")

    tab.goto("/console/contracts")
    row = page.locator("#contracts tbody tr", has_text="Tea House 茶馆")
    expect(row.locator(".badge--ctr-rejected")).to_be_visible()
    expect(row.locator("td").nth(4)).to_have_text("—")
    tab.shot("54-contracts-list-after-review")

    # The parties read the decision, and nothing runs under the rejected version.
    seen = httpx.get(f"{tab.live.base}/v1/contracts/{contract_id}", headers=seeded.tea.headers).json()
    assert seen["in_force_version"] is None
    assert seen["versions"][0]["review"] == {
        "decision": "rejected",
        "reason": "commission above the alliance cap",
        "reviewed_at": seen["versions"][0]["review"]["reviewed_at"],
    }
    benefit = httpx.post(
        f"{tab.live.base}/v1/benefits",
        json={
            "name": "Tea for two 双人茶",
            "value_kind": "fixed",
            "value": 500,
            "currency": "CNY",
            "valid_to": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            "budget_amount": 100_000,
            "budget_count": 100,
            "channels": ["store"],
            "distributors": [seeded.tea.id],
        },
        headers=seeded.cotton.headers,
    )
    assert benefit.status_code == 201, benefit.text
    coupons = httpx.post(
        f"{tab.live.base}/v1/benefits/{benefit.json()['id']}/coupons", json={"count": 1}, headers=seeded.tea.headers
    )
    assert coupons.status_code == 409, coupons.text
    assert coupons.json()["type"] == "urn:bax:problem:no-contract-in-force"
    assert not _real_problems(tab), tab.problems


def test_an_auditor_cannot_review(tab: Tab, seeded: Seeded) -> None:
    page = tab.page
    tab.sign_in(*AUDITOR)
    contract_id = seeded.approved["contract_id"]
    tab.goto(f"/console/contracts/{contract_id}")
    expect(page.get_by_role("heading", name="Version 2")).to_be_visible()
    for label in ("Approve", "Reject"):
        expect(page.get_by_role("button", name=label)).to_have_count(0)
    tab.shot("55-contract-detail-auditor")
    token = page.locator('input[name="_csrf_token"]').first.input_value()
    for action in ("approve", "reject"):
        response = page.request.post(
            f"{tab.live.base}/console/contracts/{contract_id}/versions/2/{action}",
            form={"_csrf_token": token, "reason": "auditor was here"},
            max_redirects=0,
        )
        assert response.status == 403, action
    seen = httpx.get(f"{tab.live.base}/v1/contracts/{contract_id}", headers=seeded.cotton.headers).json()
    assert seen["versions"][1]["review"] is None


def test_contracts_in_chinese(tab: Tab, seeded: Seeded) -> None:
    page = tab.page
    tab.sign_in(*ADMIN)
    page.get_by_role("button", name="中文").click()
    page.get_by_role("link", name="合约", exact=True).click()
    expect(page.get_by_role("heading", name="合约", exact=True)).to_be_visible()
    expect(page.get_by_text("已驳回").first).to_be_visible()
    tab.shot("56-contracts-zh")
    tab.goto(f"/console/contracts/{seeded.approved['contract_id']}")
    expect(page.get_by_role("heading", name="相对第 1 版的变更")).to_be_visible()
    tab.shot("57-contract-detail-zh")
    page.get_by_role("button", name="English").click()
