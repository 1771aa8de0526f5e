"""Per-request database sessions, handed to handlers as the ``db`` dependency.

A session commits when the handler returns normally and rolls back on any exception, so a failed
call never leaves half its writes behind.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = ["provide_db", "session_factory"]


def session_factory(state: State) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = state.session_factory
    return factory


async def provide_db(request: Request[Any, Any, Any]) -> AsyncGenerator[AsyncSession, None]:
    async with session_factory(request.app.state)() as session:
        try:
            yield session
        except Exception:
            await session.rollback()
            raise
        else:
            await session.commit()
