"""The audit-log page (filters, keyset pages) and the users page (admins only)."""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.brands import service as brands
from tests.alliance.console.console_helpers import ConsoleUser, sign_in
from tests.helpers import TEST_AUDIT, BrandHandle

_ROW_ACTION = re.compile(r"<td><code>([a-z_.]+)</code></td>")


async def _issue_keys(sessions: async_sessionmaker[AsyncSession], brand_id: str, count: int) -> None:
    async with sessions() as db, db.begin():
        for i in range(count):
            await brands.issue_key(db, TEST_AUDIT, brand_id, f"k{i}")


async def test_audit_log_pages_backwards_without_gaps_or_repeats(
    web: AsyncTestClient[Litestar],
    admin: ConsoleUser,
    brand_a: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _issue_keys(sessions, brand_a.id, 60)
    await sign_in(web, admin)
    seen: list[str] = []
    url: str | None = "/console/audit?action=api_key.create"
    pages = 0
    while url:
        html = (await web.get(url)).text
        actions = _ROW_ACTION.findall(html)
        assert set(actions) == {"api_key.create"}
        seen += re.findall(r'<td class="wrap-anywhere">(key_[a-z0-9]+)</td>', html)
        match = re.search(r'href="(/console/audit\?[^"]+)" rel="next"', html)
        url = match.group(1).replace("&amp;", "&") if match else None
        pages += 1
    assert pages == 2
    assert len(seen) == len(set(seen)) == 61  # 60 issued + the initial key


async def test_audit_log_filters_by_brand(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    await sign_in(web, admin)
    html = (await web.get(f"/console/audit?brand={brand_b.id}")).text
    assert brand_b.name in html
    assert f"/console/brands/{brand_a.id}" not in html
    empty = (await web.get("/console/audit?action=nothing.like.this")).text
    assert "No entries match these filters" in empty


async def test_users_page_is_for_admins_only(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, auditor: ConsoleUser
) -> None:
    await sign_in(web, auditor)
    assert (await web.get("/console/users")).status_code == 403
    assert 'href="/console/users"' not in (await web.get("/console/")).text
    await sign_in(web, admin)
    page = await web.get("/console/users")
    assert page.status_code == 200
    assert "ada" in page.text and "li.wei" in page.text
    assert "auditor (read-only)" in page.text
