"""Storage of blinded point sets (published segments and task results) as ordered 128 KiB chunks.

Uploads are streamed: records are cut from the request body as it arrives, validated chunk by chunk
with :func:`privacy.blind.validate_points`, and written with COPY on PostgreSQL (``executemany`` on
SQLite) inside the caller's transaction, so a rejected upload leaves nothing behind. Downloads stream
chunks from short queries on their own session. Intersections are hash joins: in memory on sets of
16-byte truncations up to a limit, in SQL above it.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.core.problems import Problem
from alliance.db.models import PointChunk
from privacy.blind import POINT_SIZE, InvalidPointError, validate_points
from privacy.psi import TRUNCATED_SIZE

__all__ = [
    "CHUNK_ITEMS",
    "IngestResult",
    "count_common",
    "delete_set",
    "ingest_points",
    "iter_set_bytes",
    "load_truncations",
    "read_set",
    "set_size",
]

CHUNK_ITEMS = 4096
_CHUNK_BYTES = CHUNK_ITEMS * POINT_SIZE
_DOWNLOAD_BATCH = 8  # chunks per query when streaming a set out (1 MiB)


@dataclass(frozen=True, slots=True)
class IngestResult:
    items: int
    sha256: str


class _Chunker:
    """Cuts a byte stream into whole chunks of points, validating each before it is stored."""

    def __init__(self, set_id: str, max_items: int, *, validate: bool) -> None:
        self.set_id = set_id
        self.max_bytes = max_items * POINT_SIZE
        self.max_items = max_items
        self.validate = validate
        self.buffer = bytearray()
        self.chunk_no = 0
        self.total = 0
        self.digest = hashlib.sha256()

    def feed(self, data: bytes) -> list[tuple[str, int, int, bytes]]:
        self.total += len(data)
        if self.total > self.max_bytes:
            raise Problem(
                413,
                "too-many-items",
                f"the upload carries more than the {self.max_items} items declared",
                extra={"declared_items": self.max_items},
            )
        self.digest.update(data)
        self.buffer += data
        out = []
        while len(self.buffer) >= _CHUNK_BYTES:
            out.append(self._cut(_CHUNK_BYTES))
        return out

    def finish(self) -> list[tuple[str, int, int, bytes]]:
        if len(self.buffer) % POINT_SIZE:
            raise Problem(
                400,
                "bad-record-length",
                f"the body is {self.total} bytes, not a whole number of 32-byte records",
            )
        return [self._cut(len(self.buffer))] if self.buffer else []

    def _cut(self, size: int) -> tuple[str, int, int, bytes]:
        chunk = bytes(self.buffer[:size])
        del self.buffer[:size]
        if self.validate:
            try:
                validate_points(chunk)
            except InvalidPointError as exc:
                index = self.chunk_no * CHUNK_ITEMS + (exc.index or 0)
                raise Problem(
                    422,
                    "invalid-point",
                    f"record {index} is not an acceptable Curve25519 point: {exc.message}",
                    extra={"record": index},
                ) from None
        row = (self.set_id, self.chunk_no, len(chunk) // POINT_SIZE, chunk)
        self.chunk_no += 1
        return row


async def ingest_points(
    session: AsyncSession,
    set_id: str,
    body: AsyncIterator[bytes],
    *,
    max_items: int,
    validate: bool = True,
) -> IngestResult:
    """Store the points streamed in ``body`` as set ``set_id`` (which must hold nothing yet).

    Raises ``Problem`` 413 past ``max_items``, 400 for a body that is not whole records, 422 for a record
    that is not a valid point; the caller's transaction then rolls back and nothing is stored.
    """
    chunker = _Chunker(set_id, max_items, validate=validate)
    connection = await session.connection()
    if connection.dialect.name == "postgresql":

        async def records() -> AsyncIterator[tuple[str, int, int, bytes]]:
            async for data in body:
                for row in chunker.feed(data):
                    yield row
            for row in chunker.finish():
                yield row

        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.copy_records_to_table(
            PointChunk.__tablename__, records=records(), columns=["set_id", "chunk_no", "item_count", "data"]
        )
    else:
        insert = "INSERT INTO point_chunks (set_id, chunk_no, item_count, data) VALUES (?, ?, ?, ?)"
        pending: list[tuple[str, int, int, bytes]] = []
        async for data in body:
            pending.extend(chunker.feed(data))
            if len(pending) >= 16:
                await connection.exec_driver_sql(insert, pending)
                pending = []
        pending.extend(chunker.finish())
        if pending:
            await connection.exec_driver_sql(insert, pending)
    return IngestResult(items=chunker.total // POINT_SIZE, sha256=chunker.digest.hexdigest())


async def delete_set(session: AsyncSession, set_id: str) -> None:
    await session.execute(delete(PointChunk).where(PointChunk.set_id == set_id))


async def set_size(session: AsyncSession, set_id: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(PointChunk.item_count), 0)).where(PointChunk.set_id == set_id)
    )
    return int(total or 0)


async def iter_set_bytes(factory: async_sessionmaker[AsyncSession], set_id: str) -> AsyncIterator[bytes]:
    """The set's records in order, about 1 MiB at a time, each batch read by a short query of its own
    (a download may be slow; it must not hold a connection or a transaction open meanwhile)."""
    next_chunk = 0
    while True:
        async with factory() as session:
            rows = (
                await session.execute(
                    select(PointChunk.chunk_no, PointChunk.data)
                    .where(PointChunk.set_id == set_id, PointChunk.chunk_no >= next_chunk)
                    .order_by(PointChunk.chunk_no)
                    .limit(_DOWNLOAD_BATCH)
                )
            ).all()
        if not rows:
            return
        for _, data in rows:
            yield data
        next_chunk = rows[-1][0] + 1


async def read_set(session: AsyncSession, set_id: str) -> bytes:
    """The whole set as one buffer (small sets and tests)."""
    rows = await session.scalars(
        select(PointChunk.data).where(PointChunk.set_id == set_id).order_by(PointChunk.chunk_no)
    )
    return b"".join(rows)


async def load_truncations(session: AsyncSession, set_id: str) -> set[bytes]:
    """The distinct 16-byte truncations of a set's records (the in-memory side of a hash join)."""
    values: set[bytes] = set()
    result = await session.stream(
        select(PointChunk.data).where(PointChunk.set_id == set_id).execution_options(yield_per=_DOWNLOAD_BATCH)
    )
    async for data in result.scalars():
        values.update(data[i : i + TRUNCATED_SIZE] for i in range(0, len(data), POINT_SIZE))
    return values


