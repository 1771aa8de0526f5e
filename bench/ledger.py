"""Benchmark of ledger posting on PostgreSQL, against pgbench's built-in TPC-B-like script as the
yardstick, on the same throwaway database in the same run.

1. Creates a database, migrates it, onboards ``--brands`` brands (public services), ``pgbench -i -s SCALE``.
2. For each of ``--rounds`` rounds: ``--processes`` x ``--workers`` concurrent asyncio writers run for
   ``--seconds``, each loop pricing a referral conversion with the pure pricing library and booking it with
   ``alliance.ledger.service.post_priced_event`` in its own database transaction (4 postings, idempotency
   key, period choice, commit) - what a redemption does inside its own transaction - while the sealer runs
   beside them as in the app (hash chain + balances every 200 ms); then ``pgbench -c CLIENTS -j 2 -T
   SECONDS`` (built-in TPC-B-like script) on the same database.
3. Seals the rest and runs the full verification (chain and balances), timed.
4. Prints both rates per round, the medians and the ratio (target: ledger >= 35 % of pgbench), and drops
   the database.

    .venv/bin/python bench/ledger.py [--seconds 10] [--rounds 3] [--processes 2] [--workers 8] [--brands 50]
                                     [--pgbench-clients 16] [--pgbench-scale 16]
                                     [--pg postgresql://postgres@127.0.0.1:5432/postgres]

``--processes N`` runs the writers in N processes (as ``alliance serve --workers N`` does; the default 2
matches one per core on the 2-core benchmark machine), each with ``--workers`` asyncio writers (default
2 x 8 = pgbench's 16 clients). Writers use the app's engine settings (``pool_pre_ping`` off, as in
``alliance.db.session``) with the pool sized to the writers; ``BENCH_PRE_PING=1`` measures with the
per-checkout ping. Ledger and pgbench runs
alternate for ``--rounds`` rounds and the medians are reported: on a shared machine single runs vary a lot.
pgbench's scale defaults to its client count (its documented guidance: a scale below the client count
measures contention on the branch rows rather than throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import contracts
from alliance.brands import service as brands
from alliance.core.audit import AuditContext
from alliance.db.migrate import migrate
from alliance.db.session import POOL_PRE_PING, create_engine, create_session_factory
from alliance.ledger import service as ledger
from alliance.ledger.sealer import run_sealer, seal_pending
from alliance.ledger.verify import verify_ledger

AUDIT = AuditContext(actor="bench", source_ip="local")
PRE_PING = os.environ.get("BENCH_PRE_PING", "1" if POOL_PRE_PING else "0") == "1"
DEFAULT_PG = os.environ.get("ALLIANCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(pg: str, sql: str) -> None:
    conn = await asyncpg.connect(pg)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@functools.cache
def _terms(brand_x: str, brand_y: str) -> contracts.ContractTerms:
    """The contract version between a pair (pricing is pure: kept in memory, one per pair)."""
    return contracts.ContractTerms(
        contract_id=f"bench-{brand_x}-{brand_y}"[:64],
        version=1,
        parties=contracts.party_pair(brand_x, brand_y),
        settlement_currency="CNY",
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        coupon_commission=contracts.RateCommission(rate_bp=200),
        referral=contracts.RateCommission(rate_bp=300, per_event_cap=5_000),
    )


async def _seed(url: str, count: int) -> list[str]:
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            return [(await brands.create_brand(session, AUDIT, f"Bench brand {i}"))[0].id for i in range(count)]
    finally:
        await engine.dispose()


def _engine(url: str, connections: int, pre_ping: bool) -> AsyncEngine:
    """Like `alliance.db.session.create_engine` for PostgreSQL, with the pool sized to the writers (the
    app's default pool of 10 + 10 overflow would open and close overflow connections all the time)."""
    return create_async_engine(url, pool_size=connections, max_overflow=0, pool_pre_ping=pre_ping)


async def _writers(url: str, brand_ids: list[str], workers: int, seconds: float, tag: str, sealer: bool) -> int:
    engine = _engine(url, workers + 1, PRE_PING)
    factory = create_session_factory(engine)
    deadline = time.perf_counter() + seconds
    done = 0

    async def writer(number: int) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            referrer, receiver = brand_ids[(number + n) % len(brand_ids)], brand_ids[(number * 7 + n) % len(brand_ids)]
            if referrer == receiver:
                receiver = brand_ids[(brand_ids.index(receiver) + 1) % len(brand_ids)]
            at = datetime.now(UTC)
            event = contracts.ReferralConversion(
                event_id=f"{tag}-{number}-{n}",
                occurred_at=at,
                referrer_brand=referrer,
                receiver_brand=receiver,
                referred_at=at - timedelta(hours=1),
                order_amount=10_000 + n % 5_000,
                currency="CNY",
            )
            priced = contracts.price_event(event, _terms(*contracts.party_pair(referrer, receiver)))
            async with factory() as session, session.begin():
                await ledger.post_priced_event(
                    session,
                    priced,
                    brand_id=receiver,
                    idempotency_key=event.event_id,
                    occurred_at=at,
                    kind="referral",
                )
            done += 1

    seal_task = asyncio.create_task(run_sealer(factory)) if sealer else None
    try:
        await asyncio.gather(*(writer(i) for i in range(workers)))
    finally:
        if seal_task is not None:
            seal_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await seal_task
        await engine.dispose()
    return done


def _process_main(url: str, brand_ids: list[str], workers: int, seconds: float, tag: str, sealer: bool, out) -> None:  # type: ignore[no-untyped-def]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(_writers(url, brand_ids, workers, seconds, tag, sealer)))


def run_ledger(
    url: str, brand_ids: list[str], workers: int, processes: int, seconds: float, tag: str
) -> tuple[int, float]:
    if processes == 1:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        started = time.perf_counter()
        done = asyncio.run(_writers(url, brand_ids, workers, seconds, f"{tag}p0", True))
        return done, time.perf_counter() - started
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(
            target=_process_main, args=(url, brand_ids, workers, seconds, f"{tag}p{i}", i == 0, queue)
        )
        for i in range(processes)
    ]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    total = sum(queue.get() for _ in procs)
    for proc in procs:
        proc.join()
    return total, time.perf_counter() - started


