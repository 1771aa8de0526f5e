"""The ledger explorer: transactions by brand, account and posting date (keyset pagination on the
``(posted_at, id)`` index - a page costs the same with a thousand transactions or ten million), a
transaction with its postings, and the hash chain's state with verification.

Verification is ``alliance.ledger.verify.verify_ledger`` - the code behind ``alliance ledger verify`` and
``POST /admin/v1/ledger/verification`` - run as a background task of the serving process, because a walk
over a million transactions takes longer than a page may. The page shows its progress (sealed
transactions checked so far) and, when it ends, the result is kept as a ``ledger.verify`` audit row,
which is also where "the last verification" comes from (whoever ran it: API, console).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter
from sqlalchemy import and_, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.console import queries
from alliance.console.auth import admin_only
from alliance.console.rendering import is_htmx, render
from alliance.core.audit import AuditContext, record_audit
from alliance.core.database import session_factory
from alliance.core.deps import Audit, Db
from alliance.db.models import AuditEntry, LedgerAccount, LedgerChainHead, LedgerPosting, LedgerTransaction
from alliance.ledger import quarantine
from alliance.ledger import service as ledger
from alliance.ledger.schemas import VerifyReport
from alliance.ledger.verify import verify_ledger

__all__ = [
    "LEDGER_PAGE_SIZE",
    "ChainStatus",
    "LedgerPages",
    "TransactionRow",
    "VerificationJob",
    "chain_status",
    "transaction_page",
]

log = logging.getLogger("alliance.console")

LEDGER_PAGE_SIZE = 50
_JOB_STATE = "console_ledger_verification"

IdFilter = Annotated[str | None, QueryParameter(max_length=32)]
AccountFilter = Annotated[str | None, QueryParameter(max_length=100)]
DateFilter = Annotated[str | None, QueryParameter(pattern=r"^(\d{4}-\d{2}-\d{2})?$")]
Cursor = Annotated[str | None, QueryParameter(max_length=32)]


def _day(value: str | None) -> datetime | None:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC) if value else None
    except ValueError:
        return None


# --- transactions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransactionRow:
    tx: LedgerTransaction
    postings: int
    gross: list[tuple[str, int]]  # per currency, the sum of the debit legs (what moved)
    brands: list[str]  # brands whose accounts the transaction touches


@dataclass(frozen=True, slots=True)
class TransactionPage:
    rows: list[TransactionRow]
    next_before: str | None
    unknown_account: bool = False


async def transaction_page(
    session: AsyncSession,
    *,
    brand: str | None = None,
    account: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: str | None = None,
    limit: int = LEDGER_PAGE_SIZE,
) -> TransactionPage:
    """Transactions newest first by ``(posted_at, id)``; ``before`` is the id of the last one shown.

    The brand and account filters are semi-joins on the postings (index ``brand_id, transaction_id``, or
    the primary key for the exchange's own accounts) probed along the ``posted_at`` index; an account
    the ledger has never seen answers at once instead of walking the index for nothing.
    """
    t, p = LedgerTransaction, LedgerPosting
    query = select(t)
    if account:
        # The clearing account nets to zero in every transaction, so the sealer keeps no balance row
        # for it; every other account has one once a transaction on it is sealed.
        known = 1 if account == contracts.CLEARING_ACCOUNT else None
        if known is None:
            known = await session.scalar(select(literal(1)).where(LedgerAccount.account == account).limit(1))
        if known is None:
            # Not sealed yet, perhaps: accounts appear in ledger_accounts within a sealer cycle.
            known = await session.scalar(
                select(literal(1))
                .select_from(t)
                .join(p, p.transaction_id == t.id)
                .where(t.seq.is_(None), p.account == account)
                .limit(1)
            )
        if known is None:
            return TransactionPage(rows=[], next_before=None, unknown_account=True)
        parsed = contracts.parse_brand_account(account)
        legs = [p.transaction_id == t.id, p.account == account]
        if parsed is not None:
            legs.append(p.brand_id == parsed[0])
        query = query.where(exists(select(literal(1)).where(and_(*legs))))
    if brand:
        query = query.where(exists(select(literal(1)).where(p.transaction_id == t.id, p.brand_id == brand)))
    if since is not None:
        query = query.where(t.posted_at >= since)
    if until is not None:
        query = query.where(t.posted_at < until)
    if before:
        anchor = (await session.execute(select(t.posted_at, t.id).where(t.id == before))).first()
        if anchor is not None:
            at, anchor_id = anchor
            query = query.where(t.posted_at <= at, or_(t.posted_at < at, and_(t.posted_at == at, t.id < anchor_id)))
    txs = list((await session.scalars(query.order_by(t.posted_at.desc(), t.id.desc()).limit(limit + 1))).all())
    more = len(txs) > limit
    txs = txs[:limit]
    legs_of: dict[str, list[LedgerPosting]] = {tx.id: [] for tx in txs}
    if txs:
        for leg in (await session.scalars(select(p).where(p.transaction_id.in_(list(legs_of))))).all():
            legs_of[leg.transaction_id].append(leg)
    rows = []
    for tx in txs:
        gross: dict[str, int] = {}
        for leg in legs_of[tx.id]:
            if leg.amount > 0:
                gross[leg.currency] = gross.get(leg.currency, 0) + leg.amount
        brands = sorted({leg.brand_id for leg in legs_of[tx.id] if leg.brand_id})
        rows.append(TransactionRow(tx=tx, postings=len(legs_of[tx.id]), gross=sorted(gross.items()), brands=brands))
    return TransactionPage(rows=rows, next_before=txs[-1].id if more and txs else None)


# --- the chain and its verification -----------------------------------------------------------------


@dataclass
class VerificationJob:
    """A verification running (or finished) in this process."""

    started_at: datetime
    started_by: str
    total: int  # sealed transactions expected (the chain head, plus what was pending at the start)
    checked: int = 0
    report: VerifyReport | None = None
    error: str | None = None
    seconds: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.report is None and self.error is None

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.checked / self.total)) if self.total else (0 if self.running else 100)


@dataclass(frozen=True, slots=True)
class LastVerification:
    at: datetime
    actor: str
    ok: bool
    transactions: int | None
    head_seq: int | None
    reason: str | None
    seconds: float | None


@dataclass(frozen=True, slots=True)
class ChainStatus:
    head_seq: int
    head_hash: str | None
    sealed_at: datetime | None
    unsealed: int
    last: LastVerification | None
    quarantined: int = 0


async def chain_status(session: AsyncSession) -> ChainStatus:
    """The chain head, how many committed transactions wait for the sealer (a partial index holds only
    those), and the newest ``ledger.verify`` audit row (index ``action, at``)."""
    head = await session.get(LedgerChainHead, 1)
    unsealed = int(
        await session.scalar(select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.seq.is_(None)))
        or 0
    )
    entry = await session.scalar(
        select(AuditEntry)
        .where(AuditEntry.action == "ledger.verify")
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(1)
    )
    last = None
    if entry is not None:
        details = entry.details or {}
        last = LastVerification(
            at=entry.at,
            actor=entry.actor,
            ok=bool(details.get("ok")),
            transactions=details.get("transactions"),
            head_seq=details.get("head_seq"),
            reason=details.get("reason"),
            seconds=details.get("seconds"),
        )
    return ChainStatus(
        head_seq=head.seq if head else 0,
        head_hash=head.hash if head else None,
        sealed_at=head.sealed_at if head else None,
        unsealed=unsealed,
        last=last,
        quarantined=await quarantine.held_count(session),
    )


def current_job(state: State) -> VerificationJob | None:
    job: VerificationJob | None = getattr(state, _JOB_STATE, None)
    return job


async def _run_verification(state: State, job: VerificationJob, ctx: AuditContext) -> None:
    """Verify in a session of its own and keep the result as a ``ledger.verify`` audit row (the same
    details the operator API records, plus the reason of a failure and how long it took)."""
    started = time.perf_counter()

    def progress(checked: int) -> None:
        job.checked = checked

    try:
        async with session_factory(state)() as session, session.begin():
            report = await verify_ledger(session, progress=progress)
            job.seconds = round(time.perf_counter() - started, 1)
            details: dict[str, Any] = {
                "ok": report.ok,
                "transactions": report.transactions,
                "head_seq": report.head_seq,
                "seconds": job.seconds,
            }
            if report.problem is not None:
                details["reason"] = report.problem.reason[:300]
            record_audit(session, ctx, "ledger.verify", details=details)
        job.checked = report.transactions
        job.report = report
    except Exception as exc:  # a dropped connection, say: show it rather than spin forever
        log.exception("console: ledger verification failed to run")
        job.error = type(exc).__name__
        job.seconds = round(time.perf_counter() - started, 1)


class LedgerPages(Controller):
    path = "/ledger"
    include_in_schema = False

    @get("/", operation_id="consoleLedger")
    async def list(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        brand: IdFilter = None,
        account: AccountFilter = None,
        since: DateFilter = None,
        until: DateFilter = None,
        before: Cursor = None,
    ) -> Response[str]:
        brand = (brand or "").strip() or None
        account = (account or "").strip() or None
        since, until, before = since or None, until or None, (before or "").strip() or None
        until_day = _day(until)
        listing = await transaction_page(
            db,
            brand=brand,
            account=account,
            since=_day(since),
            until=until_day + timedelta(days=1) if until_day else None,
            before=before,
        )
        names = await queries.brand_names(db)
        params = {"brand": brand, "account": account, "since": since, "until": until}
        return render(
            request,
            "ledger/list.html",
            section="ledger",
            listing=listing,
            chain=await chain_status(db),
            job=current_job(request.app.state),
            brands=names,
            brand_options=sorted(names.items(), key=lambda item: item[1]),
            params=params,
            filtered=any(params.values()) or bool(before),
            before=before,
            brand=brand or "",
            account=account or "",
            since=since or "",
            until=until or "",
        )

    @get("/transactions/{transaction_id:str}", operation_id="consoleLedgerTransaction")
    async def transaction(
        self, request: Request[Any, Any, Any], db: Db, transaction_id: FromPath[str]
    ) -> Response[str]:
        tx = await ledger.get_transaction(db, transaction_id[:64], None)
        names = await queries.brand_names(db)
        totals: dict[str, int] = {}
        for leg in tx.postings:
            totals[leg.currency] = totals.get(leg.currency, 0) + leg.amount
        return render(
            request,
            "ledger/transaction.html",
            section="ledger",
            tx=tx,
            brands=names,
            account_brand={leg.account: ledger.account_brand(leg.account) for leg in tx.postings},
            totals=sorted(totals.items()),
        )

    @get("/verification", operation_id="consoleLedgerVerification")
    async def verification(self, request: Request[Any, Any, Any], db: Db) -> Response[str]:
        template = "ledger/_verification.html" if is_htmx(request) else "ledger/verification.html"
        return render(
            request,
            template,
            section="ledger",
            chain=await chain_status(db),
            job=current_job(request.app.state),
        )

    @post("/verification", operation_id="consoleRunLedgerVerification", guards=[admin_only])
    async def run_verification(self, request: Request[Any, Any, Any], db: Db, audit: Audit) -> Response[bytes]:
        state = request.app.state
        job = current_job(state)
        if job is None or not job.running:
            status = await chain_status(db)
            job = VerificationJob(
                started_at=datetime.now(UTC), started_by=audit.actor, total=status.head_seq + status.unsealed
            )
            setattr(state, _JOB_STATE, job)
            job.task = asyncio.create_task(_run_verification(state, job, audit))
        return Response(
            b"", status_code=303, headers={"Location": "/console/ledger/verification"}, media_type=MediaType.TEXT
        )
