"""CSRF: every console form needs the token (as a field, or as the header HTMX sends); the bearer-key
APIs are not affected."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.db.models import Brand
from tests.alliance.console.console_helpers import ConsoleUser, csrf_token, sign_in


async def test_a_form_without_the_token_is_refused(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, session: AsyncSession
) -> None:
    await sign_in(web, admin)
    response = await web.post("/console/brands", data={"name": "Forged 伪造"})
    assert response.status_code == 403
    assert "text/html" in response.headers["content-type"]
    assert "did not come from the console" in response.text
    assert (await session.scalars(select(Brand))).all() == []


async def test_a_token_from_elsewhere_is_refused(web: AsyncTestClient[Litestar], admin: ConsoleUser) -> None:
    await sign_in(web, admin)
    forged = "0" * 64 + "1" * 64
    response = await web.post("/console/brands", data={"_csrf_token": forged, "name": "Forged"})
    assert response.status_code == 403
    login_without_cookie = await web.post(
        "/console/login",
        data={"_csrf_token": forged, "username": admin.username, "password": admin.password},
        cookies={"bax_csrf": ""},
    )
    assert login_without_cookie.status_code == 403


async def test_htmx_requests_send_the_token_in_a_header(web: AsyncTestClient[Litestar], admin: ConsoleUser) -> None:
    token = await sign_in(web, admin)
    page = await web.get("/console/")
    assert f'hx-headers=\'{{"x-csrftoken": "{token}"}}\'' in page.text
    created = await web.post("/console/brands", data={"_csrf_token": token, "name": "Tea House 茶馆"})
    brand_id = created.text.split("/console/brands/")[1].split('"')[0]
    response = await web.post(
        f"/console/brands/{brand_id}/keys",
        data={"label": "pos"},
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section class="panel" id="keys"')  # the fragment only
    without = await web.post(f"/console/brands/{brand_id}/keys", data={"label": "x"}, headers={"HX-Request": "true"})
    assert without.status_code == 403


async def test_the_bearer_key_apis_need_no_csrf_token(
    web: AsyncTestClient[Litestar], admin_headers: dict[str, str], admin: ConsoleUser
) -> None:
    await sign_in(web, admin)  # even with console cookies present
    response = await web.post("/admin/v1/brands", json={"name": "Api Brand"}, headers=admin_headers)
    assert response.status_code == 201
    secret = response.json()["api_key"]["secret"]
    issued = await web.post("/v1/api-keys", json={"label": "x"}, headers={"Authorization": f"Bearer {secret}"})
    assert issued.status_code == 201


async def test_login_form_embeds_the_token_the_cookie_signs(web: AsyncTestClient[Litestar]) -> None:
    page = await web.get("/console/login")
    assert page.cookies.get("bax_csrf") == csrf_token(page.text)
    assert "HttpOnly" in page.headers["set-cookie"]
