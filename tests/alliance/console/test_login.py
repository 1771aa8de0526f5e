"""Signing in and out: cookie attributes, wrong passwords, throttling, session expiry, redirects."""

from __future__ import annotations

from datetime import timedelta

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.db.models import AuditEntry, ConsoleSession
from tests.alliance.console.console_helpers import ConsoleUser, csrf_token, sign_in


async def _post_login(
    web: AsyncTestClient[Litestar], username: str, password: str, next_path: str = "/console/"
) -> object:
    token = csrf_token((await web.get("/console/login")).text)
    return await web.post(
        "/console/login",
        data={"_csrf_token": token, "username": username, "password": password, "next": next_path},
    )


async def test_pages_need_a_session_and_remember_where_you_were_going(web: AsyncTestClient[Litestar]) -> None:
    response = await web.get("/console/brands?status=active")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2Fbrands%3Fstatus%3Dactive"
    htmx = await web.get("/console/audit", headers={"HX-Request": "true"})
    assert htmx.headers["hx-redirect"].startswith("/console/login")
    login = await web.get("/console/login")
    assert login.status_code == 200
    assert 'autocomplete="current-password"' in login.text


async def test_sign_in_sets_a_strict_session_cookie_and_lands_on_next(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await _post_login(web, "ADA", admin.password, "/console/audit")  # usernames ignore case
    assert response.status_code == 303
    assert response.headers["location"] == "/console/audit"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("bax_console=")
    for attribute in ("HttpOnly", "Path=/console", "SameSite=lax", "Max-Age=43200"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    page = await web.get("/console/audit")
    assert page.status_code == 200
    assert "console.login" in page.text
    token = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    async with sessions() as db:
        stored = (await db.scalars(select(ConsoleSession))).all()
        actors = (await db.scalars(select(AuditEntry.actor).where(AuditEntry.action == "console.login"))).all()
    assert [s.id for s in stored] != [token], "the session id is stored hashed"
    assert len(stored) == 1
    assert actors == ["console:ada"]


async def test_cookies_are_secure_behind_tls(web: AsyncTestClient[Litestar], admin: ConsoleUser) -> None:
    page = await web.get("/console/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in page.headers["set-cookie"]  # the CSRF cookie
    response = await web.post(
        "/console/login",
        data={"_csrf_token": csrf_token(page.text), "username": admin.username, "password": admin.password},
        # A real browser returns the Secure cookie over https; the test client talks plain http.
        headers={"X-Forwarded-Proto": "https", "Cookie": f"bax_csrf={csrf_token(page.text)}"},
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


async def test_wrong_password_and_unknown_user_get_the_same_answer(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, sessions: async_sessionmaker[AsyncSession]
) -> None:
    wrong = await _post_login(web, admin.username, "not the password")
    unknown = await _post_login(web, "nobody", "my secret password")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "The username or password is not right." in response.text
        assert "bax_console" not in response.headers.get("set-cookie", "")
    async with sessions() as db:
        failed = (await db.scalars(select(AuditEntry).where(AuditEntry.action == "console.login_failed"))).all()
    assert len(failed) == 2
    assert "nobody" not in str([f.details for f in failed])  # an unknown "username" may be a password


async def test_login_is_throttled_per_username_and_address(web: AsyncTestClient[Litestar], admin: ConsoleUser) -> None:
    for _ in range(5):
        assert (await _post_login(web, admin.username, "wrong password")).status_code == 401
    throttled = await _post_login(web, admin.username, admin.password)  # even the right password
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["retry-after"]) <= 15 * 60
    assert "Too many failed attempts" in throttled.text
    # Another username from the same address is not affected.
    assert (await _post_login(web, "someone.else", "wrong password")).status_code == 401


async def test_a_success_clears_earlier_failures(web: AsyncTestClient[Litestar], admin: ConsoleUser) -> None:
    for _ in range(4):
        await _post_login(web, admin.username, "wrong password")
    assert (await _post_login(web, admin.username, admin.password)).status_code == 303
    for _ in range(5):
        assert (await _post_login(web, admin.username, "wrong password")).status_code == 401


async def test_logout_ends_the_session_for_good(web: AsyncTestClient[Litestar], admin: ConsoleUser) -> None:
    token = await sign_in(web, admin)
    cookie = web.cookies.get("bax_console")
    response = await web.post("/console/logout", data={"_csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login"
    assert 'bax_console=""' in response.headers["set-cookie"] or "Max-Age=0" in response.headers["set-cookie"]
    web.cookies.set("bax_console", cookie or "", path="/console")  # a copy of the old cookie ...
    assert (await web.get("/console/")).status_code == 303  # ... no longer opens anything


async def test_idle_sessions_expire(
    web: AsyncTestClient[Litestar], admin: ConsoleUser, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await sign_in(web, admin)
    assert (await web.get("/console/")).status_code == 200
    async with sessions() as db, db.begin():
        row = await db.scalar(select(ConsoleSession))
        assert row is not None
        await db.execute(update(ConsoleSession).values(last_seen_at=row.last_seen_at - timedelta(minutes=61)))
    assert (await web.get("/console/")).status_code == 303
    async with sessions() as db:
        assert (await db.scalars(select(ConsoleSession))).all() == []


async def test_next_never_leaves_the_console(web: AsyncTestClient[Litestar], admin: ConsoleUser) -> None:
    for target in ("https://evil.example/", "//evil.example/console/", "/console\\@evil", "/v1/me"):
        response = await _post_login(web, admin.username, admin.password, target)
        assert response.headers["location"] == "/console/", target
