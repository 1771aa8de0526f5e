"""RFC 9457 problem responses: every error the API returns is ``application/problem+json`` with a
stable ``type`` that clients can branch on, never a traceback."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

__all__ = ["PROBLEM_MEDIA_TYPE", "Problem", "ProblemBody", "exception_handlers", "problem_type"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:bax:problem:"
log = logging.getLogger("alliance.errors")


def problem_type(slug: str) -> str:
    """The stable ``type`` URI of a problem; clients compare against these strings."""
    return _TYPE_PREFIX + slug


class ProblemBody(msgspec.Struct, omit_defaults=True):
    """The wire form of a problem (RFC 9457 section 3)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None


class Problem(Exception):
    """Raise from a handler or service to answer with a problem response.

    ``slug`` becomes the stable type (``urn:bax:problem:<slug>``); ``extra`` carries machine-readable
    context (for example the id of the conflicting object). Services raise it without knowing HTTP
    beyond the status number.
    """

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str | None = None,
        *,
        title: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or slug)
        self.status = status
        self.slug = slug
        self.title = title or slug.replace("-", " ").capitalize()
        self.detail = detail
        self.extra = extra
        self.headers = headers


_SLUG_BY_STATUS = {
    400: "malformed-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    411: "length-required",
    413: "request-too-large",
    415: "unsupported-media-type",
    422: "unprocessable",
    429: "too-many-requests",
    503: "unavailable",
}


def _respond(
    request: Request[Any, Any, Any], body: ProblemBody, headers: dict[str, str] | None = None
) -> Response[bytes]:
    body.request_id = getattr(request.state, "request_id", None)
    body.instance = request.url.path
    return Response(
        content=msgspec.json.encode(body),
        status_code=body.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _on_problem(request: Request[Any, Any, Any], exc: Problem) -> Response[bytes]:
    body = ProblemBody(type=problem_type(exc.slug), title=exc.title, status=exc.status, detail=exc.detail)
    body.extra = exc.extra
    return _respond(request, body, exc.headers)


def _on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    errors = exc.extra if isinstance(exc.extra, list) else None
    detail = exc.detail or "the request is not valid"
    if errors:
        # Litestar reports msgspec's message in `message`; keep only what helps the caller fix the call.
        errors = [
            {k: v for k, v in e.items() if k in ("message", "key", "source")} for e in errors if isinstance(e, dict)
        ]
    body = ProblemBody(type=problem_type("invalid-request"), title="Invalid request", status=400, detail=detail)
    body.errors = errors
    return _respond(request, body)


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status >= 500:
        log.error("server error %s on %s %s: %s", status, request.method, request.url.path, exc.detail)
    slug = _SLUG_BY_STATUS.get(status, "server-error" if status >= 500 else "client-error")
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = slug
    detail = exc.detail if exc.detail and exc.detail != title else None
    body = ProblemBody(type=problem_type(slug), title=title, status=status, detail=detail)
    return _respond(request, body, dict(exc.headers) if exc.headers else None)


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = ProblemBody(
        type=problem_type("internal-error"),
        title="Internal Server Error",
        status=500,
        detail="the exchange hit an unexpected error; quote the request id when reporting it",
    )
    return _respond(request, body)


exception_handlers: ExceptionHandlersMap = {
    Problem: _on_problem,
    ValidationException: _on_validation,
    HTTPException: _on_http,
    Exception: _on_unexpected,
}
