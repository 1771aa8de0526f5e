"""The console in a real browser: every page, onboarding, keys over HTMX, suspension, the auditor's
read-only view, CSRF, login throttling and the language switch. Each page is screenshotted.

The tests share one server per backend and run in file order: the first onboards the brand the later
ones look at, and throttling (which locks the auditor out for 15 minutes) comes last."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN, AUDITOR, Tab


def _real_problems(tab: Tab) -> list[str]:
    # A 4xx the test provokes on purpose is logged as a failed resource; anything else is a defect
    # (a script or style the content security policy refused, a JavaScript error).
    return [p for p in tab.problems if "Failed to load resource" not in p]


def test_onboard_a_brand_manage_its_keys_and_suspend_it(tab: Tab) -> None:
    page = tab.page
    tab.goto("/console/login")
    tab.shot("01-login")
    tab.sign_in(*ADMIN)
    tab.shot("02-dashboard-empty")
    expect(page.get_by_text("The alliance has no members yet")).to_be_visible()

    page.get_by_role("link", name="Brands", exact=True).click()
    expect(page.get_by_text("No brands yet")).to_be_visible()
    tab.shot("03-brands-empty")
    page.get_by_label("Brand name").fill("Cotton Home 棉家")
    page.get_by_label("Category").fill("home")
    page.get_by_role("button", name="Onboard", exact=True).click()
    expect(page.get_by_role("heading", name="Brand onboarded")).to_be_visible()
    secret = page.get_by_test_id("new-secret").input_value()
    assert secret.startswith("bax_")
    tab.shot("04-brand-onboarded-key-shown-once")
    me = httpx.get(f"{tab.live.base}/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.json()["brand"]["name"] == "Cotton Home 棉家"

    page.get_by_role("link", name="Open Cotton Home 棉家").click()
    expect(page.get_by_role("heading", name=re.compile("Cotton Home 棉家"))).to_be_visible()
    assert secret not in page.content()  # shown once, never again
    detail_url = page.url

    # Issue a key: HTMX swaps the keys panel in place, with the new secret.
    page.get_by_label("Label").fill("pos terminal")
    page.get_by_role("button", name="Issue a key").click()
    new_secret = page.get_by_test_id("new-secret")
    expect(new_secret).to_be_visible()
    assert page.url == detail_url
    second = new_secret.input_value()
    assert second.startswith("bax_") and second != secret
    expect(page.locator("#keys tbody tr")).to_have_count(2)
    tab.shot("05-brand-detail-new-key")

    # Revoke it (after the confirmation dialog).
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#keys tbody tr", has_text="pos terminal").get_by_role("button", name="Revoke").click()
    expect(page.locator("#keys tbody tr", has_text="pos terminal").get_by_text("revoked")).to_be_visible()
    assert httpx.get(f"{tab.live.base}/v1/me", headers={"Authorization": f"Bearer {second}"}).status_code == 401

    page.get_by_label("Reason (kept in the audit log)").fill("unpaid invoices")
    page.get_by_role("button", name="Suspend").click()
    expect(page.get_by_text("The brand is suspended.")).to_be_visible()
    expect(page.get_by_role("button", name="Reactivate")).to_be_visible()
    tab.shot("06-brand-detail-suspended")
    assert httpx.get(f"{tab.live.base}/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 403
    assert not _real_problems(tab), tab.problems


def test_walk_every_page(tab: Tab) -> None:
    page = tab.page
    tab.sign_in(*ADMIN)
    for name, category in (("Fresh Fruit 鲜果", "fruit"), ("Lingo School 语言学校", "education")):
        tab.goto("/console/brands")
        page.get_by_label("Brand name").fill(name)
        page.get_by_label("Category").fill(category)
        page.get_by_role("button", name="Onboard", exact=True).click()
        expect(page.get_by_role("heading", name="Brand onboarded")).to_be_visible()

    tab.goto("/console/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("svg.chart__svg")).to_have_count(2)
    tab.shot("10-dashboard")
    tab.goto("/console/brands")
    expect(page.locator("table.data tbody tr")).to_have_count(3)
    tab.shot("11-brands")
    page.get_by_role("link", name="Fresh Fruit 鲜果").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    tab.shot("12-brand-detail")
    tab.goto("/console/audit")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    tab.shot("13-audit-log")
    page.get_by_label("Action").fill("brand.create")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("table.data tbody tr")).to_have_count(3)
    tab.shot("14-audit-log-filtered")
    tab.goto("/console/users")
    expect(page.get_by_role("cell", name="li.wei")).to_be_visible()
    tab.shot("15-users")
    tab.goto("/console/brands/brd_missing")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    tab.shot("16-not-found")

    # Narrow screens: the layout folds, nothing needs sideways scrolling but the tables themselves.
    page.set_viewport_size({"width": 390, "height": 844})
    tab.goto("/console/brands")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    page.set_viewport_size({"width": 1366, "height": 768})
    assert not _real_problems(tab), tab.problems


def test_language_switch_shows_chinese(tab: Tab) -> None:
    page = tab.page
    tab.sign_in(*ADMIN)
    page.get_by_role("button", name="中文").click()
    expect(page.get_by_role("heading", name="概览")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    tab.shot("20-dashboard-zh")
    page.get_by_role("link", name="品牌", exact=True).click()
    expect(page.get_by_role("heading", name="品牌", exact=True)).to_be_visible()
    tab.shot("21-brands-zh")
    tab.goto("/console/audit")
    tab.shot("22-audit-zh")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()


def test_an_auditor_cannot_change_anything(tab: Tab) -> None:
    page = tab.page
    tab.sign_in(*AUDITOR)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    tab.goto("/console/brands")
    expect(page.get_by_role("button", name="Onboard")).to_have_count(0)
    tab.shot("30-brands-auditor")
    page.get_by_role("link", name="Fresh Fruit 鲜果").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    for label in ("Suspend", "Reactivate", "Rotate", "Revoke", "Issue a key"):
        expect(page.get_by_role("button", name=label)).to_have_count(0)
    tab.shot("31-brand-detail-auditor")
    brand_path = page.url.removeprefix(tab.live.base)

    # Sending the form by hand, with a valid CSRF token, is refused too.
    token = page.locator('input[name="_csrf_token"]').first.input_value()
    for path, form in (
        (f"{brand_path}/suspend", {"reason": "auditor was here"}),
        ("/console/brands", {"name": "Auditor's Brand"}),
        (f"{brand_path}/keys", {"label": "x"}),
    ):
        response = page.request.post(tab.live.base + path, form={"_csrf_token": token, **form}, max_redirects=0)
        assert response.status == 403, path
    tab.goto("/console/users")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    tab.shot("32-users-forbidden-for-auditor")
    tab.goto(brand_path)
    expect(page.locator("h1 .badge")).to_have_text("active")
    expect(page.locator("#keys tbody tr")).to_have_count(1)
    assert not _real_problems(tab), tab.problems


def test_a_post_without_csrf_token_is_refused(tab: Tab) -> None:
    page = tab.page
    tab.sign_in(*ADMIN)
    response = page.request.post(tab.live.base + "/console/brands", form={"name": "Forged 伪造"}, max_redirects=0)
    assert response.status == 403
    assert "did not come from the console" in response.text()
    tab.goto("/console/brands?q=Forged")
    expect(page.get_by_text("No brand matches these filters")).to_be_visible()


def test_login_throttling(tab: Tab) -> None:
    page = tab.page
    tab.goto("/console/login")
    for _ in range(5):
        page.get_by_label("Username").fill("li.wei")
        page.get_by_label("Password").fill("a wrong guess")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("The username or password is not right.")
    page.get_by_label("Password").fill(AUDITOR[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Too many failed attempts")
    tab.shot("40-login-throttled")
    assert "/console/login" in page.url
