"""A close killed part-way leaves nothing behind, and simply running it again completes it.

``alliance close`` runs as a real subprocess. The test holds the ledger's chain head lock (as a busy
sealer would), so the close stops at a known point: on PostgreSQL after it has already written the
period lock row (uncommitted), on SQLite at its first write. Then it is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.db.models import AuditEntry, LedgerPeriod, SettlementRun, SettlementStatement
from alliance.ledger.sealer import lock_chain_head
from alliance.ledger.verify import verify_ledger
from tests.alliance.ledger.support import owes
from tests.alliance.settlement.support import MARCH, in_march, march_activity, post
from tests.conftest import Database


async def _wait_until_blocked(
    sessions: async_sessionmaker[AsyncSession], process: asyncio.subprocess.Process, backend: str
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.returncode is None, await process.communicate()
        if backend == "postgresql":
            async with sessions() as session:  # a fresh transaction: pg_stat_activity is snapshotted per transaction
                waiting = await session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE '%ledger_chain_head%'"
                    )
                )
            if waiting:
                return
        elif time.monotonic() > deadline - 27:  # SQLite: the process had 3 s to start and reach its write
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the close never reached the lock")


async def _counts(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, ...]:
    counts = []
    async with sessions() as session:
        for model in (LedgerPeriod, SettlementRun, SettlementStatement):
            counts.append(int(await session.scalar(select(func.count()).select_from(model)) or 0))
    return tuple(counts)


async def test_a_killed_close_leaves_nothing_and_can_be_run_again(
    sessions: async_sessionmaker[AsyncSession], database: Database, backend: str
) -> None:
    alliance = await march_activity(sessions)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env["ALLIANCE_DATABASE_URL"] = database.url
    command = [sys.executable, "-m", "alliance.cli", "close", "--month", MARCH]

    blocker = sessions()
    await blocker.begin()
    await lock_chain_head(blocker)
    process = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        await _wait_until_blocked(sessions, process, backend)
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 30)
        assert process.returncode == -signal.SIGKILL
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await blocker.rollback()
        await blocker.close()

    assert await _counts(sessions) == (0, 0, 0), "a killed close left rows behind"
    async with sessions() as session:
        audits = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "settlement.close")
        )
        assert audits == 0
    # March is still open: an event of March still posts into March.
    still_open = await post(
        sessions,
        "after-kill",
        owes(alliance.a.id, alliance.b.id, 10),
        kind="coupon",
        occurred_at=in_march(28),
        brand_id=alliance.b.id,
    )
    assert still_open.period == MARCH

    rerun = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{MARCH} closed: 8 transactions, 3 statements" in rerun.stdout
    assert await _counts(sessions) == (1, 1, 3)
    again = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "already closed" in again.stdout, again.stderr
    async with sessions() as session, session.begin():
        report = await verify_ledger(session)
        assert report.ok, report.problem
