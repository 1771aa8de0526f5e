"""Benchmark of the console's pages on PostgreSQL with a large audit log and a large ledger.

Seeds a throwaway database with 20 brands (through the brand service), N audit entries (default one
million, spread over a year, bulk-loaded with COPY), M ledger transactions (default one million over the
last twelve months, sealed into a real hash chain - every hash computed with ``alliance.ledger.chain``, so
verification passes - with their postings as pricing books them and the account balances the sealer
would keep), 20 benefits with R redemptions (default 200,000, 3 % reversed), and closes the oldest month
through the settlement service. Then it starts ``alliance serve`` on it, signs in and requests every
console page ``--rounds`` times. Prints each page's server time as reported by its ``Server-Timing``
header (median, p95 and worst), which is what the 300 ms budget is about, and finally runs a full ledger
verification from the console and reports how long it took.

    .venv/bin/python bench/console.py [--audit-rows 1000000] [--ledger-rows 1000000]
                                      [--redemptions 200000] [--rounds 15]

Needs the local PostgreSQL (``ALLIANCE_TEST_POSTGRES_URL`` or trust auth on 127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx

import contracts
from alliance.brands import service as brands
from alliance.console import service as console
from alliance.core.audit import AuditContext
from alliance.db.migrate import migrate
from alliance.db.session import create_engine, create_session_factory
from alliance.ledger.chain import GENESIS_HASH, ChainPosting, transaction_hash
from alliance.settlement.service import close_month

ADMIN_URL = os.environ.get("ALLIANCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CTX = AuditContext(actor="bench", source_ip="local")
PASSWORD = "benchmark password"
ACTIONS = [
    ("redemption.create", 60),
    ("coupon.issue", 20),
    ("api_key.create", 8),
    ("match.create", 8),
    ("contract.sign", 3),
    ("brand.suspend", 0.001),  # rare: the filter must not walk the log to find it
]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def seed_ledger(url: str, brand_ids: list[str], rows: int) -> str:
    """``rows`` sealed transactions over the last twelve months, oldest first, as the posting path and
    the sealer would have written them: coupon events (funding and commission: 8 postings), referrals
    (4), coupon reversals (the negated 8) and the odd operator correction. Returns the oldest period."""
    rng = random.Random(11)
    now = datetime.now(UTC).replace(microsecond=0)
    first = now - timedelta(days=365)
    tx_columns = [
        "id",
        "idempotency_scope",
        "idempotency_key",
        "brand_id",
        "kind",
        "occurred_at",
        "posted_at",
        "period",
        "reference",
        "seq",
        "prev_hash",
        "hash",
        "sealed_at",
    ]
    posting_columns = ["transaction_id", "line", "account", "brand_id", "amount", "currency"]
    balances: dict[tuple[str, str], int] = {}
    prev_hash = GENESIS_HASH
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    oldest = f"{first.year:04d}-{first.month:02d}"
    try:
        batch = 50_000
        seq = 0
        for start in range(0, rows, batch):
            txs, legs = [], []
            for i in range(start, min(start + batch, rows)):
                posted = first + timedelta(seconds=i * 365 * 86400 / rows)
                occurred = posted - timedelta(seconds=rng.randint(1, 30))
                payer, payee = rng.sample(brand_ids, 2)
                roll = rng.random()
                amount = rng.randint(500, 20_000)
                if roll < 0.62:
                    kind = "coupon"
                    obligations = [
                        contracts.Obligation(
                            payer=payer, payee=payee, amount=amount, currency="CNY", reason="coupon_funding"
                        ),
                        contracts.Obligation(
                            payer=payee,
                            payee=payer,
                            amount=amount // 50 + 1,
                            currency="CNY",
                            reason="coupon_commission",
                        ),
                    ]
                elif roll < 0.65:
                    kind = "coupon_reversal"
                    obligations = [
                        contracts.Obligation(
                            payer=payer, payee=payee, amount=-amount, currency="CNY", reason="coupon_funding"
                        ),
                        contracts.Obligation(
                            payer=payee,
                            payee=payer,
                            amount=-(amount // 50 + 1),
                            currency="CNY",
                            reason="coupon_commission",
                        ),
                    ]
                elif roll < 0.995:
                    kind = "referral"
                    obligations = [
                        contracts.Obligation(
                            payer=payer, payee=payee, amount=500, currency="CNY", reason="referral_commission"
                        )
                    ]
                else:
                    kind = "adjustment"
                    obligations = [
                        contracts.Obligation(
                            payer=payer, payee=payee, amount=amount, currency="USD", reason="referral_commission"
                        )
                    ]
                postings = contracts.postings_for(obligations)
                tx_id = f"ltx_bench{i:012d}"
                seq += 1
                sealed = posted + timedelta(milliseconds=200)
                period = f"{occurred.year:04d}-{occurred.month:02d}"
                reference = {"event_id": f"evt-{i}"}
                chain_legs = []
                for line, p in enumerate(postings, start=1):
                    parsed = contracts.parse_brand_account(p.account)
                    owner = parsed[0] if parsed else None
                    chain_legs.append(ChainPosting(line, p.account, owner, p.amount, p.currency))
                    legs.append((tx_id, line, p.account, owner, p.amount, p.currency))
                    if owner is not None:  # the clearing account nets to zero: the sealer keeps no row
                        balances[(p.account, p.currency)] = balances.get((p.account, p.currency), 0) + p.amount
                digest = transaction_hash(
                    seq=seq,
                    prev_hash=prev_hash,
                    id=tx_id,
                    idempotency_scope=payee,
                    idempotency_key=f"evt-{i}",
                    brand_id=payee,
                    kind=kind,
                    occurred_at=occurred,
                    posted_at=posted,
                    period=period,
                    reference=reference,
                    sealed_at=sealed,
                    postings=chain_legs,
                )
                txs.append(
                    (
                        tx_id,
                        payee,
                        f"evt-{i}",
                        payee,
                        kind,
                        occurred,
                        posted,
                        period,
                        json.dumps(reference),
                        seq,
                        prev_hash,
                        digest,
                        sealed,
                    )
                )
                prev_hash = digest
            await conn.copy_records_to_table("ledger_transactions", records=txs, columns=tx_columns)
            await conn.copy_records_to_table("ledger_postings", records=legs, columns=posting_columns)
        await conn.copy_records_to_table(
            "ledger_accounts",
            records=[
                (account, currency, contracts.parse_brand_account(account)[0], balance)  # type: ignore[index]
                for (account, currency), balance in balances.items()
            ],
            columns=["account", "currency", "brand_id", "balance"],
        )
        await conn.execute(
            "INSERT INTO ledger_chain_head (id, seq, hash, sealed_at) VALUES (1, $1, $2, now()) "
            "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, sealed_at = excluded.sealed_at",
            seq,
            prev_hash,
        )
    finally:
        await conn.close()
    return oldest


async def seed_benefits(url: str, brand_ids: list[str], redemptions: int) -> None:
    """A benefit per brand (distributed by the next brand), and ``redemptions`` coupons redeemed over the
    last six months - 3 % of them reversed - written in bulk with generate_series."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with conn.transaction():
            for n, funder in enumerate(brand_ids):
                distributor = brand_ids[(n + 1) % len(brand_ids)]
                await conn.execute(
                    "INSERT INTO benefits (id, funding_brand_id, name, description, value_kind, value, min_spend, "
                    "currency, valid_from, valid_to, budget_amount, budget_count, spent_amount, spent_count, "
                    "issued_count, channels, new_customers_only, reversal_window_seconds, status, created_at, "
                    "updated_at) VALUES ($1, $2, $3, '', 'fixed', 1000, 5000, 'CNY', now() - interval '180 days', "
                    "now() + interval '30 days', $4, $5, 0, 0, 0, '[\"store\", \"online\"]', false, 2592000, "
                    "'active', now() - interval '180 days', now())",
                    f"ben_bench{n:02d}",
                    funder,
                    f"Benefit {n:02d} 立减{n:02d}",
                    1000 * redemptions,
                    2 * redemptions,
                )
                await conn.execute(
                    "INSERT INTO benefit_distributors (benefit_id, brand_id) VALUES ($1, $2)",
                    f"ben_bench{n:02d}",
                    distributor,
                )
                await conn.execute(
                    "INSERT INTO benefit_tags (benefit_id, tag) VALUES ($1, 'home'), ($1, $2)",
                    f"ben_bench{n:02d}",
                    f"t{n % 4}",
                )
                await conn.execute(
                    "INSERT INTO coupon_batches (id, benefit_id, funding_brand_id, distributor_brand_id, count, "
                    "created_at) VALUES ($1, $2, $3, $4, $5, now() - interval '180 days')",
                    f"cbt_bench{n:02d}",
                    f"ben_bench{n:02d}",
                    funder,
                    distributor,
                    redemptions // len(brand_ids) + 1,
                )
            # Redemption i belongs to benefit i % 20 and happened (180 days * (1 - i/N)) ago.
            await conn.execute(
                "INSERT INTO coupons (id, benefit_id, funding_brand_id, distributor_brand_id, batch_id, code_hash, "
                "status, issued_at, redeemed_at) "
                "SELECT 'cpn_bench' || i, 'ben_bench' || lpad((i % 20)::text, 2, '0'), b.funding_brand_id, "
                "d.brand_id, 'cbt_bench' || lpad((i % 20)::text, 2, '0'), md5(i::text) || md5('x' || i), "
                "'redeemed', now() - interval '181 days', now() - (interval '180 days') * (1 - i::float / $1) "
                "FROM generate_series(1, $1) AS i "
                "JOIN benefits b ON b.id = 'ben_bench' || lpad((i % 20)::text, 2, '0') "
                "JOIN benefit_distributors d ON d.benefit_id = b.id",
                redemptions,
            )
            await conn.execute(
                "INSERT INTO redemptions (id, coupon_id, benefit_id, funding_brand_id, distributor_brand_id, "
                "order_reference, order_amount, discount, currency, channel, redeemed_at, commission, "
                "refunded_amount, restored_discount, status) "
                "SELECT 'rdm_bench' || substr(c.id, 10), c.id, c.benefit_id, c.funding_brand_id, "
                "c.distributor_brand_id, "
                "'ord-' || c.id, 12000, 1000, 'CNY', 'store', c.redeemed_at, 21, "
                "CASE WHEN hashtext(c.id) % 33 = 0 THEN 12000 ELSE 0 END, "
                "CASE WHEN hashtext(c.id) % 33 = 0 THEN 1000 ELSE 0 END, "
                "CASE WHEN hashtext(c.id) % 33 = 0 THEN 'reversed' ELSE 'redeemed' END "
                "FROM coupons c WHERE c.id LIKE 'cpn_bench%'"
            )
            await conn.execute(
                "INSERT INTO redemption_reversals (id, redemption_id, funding_brand_id, refund_amount, "
                'restored_discount, commission_delta, "full", reason, created_at) '
                "SELECT 'rrv' || substr(id, 4), id, funding_brand_id, 12000, 1000, -21, true, 'bench', "
                "redeemed_at + interval '2 days' FROM redemptions WHERE status = 'reversed'"
            )
            await conn.execute(
                "UPDATE benefits b SET spent_amount = s.amount, spent_count = s.n, issued_count = s.n "
                "FROM (SELECT benefit_id, sum(discount - restored_discount) AS amount, "
                "count(*) FILTER (WHERE status <> 'reversed') AS n FROM redemptions GROUP BY benefit_id) s "
                "WHERE s.benefit_id = b.id"
            )
    finally:
        await conn.close()


