"""A mixed workload by concurrent clients against the real server (``alliance serve --workers N``) on
PostgreSQL, for a bounded time; loopback only.

Default mode: creates a throwaway database on ``--pg`` (dropped at the end), migrates it, seeds two brands
under a signed contract with a benefit and coupon codes (``bench/redeem.py``'s seed, via ``bench.faults``),
and two more brands that match privately: their partner agents (``alliance.partner``: keys, signed PSI
contract, re-blinding allowances) publish small segments blinded with ``privacy/``, and one requests
cardinality matches that the other's agent answers from a background thread. Then ``--clients`` clients
run for ``--seconds``, each picking an operation by weight:

    publish a segment, run a match (SDK, blocking: run in threads, one at a time), issue coupons, redeem,
    reverse a redemption, referral + conversion, read ledger transactions, balances, a statement.

Money-moving calls carry an Idempotency-Key (one attempt each in this mode). Prints throughput, p50/p99
per operation and errors by status.

``--faults``: instead, a money-moving load (redeem + reverse + conversions, retried with the same
Idempotency-Key until a definitive answer) on a private PostgreSQL instance (``initdb`` in a temporary
directory; the shared server is never restarted), during which the server is SIGKILLed and restarted and
then PostgreSQL is stopped and started; afterwards ``alliance ledger verify`` and the invariant checks of
``bench.faults.check_database`` run, and the recovery times and counts are printed.

    .venv/bin/python bench/load.py [--seconds 30] [--clients 16] [--workers 2]
                                   [--pg postgresql://postgres@127.0.0.1:5432/postgres]
    .venv/bin/python bench/load.py --faults [--seconds 60] [--clients 16] [--pg-down 3] [--pg-stop-mode fast]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from alliance.brands import service as brands
from alliance.core.audit import AuditContext
from alliance.db.migrate import migrate
from alliance.db.session import create_engine, create_session_factory
from alliance.partner.agent import Agent, register_signing_key, sign_contract
from alliance.partner.client import PartnerClient, PartnerError
from alliance.partner.keystore import AgentStore
from alliance.partner.psi_client import PsiApi
from alliance.partner.publish import publish_identifiers
from bench.faults import (
    Attempt,
    ExchangeServer,
    Fault,
    MoneyClient,
    MoneySetup,
    PrivatePostgres,
    check_database,
    find_pg_bindir,
    ledger_verify_cli,
    run_money_load,
    seed_money,
)
from bench.redeem import _admin
from privacy.keys import epoch_of

AUDIT = AuditContext(actor="bench", source_ip="local")
DEFAULT_PG = os.environ.get("ALLIANCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SEGMENT_SIZE = 1_000  # the exchange's default minimum segment size (ALLIANCE_PSI_MIN_SEGMENT_SIZE)
# Operation -> weight in the mix.
MIX = {
    "redeem": 30,
    "reverse": 8,
    "convert": 10,
    "issue_coupons": 5,
    "ledger": 10,
    "balances": 10,
    "statement": 5,
    "publish": 2,
    "match": 2,
}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- setup of the matching brands (HTTP + partner SDK) ----------------------------------------------


async def _matching_brands(url: str) -> tuple[str, str, str]:
    """Two more brands for private matching and an operator key; returns (key A, key B, operator key)."""
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            _, key_a = await brands.create_brand(session, AUDIT, "Load Matcher A", "retail")
            _, key_b = await brands.create_brand(session, AUDIT, "Load Matcher B", "retail")
            admin = await brands.create_admin_key(session, AUDIT, "load")
        return key_a.secret, key_b.secret, admin.secret
    finally:
        await engine.dispose()


@dataclass
class Matcher:
    """One brand's partner agent: SDK client, agent home, keys."""

    client: PartnerClient
    store: AgentStore
    api: PsiApi
    agent: Agent
    brand_id: str = ""
    segments: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, base: str, key: str, home: Path) -> Matcher:
        client = PartnerClient(base, key)
        store = AgentStore(home, passphrase=f"load {home.name}")
        api = PsiApi(client)
        matcher = cls(client, store, api, Agent(api, store))
        matcher.brand_id = str(client.me()["brand"]["id"])
        store.keygen(epoch_of(datetime.now(UTC)), scrypt_n=2**12)
        register_signing_key(api, store)
        return matcher

    def publish(self, name: str) -> tuple[str, float]:
        started = time.perf_counter()
        phones = [f"139{secrets.randbelow(10**8):08d}" for _ in range(SEGMENT_SIZE)]
        report = publish_identifiers(self.api, self.store, phones, id_type="phone", name=name, tags=["psi"])
        self.segments.append(report.segment_id)
        return report.segment_id, time.perf_counter() - started