async def _finish(url: str) -> tuple[int, float, object]:
    engine = create_engine(url)
    try:
        factory = create_session_factory(engine)
        async with factory() as session, session.begin():
            tail = await seal_pending(session)
        started = time.perf_counter()
        async with factory() as session, session.begin():
            report = await verify_ledger(session)
        return tail, time.perf_counter() - started, report
    finally:
        await engine.dispose()


def _pgbench_bin() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    raise SystemExit("pgbench not found (install postgresql-client or put it on PATH)")


def _pgbench_conn(pg_admin: str) -> tuple[list[str], dict[str, str]]:
    from urllib.parse import urlparse

    parsed = urlparse(pg_admin)
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    conn = ["-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]
    return conn, env


def init_pgbench(pg_admin: str, database: str, scale: int) -> None:
    conn, env = _pgbench_conn(pg_admin)
    subprocess.run(
        [_pgbench_bin(), *conn, "-i", "-q", "-s", str(scale), database], env=env, check=True, capture_output=True
    )


def run_pgbench(pg_admin: str, database: str, clients: int, seconds: int) -> float:
    conn, env = _pgbench_conn(pg_admin)
    result = subprocess.run(
        [_pgbench_bin(), *conn, "-c", str(clients), "-j", "2", "-T", str(seconds), database],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", result.stdout)
    if not match:
        raise SystemExit(f"could not read pgbench's tps:\n{result.stdout}\n{result.stderr}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="length of each ledger and each pgbench run")
    parser.add_argument("--rounds", type=int, default=3, help="ledger and pgbench runs, interleaved")
    parser.add_argument("--workers", type=int, default=8, help="concurrent asyncio writers per process")
    parser.add_argument(
        "--processes", type=int, default=2, help="writer processes (the exchange runs one worker per core)"
    )
    parser.add_argument("--brands", type=int, default=50)
    parser.add_argument("--pgbench-clients", type=int, default=16)
    parser.add_argument("--pgbench-scale", type=int, default=None, help="default: the pgbench client count")
    parser.add_argument("--pg", default=DEFAULT_PG, help="admin URL of the PostgreSQL server")
    args = parser.parse_args()

    name = f"bax_bench_ledger_{os.getpid()}"
    base = args.pg.rsplit("/", 1)[0]
    url = base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    scale = args.pgbench_scale or args.pgbench_clients
    asyncio.run(_admin(args.pg, f'CREATE DATABASE "{name}"'))
    try:
        migrate(url)
        brand_ids = asyncio.run(_seed(url, args.brands))
        init_pgbench(args.pg, name, scale)
        print(
            f"ledger:  post_priced_event, {args.processes} process(es) x {args.workers} writers, {args.brands} brands, "
            f"4 postings per transaction, sealer running; pool pre-ping {'on' if PRE_PING else 'off'}"
        )
        print(f"pgbench: TPC-B-like, -s {scale} -c {args.pgbench_clients} -j 2 (same database)")
        print(f"{args.rounds} rounds of {args.seconds:.0f} s each, interleaved; load average before: {_load()}")
        ledger_rates, pgbench_rates, ratios = [], [], []
        total = 0
        for number in range(1, args.rounds + 1):
            done, elapsed = run_ledger(url, brand_ids, args.workers, args.processes, args.seconds, f"r{number}")
            total += done
            pgbench_tps = run_pgbench(args.pg, name, args.pgbench_clients, int(args.seconds))
            ledger_rates.append(done / elapsed)
            pgbench_rates.append(pgbench_tps)
            ratios.append(done / elapsed / pgbench_tps)
            print(
                f"round {number}: ledger {done / elapsed:7,.0f}/s   pgbench {pgbench_tps:7,.0f}/s   "
                f"ratio {ratios[-1]:.0%}   (load {_load()})"
            )
        tail, verify_seconds, report = asyncio.run(_finish(url))
        ok = getattr(report, "ok", False)
        print(
            f"ledger:  {total} transactions posted; {tail} sealed at the end; verification of "
            f"{getattr(report, 'transactions', 0)} took {verify_seconds:.2f} s: {'OK' if ok else f'FAILED {report}'}"
        )
        print(
            f"median:  ledger {statistics.median(ledger_rates):,.0f} transactions/s, "
            f"pgbench {statistics.median(pgbench_rates):,.0f} transactions/s, "
            f"ratio {statistics.median(ratios):.0%} (target >= 35%)"
        )
        if not ok:
            raise SystemExit(1)
    finally:
        asyncio.run(_admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


if __name__ == "__main__":
    main()
