"""Fault injection for the exchange: a private PostgreSQL instance that can be restarted, the real server as
a process that can be SIGKILLed and restarted, a money-moving client that retries like a real partner, and
the invariant checks run afterwards.

Used by ``tests/faults`` (bounded, in CI) and by ``bench/load.py --faults`` (longer runs). Everything talks
to loopback addresses only.

The private PostgreSQL (``PrivatePostgres``) is an ``initdb`` cluster in a temporary directory on a free
port: restarting it never touches the machine's shared server. When run as root, ``initdb``/``pg_ctl`` run
as the ``postgres`` OS user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

__all__ = [
    "ExchangeServer",
    "MoneyClient",
    "PrivatePostgres",
    "find_pg_bindir",
    "free_port",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- a private PostgreSQL ----------------------------------------------------------------------------


def find_pg_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``, else ``initdb`` on PATH; None when there is no ``initdb``."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.parent.name
        return tuple(int(p) for p in part.split(".") if p.isdigit())

    candidates += [Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)[::-1]]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (trust auth, loopback, its own port) that can be stopped and started.

    ``start()`` runs ``initdb`` the first time. ``url`` is an admin URL (database ``postgres``).
    """

    def __init__(self, bindir: Path, port: int | None = None) -> None:
        self.bindir = bindir
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="bax-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError("running as root and there is no 'postgres' OS user to run PostgreSQL") from exc
            self.user = "postgres"
            shutil.chown(self.root, "postgres")
        self.root.chmod(0o700)
        self._initialised = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )
        return result

    def start(self) -> None:
        if not self._initialised:
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-instructions"
            )
            self._initialised = True
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clients disconnected, open transactions rolled back, clean shutdown)
        or ``immediate`` (no shutdown checkpoint: crash recovery on the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_seconds: float, mode: str = "fast") -> tuple[float, float]:
        """Stop, stay down ``down_seconds``, start; returns (stopped_at, started_at) as monotonic times."""
        self.stop(mode)
        stopped = time.monotonic()
        time.sleep(down_seconds)
        self.start()
        return stopped, time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the real server, killable ------------------------------------------------------------------------


class ExchangeServer:
    """``alliance serve --workers N`` on a fixed port, with SIGKILL (whole process group) and restart."""

    def __init__(self, database_url: str, *, workers: int = 2, port: int | None = None, log_path: Path) -> None:
        self.database_url = database_url
        self.workers = workers
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> float:
        """Start and wait until ``/health`` answers; returns the seconds it took."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
        env.update(ALLIANCE_DATABASE_URL=self.database_url, ALLIANCE_LOG_LEVEL="WARNING")
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "alliance.cli",
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so SIGKILL reaches the workers too
            )
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return time.monotonic() - started
            if self.process.poll() is not None or time.monotonic() - started > timeout:
                raise RuntimeError(f"the server did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the supervisor and every worker at once: no shutdown, no cleanup."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None


# --- seeding ------------------------------------------------------------------------------------------


@dataclass
class MoneySetup:
    """What the money-moving load needs: the funder (redeems, receives referrals), the distributor (issued
    the codes, refers members), and unused coupon codes."""

    funder_key: str
    funder_id: str
    distributor_key: str
    distributor_id: str
    codes: list[str]


async def seed_money(url: str, codes_needed: int) -> MoneySetup:
    """Two brands under a signed contract (coupon and referral commission), a benefit and ``codes_needed``
    codes - ``bench/redeem.py``'s seed - plus an API key for the distributor."""
    from sqlalchemy import select

    from alliance.brands import service as brands
    from alliance.core.audit import AuditContext
    from alliance.db.models.brand import Brand
    from alliance.db.session import create_engine, create_session_factory
    from bench.redeem import seed

    funder_key, codes = await seed(url, codes_needed)
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            ids = {b.name: b.id for b in (await session.execute(select(Brand))).scalars()}
            issued = await brands.issue_key(
                session, AuditContext(actor="bench", source_ip="local"), ids["Bench Distributor"], "faults"
            )
    finally:
        await engine.dispose()
    return MoneySetup(funder_key, ids["Bench Funder"], issued.secret, ids["Bench Distributor"], codes)


# --- a partner that retries until it gets a definitive answer -----------------------------------------


