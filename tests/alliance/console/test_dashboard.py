"""The dashboard: figures computed from the stores, a chart per series, security headers."""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.brands import service as brands
from alliance.console.charts import bar_chart
from tests.alliance.console.console_helpers import ConsoleUser, sign_in
from tests.helpers import TEST_AUDIT, BrandHandle


def _stat(html: str, label: str) -> str:
    match = re.search(
        rf'stat__label">{re.escape(label)}</span>\s*<span class="stat__value">(?:<a [^>]*>)?([^<]+)', html
    )
    assert match, label
    return match.group(1)


async def test_dashboard_counts_what_exists(
    web: AsyncTestClient[Litestar],
    admin: ConsoleUser,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as db, db.begin():
        await brands.suspend_brand(db, TEST_AUDIT, brand_b.id, "test")
        await brands.issue_key(db, TEST_AUDIT, brand_a.id, "second")
    await sign_in(web, admin)
    response = await web.get("/console/")
    html = response.text
    assert _stat(html, "Active brands") == "1"
    assert _stat(html, "Suspended brands") == "1"
    assert _stat(html, "Active API keys") == "3"
    # brand.create x2, api_key.create x3, brand.suspend, console_user.create, console.login
    assert _stat(html, "Audited changes, last 7 days") == "8"
    assert html.count('class="chart__bar"') == 30 + 12
    assert "audited changes per day, 8 in total" in html
    assert "Onboard the first brand" not in html
    # Page cost is visible from outside, and the page is locked down.
    assert re.fullmatch(r"app;dur=\d+\.\d", response.headers["server-timing"])
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"


async def test_static_assets_are_served_and_cacheable(web: AsyncTestClient[Litestar]) -> None:
    htmx = await web.get("/console/static/htmx.min.js")
    assert htmx.status_code == 200
    assert "max-age=86400" in htmx.headers["cache-control"]
    assert (await web.get("/console/static/htmx.LICENSE")).status_code == 200
    assert (await web.get("/console/static/console.css")).headers["content-type"].startswith("text/css")
    assert (await web.get("/console/static/../i18n.py")).status_code == 404


def test_bar_chart_scales_to_a_round_maximum() -> None:
    chart = bar_chart([0, 3, 7], ["a", "b", "c"], width=300, height=100, label_every=2)
    assert chart.max_value == 8
    heights = [bar.height for bar in chart.bars]
    assert heights[0] == 0 and heights[1] < heights[2] <= chart.plot_bottom - chart.plot_top
    assert [bar.label for bar in chart.tick_labels] == ["a", "c"]
    assert bar_chart([], [], width=100).max_value == 2
    assert bar_chart([11], ["x"]).max_value == 20
    assert bar_chart([61], ["x"]).max_value == 80
