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
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["CONNECT_TIMEOUT", "close_direct_pool", "create_direct_pool"]

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
