"""Bounds on request bodies that hold before any handler runs.

The body size is bounded by Litestar (``request_max_body_size``); field lengths, array lengths and money
by each schema's constraints. What no schema can bound is nesting: msgspec recurses once per level, so
a JSON body nested about a thousand levels deep ends in a ``RecursionError`` - a 500 - on any JSON route,
whatever its schema. :func:`enforce_request_bounds` refuses such bodies with 400 ``body-too-deep`` first.

It also refuses text holding U+0000 (NUL) in a JSON body, the path or the query with 400 ``invalid-text``
on every backend: PostgreSQL cannot store it, SQLite can, and the two backends must answer alike.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request

from alliance.core.problems import Problem

__all__ = ["MAX_JSON_DEPTH", "enforce_request_bounds", "has_nul", "json_too_deep"]

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects in any JSON body; our deepest schema needs 4."""

_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def json_too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects of ``raw`` nest more than ``limit`` deep.

    Linear per level and run in C: strings (which may hold brackets) are dropped, everything but the
    brackets is dropped, then each pass removes the innermost ``[]`` and ``{}`` pairs. A malformed body
    (unbalanced brackets) is left to the decoder, which refuses it with its own message.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:  # the common case: too few brackets to nest that deep
        return False
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")  # then every '"' opens or closes a string
    brackets = b"".join(unescaped.split(b'"')[::2]).translate(None, _NOT_BRACKET)
    for _ in range(limit):
        inner = _INNERMOST.sub(b"", brackets)  # one level per pass (chained replaces could take two)
        if inner == brackets:  # nothing left, or unbalanced
            return False
        brackets = inner
    return bool(_INNERMOST.search(brackets))


def has_nul(raw: bytes) -> bool:
    """Whether a JSON text holds U+0000: a raw NUL byte or the escape ``\\u0000`` (not ``\\\\u0000``)."""
    if b"\x00" in raw:
        return True
    return b"\\u0000" in raw and b"\\u0000" in raw.replace(b"\\\\", b"")


_INVALID_TEXT = "text in the request contains a character the exchange cannot store (NUL, U+0000)"


async def enforce_request_bounds(request: Request[Any, Any, Any]) -> None:
    """The app's ``before_request`` hook: refuse, before any handler or body decoding runs, a JSON body
    nested deeper than `MAX_JSON_DEPTH` and NUL in text (body, path or query).

    A hook, not a middleware: it uses the request Litestar has built anyway, and the body it reads is
    the one Litestar keeps for the handler (read once, under the route's body-size limit).
    """
    scope = request.scope
    if "\x00" in scope["path"] or b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]:
        raise Problem(400, "invalid-text", _INVALID_TEXT)
    if scope["method"] in _BODY_METHODS and _decodes_json(scope["route_handler"]):
        body = await request.body()
        if json_too_deep(body):
            raise Problem(
                400,
                "body-too-deep",
                f"the JSON body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep",
                extra={"max_depth": MAX_JSON_DEPTH},
            )
        if has_nul(body):
            raise Problem(400, "invalid-text", _INVALID_TEXT)


_DECODES_JSON: dict[int, bool] = {}


def _decodes_json(handler: Any) -> bool:
    """Whether Litestar decodes this handler's body as JSON (whatever the request's Content-Type says):
    it takes a ``data`` that is not raw bytes. Streamed uploads and forms are never read here."""
    known = _DECODES_JSON.get(id(handler))
    if known is None:
        data = handler.parsed_fn_signature.parameters.get("data")
        known = data is not None and not data.is_subclass_of(bytes) and not _is_form(data)
        _DECODES_JSON[id(handler)] = known
    return known


def _is_form(data: Any) -> bool:
    body = data.kwarg_definition
    return body is not None and str(getattr(body, "media_type", "")).startswith(("multipart", "application/x-www"))
