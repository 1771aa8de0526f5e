"""The demo alliance, step by step (docs/demo.md says which steps go through HTTP and which through services).

1. a database (``./alliance-demo.db`` recreated each run unless a URL is given), migrated;
2. the exchange server started as a subprocess (the same ``alliance serve`` that keeps serving at the end);
3. brands, their API keys and the console users made by the operator (services, as `alliance brand add`);
4. each brand's partner agent (``alliance.partner``, over HTTP): keys, signed contracts, allowances,
   normalise + blind + publish (blinding on a process pool), then one cardinality match per pair;
5. benefits, coupons, redemptions, refunds, referrals and conversions of the previous calendar month,
   through the benefits/referrals services under a simulated clock (the API only knows "now");
6. the month closed (``alliance.settlement.service.close_month``) and a summary printed.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.core.audit import AuditContext
from alliance.core.problems import Problem
from alliance.core.settings import Settings
from alliance.demo.data import BRANDS, MemberBases, member_bases

__all__ = ["DemoOptions", "DemoResult", "run_demo"]

AUDIT = AuditContext(actor="demo")
PASSPHRASE = "demo agent passphrase (local to this run)"  # noqa: S105 - throwaway agent homes of the demo


@dataclass
class DemoOptions:
    settings: Settings
    scale: int = 50_000
    seed: int = 2026
    serve: bool = True
    fresh_file: Path | None = None  # the SQLite file recreated for this run, if any
    workers: int | None = None


@dataclass
class BrandRun:
    key: str
    name: str
    category: str
    id: str = ""
    api_key: str = ""
    segment_id: str = ""
    published: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass
class DemoResult:
    base_url: str
    month: str
    brands: list[BrandRun]
    matches: dict[frozenset[str], dict[str, Any]]
    expected_common: dict[frozenset[str], int]
    admin_password: str
    auditor_password: str
    activity: dict[str, dict[str, int]]
    run: Any
    seconds: dict[str, float]
    workdir: Path  # the server log; removed when the demo ends well, kept after a failure


class Step:
    """Numbered progress lines with the time each step took."""

    def __init__(self, console: Console, total: int) -> None:
        self.console, self.total, self.n = console, total, 0
        self.started = time.perf_counter()
        self.mark = self.started
        self.seconds: dict[str, float] = {}
        self.name = ""

    def __call__(self, name: str, text: str) -> None:
        self.done()
        self.n += 1
        self.name = name
        self.mark = time.perf_counter()
        self.console.print(f"[bold cyan][{self.n}/{self.total}][/] {text}")

    def note(self, text: str) -> None:
        self.console.print(f"      {text}")

    def done(self) -> None:
        if self.name:
            self.seconds[self.name] = time.perf_counter() - self.mark
            self.console.print(f"      [dim]{self.seconds[self.name]:.1f} s[/]")
            self.name = ""


def previous_month(now: datetime) -> tuple[str, datetime, datetime]:
    first = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (first - timedelta(days=1)).replace(day=1)
    return f"{start.year:04d}-{start.month:02d}", start, first


# --- the server -------------------------------------------------------------------------------------


def check_port_free(settings: Settings) -> None:
    """Refuse early if something already listens there (the demo would otherwise drive that server)."""
    with socket.socket() as probe:
        try:
            probe.bind((settings.host, settings.port))
        except OSError:
            raise RuntimeError(
                f"{settings.host}:{settings.port} is in use (another exchange?): stop it or pass --port"
            ) from None


def start_server(settings: Settings, log_path: Path, timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ)
    env["ALLIANCE_DATABASE_URL"] = settings.database_url
    env["ALLIANCE_HOST"] = settings.host
    env["ALLIANCE_PORT"] = str(settings.port)
    env["ALLIANCE_WORKERS"] = "1"
    command = [sys.executable, "-m", "alliance.cli", "serve"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    base = f"http://{host}:{settings.port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(process)
            raise RuntimeError(f"the exchange server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- operator steps and the simulated month (services) ------------------------------------------------


async def _with_session(url: str, work: Callable[[async_sessionmaker[AsyncSession]], Any]) -> Any:
    from alliance.db.session import create_engine, create_session_factory

    engine = create_engine(url)
    try:
        return await work(create_session_factory(engine))
    finally:
        await engine.dispose()


async def _onboard(
    sessions: async_sessionmaker[AsyncSession], brands: list[BrandRun], admin_password: str, auditor_password: str
) -> None:
    from alliance.brands import service as brand_service
    from alliance.console import service as console_service

    async with sessions() as session, session.begin():
        for brand in brands:
            row, key = await brand_service.create_brand(session, AUDIT, brand.name, brand.category)
            brand.id, brand.api_key = row.id, key.secret
        await console_service.create_user(session, AUDIT, "admin", admin_password, "admin")
        await console_service.create_user(session, AUDIT, "auditor", auditor_password, "auditor")


def _instant(rng: random.Random, start: datetime, end: datetime, *, busy_evenings: bool = True) -> datetime:
    """A plausible moment: any day of the month, mostly in opening hours (China time, UTC+8)."""
    days = (end - start).days
    day = rng.randrange(days)
    local_hour = rng.choices(range(8, 23), weights=[1, 2, 3, 4, 5, 4, 3, 3, 3, 4, 6, 8, 8, 6, 3])[0]
    if not busy_evenings:
        local_hour = rng.randrange(9, 21)
    moment = start + timedelta(days=day, hours=local_hour - 8, minutes=rng.randrange(60), seconds=rng.randrange(60))
    return min(max(moment, start + timedelta(minutes=1)), end - timedelta(minutes=5))


async def _simulate_month(
    sessions: async_sessionmaker[AsyncSession],
    brands: list[BrandRun],
    common: dict[frozenset[str], int],
    start: datetime,
    end: datetime,
    seed: int,
) -> dict[str, dict[str, int]]:
    """Benefits, coupons, redemptions, refunds, referrals and conversions with event times inside the month."""
    from alliance.benefits import catalogue, coupons, redemption, reversal
    from alliance.benefits.schemas import BenefitCreate, RedemptionCreate, ReversalCreate
    from alliance.db.base import simulated_clock
    from alliance.referrals import service as referrals
    from alliance.referrals.schemas import ConversionCreate, ReferralCreate

    rng = random.Random(seed + 1)  # noqa: S311 - a repeatable simulation, not secrets
    by_key = {b.key: b for b in brands}
    stats = {
        b.id: {"issued": 0, "redemptions": 0, "refunds": 0, "referrals": 0, "conversions": 0, "gmv": 0} for b in brands
    }
    offers = {
        "cotton": ("满300减40 cotton bedding", 4000, 30000),
        "fruit": ("满100减15 fresh fruit", 1500, 10000),
        "bakery": ("满60减10 bakery", 1000, 6000),
        "appliances": ("满2000减200 appliances", 20000, 200000),
        "travel": ("满3000减300 travel", 30000, 300000),
        "school": ("满5000减500 courses", 50000, 500000),
    }
    basket = {"cotton": 45000, "fruit": 16000, "bakery": 9000, "appliances": 320000, "travel": 420000, "school": 680000}
    benefit_of: dict[str, str] = {}
    async with sessions() as session, session.begin():
        with simulated_clock(start + timedelta(minutes=1)):
            for brand in brands:
                name, value, min_spend = offers[brand.key]
                created = await catalogue.create_benefit(
                    session,
                    AUDIT,
                    brand.id,
                    BenefitCreate(
                        name=name,
                        tags=["demo"],
                        value_kind="fixed",
                        value=value,
                        min_spend=min_spend,
                        currency="CNY",
                        valid_from=start,
                        valid_to=end + timedelta(days=90),
                        budget_amount=value * 100_000,
                        budget_count=100_000,
                        channels=["store", "online", "mini_program"],
                        distributors=[b.id for b in brands if b.id != brand.id],
                        reversal_window_days=30,
                    ),
                )
                benefit_of[brand.key] = created.id

    # Coupons: each distributor gets a batch of each partner's benefit, sized by the shared audience.
    events: list[tuple[datetime, int, str, Any]] = []
    sequence = 0
    async with sessions() as session, session.begin():
        with simulated_clock(start + timedelta(minutes=2)):
            for funder in brands:
                for distributor in brands:
                    if funder is distributor:
                        continue
                    shared = common[frozenset((funder.key, distributor.key))]
                    count = max(5, shared // 60)
                    batch = await coupons.issue_coupons(session, AUDIT, distributor.id, benefit_of[funder.key], count)
                    stats[distributor.id]["issued"] += count
                    rate = 0.35 if shared >= 100 else 0.2
                    for coupon in batch.coupons:
                        if rng.random() < rate:
                            sequence += 1
                            events.append(
                                (
                                    _instant(rng, start + timedelta(days=1), end),
                                    sequence,
                                    "redeem",
                                    (funder, coupon.code),
                                )
                            )
    # Referrals between brands whose audiences overlap most: a member referred, maybe converting later.
    for a_key, b_key in combinations(by_key, 2):
        shared = common[frozenset((a_key, b_key))]
        for referrer, receiver in ((by_key[a_key], by_key[b_key]), (by_key[b_key], by_key[a_key])):
            for _ in range(max(2, shared // 300)):
                sequence += 1
                events.append((_instant(rng, start, end - timedelta(days=3)), sequence, "refer", (referrer, receiver)))
    events.sort(key=lambda e: (e[0], e[1]))

    later: list[tuple[datetime, int, str, Any]] = []
    for at, _, kind, payload in events:
        async with sessions() as session, session.begin():
            with simulated_clock(at):
                if kind == "redeem":
                    funder, code = payload
                    amount = max(offers[funder.key][2], int(rng.lognormvariate(0, 0.45) * basket[funder.key]))
                    result = await redemption.redeem(
                        session,
                        AUDIT,
                        funder.id,
                        secrets.token_hex(8),
                        RedemptionCreate(
                            code=code,
                            order_reference=f"ord-{secrets.token_hex(6)}",
                            order_amount=amount,
                            channel=rng.choice(["store", "store", "online", "mini_program"]),
                            member_token=f"m{rng.randrange(10**9)}",
                        ),
                    )
                    body = result.body
                    stats[funder.id]["redemptions"] += 1
                    stats[funder.id]["gmv"] += amount
                    if rng.random() < 0.07:
                        refund_at = at + timedelta(hours=rng.randrange(2, 120))
                        partial = rng.random() < 0.4
                        refund = amount // 2 if partial else None
                        sequence += 1
                        later.append((refund_at, sequence, "refund", (funder, body.id, refund)))
                else:
                    referrer, receiver = payload
                    referral = await referrals.create_referral(
                        session,
                        AUDIT,
                        referrer.id,
                        ReferralCreate(receiver_brand_id=receiver.id, member_token=f"m{rng.randrange(10**9)}"),
                    )
                    stats[referrer.id]["referrals"] += 1
                    if rng.random() < 0.4:
                        convert_at = at + timedelta(hours=rng.randrange(1, 72))
                        sequence += 1
                        later.append((convert_at, sequence, "convert", (receiver, referral.token)))
    later = [e for e in later if e[0] < end - timedelta(minutes=1)]
    later.sort(key=lambda e: (e[0], e[1]))
    for at, _, kind, payload in later:
        async with sessions() as session, session.begin():
            with simulated_clock(at):
                if kind == "refund":
                    funder, redemption_id, refund = payload
                    await reversal.reverse_redemption(
                        session,
                        AUDIT,
                        funder.id,
                        redemption_id,
                        secrets.token_hex(8),
                        ReversalCreate(refund_amount=refund, reason="customer returned the goods"),
                    )
                    stats[funder.id]["refunds"] += 1
                else:
                    receiver, token = payload
                    amount = max(1000, int(rng.lognormvariate(0, 0.5) * basket[receiver.key]))
                    await referrals.convert(
                        session,
                        AUDIT,
                        receiver.id,
                        secrets.token_hex(8),
                        ConversionCreate(
                            token=str(token),
                            order_reference=f"ord-{secrets.token_hex(6)}",
                            order_amount=amount,
                            currency="CNY",
                        ),
                    )
                    stats[receiver.id]["conversions"] += 1
                    stats[receiver.id]["gmv"] += amount
    return stats


async def _close(sessions: async_sessionmaker[AsyncSession], settings: Settings, month: str) -> Any:
    from alliance.settlement.service import close_month

    async with sessions() as session, session.begin():
        return await close_month(
            session, AUDIT, month, key_file=settings.exchange_signing_key_file, alliance_id=settings.alliance_id
        )


# --- the partner side (HTTP) ---------------------------------------------------------------------------


def _contract(base: str, a: BrandRun, b: BrandRun, effective_from: datetime) -> str:
    proposal = {
        "parties": [a.id, b.id],
        "settlement_currency": "CNY",
        "effective_from": effective_from.isoformat().replace("+00:00", "Z"),
        "funding": [
            {
                "benefit": "*",
                "funding_brand": a.id,
                "distributor_brand": b.id,
                "funding_brand_bp": 7000,
                "distributor_bp": 3000,
            },
            {
                "benefit": "*",
                "funding_brand": b.id,
                "distributor_brand": a.id,
                "funding_brand_bp": 7000,
                "distributor_bp": 3000,
            },
        ],
        "coupon_commission": {"kind": "rate", "rate_bp": 300, "per_event_cap": 2000},
        "referral": {"kind": "fixed", "amount": 1500},
        "psi": {"segment_tags": ["psi"], "disclosure": "cardinality", "min_k": 100},
    }
    response = httpx.post(
        f"{base}/v1/contracts", json=proposal, headers={"Authorization": f"Bearer {a.api_key}"}, timeout=30
    )
    if response.status_code != 201:
        raise RuntimeError(f"contract proposal refused: {response.text}")
    return str(response.json()["contract_id"])


def _normalise(values: list[str | None]) -> tuple[list[bytes], list[str], dict[str, int]]:
    from privacy.normalize import normalize_batch

    normalized = normalize_batch(values, "phone", region="CN")
    members = [str(values[a.row]).strip() for a in normalized.accepted]
    rejected = {str(reason): count for reason, count in normalized.reject_counts().items()}
    return list(normalized.canonicals), members, rejected


def _partner_side(
    base: str,
    brands: list[BrandRun],
    data: MemberBases,
    effective_from: datetime,
    home: Path,
    executor: Executor,
    step: Step,
) -> dict[frozenset[str], dict[str, Any]]:
    from alliance.partner.agent import Agent, register_signing_key, sign_contract
    from alliance.partner.client import PartnerClient
    from alliance.partner.keystore import AgentStore
    from alliance.partner.psi_client import PsiApi
    from alliance.partner.publish import publish_canonicals
    from privacy.keys import epoch_of

    epoch = epoch_of(datetime.now(UTC))
    clients = {b.key: PartnerClient(base, b.api_key, timeout=120) for b in brands}
    try:
        apis = {k: PsiApi(c) for k, c in clients.items()}
        stores = {b.key: AgentStore(home / b.key, PASSPHRASE) for b in brands}
        agents = {b.key: Agent(apis[b.key], stores[b.key], executor=executor) for b in brands}
        step("agents", "Partner agents: keys, signed contracts (15 pairs) and re-blinding allowances")
        for b in brands:
            stores[b.key].keygen(epoch, scrypt_n=2**14)
            register_signing_key(apis[b.key], stores[b.key])
        for a, b in combinations(brands, 2):
            contract_id = _contract(base, a, b, effective_from)
            for party in (a, b):
                sign_contract(apis[party.key], stores[party.key], contract_id)
            stores[a.key].allow(b.id, 4 * data.valid[b.key] + 1000)
            stores[b.key].allow(a.id, 4 * data.valid[a.key] + 1000)

        step(
            "publish",
            f"Normalise, blind and publish each brand's members ({len(brands)} x ~{max(data.valid.values()):,})",
        )
        normalised = dict(
            zip([b.key for b in brands], executor.map(_normalise, [data.rows[b.key] for b in brands]), strict=True)
        )

        def publish(b: BrandRun) -> dict[str, float]:
            canonicals, members, rejected = normalised[b.key]
            report = publish_canonicals(
                apis[b.key],
                stores[b.key],
                canonicals,
                members,
                id_type="phone",
                name="Members",
                tags=["psi"],
                key_epoch=epoch,
                executor=executor,
            )
            b.segment_id, b.published, b.rejected = report.segment_id, report.size, rejected
            return report.seconds

        # Agents in threads keep the shared process pool busy while others upload or wait on the exchange.
        with ThreadPoolExecutor(max_workers=len(brands)) as threads:
            seconds = list(threads.map(publish, brands))
        for b, times in zip(brands, seconds, strict=True):
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(b.rejected.items())) or "none"
            timing = ", ".join(f"{k} {v:.1f}" for k, v in times.items())
            step.note(f"{b.name}: {b.published:,} of {len(data.rows[b.key]):,} rows published (rejected: {reasons})")
            step.note(f"[dim]seconds: {timing}[/]")

        step("match", "Private set intersection for every pair (15 matches, both agents re-blind)")
        by_key = {b.key: b for b in brands}
        matches: dict[frozenset[str], dict[str, Any]] = {}
        for a, b in combinations(brands, 2):
            match = apis[a.key].create_match(a.segment_id, b.segment_id)
            matches[frozenset((a.key, b.key))] = match
        deadline = time.monotonic() + 1800
        while any(m["state"] not in ("done", "failed", "expired") for m in matches.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("matches did not finish in 30 minutes")
            with ThreadPoolExecutor(max_workers=len(brands)) as threads:
                rounds = list(threads.map(lambda key: agents[key].run_once(), by_key))
            worked = sum(1 for outcomes in rounds for o in outcomes if o.status == "done")
            for pair, m in matches.items():
                if m["state"] not in ("done", "failed", "expired"):
                    first = sorted(pair, key=[b.key for b in brands].index)[0]
                    matches[pair] = apis[first].get_match(m["id"])
            if not worked:
                time.sleep(0.2)
        failed = [m for m in matches.values() if m["state"] != "done"]
        if failed:
            raise RuntimeError(
                f"{len(failed)} match(es) did not finish: {failed[0].get('failure_reason') or failed[0]}"
            )
        suppressed = sum(1 for m in matches.values() if m["result"] and m["result"].get("suppressed"))
        step.note(f"15 matches done; {suppressed} below min-k (suppressed)")
        return matches
    finally:
        for client in clients.values():
            client.close()


# --- the whole run ------------------------------------------------------------------------------------


def run_demo(options: DemoOptions, console: Console) -> tuple[DemoResult, subprocess.Popen[bytes]]:
    """Build the demo alliance; returns the result and the still running server process."""
    from alliance.db.migrate import migrate
    from privacy.blind import new_process_pool

    settings = options.settings
    step = Step(console, 7)
    now = datetime.now(UTC)
    month, start, end = previous_month(now)
    admin_password = secrets.token_urlsafe(12)
    auditor_password = secrets.token_urlsafe(12)
    brands = [BrandRun(b.key, b.name, b.category) for b in BRANDS]

    check_port_free(settings)
    step("data", f"Synthetic member bases: 6 brands x {options.scale:,} members, seed {options.seed}")
    executor = new_process_pool(options.workers)
    try:
        # Start the pool's workers now, while the member files are generated.
        warm = [executor.submit(int, 0) for _ in range(2)]
        data = member_bases(options.scale, options.seed)
        for future in warm:
            future.result()

        step("database", "Database and exchange server")
        if options.fresh_file is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(options.fresh_file) + suffix).unlink(missing_ok=True)
            step.note(f"fresh demo database {options.fresh_file} (recreated on every run)")
        else:
            step.note("using the database of ALLIANCE_DATABASE_URL / --database-url")
        migrate(settings.database_url)
        workdir = Path(tempfile.mkdtemp(prefix="alliance-demo-"))
        server, base = start_server(settings, workdir / "server.log")
    except BaseException:
        executor.shutdown(cancel_futures=True)
        raise
    try:
        step.note(f"exchange serving at {base} (log: {workdir / 'server.log'})")
        try:
            asyncio.run(
                _with_session(settings.database_url, lambda s: _onboard(s, brands, admin_password, auditor_password))
            )
        except Problem as exc:
            if exc.status != 409:
                raise
            raise RuntimeError(
                f"{exc.detail}: this database already holds a demo alliance. Use an empty database, or run "
                "`alliance demo` without a database URL (it recreates ./alliance-demo.db)"
            ) from None
        step.note("brands onboarded: " + ", ".join(b.name for b in brands))
        matches = _partner_side(base, brands, data, start, workdir / "agents", executor, step)
        executor.shutdown()

        step("month", f"Simulated month {month}: benefits, coupons, redemptions, refunds, referrals")
        activity = asyncio.run(
            _with_session(
                settings.database_url, lambda s: _simulate_month(s, brands, data.common, start, end, options.seed)
            )
        )
        step("close", f"Closing {month}: net positions and signed statements")
        run = asyncio.run(_with_session(settings.database_url, lambda s: _close(s, settings, month)))
        step.done()
    except BaseException:
        executor.shutdown(cancel_futures=True)
        stop_server(server)
        raise
    finally:
        shutil.rmtree(workdir / "agents", ignore_errors=True)
    result = DemoResult(
        base_url=base,
        month=month,
        brands=brands,
        matches=matches,
        expected_common=data.common,
        admin_password=admin_password,
        auditor_password=auditor_password,
        activity=activity,
        run=run,
        seconds=step.seconds,
        workdir=workdir,
    )
    return result, server
