"""The ``/console`` router: page groups, static assets, the session guard, CSRF and the console's own
error pages (HTML, where the APIs answer problem+json).

A domain adds its pages by appending its controller to :data:`CONSOLE_PAGES` and a nav entry to
``alliance.console.nav.NAV`` (see ``alliance/console/README.md``).
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, Response, Router
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException, ValidationException
from litestar.middleware import DefineMiddleware
from litestar.static_files import create_static_files_router
from litestar.types import ExceptionHandlersMap

from alliance.console.auth import (
    CONSOLE_PATH,
    PUBLIC,
    SETTINGS_OPT,
    ConsoleCSRFMiddleware,
    ConsoleHeadersMiddleware,
    NotSignedIn,
    console_guard,
    provide_console_audit,
    provide_user,
    redirect_to_login,
)
from alliance.console.pages.audit import AuditPages
from alliance.console.pages.benefits import BenefitPages, RedemptionPages
from alliance.console.pages.brands import BrandPages
from alliance.console.pages.contracts import ContractPages
from alliance.console.pages.dashboard import DashboardPages
from alliance.console.pages.ledger import LedgerPages
from alliance.console.pages.matches import MatchPages
from alliance.console.pages.session import SessionPages
from alliance.console.pages.settlements import SettlementPages
from alliance.console.pages.users import UserPages
from alliance.console.rendering import STATIC_DIR, render, translator
from alliance.core.problems import Problem
from alliance.core.settings import Settings

__all__ = ["CONSOLE_PAGES", "console_router"]

log = logging.getLogger("alliance.console")

# One controller per page group. Append yours here (and a NavEntry in alliance/console/nav.py).
CONSOLE_PAGES: list[type[Controller]] = [
    SessionPages,
    DashboardPages,
    BrandPages,
    AuditPages,
    UserPages,
    BenefitPages,
    RedemptionPages,
    LedgerPages,
    SettlementPages,
    ContractPages,
    MatchPages,
]


def _error_page(
    request: Request[Any, Any, Any], status: int, message_key: str, detail: str | None = None
) -> Response[str]:
    t = translator(request)
    title = t(f"error.{status}") if t.has(f"error.{status}") else t("error.generic")
    return render(request, "error.html", status_code=status, title=title, message=detail or t(message_key))


def _on_not_signed_in(request: Request[Any, Any, Any], _: NotSignedIn) -> Response[bytes]:
    return redirect_to_login(request)


def _on_problem(request: Request[Any, Any, Any], exc: Problem) -> Response[str]:
    if exc.status >= 500:
        log.error("console: %s on %s %s", exc.slug, request.method, request.url.path)
    key = {403: "error.forbidden", 404: "error.not_found"}.get(exc.status)
    return _error_page(request, exc.status, key or "error.generic_body", None if key else exc.detail)


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, NotAuthorizedException):
        return redirect_to_login(request)
    if isinstance(exc, PermissionDeniedException) and "CSRF" in (exc.detail or ""):
        return _error_page(request, 403, "error.csrf")
    status = exc.status_code
    key = {403: "error.forbidden", 404: "error.not_found", 400: "error.bad_request"}.get(status, "error.generic_body")
    return _error_page(request, status, key)


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    log.exception("console: unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_page(request, 500, "error.unexpected")


CONSOLE_EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    NotSignedIn: _on_not_signed_in,
    Problem: _on_problem,
    HTTPException: _on_http,
    ValidationException: _on_http,  # more specific than HTTPException in the app's own map: override it too
    Exception: _on_unexpected,
}


def console_router(settings: Settings) -> Router:
    """The console, mounted at ``/console`` by the app factory."""
    static = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        name="console-static",
        opt={PUBLIC: True},
        cache_control=CacheControlHeader(max_age=86400),
        include_in_schema=False,
    )
    return Router(
        path=CONSOLE_PATH,
        route_handlers=[*CONSOLE_PAGES, static],
        guards=[console_guard],
        # Listed outermost first: headers and timing wrap everything, CSRF is checked before any handler.
        middleware=[ConsoleHeadersMiddleware, DefineMiddleware(ConsoleCSRFMiddleware, settings=settings)],
        dependencies={
            "audit": Provide(provide_console_audit, sync_to_thread=False),
            "user": Provide(provide_user, sync_to_thread=False),
        },
        exception_handlers=CONSOLE_EXCEPTION_HANDLERS,
        opt={SETTINGS_OPT: settings},
        include_in_schema=False,
    )
