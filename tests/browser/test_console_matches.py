"""Matching in a real browser: match jobs, segments and the audience-overlap heat map, seeded with real
matches (brands by the CLI, contracts, blinded segments and both agents' re-blinds over the partner API).
A released count shows as a number, a count below the terms' minimum k as suppressed (not zero), a pair
never matched as such; no identifier or blinded point appears. Screenshots at 1366x768."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
from playwright.sync_api import expect

from privacy.blind import hash_and_blind_batch
from tests.browser.conftest import ADMIN, AUDITOR, LiveConsole, Tab
from tests.browser.seed_alliance import ALLIANCE_ID, Agent, add_brand, phones, propose, publish, run_match, sign


@dataclass
class Seeded:
    cotton: Agent
    fruit: Agent
    lingo: Agent
    sample_points: list[bytes]


@pytest.fixture(scope="module")
def seeded(live: LiveConsole) -> Seeded:
    """Cotton-Fruit: 200 in common (k=10, released). Cotton-Lingo: 50 in common, k=100 (suppressed).
    Fruit-Lingo: never matched. Segments of 1,000+ members (the exchange's default minimum)."""
    cotton = add_brand(live, "Cotton Home 棉家", "home")
    fruit = add_brand(live, "Fresh Fruit 鲜果", "fruit")
    lingo = add_brand(live, "Lingo School 语言学校", "education")
    sign(live, propose(live, cotton, fruit, {"segment_tags": ["psi"], "min_k": 10}), 1, cotton, fruit)
    sign(live, propose(live, cotton, lingo, {"segment_tags": ["psi"], "min_k": 100}), 1, cotton, lingo)
    seg_cotton = publish(live, cotton, phones(0, 1200), "VIP members 会员")
    seg_fruit = publish(live, fruit, phones(1000, 1100), "Fruit lovers 果粉")
    seg_lingo = publish(live, lingo, phones(1150, 1000), "Parents 家长")
    released = run_match(live, cotton, fruit, seg_cotton, seg_fruit)
    assert (released["count"], released["suppressed"]) == (200, False)
    suppressed = run_match(live, lingo, cotton, seg_lingo, seg_cotton)
    assert (suppressed["count"], suppressed["suppressed"]) == (None, True)
    sample = hash_and_blind_batch(ALLIANCE_ID, cotton.scalar, phones(0, 2))
    return Seeded(cotton, fruit, lingo, [sample[:32], sample[32:]])


def _assert_nothing_secret(html: str, seeded: Seeded) -> None:
    for point in seeded.sample_points:
        assert point.hex() not in html
        assert base64.b64encode(point).decode() not in html
    assert "+86139" not in html


def test_walk_match_jobs_segments_and_the_overlap_matrix(tab: Tab, seeded: Seeded) -> None:
    page = tab.page
    tab.sign_in(*ADMIN)
    page.get_by_role("link", name="Matching", exact=True).click()
    expect(page.get_by_role("heading", name="Match jobs")).to_be_visible()
    rows = page.locator("#match-jobs tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="Fresh Fruit 鲜果")).to_contain_text("200")
    expect(rows.filter(has_text="Lingo School 语言学校")).to_contain_text("suppressed (below k=100)")
    expect(rows.filter(has_text="Fresh Fruit 鲜果")).to_contain_text("1,200 / 1,100")
    tab.shot("60-match-jobs")
    _assert_nothing_secret(page.content(), seeded)

    page.get_by_role("link", name="Segments").click()
    segments = page.locator("#segments tbody tr")
    expect(segments).to_have_count(3)
    expect(segments.filter(has_text="VIP members 会员")).to_contain_text("1,200")
    expect(segments.filter(has_text="VIP members 会员")).to_contain_text("published")
    tab.shot("61-segments")
    _assert_nothing_secret(page.content(), seeded)

    page.get_by_role("link", name="Overlap matrix").click()
    expect(page.get_by_role("heading", name="Audience overlap")).to_be_visible()
    matrix = page.locator("#overlap-matrix")
    expect(matrix.locator("td[data-kind=count]")).to_have_count(2)
    expect(matrix.locator("td[data-kind=count]").first).to_have_text("200")
    expect(matrix.locator("td[data-kind=suppressed]")).to_have_count(2)
    expect(matrix.locator("td[data-kind=suppressed]").first).to_have_text("< k")
    expect(matrix.locator("td[data-kind=never]")).to_have_count(2)
    cotton_row = matrix.locator("tbody tr", has=page.get_by_role("rowheader", name="Cotton Home 棉家"))
    expect(cotton_row.locator("td[data-kind=suppressed]")).to_have_count(1)
    tab.shot("62-overlap-matrix")
    _assert_nothing_secret(page.content(), seeded)
    assert not [p for p in tab.problems if "Failed to load resource" not in p], tab.problems


def test_an_auditor_reads_the_matching_pages_in_chinese(tab: Tab, seeded: Seeded) -> None:
    page = tab.page
    tab.sign_in(*AUDITOR)
    page.get_by_role("button", name="中文").click()
    page.get_by_role("link", name="人群匹配", exact=True).click()
    expect(page.get_by_role("heading", name="匹配任务")).to_be_visible()
    expect(page.locator("#match-jobs tbody tr")).to_have_count(2)
    tab.goto("/console/matches/overlap")
    expect(page.get_by_role("heading", name="人群重合")).to_be_visible()
    expect(page.locator("#overlap-matrix td[data-kind=count]")).to_have_count(2)
    tab.shot("63-overlap-matrix-zh-auditor")
    page.get_by_role("button", name="English").click()
    assert not [p for p in tab.problems if "Failed to load resource" not in p], tab.problems