@dataclass
class Attempt:
    at: float  # monotonic time the answer (or the error) came back
    latency: float
    status: int  # 0: connection error / timeout
    problem: str = ""


@dataclass
class Operation:
    """One logical money-moving call (one Idempotency-Key), however many times it was sent."""

    kind: str  # redeem | reverse | convert
    key: str
    order_reference: str
    attempts: list[Attempt] = field(default_factory=list)
    status: int | None = None  # the definitive answer (2xx or 4xx); None: gave up
    resource_id: str | None = None  # redemption / reversal / conversion id when acknowledged
    ledger_transaction_id: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class MoneyClient:
    """Drives redemptions, reversals and referral conversions like a real partner: each call carries its
    own Idempotency-Key and is re-sent with the same key and body after a connection error, a timeout or a
    5xx, until a 2xx or 4xx answer (or ``give_up_after`` seconds)."""

    def __init__(self, base: str, setup: MoneySetup, *, timeout: float = 10.0, give_up_after: float = 90.0) -> None:
        self.base = base
        self.setup = setup
        self.give_up_after = give_up_after
        self.http = httpx.AsyncClient(base_url=base, timeout=timeout, limits=httpx.Limits(max_connections=256))
        self.operations: list[Operation] = []
        self.attempts: list[tuple[str, Attempt]] = []  # (kind, attempt) of every request, in order
        self._codes = setup.codes  # shared: clients (and runs) never present the same code twice
        self._refs = 0

    async def aclose(self) -> None:
        await self.http.aclose()

    def _reference(self, prefix: str) -> str:
        self._refs += 1
        return f"{prefix}-{os.getpid()}-{self._refs}-{uuid.uuid4().hex[:8]}"

    async def _send(
        self, kind: str, path: str, api_key: str, body: dict[str, Any], op: Operation | None
    ) -> httpx.Response | None:
        """Send until definitive; returns the final response (None if it gave up)."""
        headers = {"Authorization": f"Bearer {api_key}"}
        if op is not None:
            headers["Idempotency-Key"] = op.key
        deadline = time.monotonic() + self.give_up_after
        pause = 0.05
        while True:
            started = time.monotonic()
            try:
                response = await self.http.post(path, json=body, headers=headers)
            except httpx.TransportError:
                response = None
            now = time.monotonic()
            status = response.status_code if response is not None else 0
            problem = ""
            if response is not None and status >= 400:
                with contextlib.suppress(ValueError):
                    problem = str(response.json().get("type", ""))
            attempt = Attempt(now, now - started, status, problem)
            self.attempts.append((kind, attempt))
            if op is not None:
                op.attempts.append(attempt)
            if response is not None and status < 500:
                return response
            if now > deadline:
                return None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def redeem(self) -> Operation | None:
        if not self._codes:
            return None
        code = self._codes.pop()
        op = Operation("redeem", str(uuid.uuid4()), self._reference("ord"))
        self.operations.append(op)
        body = {"code": code, "order_reference": op.order_reference, "order_amount": 12_000, "channel": "store"}
        response = await self._send("redeem", "/v1/redemptions", self.setup.funder_key, body, op)
        self._settle(op, response)
        return op

    async def reverse(self, redemption_id: str) -> Operation:
        op = Operation("reverse", str(uuid.uuid4()), redemption_id)
        self.operations.append(op)
        path = f"/v1/redemptions/{redemption_id}/reversal"
        response = await self._send("reverse", path, self.setup.funder_key, {"reason": "refund"}, op)
        self._settle(op, response)
        return op

    async def convert(self) -> Operation | None:
        """A referral by the distributor (not money; re-requested until issued) converted at the funder."""
        issued = await self._send(
            "refer", "/v1/referrals", self.setup.distributor_key, {"receiver_brand_id": self.setup.funder_id}, None
        )
        if issued is None or issued.status_code != 201:
            return None
        op = Operation("convert", str(uuid.uuid4()), self._reference("conv"))
        self.operations.append(op)
        body = {
            "token": issued.json()["token"],
            "order_reference": op.order_reference,
            "order_amount": 20_000,
            "currency": "CNY",
        }
        response = await self._send("convert", "/v1/conversions", self.setup.funder_key, body, op)
        self._settle(op, response)
        return op

    @staticmethod
    def _settle(op: Operation, response: httpx.Response | None) -> None:
        if response is None:
            return
        op.status = response.status_code
        if op.acknowledged:
            data = response.json()
            op.resource_id = data["id"]
            op.ledger_transaction_id = data.get("ledger_transaction_id")

    async def run(self, deadline: float, reverse_every: int = 3, convert_every: int = 4) -> None:
        """One partner loop until ``deadline`` (monotonic): redeem; every ``reverse_every``-th acknowledged
        redemption is reversed; every ``convert_every``-th step is also a referral conversion."""
        step = 0
        while time.monotonic() < deadline and self._codes:
            step += 1
            op = await self.redeem()
            if op is not None and op.acknowledged and op.resource_id and step % reverse_every == 0:
                await self.reverse(op.resource_id)
            if step % convert_every == 0:
                await self.convert()


