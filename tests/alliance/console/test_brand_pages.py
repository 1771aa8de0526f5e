"""Brand pages: onboarding shows the key once, key lifecycle, suspension, pagination - all through the
brand service and audited as the console user; auditors see and may do nothing of it."""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.db.models import ApiKey, AuditEntry, Brand
from tests.alliance.console.console_helpers import ConsoleUser, sign_in
from tests.helpers import BrandHandle, make_brand

_SECRET = re.compile(r'value="(bax_[A-Za-z0-9_\-]+)"')


async def test_onboarding_shows_the_key_once_and_the_key_works(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, sessions: async_sessionmaker[AsyncSession]
) -> None:
    token = await sign_in(web, admin)
    created = await web.post("/console/brands", data={"_csrf_token": token, "name": " Tea House 茶馆 ", "category": ""})
    assert created.status_code == 201
    [secret] = _SECRET.findall(created.text)
    assert "Copy the new API key now" in created.text
    me = await web.get("/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    brand = me.json()["brand"]
    assert (brand["name"], brand["category"]) == ("Tea House 茶馆", None)

    detail = await web.get(f"/console/brands/{brand['id']}")
    assert detail.status_code == 200
    assert secret not in detail.text
    assert secret[:12] in detail.text  # the prefix identifies the key
    listing = await web.get("/console/brands")
    assert "Tea House 茶馆" in listing.text
    async with sessions() as db:
        rows = (await db.scalars(select(AuditEntry).where(AuditEntry.brand_id == brand["id"]))).all()
    assert {r.action for r in rows} == {"brand.create", "api_key.create"}
    assert {r.actor for r in rows} == {"console:ada"}
    assert all(r.request_id for r in rows)
    assert secret not in str([(r.details, r.target) for r in rows])


async def test_onboarding_explains_a_taken_or_missing_name(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, brand_a: BrandHandle, session: AsyncSession
) -> None:
    token = await sign_in(web, admin)
    taken = await web.post("/console/brands", data={"_csrf_token": token, "name": brand_a.name})
    assert taken.status_code == 409
    assert "is already a member" in taken.text
    blank = await web.post("/console/brands", data={"_csrf_token": token, "name": "   ", "category": "x"})
    assert blank.status_code == 422
    assert 'value="x"' in blank.text  # the form keeps what was typed
    assert len((await session.scalars(select(Brand))).all()) == 1


async def test_key_lifecycle_through_htmx(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, brand_a: BrandHandle
) -> None:
    token = await sign_in(web, admin)
    htmx = {"HX-Request": "true", "X-CSRFToken": token}
    issued = await web.post(f"/console/brands/{brand_a.id}/keys", data={"label": "pos"}, headers=htmx)
    [new_secret] = _SECRET.findall(issued.text)
    assert (await web.get("/v1/me", headers={"Authorization": f"Bearer {new_secret}"})).status_code == 200
    keys = (await web.get("/v1/api-keys", headers=brand_a.headers)).json()
    initial = next(k["id"] for k in keys if k["label"] == "initial")
    pos = next(k["id"] for k in keys if k["label"] == "pos")
    assert f"/keys/{pos}/revoke" in issued.text
    rotated = await web.post(f"/console/brands/{brand_a.id}/keys/{initial}/rotate", headers=htmx)
    [rotated_secret] = _SECRET.findall(rotated.text)
    assert (await web.get("/v1/me", headers=brand_a.headers)).status_code == 401  # the old key is gone
    assert (await web.get("/v1/me", headers={"Authorization": f"Bearer {rotated_secret}"})).status_code == 200

    revoked = await web.post(f"/console/brands/{brand_a.id}/keys/{pos}/revoke", headers=htmx)
    assert revoked.status_code == 200
    assert (await web.get("/v1/me", headers={"Authorization": f"Bearer {new_secret}"})).status_code == 401
    assert not _SECRET.findall(revoked.text)


async def test_the_last_active_key_cannot_be_revoked(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, brand_a: BrandHandle, session: AsyncSession
) -> None:
    token = await sign_in(web, admin)
    key_id = await session.scalar(select(ApiKey.id).where(ApiKey.brand_id == brand_a.id))
    # Without HTMX the whole page comes back, with the reason.
    response = await web.post(f"/console/brands/{brand_a.id}/keys/{key_id}/revoke", data={"_csrf_token": token})
    assert response.status_code == 200
    assert "only active key" in response.text
    assert "<html" in response.text
    assert (await web.get("/v1/me", headers=brand_a.headers)).status_code == 200


async def test_suspend_and_reactivate_with_a_reason(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, brand_a: BrandHandle, sessions: async_sessionmaker[AsyncSession]
) -> None:
    token = await sign_in(web, admin)
    response = await web.post(
        f"/console/brands/{brand_a.id}/suspend", data={"_csrf_token": token, "reason": "unpaid invoices"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/brands/{brand_a.id}?done=suspended"
    assert (await web.get("/v1/me", headers=brand_a.headers)).status_code == 403
    page = await web.get(response.headers["location"])
    assert "The brand is suspended." in page.text
    assert "Reactivate" in page.text
    await web.post(f"/console/brands/{brand_a.id}/reactivate", data={"_csrf_token": token})
    assert (await web.get("/v1/me", headers=brand_a.headers)).status_code == 200
    async with sessions() as db:
        suspend = await db.scalar(select(AuditEntry).where(AuditEntry.action == "brand.suspend"))
    assert suspend is not None
    assert (suspend.actor, suspend.details) == ("console:ada", {"reason": "unpaid invoices"})


async def test_an_unknown_brand_is_an_html_404(web: AsyncTestClient[Litestar], admin: ConsoleUser) -> None:
    await sign_in(web, admin)
    response = await web.get("/console/brands/brd_nope")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    bad_query = await web.get("/console/brands?page=zero")
    assert bad_query.status_code == 400
    assert "text/html" in bad_query.headers["content-type"]


async def test_brands_are_paginated_and_filtered(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, sessions: async_sessionmaker[AsyncSession]
) -> None:
    for i in range(30):
        await make_brand(sessions, f"Brand {i:02d}")
    await make_brand(sessions, "Fresh Fruit 鲜果")
    await sign_in(web, admin)
    first = await web.get("/console/brands")
    assert "Showing 1–25 of 31" in first.text
    assert "Brand 24" in first.text and "Brand 25" not in first.text
    second = await web.get("/console/brands?page=2")
    assert "Showing 26–31 of 31" in second.text
    assert "Brand 25" in second.text and "Fresh Fruit 鲜果" in second.text
    beyond = await web.get("/console/brands?page=9")
    assert "Showing 26–31 of 31" in beyond.text  # clamped to the last page
    found = await web.get("/console/brands", params={"q": "鲜果"})
    assert "Showing 1–1 of 1" in found.text
    nothing = await web.get("/console/brands", params={"q": "100%_"})
    assert "No brand matches these filters" in nothing.text


async def test_an_empty_alliance_says_what_to_do(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, auditor: ConsoleUser
) -> None:
    await sign_in(web, admin)
    assert "Onboard the first brand" in (await web.get("/console/brands")).text
    assert "Onboard the first brand" in (await web.get("/console/")).text


AUDITOR_POSTS = [
    ("/console/brands", {"name": "Sneaky"}),
    ("/console/brands/{brand}/suspend", {"reason": "x"}),
    ("/console/brands/{brand}/reactivate", {}),
    ("/console/brands/{brand}/keys", {"label": "x"}),
    ("/console/brands/{brand}/keys/{key}/rotate", {}),
    ("/console/brands/{brand}/keys/{key}/revoke", {}),
]


async def test_auditors_see_no_buttons_and_cannot_post(
    web: AsyncTestClient[Litestar], auditor: ConsoleUser, brand_a: BrandHandle, session: AsyncSession
) -> None:
    token = await sign_in(web, auditor)
    key_id = await session.scalar(select(ApiKey.id).where(ApiKey.brand_id == brand_a.id))
    for page in ("/console/brands", f"/console/brands/{brand_a.id}"):
        html = (await web.get(page)).text
        assert 'method="post" action="/console/brands' not in html
        assert "Onboard" not in html and "Suspend" not in html and "Revoke" not in html
    for path, data in AUDITOR_POSTS:
        response = await web.post(path.format(brand=brand_a.id, key=key_id), data={"_csrf_token": token, **data})
        assert response.status_code == 403, path
        assert "Auditors can look at everything but change nothing" in response.text
        htmx = await web.post(
            path.format(brand=brand_a.id, key=key_id), headers={"HX-Request": "true", "X-CSRFToken": token}
        )
        assert htmx.status_code == 403, path
    assert (await web.get("/v1/me", headers=brand_a.headers)).status_code == 200
    assert len((await session.scalars(select(Brand))).all()) == 1
    assert len((await session.scalars(select(ApiKey))).all()) == 1
