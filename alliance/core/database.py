"""Per-request database sessions, handed to handlers as the ``db`` dependency.

A session commits when the handler returns normally and rolls back on any exception, so a failed
call never leaves half its writes behind.

The engine has no pre-ping (docs/decisions.md), so a request can meet a database that is down or a pooled
connection that a database restart broke. Those answer 503 ``database-unavailable`` with ``Retry-After``
(``database_exception_handlers``), never a 500: the transaction was rolled back (or, if the connection
died during COMMIT, its outcome is unknown and a retry with the same Idempotency-Key settles it), and
SQLAlchemy has already invalidated the broken connection and the pool's older ones.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.types import ExceptionHandlersMap
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.core.problems import PROBLEM_MEDIA_TYPE, ProblemBody, exception_handlers, problem_type

__all__ = ["database_exception_handlers", "database_unavailable", "provide_db", "session_factory", "unstorable_text"]

log = logging.getLogger("alliance.errors")

# Raised by asyncpg itself (the ledger's write goes to asyncpg directly) when the server is gone, refuses
# connections while starting or shutting down, or was shut down under an open connection.
_ASYNCPG_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


def session_factory(state: State) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = state.session_factory
    return factory


async def provide_db(request: Request[Any, Any, Any]) -> AsyncGenerator[AsyncSession, None]:
    async with session_factory(request.app.state)() as session:
        try:
            yield session
        except Exception as exc:
            if database_unavailable(exc):
                # Never pool this connection again: raw asyncpg calls (the ledger's and redemption's fast
                # paths) bypass SQLAlchemy's disconnect detection, so the pool may not know it is broken.
                await session.invalidate()
            else:
                await session.rollback()
            raise
        else:
            await session.commit()


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database cannot be reached right now" rather than a bug: a connection
    SQLAlchemy invalidated, a refused or dropped connection, a server shutting down or starting up, or a
    connection left unusable by such a failure (asyncpg's client-side interface errors)."""
    if isinstance(exc, BaseExceptionGroup):  # every failure in it is an outage
        return all(database_unavailable(inner) for inner in exc.exceptions)
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return exc.orig is not None and database_unavailable(exc.orig)
    if isinstance(exc, (*_ASYNCPG_UNAVAILABLE, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return True  # the connection is closed or was left mid-operation by a failure: it is unusable
    cause = getattr(exc, "__cause__", None)  # SQLAlchemy's adapter re-raises asyncpg's error as its own
    return cause is not None and cause is not exc and database_unavailable(cause)


# PostgreSQL refuses text it cannot store: a NUL character (``\x00``, ``\u0000`` in JSON) in a text or
# jsonb value. Such text only ever comes from a request (a body field, a path or query parameter), so it is
# the caller's error: a 400, whichever field carried it. (SQLite stores it.)
_UNSTORABLE_TEXT = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)


def unstorable_text(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL refusing a text value it cannot store (see ``_UNSTORABLE_TEXT``)."""
    if isinstance(exc, BaseExceptionGroup):
        return any(unstorable_text(inner) for inner in exc.exceptions)
    if isinstance(exc, _UNSTORABLE_TEXT):
        return True
    if isinstance(exc, DBAPIError) and exc.orig is not None and unstorable_text(exc.orig):
        return True
    cause = getattr(exc, "__cause__", None)  # SQLAlchemy's adapter re-raises asyncpg's error as its own
    return cause is not None and cause is not exc and unstorable_text(cause)


def _on_database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if unstorable_text(exc):
        body = ProblemBody(
            type=problem_type("invalid-text"),
            title="Invalid text",
            status=400,
            detail="text in the request contains a character the exchange cannot store (NUL, U+0000)",
            instance=request.url.path,
            request_id=getattr(request.state, "request_id", None),
        )
        return Response(content=msgspec.json.encode(body), status_code=400, media_type=PROBLEM_MEDIA_TYPE)
    if not database_unavailable(exc):
        return exception_handlers[Exception](request, exc)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    body = ProblemBody(
        type=problem_type("database-unavailable"),
        title="Service Unavailable",
        status=503,
        detail="the exchange cannot reach its database right now; retry (with the same Idempotency-Key)",
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
    )
    return Response(
        content=msgspec.json.encode(body),
        status_code=503,
        media_type=PROBLEM_MEDIA_TYPE,
        headers={"Retry-After": "1"},
    )


# Added to the app's exception handlers: database outages become 503 problems; anything else of these
# types is still the generic 500.
database_exception_handlers: ExceptionHandlersMap = {
    DBAPIError: _on_database_error,
    ConnectionError: _on_database_error,
    TimeoutError: _on_database_error,
    asyncpg.PostgresError: _on_database_error,
    asyncpg.InterfaceError: _on_database_error,
    asyncpg.InternalClientError: _on_database_error,
    AsyncAdapt_asyncpg_dbapi.Error: _on_database_error,  # asyncpg's errors as SQLAlchemy's adapter re-raises them
    ExceptionGroup: _on_database_error,  # a failure in a dependency's cleanup (the session's rollback)
}
