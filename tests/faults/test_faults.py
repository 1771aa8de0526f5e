"""Faults under a money-moving load, against the real server (``alliance serve --workers 2``) on a private
PostgreSQL instance: (a) the server is SIGKILLed and restarted, (b) PostgreSQL is stopped and started.

Clients redeem coupons, reverse some redemptions and convert referrals, each call with its own
Idempotency-Key, re-sent with the same key after a connection error or a 5xx until a definitive answer -
what a real partner does. Afterwards: ``alliance ledger verify`` passes, nothing acknowledged is missing,
nothing is applied twice, no ledger transaction is half-written, budgets equal their redemptions, and
the server answered 503 problems (never 500) while the database was down.

The PostgreSQL here is a throwaway ``initdb`` cluster on its own port (``bench.faults.PrivatePostgres``),
never the machine's shared server. Longer runs: ``bench/load.py --faults``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.faults import (
    ExchangeServer,
    Fault,
    MoneySetup,
    Operation,
    PrivatePostgres,
    check_database,
    find_pg_bindir,
    ledger_verify_cli,
    run_money_load,
    seed_money,
)
from bench.redeem import _admin
from tests.conftest import selected_backends

pytestmark = pytest.mark.postgresql

LOAD_SECONDS = 12.0
CLIENTS = 8
CODES = 6_000


@dataclass
class Rig:
    pg: PrivatePostgres
    server: ExchangeServer
    setup: MoneySetup
    sqlalchemy_url: str
    plain_url: str
    operations: list[Operation] = field(default_factory=list)  # every test's calls, for the global checks


@pytest.fixture(scope="module")
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    if "postgresql" not in selected_backends(request.config):
        pytest.skip("PostgreSQL is not selected (--db)")
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb) on this machine: cannot run a private PostgreSQL")
    from alliance.db.migrate import migrate

    with PrivatePostgres(bindir) as pg:
        asyncio.run(_admin(pg.url, 'CREATE DATABASE "bax_faults"'))
        plain = f"postgresql://postgres@127.0.0.1:{pg.port}/bax_faults"
        url = plain.replace("postgresql://", "postgresql+asyncpg://", 1)
        migrate(url)
        setup = asyncio.run(seed_money(url, CODES))
        server = ExchangeServer(url, workers=2, log_path=tmp_path_factory.mktemp("faults") / "server.log")
        server.start()
        try:
            yield Rig(pg, server, setup, url, plain)
        finally:
            server.stop()


def _check(rig: Rig, operations: list[Operation]) -> None:
    rig.operations.extend(operations)
    verify = ledger_verify_cli(rig.sqlalchemy_url)
    assert verify.returncode == 0, f"alliance ledger verify failed:\n{verify.stdout}\n{verify.stderr}"
    assert "ledger OK" in verify.stdout
    findings = asyncio.run(check_database(rig.plain_url, rig.operations))
    print(findings.summary())
    assert findings.ok, findings.summary()
    assert findings.lost == 0
    assert findings.doubly_applied == 0
    assert findings.unresolved == 0, findings.summary()
    assert not findings.refused, findings.summary()  # every call was valid: a refusal would be a wrong answer
    assert findings.statuses[500] == 0, findings.summary()
    assert findings.acknowledged > 0


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


def test_sigkill_of_the_server_loses_nothing_and_applies_nothing_twice(rig: Rig) -> None:
    fault = Fault("kill", at=LOAD_SECONDS / 3)
    run = asyncio.run(run_money_load(rig.server, rig.setup, seconds=LOAD_SECONDS, clients=CLIENTS, faults=[fault]))
    print(fault.describe())
    assert fault.first_success is not None, f"no call succeeded after the restart\n{_log_tail(rig.server.log_path)}"
    assert fault.recovery_seconds is not None and fault.recovery_seconds < 10
    acked_after = [op for op in run.client.operations if op.acknowledged and op.attempts[-1].at > fault.ended]
    assert acked_after, "the load went on after the restart"
    _check(rig, run.client.operations)


def test_postgresql_restart_answers_503_then_recovers(rig: Rig) -> None:
    fault = Fault("pg", at=LOAD_SECONDS / 3)
    run = asyncio.run(
        run_money_load(
            rig.server, rig.setup, seconds=LOAD_SECONDS, clients=CLIENTS, faults=[fault], pg=rig.pg, pg_down_seconds=2
        )
    )
    print(fault.describe())
    # While PostgreSQL was down the server answered, with 503 problems - never a 500, never a hang.
    assert fault.answers_during[503] > 0, fault.describe()
    assert set(fault.answers_during) <= {503, 201}, fault.describe()  # 201: commits that beat the shutdown
    problems = {a.problem for _, a in run.client.attempts if a.status == 503}
    assert problems == {"urn:bax:problem:database-unavailable"}
    assert fault.first_success is not None, _log_tail(rig.server.log_path)
    assert fault.recovery_seconds is not None and fault.recovery_seconds < 10
    # The server keeps answering /ready and recovered without a restart of its own.
    assert rig.server.process is not None and rig.server.process.poll() is None
    started = time.monotonic()
    _check(rig, run.client.operations)
    assert time.monotonic() - started < 60
