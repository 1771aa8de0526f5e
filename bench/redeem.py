"""Benchmark of the redemption hot path: ``POST /v1/redemptions`` through the real HTTP server on
PostgreSQL, driven by concurrent keep-alive clients.

It creates a throwaway PostgreSQL database, migrates it, seeds two brands, a contract signed with real
Ed25519 keys, a benefit and enough coupon codes (through the public services), starts
``alliance serve --workers N`` on it, and then keeps ``--concurrency`` connections busy for
``--seconds``, each redeeming a fresh code per request (with its own Idempotency-Key). Every redemption
is the full path: authentication, idempotency lookup, coupon and benefit checks, the exactly-once
coupon update, the budget update, contract lookup, pricing, month-to-date commission, the ledger
transaction, the webhook outbox, the audit row and the idempotency record, in one transaction.

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams (requests pre-encoded) so that
the load generator, which shares the machine's cores with the server and PostgreSQL, costs as little
CPU as possible. Closed loop by default (each connection sends its next request when the last one is
answered: the rate the server can sustain at that concurrency); ``--rate R`` offers R requests per
second on a fixed schedule instead (open loop, latency from the scheduled send time). Prints sustained
redemptions per second, p50/p90/p99/max latency, and the CPU time per request of the server processes,
of the PostgreSQL backends serving them and of the client (from /proc; the figure that depends least on
what else the machine is doing), with the load average.

    .venv/bin/python bench/redeem.py [--seconds 20] [--concurrency 32] [--workers 2] [--warmup 3]
                                     [--rate R] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # type: ignore[import-untyped]
import httpx
import uvloop
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url

import contracts
from alliance.benefits import catalogue, coupons
from alliance.benefits.schemas import BenefitCreate
from alliance.brands import service as brands
from alliance.contracts import service as contract_service
from alliance.contracts.schemas import ContractProposal
from alliance.core.audit import AuditContext
from alliance.db.migrate import migrate
from alliance.db.session import create_engine, create_session_factory

AUDIT = AuditContext(actor="bench", source_ip="local")


async def _admin(pg: str, sql: str) -> None:
    conn = await asyncpg.connect(pg)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def seed(url: str, codes_needed: int) -> tuple[str, list[str]]:
    """Two brands, a signed contract, a benefit, ``codes_needed`` codes; returns (funder key, codes)."""
    engine = create_engine(url)
    factory = create_session_factory(engine)
    try:
        async with factory() as session, session.begin():
            funder, funder_key = await brands.create_brand(session, AUDIT, "Bench Funder", "home")
            distributor, _ = await brands.create_brand(session, AUDIT, "Bench Distributor", "fruit")
            keys = {}
            for brand in (funder, distributor):
                keys[brand.id] = Ed25519PrivateKey.generate()
                await contract_service.register_signing_key(
                    session, AUDIT, brand.id, contracts.public_key_bytes(keys[brand.id])
                )
            proposal = ContractProposal(
                parties=(funder.id, distributor.id),
                settlement_currency="CNY",
                effective_from=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1),
                coupon_commission=contracts.RateCommission(rate_bp=200, monthly_cap=10**12),
                referral=contracts.FixedCommission(amount=500),
                funding=(
                    contracts.FundingSplit(
                        benefit=contracts.ANY_BENEFIT,
                        funding_brand=funder.id,
                        distributor_brand=distributor.id,
                        funding_brand_bp=7_000,
                        distributor_bp=3_000,
                    ),
                ),
            )
            terms = (await contract_service.propose_contract(session, AUDIT, funder.id, proposal)).versions[0].terms
            for brand in (funder, distributor):
                signature = contracts.sign_terms(keys[brand.id], terms)
                await contract_service.sign_version(session, AUDIT, brand.id, terms.contract_id, 1, signature)
            benefit = await catalogue.create_benefit(
                session,
                AUDIT,
                funder.id,
                BenefitCreate(
                    name="Bench 10 off",
                    value_kind="fixed",
                    value=1_000,
                    min_spend=5_000,
                    currency="CNY",
                    valid_to=datetime.now(UTC) + timedelta(days=1),
                    budget_amount=10**12,
                    budget_count=10**9,
                    channels=["store"],
                    distributors=[distributor.id],
                ),
            )
        codes: list[str] = []
        while len(codes) < codes_needed:
            async with factory() as session, session.begin():
                batch = await coupons.issue_coupons(
                    session, AUDIT, distributor.id, benefit.id, min(5_000, codes_needed - len(codes))
                )
            codes.extend(c.code for c in batch.coupons)
        return funder_key.secret, codes
    finally:
        await engine.dispose()


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (the uvicorn supervisor and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` (from /proc; processes that are gone count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


class BackendClock:
    """CPU time of the PostgreSQL backends serving one database, sampled from /proc every 0.2 s in a
    thread (a backend's title names its database), so that connections opened and closed during the
    run count too (up to their last sample)."""

    def __init__(self, database: str) -> None:
        self.marker = f" {database} ".encode()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, initial: bool) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if self.marker not in f.read().replace(b"\0", b" ") + b" ":
                        continue
            except OSError:
                continue
            pid = int(entry)
            seconds = cpu_seconds([pid])
            if initial:
                self.first[pid] = seconds
            self.first.setdefault(pid, 0.0)
            self.last[pid] = max(seconds, self.last.get(pid, 0.0))

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            self._sample(False)

    def __enter__(self) -> BackendClock:
        self._sample(True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._sample(False)
        self.stop.set()
        self.thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def machine_speed_ms() -> float:
    """Milliseconds a fixed pure-Python loop takes on one core: printed before and after the run, because
    this kind of shared machine runs the same work at different speeds from one minute to the next (seen
    here: 380 to 630 ms), and the latency tail follows the speed."""
    started = time.perf_counter()
    sum(range(30_000_000))
    return (time.perf_counter() - started) * 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_bytes(port: int, key: str, code: str) -> bytes:
    body = json.dumps(
        {"code": code, "order_reference": f"ord-{secrets.token_hex(6)}", "order_amount": 12_000, "channel": "store"}
    ).encode()
    head = (
        f"POST /v1/redemptions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Idempotency-Key: {uuid.uuid4()}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def one_connection(
    port: int,
    queue: list[bytes],
    deadline: float,
    record: list[tuple[float, float, int]],
    interval: float | None = None,
    offset: float = 0.0,
) -> None:
    """Send requests one at a time on one keep-alive connection: back to back (closed loop), or with
    ``interval`` on a fixed schedule (open loop), latency then counted from the *scheduled* send time so
    that a server falling behind is not hidden by the client waiting for it (coordinated omission)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    next_at = time.perf_counter() + offset
    try:
        while queue and time.perf_counter() < deadline:
            request = queue.pop()
            if interval is not None:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                started = next_at
                next_at += interval
            else:
                started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            finished = time.perf_counter()
            record.append((finished, finished - started, int(status_line.split()[1])))
    finally:
        writer.close()


async def drive(
    port: int, requests: list[bytes], seconds: float, concurrency: int, rate: float | None = None
) -> list[tuple[float, float, int]]:
    record: list[tuple[float, float, int]] = []
    deadline = time.perf_counter() + seconds
    interval = concurrency / rate if rate else None
    await asyncio.gather(
        *(
            one_connection(port, requests, deadline, record, interval, (interval or 0) * i / concurrency)
            for i in range(concurrency)
        )
    )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-rate", type=int, default=1_500, help="codes seeded per second of run")
    parser.add_argument(
        "--rate",
        type=float,
        help="open loop: offer this many redemptions per second in total, spread over the connections "
        "(default: closed loop, each connection sends its next request as soon as the last one is answered)",
    )
    parser.add_argument(
        "--pg", default=os.environ.get("ALLIANCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--redemption-connections", type=int, help="ALLIANCE_REDEMPTION_CONNECTIONS of the server (default: its own)"
    )
    parser.add_argument("--timeline", action="store_true", help="also print count, p50, p99 and max per second")
    args = parser.parse_args()

    name = f"bax_bench_{os.getpid()}"
    asyncio.run(_admin(args.pg, f'CREATE DATABASE "{name}"'))
    url = make_url(args.pg).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
    process = None
    try:
        migrate(url)
        total_codes = int((args.seconds + args.warmup) * args.max_rate)
        started = time.perf_counter()
        key, codes = asyncio.run(seed(url, total_codes))
        print(f"seeded {len(codes)} codes in {time.perf_counter() - started:.1f} s")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
        env.update(ALLIANCE_DATABASE_URL=url, ALLIANCE_LOG_LEVEL=args.log_level)
        if args.redemption_connections is not None:
            env["ALLIANCE_REDEMPTION_CONNECTIONS"] = str(args.redemption_connections)
        process = subprocess.Popen(
            [sys.executable, "-m", "alliance.cli", "serve", "--port", str(port), "--workers", str(args.workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        speed_before = machine_speed_ms()
        requests = [request_bytes(port, key, code) for code in codes]
        # The client's own full collections (40k pre-encoded requests, seed objects) would stall every
        # connection it drives and count as server latency: freeze what exists now, collect nothing more.
        gc.collect()
        gc.freeze()
        gc.disable()
        warm = requests[: int(args.warmup * args.max_rate)]
        main_run = requests[len(warm) :]
        uvloop.run(drive(port, warm, args.warmup, args.concurrency, args.rate))  # the cheapest client loop
        server_pids = process_tree(process.pid)
        with BackendClock(name) as backends:
            before = cpu_seconds(server_pids), time.process_time()
            record = uvloop.run(drive(port, main_run, args.seconds, args.concurrency, args.rate))
            after = cpu_seconds(server_pids), time.process_time()
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=15)
        asyncio.run(_admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    if not record:
        raise SystemExit("no request completed")
    statuses = Counter(status for _, _, status in record)
    ok = [latency for _, latency, status in record if status == 201]
    span = max(t for t, _, _ in record) - min(t for t, _, _ in record) + statistics.mean(ok or [0])
    latencies = sorted(latency * 1000 for _, latency, _ in record)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    offered = f"open loop, {args.rate:.0f}/s offered" if args.rate else "closed loop"
    print(
        f"redemptions: {len(ok)} succeeded in {span:.1f} s with {args.concurrency} connections ({offered}), "
        f"{args.workers} server workers (statuses {dict(statuses)})"
    )
    print(f"sustained: {len(ok) / span:.0f} redemptions/s")
    server_ms, client_ms = ((a - b) * 1000 / max(1, len(record)) for a, b in zip(after, before, strict=True))
    pg_ms = backends.seconds * 1000 / max(1, len(record))
    print(
        f"CPU per request: {server_ms + pg_ms + client_ms:.2f} ms = server {server_ms:.2f} + PostgreSQL backends "
        f"{pg_ms:.2f} + load client {client_ms:.2f} (ms; /proc clocks over the measured run)"
    )
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"machine speed: reference loop {speed_before:.0f} ms before the run, {machine_speed_ms():.0f} ms after")
    print(f"latency ms: p50 {pct(50):.1f}  p90 {pct(90):.1f}  p99 {pct(99):.1f}  max {latencies[-1]:.1f}")
    if args.timeline:
        print_timeline(record)


def print_timeline(record: list[tuple[float, float, int]]) -> None:
    """Per second of the run: requests answered and their p50/p99/max latency (where the tail comes from)."""
    start = min(t for t, _, _ in record)
    seconds: dict[int, list[float]] = {}
    for finished, latency, _ in record:
        seconds.setdefault(int(finished - start), []).append(latency * 1000)
    for second, values in sorted(seconds.items()):
        values.sort()
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        p50 = values[len(values) // 2]
        print(f"  s{second:>3}: {len(values):>4} answered  p50 {p50:6.1f}  p99 {p99:6.1f}  max {values[-1]:6.1f}")


if __name__ == "__main__":
    main()
