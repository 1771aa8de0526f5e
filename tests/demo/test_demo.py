"""`alliance demo --no-serve` end to end, as a subprocess, on SQLite and PostgreSQL: six brands with
published segments, a done match for every pair with the known overlaps, coupons redeemed, the previous
month closed with net positions summing to zero, and a console admin who can sign in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.db.models.benefits import Redemption
from alliance.db.models.brand import Brand
from alliance.db.models.matches import MatchJob
from alliance.db.models.segments import Segment
from alliance.db.models.settlement import SettlementRun
from alliance.demo.data import member_bases
from alliance.demo.scenario import previous_month
from tests.alliance.console.console_helpers import csrf_token
from tests.conftest import Database
from tests.procs import free_port

SCALE = 2000


def run_demo(database: Database, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    command = [sys.executable, "-m", "alliance.cli", "demo", "--scale", str(SCALE), "--seed", "7", "--no-serve"]
    command += ["--database-url", database.url, "--port", str(free_port()), "--workers", "2"]
    return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)


async def test_demo_builds_a_closed_month_and_a_console_login(
    database: Database,
    sessions: async_sessionmaker[AsyncSession],
    client: AsyncTestClient[Litestar],
    tmp_path: Path,
) -> None:
    done = run_demo(database, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    out = done.stdout
    assert "[7/7]" in out and "Demo ready in" in out
    month, _, _ = previous_month(datetime.now(UTC))

    async with sessions() as session:
        brands = {b.id: b.name for b in (await session.scalars(select(Brand))).all()}
        assert len(brands) == 6
        assert "麦香 Golden Wheat Bakery" in brands.values()
        segments = (await session.scalars(select(Segment))).all()
        assert len(segments) == 6 and {s.status for s in segments} == {"published"}
        assert {s.size for s in segments} == {SCALE}
        matches = (await session.scalars(select(MatchJob))).all()
        assert len(matches) == 15 and {m.state for m in matches} == {"done"}
        pairs = {frozenset((m.requester_brand_id, m.responder_brand_id)) for m in matches}
        assert len(pairs) == 15
        redeemed = await session.scalar(select(func.count()).select_from(Redemption))
        assert redeemed and redeemed > 20
        run = await session.get(SettlementRun, month)
        assert run is not None and run.statements == 6
    # The printed net positions sum to exactly zero, and the bakery-fruit overlap is the generated one.
    assert re.search(r"│ sum\s*│\s*│\s*│\s*0\.00 │", out), out
    expected = member_bases(SCALE, 7).common[frozenset(("bakery", "fruit"))]
    assert f"{expected:,}" in out

    client.follow_redirects = False
    password = re.search(r"admin\s+password (\S+)", out)
    assert password, out
    token = csrf_token((await client.get("/console/login")).text)
    response = await client.post(
        "/console/login",
        data={"_csrf_token": token, "username": "admin", "password": password.group(1), "next": "/console/"},
    )
    assert response.status_code == 303, response.text
    assert (await client.get("/console/")).status_code == 200


def test_demo_runs_twice_on_its_own_fresh_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    command = [sys.executable, "-m", "alliance.cli", "demo", "--scale", "1000", "--no-serve", "--workers", "2"]
    for _ in range(2):
        done = subprocess.run(
            [*command, "--port", str(free_port())], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "recreated on every run" in done.stdout
    assert (tmp_path / "alliance-demo.db").exists()
