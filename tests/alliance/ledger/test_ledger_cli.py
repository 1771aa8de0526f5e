"""``alliance ledger verify`` as operators run it: exit 0 on a sound ledger, exit 1 naming the first
bad transaction after a row was edited behind the exchange's back."""

from __future__ import annotations

import json

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import commands
from tests.alliance.ledger.support import post, tamper
from tests.conftest import Database
from tests.helpers import BrandHandle
from tests.procs import exchange_env


async def _verify(database: Database, *args: str) -> commands.CommandResult:
    return await commands.run_async(commands.ALLIANCE, ["ledger", "verify", *args], exchange_env(database.url))


async def test_cli_verify_passes_then_names_the_edited_transaction(
    database: Database, sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    posted = [await post(sessions, brand_a.id, brand_b.id, 100 + i, f"evt-{i}") for i in range(4)]
    ok = await _verify(database, "--json")  # seals the four pending transactions first
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] is True and report["sealed_now"] == 4 and report["transactions"] == 4

    victim = posted[1]
    await tamper(sessions, f"UPDATE ledger_postings SET amount = 1 WHERE transaction_id = '{victim.id}' AND line = 0")
    bad = await _verify(database)
    assert bad.returncode == 1
    assert f"transaction {victim.id} (seq 2)" in bad.stderr
    assert "hash mismatch" in bad.stderr
    assert "Traceback" not in bad.stderr