def setup_matching(base: str, key_a: str, key_b: str, home: Path) -> tuple[Matcher, Matcher]:
    a = Matcher.create(base, key_a, home / "agent-a")
    b = Matcher.create(base, key_b, home / "agent-b")
    proposal = {
        "parties": [a.brand_id, b.brand_id],
        "settlement_currency": "CNY",
        "effective_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "coupon_commission": {"kind": "fixed", "amount": 0},
        "referral": {"kind": "fixed", "amount": 0},
        "psi": {"segment_tags": ["psi"], "disclosure": "cardinality", "min_k": 10},
    }
    contract_id = str(a.client.request("POST", "/v1/contracts", json=proposal).json()["contract_id"])
    for matcher, other in ((a, b), (b, a)):
        sign_contract(matcher.api, matcher.store, contract_id)
        matcher.store.allow(other.brand_id, 10**9)
    b.publish("load b")
    return a, b


# --- the mixed workload -----------------------------------------------------------------------------


@dataclass
class Mixed:
    base: str
    money: MoneyClient  # one attempt per call here (give_up_after=0): the statuses are what the server said
    setup: MoneySetup
    a: Matcher
    b: Matcher
    month: str
    benefit_id: str
    record: list[tuple[str, Attempt]] = field(default_factory=list)
    redeemed: list[str] = field(default_factory=list)
    psi_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    samples: dict[str, str] = field(default_factory=dict)  # the first refusal of each kind, for the report

    async def _get(self, kind: str, path: str, key: str, **params: Any) -> None:
        started = time.monotonic()
        try:
            response = await self.money.http.get(path, headers={"Authorization": f"Bearer {key}"}, params=params)
            status = response.status_code
        except httpx.TransportError:
            status = 0
        now = time.monotonic()
        self.record.append((kind, Attempt(now, now - started, status)))

    async def _blocking(self, kind: str, work: Callable[[], Any]) -> None:
        async with self.psi_lock:  # matches and publishes are heavy (X25519): one at a time
            started = time.monotonic()
            try:
                await asyncio.to_thread(work)
                status = 200
            except PartnerError as exc:
                status = exc.status
                self.samples.setdefault(kind, str(exc))
            except TimeoutError:
                status = 0
            now = time.monotonic()
            self.record.append((kind, Attempt(now, now - started, status)))

    def _match(self) -> None:
        if not self.a.segments:
            self.a.publish("load a")
        segment = self.a.segments.pop()  # each A segment is matched once
        outcome = self.a.agent.request_match(segment, self.b.segments[-1], timeout=120, poll_seconds=0.2)
        if outcome.match["state"] != "done":
            raise PartnerError(409, "match-" + str(outcome.match["state"]), str(outcome.match.get("error")))

    async def step(self, op: str) -> None:
        funder, distributor = self.setup.funder_key, self.setup.distributor_key
        if op == "redeem":
            done = await self.money.redeem()
            if done is not None and done.acknowledged and done.resource_id:
                self.redeemed.append(done.resource_id)
        elif op == "reverse":
            if self.redeemed:
                await self.money.reverse(self.redeemed.pop(random.randrange(len(self.redeemed))))
        elif op == "convert":
            await self.money.convert()
        elif op == "issue_coupons":
            started = time.monotonic()
            try:
                response = await self.money.http.post(
                    f"/v1/benefits/{self.benefit_id}/coupons",
                    json={"count": 10},
                    headers={"Authorization": f"Bearer {distributor}"},
                )
                status = response.status_code
            except httpx.TransportError:
                status = 0
            now = time.monotonic()
            self.record.append(("issue_coupons", Attempt(now, now - started, status)))
        elif op == "ledger":
            await self._get("ledger", "/v1/ledger/transactions", random.choice((funder, distributor)), limit=50)
        elif op == "balances":
            await self._get("balances", "/v1/balances", random.choice((funder, distributor)))
        elif op == "statement":
            await self._get("statement", f"/v1/statements/{self.month}", random.choice((funder, distributor)))
        elif op == "publish":
            await self._blocking("publish", lambda: self.a.publish("load a"))
        elif op == "match":
            await self._blocking("match", self._match)

    async def client_loop(self, deadline: float) -> None:
        ops, weights = list(MIX), list(MIX.values())
        while time.monotonic() < deadline:
            op = random.choices(ops, weights)[0]
            if op in ("publish", "match") and self.psi_lock.locked():
                continue  # another client is matching: do something else rather than queue behind it
            await self.step(op)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def report(record: list[tuple[str, Attempt]], seconds: float) -> None:
    by_kind: dict[str, list[Attempt]] = defaultdict(list)
    for kind, attempt in record:
        by_kind[kind].append(attempt)
    total_ok = sum(1 for _, a in record if 200 <= a.status < 300)
    print(f"{'operation':<14}{'requests':>9}{'ok':>7}{'per s':>8}{'p50 ms':>9}{'p99 ms':>9}  errors by status")
    for kind in sorted(by_kind, key=lambda k: -len(by_kind[k])):
        attempts = by_kind[kind]
        ok = [a for a in attempts if 200 <= a.status < 300]
        latencies = [a.latency * 1000 for a in attempts]
        errors = Counter(a.status for a in attempts if not 200 <= a.status < 300)
        print(
            f"{kind:<14}{len(attempts):>9}{len(ok):>7}{len(ok) / seconds:>8.1f}{_percentile(latencies, 50):>9.1f}"
            f"{_percentile(latencies, 99):>9.1f}  {dict(errors) or '-'}"
        )
    print(f"total: {len(record)} requests, {total_ok} succeeded, {total_ok / seconds:.0f} successful operations/s")