async def _analyze(url: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def close_oldest(url: str, month: str) -> float:
    engine = create_engine(url)
    factory = create_session_factory(engine)
    started = time.perf_counter()
    async with factory() as db, db.begin():
        await close_month(db, CTX, month, key_file="", alliance_id="bench-alliance")
    await engine.dispose()
    return time.perf_counter() - started


async def seed(url: str, audit_rows: int) -> list[str]:
    engine = create_engine(url)
    factory = create_session_factory(engine)
    brand_ids = []
    async with factory() as db, db.begin():
        for i in range(20):
            brand, _ = await brands.create_brand(db, CTX, f"Brand {i:02d} 品牌{i:02d}", "retail")
            brand_ids.append(brand.id)
        await console.create_user(db, CTX, "bench", PASSWORD, "admin")
    await engine.dispose()

    rng = random.Random(7)
    names = [a for a, _ in ACTIONS]
    weights = [w for _, w in ACTIONS]
    now = datetime.now(UTC)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        batch = 100_000
        for start in range(0, audit_rows, batch):
            rows = []
            for i in range(start, min(start + batch, audit_rows)):
                # Older rows first, so ids grow with time as they do in real life.
                at = now - timedelta(seconds=(audit_rows - i) * 365 * 86400 / audit_rows)
                action = rng.choices(names, weights)[0]
                rows.append((at, "brand:x/key:y", rng.choice(brand_ids), action, "t", "127.0.0.1", None, "{}"))
            await conn.copy_records_to_table(
                "audit_log",
                records=rows,
                columns=["at", "actor", "brand_id", "action", "target", "source_ip", "request_id", "details"],
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return brand_ids


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(url: str, brand_ids: list[str], rounds: int, closed_month: str, verify: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env["ALLIANCE_DATABASE_URL"] = url
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "alliance.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        client = httpx.Client(base_url=base, timeout=30)
        page = client.get("/console/login").text
        token = re.search(r'name="_csrf_token" value="([0-9a-f]+)"', page)
        assert token
        signed_in = client.post(
            "/console/login", data={"_csrf_token": token.group(1), "username": "bench", "password": PASSWORD}
        )
        assert signed_in.status_code in (200, 303), signed_in.text
        first_page = client.get("/console/audit").text
        cursor = re.search(r"before=(\d+)", first_page)
        assert cursor
        ledger_page = client.get("/console/ledger").text
        ledger_cursor = re.search(r"before=(ltx_\w+)", ledger_page)
        assert ledger_cursor
        redemption_page = client.get("/console/redemptions").text
        redemption_cursor = re.search(r"after=(rdm_\w+)", redemption_page)
        assert redemption_cursor
        tx_id = re.search(r'href="/console/ledger/transactions/([^"]+)"', ledger_page)
        assert tx_id
        month_ago = (datetime.now(UTC) - timedelta(days=30)).date()
        pages = {
            "dashboard": "/console/",
            "brands": "/console/brands",
            "brand detail": f"/console/brands/{brand_ids[3]}",
            "audit log": "/console/audit",
            "audit log, page 2": f"/console/audit?before={cursor.group(1)}",
            "audit log, one brand": f"/console/audit?brand={brand_ids[5]}",
            "audit log, rare action": "/console/audit?action=brand.suspend",
            "audit log, common action": "/console/audit?action=coupon.issue",
            "users": "/console/users",
            "benefits": "/console/benefits",
            "benefits, brand+tag": f"/console/benefits?brand={brand_ids[2]}&tag=home",
            "benefit (burn-down)": "/console/benefits/ben_bench07",
            "redemptions": "/console/redemptions",
            "redemptions, page 2": f"/console/redemptions?after={redemption_cursor.group(1)}",
            "redemptions, benefit": "/console/redemptions?benefit=ben_bench04",
            "redemptions, distributor": f"/console/redemptions?brand={brand_ids[6]}&role=distributing",
            "redemptions, reversed": "/console/redemptions?status=reversed",
            "redemptions, dates": f"/console/redemptions?since={month_ago}&until={month_ago}",
            "ledger": "/console/ledger",
            "ledger, page 2": f"/console/ledger?before={ledger_cursor.group(1)}",
            "ledger, one brand": f"/console/ledger?brand={brand_ids[8]}",
            "ledger, account": f"/console/ledger?account=brand:{brand_ids[9]}:payable",
            "ledger, brand+dates": f"/console/ledger?brand={brand_ids[1]}&since={month_ago}&until={month_ago}",
            "ledger, old dates": "/console/ledger?until="
            + (datetime.now(UTC) - timedelta(days=300)).date().isoformat(),
            "ledger transaction": f"/console/ledger/transactions/{tx_id.group(1)}",
            "ledger verification": "/console/ledger/verification",
            "settlements": "/console/settlements",
            "settlement run": f"/console/settlements/{closed_month}",
            "statement json": f"/console/settlements/{closed_month}/statements/{brand_ids[0]}/json",
            "statement pdf": f"/console/settlements/{closed_month}/statements/{brand_ids[0]}/pdf",
        }
        print(f"{'page':<28}{'median ms':>10}{'p95 ms':>10}{'worst ms':>10}")
        for name, path in pages.items():
            timings = []
            for _ in range(rounds):
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code)
                timings.append(float(response.headers["server-timing"].split("dur=")[1]))
            timings.sort()
            p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
            flag = "  OVER 300 ms" if statistics.median(timings) > 300 else ""
            print(f"{name:<28}{statistics.median(timings):>10.1f}{p95:>10.1f}{timings[-1]:>10.1f}{flag}")
        if verify:
            token = re.search(r'name="_csrf_token" value="([0-9a-f]+)"', client.get("/console/ledger").text)
            assert token
            started = time.perf_counter()
            client.post("/console/ledger/verification", data={"_csrf_token": token.group(1)})
            while "verification-running" in (status := client.get("/console/ledger/verification").text):
                time.sleep(1)
            took = time.perf_counter() - started
            result = "passed" if "badge--ok" in status else "FAILED"
            print(f"ledger verification from the console: {result} in {took:.0f} s (background task)")
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--ledger-rows", type=int, default=1_000_000)
    parser.add_argument("--redemptions", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-verify", action="store_true", help="skip the full ledger verification at the end")
    args = parser.parse_args()
    name = f"bax_bench_console_{os.getpid()}_{secrets.token_hex(2)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    try:
        migrate(url)
        started = time.perf_counter()
        brand_ids = asyncio.run(seed(url, args.audit_rows))
        print(f"seeded 20 brands and {args.audit_rows:,} audit entries in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        oldest = asyncio.run(seed_ledger(url, brand_ids, args.ledger_rows))
        print(f"seeded {args.ledger_rows:,} sealed ledger transactions in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        asyncio.run(seed_benefits(url, brand_ids, args.redemptions))
        asyncio.run(_analyze(url))
        print(f"seeded 20 benefits and {args.redemptions:,} redemptions in {time.perf_counter() - started:.0f} s")
        print(f"closed {oldest} through the settlement service in {asyncio.run(close_oldest(url, oldest)):.1f} s")
        print(f"machine load before measuring: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
        measure(url, brand_ids, args.rounds, oldest, not args.no_verify)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