# Portable SQL (SQLite and PostgreSQL): a recursive CTE numbers the records inside each chunk, substr()
# cuts their 16-byte truncations, INTERSECT keeps the distinct common ones (a hash or sort join).
_COMMON_SQL = """
WITH RECURSIVE idx(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM idx WHERE i < 4095)
SELECT count(*) FROM (
    SELECT substr(c.data, idx.i * 32 + 1, 16) AS v
    FROM point_chunks AS c JOIN idx ON idx.i < c.item_count WHERE c.set_id = :x
    INTERSECT
    SELECT substr(c.data, idx.i * 32 + 1, 16) AS v
    FROM point_chunks AS c JOIN idx ON idx.i < c.item_count WHERE c.set_id = :y
) AS common
"""


assert (CHUNK_ITEMS, POINT_SIZE, TRUNCATED_SIZE) == (4096, 32, 16), "update _COMMON_SQL"


async def count_common(session: AsyncSession, set_x: str, set_y: str, *, memory_limit: int) -> int:
    """Number of distinct 16-byte truncations the two sets share.

    Sets of at most ``memory_limit`` items each are joined in memory (about 100 bytes per item); larger
    ones by the database, which spills to disk instead of growing the server's memory.
    """
    size_x = await set_size(session, set_x)
    size_y = await set_size(session, set_y)
    if max(size_x, size_y) <= memory_limit:
        smaller, larger = (set_x, set_y) if size_x <= size_y else (set_y, set_x)
        values = await load_truncations(session, smaller)
        common: set[bytes] = set()
        result = await session.stream(
            select(PointChunk.data).where(PointChunk.set_id == larger).execution_options(yield_per=_DOWNLOAD_BATCH)
        )
        async for data in result.scalars():
            common.update(values.intersection([data[i : i + TRUNCATED_SIZE] for i in range(0, len(data), POINT_SIZE)]))
        return len(common)
    return int((await session.execute(text(_COMMON_SQL), {"x": set_x, "y": set_y})).scalar_one())
