"""Who is using the console, and what protects it: the session guard, the admin-only guard, CSRF
(Litestar's double-submit cookie, signed with the console secret) and the security headers.

Only ``/console`` uses cookies, so only ``/console`` gets CSRF checks: the partner API, the operator API
and the operational endpoints authenticate with bearer keys, which a browser never sends on its own.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, TypeAlias
from urllib.parse import quote

from litestar import MediaType, Request, Response
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from alliance.console import service
from alliance.console.service import ConsoleIdentity
from alliance.core.audit import AuditContext, provide_audit
from alliance.core.database import session_factory
from alliance.core.problems import Problem
from alliance.core.settings import Settings

__all__ = [
    "CONSOLE_PATH",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "PUBLIC",
    "SESSION_COOKIE",
    "SETTINGS_OPT",
    "ConsoleCSRFMiddleware",
    "ConsoleHeadersMiddleware",
    "NotSignedIn",
    "User",
    "admin_only",
    "client_address",
    "console_guard",
    "console_settings",
    "is_secure",
    "provide_console_audit",
    "provide_user",
    "redirect_to_login",
    "session_cookie",
]

CONSOLE_PATH = "/console"
SESSION_COOKIE = "bax_console"
CSRF_COOKIE = "bax_csrf"
CSRF_HEADER = "x-csrftoken"
PUBLIC = "console_public"  # handler opt: reachable without a session (login page, static assets)
SETTINGS_OPT = "console_settings"

User: TypeAlias = NamedDependency[ConsoleIdentity]
"""``user``: the signed-in console user of a ``/console`` page."""

# Scripts and styles come only from /console/static (no inline code), so an injected tag cannot run.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


class NotSignedIn(Exception):
    """Raised by the guard; the console answers with a redirect to the login page."""


def is_secure(connection: Scope | ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether the browser reached us over TLS (directly, or through a proxy that says so). Cookies
    get the ``Secure`` attribute then; trusting the header here can only make cookies stricter."""
    scope = connection.scope if isinstance(connection, ASGIConnection) else connection
    if scope.get("scheme") == "https":
        return True
    return any(
        name == b"x-forwarded-proto" and value.strip().lower() == b"https" for name, value in scope.get("headers", [])
    )


def console_settings(connection: ASGIConnection[Any, Any, Any, Any]) -> Settings:
    """The settings the console router was built with (carried in the handlers' ``opt``)."""
    settings: Settings = connection.route_handler.opt[SETTINGS_OPT]
    return settings


def client_address(request: Request[Any, Any, Any]) -> str:
    """The peer address the throttle counts against (the proxy's view is not trusted for that)."""
    return request.client.host if request.client else "unknown"


def session_cookie(request: Request[Any, Any, Any], settings: Settings, token: str | None) -> Cookie:
    """The session cookie: HttpOnly, SameSite=Lax, limited to /console, Secure behind TLS; ``None``
    clears it."""
    return Cookie(
        key=SESSION_COOKIE,
        value=token or "",
        path=CONSOLE_PATH,
        httponly=True,
        samesite="lax",
        secure=is_secure(request),
        max_age=settings.console_session_max_hours * 3600 if token else 0,
    )


async def console_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Every console page needs a live session, except the ones marked public."""
    if handler.opt.get(PUBLIC):
        return
    settings = console_settings(connection)
    token = connection.cookies.get(SESSION_COOKIE)
    if not token:
        raise NotSignedIn()
    async with session_factory(connection.app.state)() as db:
        identity = await service.resolve_session(db, settings, token)
    if identity is None:
        raise NotSignedIn()
    connection.state.console_user = identity


async def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Changes need the admin role; auditors get 403 even when they send the form by hand."""
    identity: ConsoleIdentity | None = getattr(connection.state, "console_user", None)
    if identity is None or not identity.is_admin:
        raise Problem(403, "forbidden", "auditors have read-only access")


def provide_user(request: Request[Any, Any, Any]) -> ConsoleIdentity:
    identity: ConsoleIdentity = request.state.console_user
    return identity


def provide_console_audit(request: Request[Any, Any, Any]) -> AuditContext:
    """Audit rows written from the console name the user: ``console:<username>``."""
    base = provide_audit(request)
    identity: ConsoleIdentity | None = getattr(request.state, "console_user", None)
    return dataclasses.replace(base, actor=identity.actor if identity else "console:anonymous")


class ConsoleCSRFMiddleware:
    """Litestar's CSRF middleware, configured on first use with the console secret (which may live in
    the database, so it is not known when the app is built) and with ``Secure`` cookies behind TLS.

    Forms carry the token in a hidden ``_csrf_token`` field; HTMX sends it in the ``X-CSRFToken``
    header (``hx-headers`` on ``<body>``).
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._by_security: dict[bool, CSRFMiddleware] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        secure = is_secure(scope)
        inner = self._by_security.get(secure)
        if inner is None:
            state = scope["litestar_app"].state
            secret = getattr(state, "console_csrf_secret", None)
            if secret is None:
                secret = await service.console_secret(session_factory(state), self.settings)
                state.console_csrf_secret = secret
            config = CSRFConfig(
                secret=secret,
                cookie_name=CSRF_COOKIE,
                cookie_path=CONSOLE_PATH,
                header_name=CSRF_HEADER,
                cookie_secure=secure,
                cookie_httponly=True,
                cookie_samesite="lax",
            )
            inner = self._by_security[secure] = CSRFMiddleware(self.app, config)
        await inner(scope, receive, send)


class ConsoleHeadersMiddleware:
    """Security headers on every console response, ``no-store`` on pages (they show keys once and
    business data), and ``Server-Timing: app;dur=<ms>`` so page cost is measurable from outside."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        static = scope.get("path", "").startswith(CONSOLE_PATH + "/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "same-origin"
                headers["Content-Security-Policy"] = _CSP
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def redirect_to_login(request: Request[Any, Any, Any]) -> Response[bytes]:
    """303 to the login page, remembering where the user was going; HTMX requests get ``HX-Redirect``
    (a plain redirect would be swapped into the page)."""
    target = f"{CONSOLE_PATH}/login"
    path = request.url.path
    if request.method == "GET" and path.startswith(CONSOLE_PATH) and path not in (target, CONSOLE_PATH + "/logout"):
        query = f"?{request.url.query}" if request.url.query else ""
        target += "?next=" + quote(path + query, safe="")
    if request.headers.get("hx-request"):
        return Response(b"", status_code=200, headers={"HX-Redirect": target}, media_type=MediaType.TEXT)
    return Response(b"", status_code=303, headers={"Location": target}, media_type=MediaType.TEXT)
