"""``alliance ledger verify`` as operators run it: exit 0 on a sound ledger, exit 1 naming the first
bad transaction after a row was edited behind the exchange's back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.alliance.ledger.support import post, tamper
from tests.conftest import Database
from tests.helpers import BrandHandle


def _verify(database: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env["ALLIANCE_DATABASE_URL"] = database.url
    return subprocess.run(
        [sys.executable, "-m", "alliance.cli", "ledger", "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_cli_verify_passes_then_names_the_edited_transaction(
    database: Database, sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    posted = [await post(sessions, brand_a.id, brand_b.id, 100 + i, f"evt-{i}") for i in range(4)]
    ok = _verify(database, "--json")  # seals the four pending transactions first
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] is True and report["sealed_now"] == 4 and report["transactions"] == 4

    victim = posted[1]
    await tamper(sessions, f"UPDATE ledger_postings SET amount = 1 WHERE transaction_id = '{victim.id}' AND line = 0")
    bad = _verify(database)
    assert bad.returncode == 1
    assert f"transaction {victim.id} (seq 2)" in bad.stderr
    assert "hash mismatch" in bad.stderr
    assert "Traceback" not in bad.stderr