async def _run_mixed(mixed: Mixed, seconds: float, clients: int) -> float:
    stop = threading.Event()
    b_agent = threading.Thread(target=mixed.b.agent.run, kwargs={"poll_seconds": 0.2, "stop": stop.is_set})
    b_agent.start()
    started = time.monotonic()
    try:
        await asyncio.gather(*(mixed.client_loop(started + seconds) for _ in range(clients)))
    finally:
        stop.set()
        b_agent.join(timeout=30)
        await mixed.money.aclose()
    return time.monotonic() - started


def run_mixed(args: argparse.Namespace) -> None:
    name = f"bax_bench_load_{os.getpid()}"
    asyncio.run(_admin(args.pg, f'CREATE DATABASE "{name}"'))
    url = args.pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    server: ExchangeServer | None = None
    try:
        migrate(url)
        setup = asyncio.run(seed_money(url, int(args.seconds * 600)))
        key_a, key_b, admin_key = asyncio.run(_matching_brands(url))
        with tempfile.TemporaryDirectory(prefix="bax-load-") as home:
            server = ExchangeServer(url, workers=args.workers, log_path=Path(home) / "server.log")
            server.start()
            # Last month: one operator adjustment between the two money brands, then closed, so that both
            # have a signed statement to read.
            last_day = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
            month = last_day.strftime("%Y-%m")
            admin = {"Authorization": f"Bearer {admin_key}"}
            adjustment = {
                "idempotency_key": f"load-{month}",
                "occurred_at": (last_day - timedelta(days=10)).isoformat().replace("+00:00", "Z"),
                "postings": [
                    {"account": f"brand:{setup.funder_id}:payable", "amount": -500, "currency": "CNY"},
                    {"account": f"brand:{setup.distributor_id}:receivable", "amount": 500, "currency": "CNY"},
                ],
            }
            httpx.post(f"{server.base}/admin/v1/ledger/transactions", json=adjustment, headers=admin).raise_for_status()
            httpx.post(
                f"{server.base}/admin/v1/settlements/{month}/close", headers=admin, timeout=60
            ).raise_for_status()
            benefits = httpx.get(
                f"{server.base}/v1/benefits", headers={"Authorization": f"Bearer {setup.distributor_key}"}
            ).json()
            a, b = setup_matching(server.base, key_a, key_b, Path(home))
            money = MoneyClient(server.base, setup, give_up_after=0)
            mixed = Mixed(server.base, money, setup, a, b, month, benefits[0]["id"])
            print(
                f"{args.clients} clients for {args.seconds:.0f} s against `alliance serve --workers {args.workers}` "
                f"on PostgreSQL; load average before: {_load()}"
            )
            elapsed = asyncio.run(_run_mixed(mixed, args.seconds, args.clients))
            print(f"load average after: {_load()}")
            report(mixed.record + money.attempts, elapsed)
            for kind, sample in mixed.samples.items():
                print(f"first refusal of {kind}: {sample}")
            for matcher in (a, b):
                matcher.client.close()
    finally:
        if server is not None:
            server.stop()
        asyncio.run(_admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- faults -------------------------------------------------------------------------------------------


def run_faults(args: argparse.Namespace) -> None:
    bindir = find_pg_bindir()
    if bindir is None:
        raise SystemExit("no initdb found (install PostgreSQL's server package): cannot run a private PostgreSQL")
    from alliance.db.migrate import migrate as migrate_db

    with PrivatePostgres(bindir) as pg, tempfile.TemporaryDirectory(prefix="bax-faults-") as home:
        asyncio.run(_admin(pg.url, 'CREATE DATABASE "bax_faults"'))
        plain = f"postgresql://postgres@127.0.0.1:{pg.port}/bax_faults"
        url = plain.replace("postgresql://", "postgresql+asyncpg://", 1)
        migrate_db(url)
        setup = asyncio.run(seed_money(url, int(args.seconds * 400)))
        server = ExchangeServer(url, workers=args.workers, log_path=Path(home) / "server.log")
        boot = server.start()
        faults = [Fault("kill", at=args.seconds / 4), Fault("pg", at=args.seconds * 0.6)]
        print(
            f"money-moving load: {args.clients} clients for {args.seconds:.0f} s, `alliance serve --workers "
            f"{args.workers}` (cold start {boot:.1f} s) on a private PostgreSQL (port {pg.port}); "
            f"SIGKILL at {faults[0].at:.0f} s, PostgreSQL {args.pg_stop_mode} stop for {args.pg_down:.0f} s at "
            f"{faults[1].at:.0f} s; load average before: {_load()}"
        )
        try:
            run = asyncio.run(
                run_money_load(
                    server,
                    setup,
                    seconds=args.seconds,
                    clients=args.clients,
                    faults=faults,
                    pg=pg,
                    pg_down_seconds=args.pg_down,
                    pg_stop_mode=args.pg_stop_mode,
                )
            )
        finally:
            print(f"load average after: {_load()}")
            server.stop()
        for fault in faults:
            print(fault.describe())
        print(f"throughput: {run.acknowledged_per_second():.0f} acknowledged money calls/s over the whole run")
        for fault in faults:
            window = [
                a for _, a in run.client.attempts if fault.ended < a.at <= fault.ended + 10 and 200 <= a.status < 300
            ]
            print(f"  in the 10 s after the {fault.kind} fault ended: {len(window) / 10:.0f} acknowledged calls/s")
        verify = ledger_verify_cli(url)
        print(f"alliance ledger verify: exit {verify.returncode}: {(verify.stdout or verify.stderr).strip()}")
        findings = asyncio.run(check_database(plain, run.client.operations))
        print(findings.summary())
        for name, count in findings.must_be_zero.items():
            print(f"  {name}: {count}")
        if verify.returncode != 0 or not findings.ok or findings.unresolved:
            raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pg", default=DEFAULT_PG, help="admin URL of the PostgreSQL server (mixed mode)")
    parser.add_argument("--faults", action="store_true", help="money-moving load with SIGKILL and a PG restart")
    parser.add_argument("--pg-down", type=float, default=3, help="--faults: seconds PostgreSQL stays down")
    parser.add_argument("--pg-stop-mode", default="fast", choices=["fast", "immediate"])
    args = parser.parse_args()
    if args.faults:
        run_faults(args)
    else:
        run_mixed(args)


if __name__ == "__main__":
    main()
