"""Benchmark of the monthly close on PostgreSQL: a month of ``--transactions`` ledger transactions across
``--brands`` brands, closed with ``alliance.settlement.service.close_month``.

1. Creates a throwaway database, migrates it, onboards the brands (public service).
2. Generates the month directly as valid, *sealed* ledger rows (4 clearing postings per transaction as
   pricing books them; coupon funding, commissions and reversals), hash-chained with the ledger's own
   ``alliance.ledger.chain.transaction_hash``, with matching account balances and chain head - rows
   ``alliance ledger verify`` accepts (``--verify`` runs it) - and loads them with COPY.
3. Times the close: period lock, seal check, SQL aggregation, netting, 20 signed statements, the run.
4. Drops the database (``--keep`` leaves it).

    .venv/bin/python bench/close.py [--transactions 1000000] [--brands 20] [--verify] [--keep]
                                    [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import msgspec

import contracts
from alliance.brands import service as brands
from alliance.core.audit import AuditContext
from alliance.db.migrate import migrate
from alliance.db.session import create_engine, create_session_factory
from alliance.ledger.chain import GENESIS_HASH, ChainPosting, transaction_hash
from alliance.ledger.verify import verify_ledger
from alliance.settlement.service import close_month

AUDIT = AuditContext(actor="bench", source_ip="local")
DEFAULT_PG = os.environ.get("ALLIANCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MONTH = "2026-03"
START = datetime(2026, 3, 1, tzinfo=UTC)
KINDS = (("coupon", 0.6), ("referral", 0.35), ("coupon_reversal", 0.05))


async def _admin(pg: str, sql: str) -> None:
    connection = await asyncpg.connect(pg)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _generate(
    brand_ids: list[str], n: int, seed: int = 6
) -> tuple[list[tuple], list[tuple], list[tuple], tuple[int, str]]:  # type: ignore[type-arg]
    rng = random.Random(seed)
    sealed_at = datetime(2026, 4, 1, 0, 5, tzinfo=UTC)
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    transactions: list[tuple] = []  # type: ignore[type-arg]
    postings: list[tuple] = []  # type: ignore[type-arg]
    balances: dict[tuple[str, str | None, str], int] = defaultdict(int)
    prev = GENESIS_HASH
    month_seconds = 31 * 24 * 3600
    for i in range(n):
        payer, payee = rng.sample(brand_ids, 2)
        kind = rng.choices(kinds, weights)[0]
        amount = rng.randint(100, 50_000) * (-1 if kind == "coupon_reversal" else 1)
        currency = "CNY" if i % 10 else "USD"
        occurred = START + timedelta(seconds=rng.randrange(month_seconds), microseconds=rng.randrange(1_000_000))
        posted = occurred + timedelta(milliseconds=rng.randint(1, 900))
        tx_id = f"ltx_bench{i:020d}"
        legs = [
            ChainPosting(0, contracts.payable_account(payer), payer, amount, currency),
            ChainPosting(1, contracts.CLEARING_ACCOUNT, None, -amount, currency),
            ChainPosting(2, contracts.CLEARING_ACCOUNT, None, amount, currency),
            ChainPosting(3, contracts.receivable_account(payee), payee, -amount, currency),
        ]
        reference = {"event_id": f"evt-{i}"}
        digest = transaction_hash(
            seq=i + 1,
            prev_hash=prev,
            id=tx_id,
            idempotency_scope=payee,
            idempotency_key=f"bench-{i}",
            brand_id=payee,
            kind=kind,
            occurred_at=occurred,
            posted_at=posted,
            period=MONTH,
            reference=reference,
            sealed_at=sealed_at,
            postings=legs,
        )
        transactions.append(
            (
                tx_id,
                payee,
                f"bench-{i}",
                payee,
                kind,
                occurred,
                posted,
                MONTH,
                msgspec.json.encode(reference).decode(),
                i + 1,
                prev,
                digest,
                sealed_at,
            )
        )
        prev = digest
        for leg in legs:
            postings.append((tx_id, leg.line, leg.account, leg.brand_id, leg.amount, leg.currency))
            balances[(leg.account, leg.brand_id, leg.currency)] += leg.amount
    accounts = [
        (account, currency, brand_id, balance)
        for (account, brand_id, currency), balance in sorted(balances.items(), key=lambda kv: (kv[0][0], kv[0][2]))
    ]
    return transactions, postings, accounts, (n, prev)


async def run(args: argparse.Namespace) -> None:
    name = f"bench_close_{secrets.token_hex(4)}"
    base = args.pg.rsplit("/", 1)[0]
    await _admin(args.pg, f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    sa_url = url.replace("postgresql://", "postgresql+asyncpg://")
    try:
        migrate(sa_url)
        engine = create_engine(sa_url)
        factory = create_session_factory(engine)
        brand_ids = []
        async with factory() as session, session.begin():
            for b in range(args.brands):
                brand, _ = await brands.create_brand(session, AUDIT, f"Bench brand {b:02d} 品牌{b:02d}", "bench")
                brand_ids.append(brand.id)

        started = time.perf_counter()
        transactions, postings, accounts, (head_seq, head_hash) = _generate(brand_ids, args.transactions)
        generated = time.perf_counter() - started
        connection = await asyncpg.connect(url)
        try:
            started = time.perf_counter()
            await connection.copy_records_to_table(
                "ledger_transactions",
                records=transactions,
                columns=[
                    "id", "idempotency_scope", "idempotency_key", "brand_id", "kind", "occurred_at", "posted_at",
                    "period", "reference", "seq", "prev_hash", "hash", "sealed_at",
                ],
            )  # fmt: skip
            await connection.copy_records_to_table(
                "ledger_postings",
                records=postings,
                columns=["transaction_id", "line", "account", "brand_id", "amount", "currency"],
            )
            await connection.copy_records_to_table(
                "ledger_accounts", records=accounts, columns=["account", "currency", "brand_id", "balance"]
            )
            await connection.execute(
                "INSERT INTO ledger_chain_head (id, seq, hash, sealed_at) VALUES (1, $1, $2, $3) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
                "sealed_at = excluded.sealed_at",
                head_seq,
                head_hash,
                datetime(2026, 4, 1, 0, 5, tzinfo=UTC),
            )
            await connection.execute("ANALYZE")
            loaded = time.perf_counter() - started
        finally:
            await connection.close()
        print(
            f"generated {args.transactions:,} sealed transactions ({len(postings):,} postings, {args.brands} brands) "
            f"in {generated:.1f} s, loaded with COPY in {loaded:.1f} s"
        )
        if args.verify:
            started = time.perf_counter()
            async with factory() as session, session.begin():
                report = await verify_ledger(session)
            print(f"ledger verify: ok={report.ok} in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        async with factory() as session, session.begin():
            result = await close_month(session, AUDIT, MONTH, key_file="", alliance_id="bench")
        elapsed = time.perf_counter() - started
        nets: dict[str, int] = defaultdict(int)
        for position in result.net_positions:
            nets[position.currency] += position.net
        print(
            f"close {MONTH}: {result.transactions:,} transactions, {result.statements} statements, "
            f"{len(result.pair_flows)} pair flows, net sum per currency {dict(nets)} in {elapsed:.2f} s "
            f"(target < 20 s)"
        )
        await engine.dispose()
    finally:
        if not args.keep:
            await _admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--brands", type=int, default=20)
    parser.add_argument("--verify", action="store_true", help="run alliance ledger verification before closing")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--pg", default=DEFAULT_PG)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
