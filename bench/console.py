"""Benchmark of the console's pages on PostgreSQL with a large audit log.

Seeds a throwaway database with 20 brands (through the brand service) and N audit entries (default one
million, spread over a year, bulk-loaded with COPY), starts ``alliance serve`` on it, signs in and
requests every console page ``--rounds`` times. Prints each page's server time as reported by its
``Server-Timing`` header (median and worst), which is what the 300 ms budget is about.

    .venv/bin/python bench/console.py [--audit-rows 1000000] [--rounds 15]

Needs the local PostgreSQL (``ALLIANCE_TEST_POSTGRES_URL`` or trust auth on 127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import asyncio
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

from alliance.brands import service as brands
from alliance.console import service as console
from alliance.core.audit import AuditContext
from alliance.db.migrate import migrate
from alliance.db.session import create_engine, create_session_factory

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


def measure(url: str, brand_ids: list[str], rounds: int) -> None:
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
        }
        print(f"{'page':<28}{'median ms':>10}{'worst ms':>10}")
        for name, path in pages.items():
            timings = []
            for _ in range(rounds):
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code)
                timings.append(float(response.headers["server-timing"].split("dur=")[1]))
            print(f"{name:<28}{statistics.median(timings):>10.1f}{max(timings):>10.1f}")
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    name = f"bax_bench_console_{os.getpid()}_{secrets.token_hex(2)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    try:
        migrate(url)
        started = time.perf_counter()
        brand_ids = asyncio.run(seed(url, args.audit_rows))
        print(f"seeded 20 brands and {args.audit_rows:,} audit entries in {time.perf_counter() - started:.0f} s")
        measure(url, brand_ids, args.rounds)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
