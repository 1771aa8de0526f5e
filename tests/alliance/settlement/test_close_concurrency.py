"""A writer in flight when the close starts is waited for and counted in the closed month; a writer that
starts during the close waits and then posts into the next period. (On SQLite the close holds the single
write lock from its first statement, so the question does not arise there.)"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.ledger import service as ledger
from alliance.settlement import service as settlement
from tests.alliance.ledger.support import owes
from tests.alliance.settlement.support import APRIL, MARCH, in_march
from tests.helpers import TEST_AUDIT, make_brand


async def test_in_flight_writer_is_counted_and_later_writer_moves_to_the_next_period(
    sessions: async_sessionmaker[AsyncSession], backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers: the close takes the write lock first")
    a = await make_brand(sessions, "Alpha 阿尔法")
    b = await make_brand(sessions, "Beta 贝塔")

    writer = sessions()
    await writer.begin()
    in_flight = await ledger.post_transaction(
        writer,
        brand_id=b.id,
        idempotency_key="in-flight",
        kind="coupon",
        postings=owes(a.id, b.id, 321),
        occurred_at=in_march(15),
    )
    assert in_flight.period == MARCH

    async def close() -> settlement.RunOut:
        async with sessions() as session, session.begin():
            return await settlement.close_month(session, TEST_AUDIT, MARCH, key_file="", alliance_id="t")

    closing = asyncio.create_task(close())
    await asyncio.sleep(0.5)
    assert not closing.done(), "the close must wait for the writer that read March as open"

    async def late_writer() -> ledger.PostedTransaction:
        async with sessions() as session, session.begin():
            return await ledger.post_transaction(
                session,
                brand_id=b.id,
                idempotency_key="during-close",
                kind="coupon",
                postings=owes(a.id, b.id, 5),
                occurred_at=in_march(16),
            )

    later = asyncio.create_task(late_writer())
    await asyncio.sleep(0.2)
    await writer.commit()
    await writer.close()
    run = await asyncio.wait_for(closing, 30)
    posted = await asyncio.wait_for(later, 30)
    assert run.transactions == 1
    assert {(n.brand_id, n.net) for n in run.net_positions} == {(a.id, -321), (b.id, 321)}
    assert posted.period == APRIL
