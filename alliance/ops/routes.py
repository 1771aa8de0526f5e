"""``/health`` says the process is alive; ``/ready`` says it can reach its database."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get
from sqlalchemy import text

from alliance.core.database import session_factory
from alliance.core.problems import Problem

__all__ = ["health", "ready"]


class HealthOut(msgspec.Struct):
    status: str


class ReadyOut(msgspec.Struct):
    status: str
    database: str


@get("/health", operation_id="health", tags=["ops"], summary="Liveness")
async def health() -> HealthOut:
    return HealthOut(status="ok")


@get("/ready", operation_id="ready", tags=["ops"], summary="Readiness: the database answers")
async def ready(request: Request[Any, Any, Any]) -> ReadyOut:
    factory = session_factory(request.app.state)
    try:
        async with factory() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means "not ready", never a 500
        raise Problem(503, "database-unavailable", f"the database did not answer: {type(exc).__name__}") from None
    dialect = request.app.state.engine.dialect.name
    return ReadyOut(status="ready", database=dialect)