# --- afterwards: what must hold ---------------------------------------------------------------------


@dataclass
class Findings:
    """Counts from the client's record and the database. Every ``must_be_zero`` entry must be 0."""

    sent: int = 0  # logical money-moving calls (one Idempotency-Key each)
    requests: int = 0  # HTTP requests, retries included
    acknowledged: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # definitive 4xx answers, by problem type
    unresolved: int = 0  # gave up without a definitive answer
    statuses: Counter[int] = field(default_factory=Counter)  # every answer (0: connection error)
    must_be_zero: dict[str, int] = field(default_factory=dict)
    ledger_verify: str = ""

    @property
    def lost(self) -> int:
        return self.must_be_zero.get("lost", 0)

    @property
    def doubly_applied(self) -> int:
        return self.must_be_zero.get("doubly applied", 0)

    @property
    def ok(self) -> bool:
        return not any(self.must_be_zero.values())

    def summary(self) -> str:
        bad = {k: v for k, v in self.must_be_zero.items() if v}
        return (
            f"sent {self.sent} (in {self.requests} requests), acknowledged {self.acknowledged}, "
            f"refused {sum(self.refused.values())} {dict(self.refused) or ''}, unresolved {self.unresolved}, "
            f"lost {self.lost}, doubly applied {self.doubly_applied}; answers {dict(sorted(self.statuses.items()))}; "
            f"{'all invariants hold' if not bad else f'VIOLATED: {bad}'}"
        )


