"""Server-side rendering of console pages: one Jinja environment (autoescaped, strict about undefined
names), the request's language and time zone, the CSRF token and the navigation for the user's role."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import MediaType, Request, Response
from litestar.utils.empty import value_or_default
from litestar.utils.scope.state import ScopeState

from alliance.console.auth import CSRF_HEADER, console_settings
from alliance.console.i18n import LANG_COOKIE, LOCALES, Translator, negotiate_locale
from alliance.console.nav import visible_entries
from alliance.console.service import ConsoleIdentity
from privacy.disclosure import MembershipPolicy, parse_disclosure_policy

__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "disclosure_label", "form_fields", "is_htmx", "render", "translator"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def _static_versions() -> dict[str, str]:
    # A content hash in each asset URL lets browsers cache assets for long and still see new releases.
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10] for p in STATIC_DIR.iterdir() if p.is_file()}


_VERSIONS = _static_versions()


def static_url(name: str) -> str:
    return f"/console/static/{name}?v={_VERSIONS.get(name, '0')}"


def query_string(**params: Any) -> str:
    """``?a=1&b=x`` from the non-empty values (for pagination links that keep the filters)."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else ""


def disclosure_label(t: Translator, text: str, brands: dict[str, str]) -> str:
    """A disclosure policy in words (`privacy.disclosure` parses it): who learns membership, or that
    only a count is released; text that is no policy is shown as it is."""
    try:
        policy = parse_disclosure_policy(text)
    except ValueError:
        return text
    if isinstance(policy, MembershipPolicy):
        return t("matches.mode.membership", brand=brands.get(policy.to_brand, policy.to_brand))
    return t("matches.mode.cardinality")


_env = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals.update(
    static_url=static_url,
    query_string=query_string,
    locales=LOCALES,
    csrf_header=CSRF_HEADER,
    disclosure_label=disclosure_label,
)


def translator(request: Request[Any, Any, Any]) -> Translator:
    settings = console_settings(request)
    locale = negotiate_locale(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))
    return Translator(locale=locale, timezone=ZoneInfo(settings.console_timezone))


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status_code: int = 200,
    section: str | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response[str]:
    """Render ``template`` as the response. Every template sees ``t`` (messages and formatting),
    ``user`` (or ``None`` on public pages), ``nav``, ``section`` (the active nav entry),
    ``csrf_token`` and ``path`` besides the given context."""
    user: ConsoleIdentity | None = getattr(request.state, "console_user", None)
    csrf = value_or_default(ScopeState.from_scope(request.scope).csrf_token, "")
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    html = _env.get_template(template).render(
        t=translator(request),
        user=user,
        nav=visible_entries(user.role) if user else [],
        section=section,
        csrf_token=csrf,
        path=path,
        **context,
    )
    return Response(html, status_code=status_code, media_type=MediaType.HTML, headers=headers)


async def form_fields(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The submitted form as plain strings (the CSRF field removed; a repeated field keeps its last
    value). Pages validate what they need and answer with the form and a message, not a 400."""
    form = await request.form()
    return {key: str(value) for key, value in form.items() if key != "_csrf_token" and isinstance(value, str)}
