"""Declarative base shared by every model, with a naming convention so migrations are stable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

__all__ = ["Base", "UTCDateTime", "simulated_clock", "utcnow"]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_simulated_now: ContextVar[datetime | None] = ContextVar("alliance_simulated_now", default=None)


def utcnow() -> datetime:
    """The current time (UTC), or the simulated one inside :func:`simulated_clock`."""
    simulated = _simulated_now.get()
    return simulated if simulated is not None else datetime.now(UTC)


@contextmanager
def simulated_clock(at: datetime) -> Iterator[None]:
    """Let the services of this task (context) see ``at`` as "now": the demo replays a past month of
    events through the real service code. Never used by the server itself."""
    if at.tzinfo is None:
        raise ValueError("the simulated time must be timezone-aware")
    token = _simulated_now.set(at.astimezone(UTC))
    try:
        yield
    finally:
        _simulated_now.reset(token)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both backends (SQLite would otherwise hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC timestamp is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