def ledger_verify_cli(database_url: str) -> subprocess.CompletedProcess[str]:
    """``alliance ledger verify`` as an operator runs it (seals what is pending, then checks everything)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env["ALLIANCE_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "alliance.cli", "ledger", "verify"], env=env, capture_output=True, text=True, timeout=300
    )


_SCALAR_CHECKS = {
    # A coupon is redeemed at most once, and "redeemed" exactly when it has one redemption.
    "coupons redeemed twice": "SELECT count(*) FROM (SELECT coupon_id FROM redemptions GROUP BY coupon_id "
    "HAVING count(*) > 1) x",
    "coupon status disagrees with its redemptions": "SELECT count(*) FROM coupons c WHERE (c.status = 'redeemed') "
    "<> EXISTS (SELECT 1 FROM redemptions r WHERE r.coupon_id = c.id)",
    # Every ledger transaction has postings, at least two, that balance per currency; no posting is orphaned.
    "ledger transactions without postings": "SELECT count(*) FROM ledger_transactions t WHERE NOT EXISTS "
    "(SELECT 1 FROM ledger_postings p WHERE p.transaction_id = t.id)",
    "ledger transactions with one posting": "SELECT count(*) FROM (SELECT transaction_id FROM ledger_postings "
    "GROUP BY transaction_id HAVING count(*) < 2) x",
    "unbalanced ledger transactions": "SELECT count(*) FROM (SELECT transaction_id FROM ledger_postings "
    "GROUP BY transaction_id, currency HAVING sum(amount) <> 0) x",
    "orphan postings": "SELECT count(*) FROM ledger_postings p WHERE NOT EXISTS "
    "(SELECT 1 FROM ledger_transactions t WHERE t.id = p.transaction_id)",
    # Every money event has exactly one ledger transaction, and every such transaction has its event.
    "redemptions without their ledger transaction": "SELECT count(*) FROM redemptions r WHERE NOT EXISTS "
    "(SELECT 1 FROM ledger_transactions t WHERE t.id = r.ledger_transaction_id)",
    "reversals without their ledger transaction": "SELECT count(*) FROM redemption_reversals r WHERE NOT EXISTS "
    "(SELECT 1 FROM ledger_transactions t WHERE t.id = r.ledger_transaction_id)",
    "conversions without their ledger transaction": "SELECT count(*) FROM conversions c WHERE NOT EXISTS "
    "(SELECT 1 FROM ledger_transactions t WHERE t.id = c.ledger_transaction_id)",
    "ledger transactions shared by two events": "SELECT count(*) FROM (SELECT id FROM (SELECT ledger_transaction_id "
    "AS id FROM redemptions UNION ALL SELECT ledger_transaction_id FROM redemption_reversals UNION ALL "
    "SELECT ledger_transaction_id FROM conversions) e GROUP BY id HAVING count(*) > 1) x",
    "ledger transactions without their event": "SELECT (SELECT count(*) FROM ledger_transactions) - "
    "(SELECT count(*) FROM redemptions) - (SELECT count(*) FROM redemption_reversals) - "
    "(SELECT count(*) FROM conversions)",
    # Budgets equal what their redemptions spent, net of what reversals gave back.
    "benefits whose spent amount disagrees": "SELECT count(*) FROM benefits b WHERE b.spent_amount <> "
    "(SELECT coalesce(sum(r.discount - r.restored_discount), 0) FROM redemptions r WHERE r.benefit_id = b.id)",
    "benefits whose spent count disagrees": "SELECT count(*) FROM benefits b WHERE b.spent_count <> "
    "(SELECT count(*) FROM redemptions r WHERE r.benefit_id = b.id AND r.status <> 'reversed')",
    "redemptions reversed twice": "SELECT count(*) FROM (SELECT redemption_id FROM redemption_reversals "
    'WHERE "full" GROUP BY redemption_id HAVING count(*) > 1) x',
}


async def check_database(pg_url: str, operations: list[Operation]) -> Findings:
    """Run every check against the database (``pg_url``: a plain ``postgresql://`` URL) and the client's
    record of what it sent and was told."""
    found = Findings()
    conn = await asyncpg.connect(pg_url)
    try:
        for name, sql in _SCALAR_CHECKS.items():
            found.must_be_zero[name] = int(await conn.fetchval(sql))
        redemptions = {
            r["order_reference"]: r
            for r in await conn.fetch("SELECT id, order_reference, ledger_transaction_id FROM redemptions")
        }
        redemption_refs = Counter(
            r["order_reference"] for r in await conn.fetch("SELECT order_reference FROM redemptions")
        )
        conversions = {
            r["order_reference"]: r
            for r in await conn.fetch("SELECT id, order_reference, ledger_transaction_id FROM conversions")
        }
        conversion_refs = Counter(
            r["order_reference"] for r in await conn.fetch("SELECT order_reference FROM conversions")
        )
        reversals = Counter(
            r["redemption_id"] for r in await conn.fetch("SELECT redemption_id FROM redemption_reversals")
        )
        reversal_rows = {
            r["id"]: r for r in await conn.fetch("SELECT id, ledger_transaction_id FROM redemption_reversals")
        }
        ledger_ids = {r["id"] for r in await conn.fetch("SELECT id FROM ledger_transactions")}
    finally:
        await conn.close()

    lost = doubled = refused_but_applied = 0
    sent_refs = {op.order_reference for op in operations}
    for op in operations:
        found.sent += 1
        found.requests += len(op.attempts)
        for attempt in op.attempts:
            found.statuses[attempt.status] += 1
        if op.status is None:
            found.unresolved += 1
        elif op.acknowledged:
            found.acknowledged += 1
        else:
            found.refused[next((a.problem for a in reversed(op.attempts) if a.problem), str(op.status))] += 1
        if op.kind == "redeem":
            row, applied = redemptions.get(op.order_reference), redemption_refs[op.order_reference]
        elif op.kind == "convert":
            row, applied = conversions.get(op.order_reference), conversion_refs[op.order_reference]
        else:
            row = reversal_rows.get(op.resource_id or "")
            applied = reversals[op.order_reference]
        if applied > 1:
            doubled += applied - 1
        if op.acknowledged:
            if (
                row is None
                or row["id"] != op.resource_id
                or row["ledger_transaction_id"] not in ledger_ids
                or (op.ledger_transaction_id and row["ledger_transaction_id"] != op.ledger_transaction_id)
            ):
                lost += 1
        elif op.status is not None and applied:
            refused_but_applied += 1  # a definitive refusal, yet the effect is there
    found.must_be_zero["lost"] = lost
    found.must_be_zero["doubly applied"] = doubled
    found.must_be_zero["refused but applied"] = refused_but_applied
    found.must_be_zero["applied but never sent"] = sum(
        1 for ref in [*redemption_refs, *conversion_refs] if ref not in sent_refs
    )
    return found


# --- a money-moving load with faults injected -----------------------------------------------------------


@dataclass
class Fault:
    kind: str  # "kill": SIGKILL the server and start it again; "pg": stop PostgreSQL, wait, start it
    at: float  # seconds into the load
    began: float = 0.0  # monotonic: SIGKILL sent / PostgreSQL stopped
    ended: float = 0.0  # monotonic: server answering /health again / PostgreSQL accepting connections
    first_success: float | None = None  # monotonic: the first 2xx money call answered after ``ended``
    answers_during: Counter[int] = field(default_factory=Counter)  # answers between began and ended

    @property
    def recovery_seconds(self) -> float | None:
        """From the end of the fault (server up again / PostgreSQL up again) to the first acknowledged call."""
        return None if self.first_success is None else self.first_success - self.ended

    @property
    def outage_seconds(self) -> float | None:
        """From the fault to the first acknowledged call after it (what a partner sees)."""
        return None if self.first_success is None else self.first_success - self.began

    def describe(self) -> str:
        what = "SIGKILL + restart of the server" if self.kind == "kill" else "PostgreSQL stop + start"
        rec = "never" if self.recovery_seconds is None else f"{self.recovery_seconds:.2f} s"
        out = "never" if self.outage_seconds is None else f"{self.outage_seconds:.2f} s"
        return (
            f"{what} at {self.at:.0f} s: down for {self.ended - self.began:.2f} s, first acknowledged call "
            f"{rec} after it was back ({out} after the fault); answers while down {dict(self.answers_during)}"
        )


@dataclass
class FaultRun:
    client: MoneyClient
    faults: list[Fault]
    started: float
    finished: float

    def acknowledged_per_second(self) -> float:
        acked = sum(1 for op in self.client.operations if op.acknowledged)
        return acked / max(self.finished - self.started, 1e-9)


async def run_money_load(
    server: ExchangeServer,
    setup: MoneySetup,
    *,
    seconds: float,
    clients: int,
    faults: list[Fault],
    pg: PrivatePostgres | None = None,
    pg_down_seconds: float = 2.0,
    pg_stop_mode: str = "fast",
) -> FaultRun:
    """``clients`` partner loops for ``seconds`` while ``faults`` happen at their times."""
    client = MoneyClient(server.base, setup)
    started = time.monotonic()
    deadline = started + seconds

    async def inject() -> None:
        for fault in sorted(faults, key=lambda f: f.at):
            await asyncio.sleep(max(0.0, started + fault.at - time.monotonic()))
            if fault.kind == "kill":
                fault.began = time.monotonic()
                await asyncio.to_thread(server.kill)
                await asyncio.to_thread(server.start)
                fault.ended = time.monotonic()
            elif fault.kind == "pg":
                if pg is None:
                    raise ValueError("a PostgreSQL restart needs the private PostgreSQL")
                fault.began = time.monotonic()
                await asyncio.to_thread(pg.stop, pg_stop_mode)
                await asyncio.sleep(pg_down_seconds)
                await asyncio.to_thread(pg.start)
                fault.ended = time.monotonic()
            else:
                raise ValueError(f"unknown fault {fault.kind!r}")

    try:
        await asyncio.gather(inject(), *(client.run(deadline) for _ in range(clients)))
    finally:
        await client.aclose()
    finished = time.monotonic()
    for fault in faults:
        for _, attempt in client.attempts:
            if fault.began <= attempt.at <= fault.ended:
                fault.answers_during[attempt.status] += 1
        fault.first_success = min(
            (a.at for _, a in client.attempts if a.at > fault.ended and 200 <= a.status < 300), default=None
        )
    return FaultRun(client, faults, started, finished)
