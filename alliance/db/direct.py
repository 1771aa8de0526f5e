"""A small asyncpg pool, beside SQLAlchemy's, for the one hot path that skips the ORM (redemption).

Checking a connection out of SQLAlchemy's pool through an ``AsyncSession``, committing and checking it
back in runs through greenlets and pool events: about 0.3 ms of the ~1 ms of Python a redemption cost,
more than the redemption's own two statements. This pool hands out plain asyncpg connections.

Its size is also an admission limit. Every redemption of a benefit updates that benefit's budget row and
the contract's month-to-date total; with a connection per request, a worker's every request in flight
queued on those row locks inside PostgreSQL, and a lock holder descheduled on a busy machine stalled
them all. With at most ``size`` connections per worker the rest wait here, in the event loop, for a
connection instead.

Connections are released without asyncpg's reset query (``RESET ALL; UNLISTEN *; ...``, a round trip
per request): the fast path runs single statements outside any transaction and never changes session
state, listens, or takes advisory locks. Idle connections are kept (at most ``size`` per worker) rather
than closed after a while, which would arm a timer on every release.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement

__all__ = ["CONNECT_TIMEOUT", "DirectStatement", "close_direct_pool", "create_direct_pool"]

CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection: a database that is down fails the fast path quickly, and the general
path then answers 503."""


async def _keep_session(_connection: Any) -> None:
    """Release without a reset query (see the module docstring)."""


# Options of SQLAlchemy's asyncpg adapter, not of asyncpg.connect.
_ADAPTER_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback")


async def create_direct_pool(engine: AsyncEngine, size: int) -> Any | None:
    """A pool to the database of ``engine`` (``None`` unless PostgreSQL), connecting exactly as the
    engine does (host, credentials, ``ssl`` and other URL options). Opens no connection until one is
    needed, so the service starts even while the database is down."""
    if engine.dialect.name != "postgresql":
        return None
    _args, options = engine.dialect.create_connect_args(engine.url)
    for name in _ADAPTER_ONLY:
        options.pop(name, None)
    options.setdefault("timeout", CONNECT_TIMEOUT)
    return await asyncpg.create_pool(
        min_size=0, max_size=size, reset=_keep_session, max_inactive_connection_lifetime=0, **options
    )


async def close_direct_pool(pool: Any | None) -> None:
    """Close gracefully, or terminate connections still busy after 10 s (shutdown must not hang)."""
    if pool is None:
        return
    try:
        await asyncio.wait_for(pool.close(), 10)
    except TimeoutError:
        with contextlib.suppress(Exception):
            pool.terminate()


class DirectStatement:
    """A SQLAlchemy Core statement compiled once for asyncpg: its SQL text (``$n`` placeholders) and how
    to turn a dict of named parameters into asyncpg's positional arguments.

    The same Core statement runs through a SQLAlchemy session on other paths; here SQLAlchemy's
    execution layer (statement cache lookup, parameter processing, result wrapping) is skipped, but the
    type processors it would apply to each parameter (e.g. UTC timestamps) still are. Literals of the
    statement (``status = 'issued'``) are bound once, at compile time.
    """

    __slots__ = ("_required", "_template", "sql")

    def __init__(self, statement: ClauseElement) -> None:
        compiled: Any = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        self.sql: str = compiled.string
        processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors
        template: list[Any] = []
        required: list[tuple[int, str, Callable[[Any], Any] | None]] = []
        for index, name in enumerate(compiled.positiontup or ()):
            bind = compiled.binds[name]
            processor = processors.get(name)
            if bind.value is None and bind.required:
                required.append((index, name, processor))
                template.append(None)
            else:
                template.append(
                    processor(bind.value) if processor is not None and bind.value is not None else bind.value
                )
        self._template = tuple(template)
        self._required = tuple(required)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for ``params`` (every named parameter of the statement)."""
        out = list(self._template)
        for index, name, processor in self._required:
            value = params[name]
            out[index] = processor(value) if processor is not None and value is not None else value
        return out
