"""RFC 9457 problem responses: every error the API returns is ``application/problem+json`` with a
stable ``type`` that clients can branch on, never a traceback."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.routes import HTTPRoute
from litestar.types import ExceptionHandlersMap

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "Problem",
    "ProblemBody",
    "document_problems",
    "exception_handlers",
    "problem_responses",
    "problem_type",
]

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


_PROBLEM_DESCRIPTIONS = {
    400: "The request is malformed or invalid (`invalid-request`, `malformed-request`, ...)",
    401: "No API key, or an unknown or revoked one (`unauthenticated`)",
    403: "The key may not call this route, or the brand is suspended (`forbidden`, `brand-suspended`)",
    404: "No such object visible to the caller (`not-found`, ...)",
    409: "The object's state does not allow this (`conflict`, ...)",
    413: "The body is larger than allowed (`request-too-large`)",
    415: "The body's media type is not the one documented (`unsupported-media-type`)",
    422: "Well-formed but not acceptable under the rules of the exchange",
    503: "Not ready to serve (`unavailable`)",
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses=`` for the problems a route can answer with: ``application/problem+json``
    bodies of :class:`ProblemBody`. Routes declare their own (for example ``problem_responses(409, 422)``);
    :func:`document_problems` adds the ones every API route shares."""
    return {
        status: ResponseSpec(
            data_container=ProblemBody,
            media_type=PROBLEM_MEDIA_TYPE,
            description=_PROBLEM_DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            generate_examples=False,
        )
        for status in statuses
    }


def _shared_statuses(path: str, handler: HTTPRouteHandler) -> tuple[int, ...]:
    if not path.startswith(("/v1/", "/admin/v1/")):
        return ()
    statuses = [400, 401, 403]  # every API route: the guards, the request's parameters
    writes = bool(handler.http_methods & {"POST", "PUT", "PATCH", "DELETE"})
    if "{" in path or writes:  # an object in the path, or one the body refers to
        statuses.append(404)
    if writes:
        statuses += [409, 413, 422]
    return tuple(statuses)


def document_problems(app: Litestar) -> None:
    """Document in the OpenAPI schema the problem responses of every API route: the shared ones by the
    route's shape (key, path parameters, writes) plus those the route declares itself. Replaces Litestar's
    generic 400 schema, which is not what :func:`exception_handlers` send. Call before the schema is built."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            shared = problem_responses(*_shared_statuses(route.path_format, handler))
            handler.responses = {**shared, **(handler.responses or {})}
