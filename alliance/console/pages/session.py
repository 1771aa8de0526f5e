"""Signing in and out, and the language switcher (reachable before signing in)."""

from __future__ import annotations

import math
from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromQuery

from alliance.console import service
from alliance.console.auth import (
    CONSOLE_PATH,
    PUBLIC,
    User,
    client_address,
    console_settings,
    is_secure,
    session_cookie,
)
from alliance.console.i18n import LANG_COOKIE, LOCALES
from alliance.console.rendering import form_fields, render, translator
from alliance.core.database import session_factory
from alliance.core.deps import Audit, Db

__all__ = ["SessionPages", "safe_next"]


def safe_next(target: str | None) -> str:
    """Where to go after login or a language switch: only a console path of this site (an open
    redirect would let a phishing link bounce through our login page)."""
    if (
        target
        and target.startswith(CONSOLE_PATH + "/")
        and not target.startswith("//")
        and "\\" not in target
        and len(target) <= 500
    ):
        return target
    return CONSOLE_PATH + "/"


def _see_other(location: str, cookies: list[Cookie] | None = None) -> Response[bytes]:
    return Response(b"", status_code=303, headers={"Location": location}, cookies=cookies, media_type=MediaType.TEXT)


class SessionPages(Controller):
    include_in_schema = False

    @get("/login", operation_id="consoleLoginForm", opt={PUBLIC: True})
    async def login_form(self, request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Response[str]:
        return render(request, "login.html", next=safe_next(next), username="", error=None)

    @post("/login", operation_id="consoleLogin", opt={PUBLIC: True})
    async def login(self, request: Request[Any, Any, Any], audit: Audit) -> Response[Any]:
        fields = await form_fields(request)
        username = fields.get("username", "")[:64]
        target = safe_next(fields.get("next"))
        t = translator(request)
        settings = console_settings(request)
        try:
            signed_in = await service.sign_in(
                session_factory(request.app.state),
                settings,
                audit,
                username,
                fields.get("password", ""),
                client_address(request),
            )
        except service.LoginThrottled as exc:
            minutes = math.ceil(exc.retry_after_seconds / 60)
            return render(
                request,
                "login.html",
                status_code=429,
                headers={"Retry-After": str(exc.retry_after_seconds)},
                next=target,
                username=username,
                error=t("auth.throttled", minutes=minutes),
            )
        except service.LoginRefused:
            return render(
                request, "login.html", status_code=401, next=target, username=username, error=t("auth.refused")
            )
        return _see_other(target, [session_cookie(request, settings, signed_in.token)])

    @post("/logout", operation_id="consoleLogout")
    async def logout(self, request: Request[Any, Any, Any], db: Db, audit: Audit, user: User) -> Response[bytes]:
        await service.end_session(db, audit, user)
        return _see_other(CONSOLE_PATH + "/login", [session_cookie(request, console_settings(request), None)])

    @post("/language", operation_id="consoleSetLanguage", opt={PUBLIC: True})
    async def language(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        fields = await form_fields(request)
        lang = fields.get("lang", "")
        cookies = []
        if lang in LOCALES:
            cookies.append(
                Cookie(
                    key=LANG_COOKIE,
                    value=lang,
                    path=CONSOLE_PATH,
                    max_age=365 * 86400,
                    samesite="lax",
                    httponly=True,
                    secure=is_secure(request),
                )
            )
        return _see_other(safe_next(fields.get("next")), cookies)
