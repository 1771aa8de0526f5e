"""The monthly close, statements, disputes and the finance report (see ``docs/settlement.md``).

Public API (no HTTP objects; errors are `Problem`):

* ``await close_month(session, ctx, month, *, key_file) -> RunOut`` - close ``YYYY-MM`` in the caller's
  database transaction: lock the ledger period, seal, aggregate in SQL, net multilaterally, write one
  signed statement per brand with activity and the run. A second call for a closed month rebuilds the
  statements, checks they are byte-identical to the stored ones and returns the run (``already_closed``).
* ``await build_statements(session, month, *, key_file) -> (dict[brand_id, bytes], RunTotals)``
* ``await get_statement(session, brand_id, month) -> SettlementStatement`` (404 for no statement)
* ``statement_json(row, public_key=None) -> bytes`` (with the key that signed it), ``statement_csv(row) -> bytes``
* ``await list_runs(session) -> list[RunOut]``, ``await get_run(session, month) -> RunOut``
* ``await open_dispute(...)``, ``await list_disputes(...)``, ``await resolve_dispute(...)``
* ``await monthly_report(session, month) -> ReportOut``, ``report_csv(report) -> bytes``
* ``await exchange_key(session, key_file, key_id=None) -> ExchangeKeyOut`` (current, or any by key id),
  ``await list_exchange_keys(session, key_file)``, ``await rotate_exchange_key(session, ctx, key_file)``
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import and_, case, func, or_, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

import contracts
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import (
    Brand,
    Conversion,
    LedgerPeriod,
    LedgerPosting,
    LedgerTransaction,
    Redemption,
    SettlementDispute,
    SettlementRun,
    SettlementStatement,
    StatementKey,
)
from alliance.ledger import service as ledger
from alliance.ledger.sealer import lock_chain_head, seal_pending
from alliance.settlement import signing
from alliance.settlement.pdf import statement_pdf
from alliance.settlement.schemas import (
    STATEMENT_FORMAT,
    AdjustmentLine,
    BrandRef,
    CurrencySummary,
    DisputeIn,
    DisputeOut,
    DisputeResolveIn,
    ExchangeKeyOut,
    NetPositionOut,
    PairFlow,
    PartnerSummary,
    ReportBrand,
    ReportOut,
    ReportPair,
    RunOut,
    Statement,
    StatementLine,
)

__all__ = [
    "DISPUTE_KIND",
    "build_statements",
    "check_month",
    "close_month",
    "exchange_key",
    "get_run",
    "get_statement",
    "list_disputes",
    "list_exchange_keys",
    "list_runs",
    "monthly_report",
    "open_dispute",
    "report_csv",
    "resolve_dispute",
    "rotate_exchange_key",
    "statement_csv",
    "statement_json",
]

DISPUTE_KIND = "dispute_adjustment"
ALLIANCE_PARTNER = BrandRef(id="alliance", name="Alliance (no counterparty)")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def check_month(month: str) -> tuple[datetime, datetime, str]:
    """``(start, end, next month)`` of ``YYYY-MM`` in UTC; 400 ``invalid-period`` otherwise."""
    if not _MONTH.fullmatch(month):
        raise Problem(400, "invalid-period", "the month must be YYYY-MM")
    year, mon = int(month[:4]), int(month[5:])
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
    return start, end, f"{end.year:04d}-{end.month:02d}"


def _rfc3339(at: datetime) -> str:
    text_ = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text_ + (f".{at.microsecond:06d}" if at.microsecond else "") + "Z"


# --- aggregation (SQL, one GROUP BY per question) ---------------------------------------------------


class RunTotals(msgspec.Struct, kw_only=True):
    transactions: int
    net_positions: list[NetPositionOut]
    pair_flows: list[PairFlow]
    clearing: dict[str, int]


def _is_adjustment(start: datetime) -> Any:
    t = LedgerTransaction
    return or_(t.occurred_at < start, t.kind == DISPUTE_KIND)


async def _aggregate(session: AsyncSession, month: str, start: datetime) -> dict[str, Any]:
    t, p = LedgerTransaction, LedgerPosting
    adjustment = case((_is_adjustment(start), 1), else_=0)

    # ONE pass over the period's postings (joined to their transactions) answers both questions: the
    # totals per account, and the gross flows between pairs. Pricing books "X owes Y a" as payable(X)
    # +a at line n and receivable(Y) -a at line n+3 (contracts.postings_for; reversals flip the signs),
    # so the window function reads each payable leg's partner three lines on - in primary-key order,
    # which a merge join of the two primary keys delivers without sorting.
    legs = (
        select(
            p.brand_id,
            p.account,
            p.currency,
            p.amount,
            t.kind,
            adjustment.label("adjustment"),
            func.lead(p.brand_id, 3).over(partition_by=p.transaction_id, order_by=p.line).label("partner"),
            func.lead(p.account, 3).over(partition_by=p.transaction_id, order_by=p.line).label("partner_account"),
            func.lead(p.amount, 3).over(partition_by=p.transaction_id, order_by=p.line).label("partner_amount"),
            func.lead(p.currency, 3).over(partition_by=p.transaction_id, order_by=p.line).label("partner_currency"),
        )
        .join(t, t.id == p.transaction_id)
        .where(t.period == month)
        .subquery()
    )
    payee = case(
        (
            and_(
                legs.c.account.like("brand:%:payable"),
                legs.c.partner_account.like("brand:%:receivable"),
                legs.c.partner_amount == -legs.c.amount,
                legs.c.partner_currency == legs.c.currency,
            ),
            legs.c.partner,
        ),
        else_=None,
    ).label("payee")
    grouped = (
        await session.execute(
            select(
                legs.c.brand_id,
                legs.c.account,
                legs.c.currency,
                legs.c.adjustment,
                legs.c.kind,
                payee,
                func.sum(legs.c.amount),
                func.count(),
            ).group_by(legs.c.brand_id, legs.c.account, legs.c.currency, legs.c.adjustment, legs.c.kind, payee)
        )
    ).all()
    accounts: dict[tuple[str | None, str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    pair_totals: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    clearing_totals: dict[str, int] = defaultdict(int)
    for brand_id, account, currency, is_adjustment, kind, partner, amount, count in grouped:
        account_total = accounts[(brand_id, account, currency, int(is_adjustment))]
        account_total[0] += int(amount)
        account_total[1] += int(count)
        if account == contracts.CLEARING_ACCOUNT:
            clearing_totals[currency] += int(amount)
        if partner is not None and not is_adjustment:
            pair_total = pair_totals[(brand_id, partner, currency, kind)]
            pair_total[0] += int(amount)
            pair_total[1] += int(count)
    brand_rows = [(b, acc, cur, adj, total[0], total[1]) for (b, acc, cur, adj), total in accounts.items() if b]
    pair_rows = [(payer, payee_, cur, kind, v[0], v[1]) for (payer, payee_, cur, kind), v in pair_totals.items()]

    adjustment_rows = (
        await session.execute(
            select(t.id, t.kind, t.occurred_at, p.brand_id, p.currency, func.sum(p.amount))
            .join(p, p.transaction_id == t.id)
            .where(t.period == month, _is_adjustment(start), p.brand_id.is_not(None))
            .group_by(t.id, t.kind, t.occurred_at, p.brand_id, p.currency)
        )
    ).all()
    dispute_refs = {
        row[0]: row[1]
        for row in (
            await session.execute(select(t.id, t.reference).where(t.period == month, t.kind == DISPUTE_KIND))
        ).all()
    }
    transactions = await session.scalar(select(func.count()).select_from(t).where(t.period == month))
    return {
        "brands": brand_rows,
        "pairs": pair_rows,
        "adjustments": adjustment_rows,
        "dispute_refs": dispute_refs,
        "clearing": dict(clearing_totals),
        "transactions": int(transactions or 0),
    }


async def build_statements(
    session: AsyncSession, month: str, *, key_file: str, alliance_id: str
) -> tuple[dict[str, tuple[bytes, str, str]], RunTotals]:
    """Every statement of ``month`` from the ledger as it stands: ``{brand_id: (canonical document,
    signature, key id)}`` and the run totals. Deterministic: sorted everywhere, no clock read."""
    start, end, next_month = check_month(month)
    data = await _aggregate(session, month, start)
    names = {row[0]: row[1] for row in (await session.execute(select(Brand.id, Brand.name))).all()}

    def ref(brand_id: str) -> BrandRef:
        return BrandRef(id=brand_id, name=names.get(brand_id, brand_id))

    # Per brand and currency: [receivable, payable] magnitudes, all and regular (non-adjustment) only.
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    regular: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for brand_id, account, currency, is_adjustment, amount, postings in data["brands"]:
        side = 1 if str(account).endswith(":payable") else 0
        value = -int(amount) if side == 0 else int(amount)
        counts[(brand_id, currency)] += int(postings)
        totals[(brand_id, currency)][side] += value
        if not is_adjustment:
            regular[(brand_id, currency)][side] += value

    lines: dict[str, list[StatementLine]] = defaultdict(list)
    paired: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    pair_flows: list[PairFlow] = []
    for payer, payee, currency, kind, amount, count in data["pairs"]:
        amount, count = int(amount), int(count)
        pair_flows.append(PairFlow(payer=payer, payee=payee, currency=currency, kind=kind, amount=amount, count=count))
        lines[payer].append(
            StatementLine(
                line_id=f"payable:{payee}:{kind}:{currency}",
                partner=ref(payee),
                kind=kind,
                direction="payable",
                currency=currency,
                amount=amount,
                count=count,
            )
        )
        lines[payee].append(
            StatementLine(
                line_id=f"receivable:{payer}:{kind}:{currency}",
                partner=ref(payer),
                kind=kind,
                direction="receivable",
                currency=currency,
                amount=amount,
                count=count,
            )
        )
        paired[(payer, currency)][1] += amount
        paired[(payee, currency)][0] += amount
    # What regular postings did not pair (manual operator transactions): one line per side, so the
    # lines always add up to the ledger.
    for (brand_id, currency), (receivable, payable) in regular.items():
        for side, direction in ((0, "receivable"), (1, "payable")):
            rest = (receivable, payable)[side] - paired[(brand_id, currency)][side]
            if rest:
                lines[brand_id].append(
                    StatementLine(
                        line_id=f"{direction}:alliance:other:{currency}",
                        partner=ALLIANCE_PARTNER,
                        kind="other",
                        direction="receivable" if side == 0 else "payable",
                        currency=currency,
                        amount=rest,
                        count=0,
                    )
                )

    adjustments: dict[str, list[AdjustmentLine]] = defaultdict(list)
    for tx_id, kind, occurred_at, brand_id, currency, amount in data["adjustments"]:
        reference = data["dispute_refs"].get(tx_id) or {}
        dispute_id = reference.get("dispute_id") if isinstance(reference, dict) else None
        original = reference.get("disputed_period") if isinstance(reference, dict) else None
        adjustments[brand_id].append(
            AdjustmentLine(
                line_id=f"adjustment:{tx_id}:{currency}",
                transaction_id=tx_id,
                kind=kind,
                occurred_at=_rfc3339(occurred_at),
                original_period=str(original or contracts.month_of(occurred_at.astimezone(UTC))),
                currency=currency,
                amount=-int(amount),
                dispute_id=dispute_id,
            )
        )

    key = await signing.load_statement_key(session, key_file)
    documents: dict[str, tuple[bytes, str, str]] = {}
    net_positions: list[NetPositionOut] = []
    for brand_id in sorted({b for b, _ in totals}):
        summary = [
            CurrencySummary(
                currency=currency,
                receivable=rec_,
                payable=pay_,
                net=rec_ - pay_,
                postings=counts.get((brand_id, currency), 0),
            )
            for (b, currency), (rec_, pay_) in sorted(totals.items())
            if b == brand_id
        ]
        net_positions.extend(NetPositionOut(brand_id=brand_id, currency=s.currency, net=s.net) for s in summary)
        brand_lines = sorted(
            lines[brand_id], key=lambda line: (line.partner.id, line.currency, line.kind, line.direction)
        )
        partner_totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        partner_refs: dict[str, BrandRef] = {}
        for line in brand_lines:
            partner_refs[line.partner.id] = line.partner
            partner_totals[(line.partner.id, line.currency)][0 if line.direction == "receivable" else 1] += line.amount
        statement = Statement(
            format=STATEMENT_FORMAT,
            alliance_id=alliance_id,
            period=month,
            period_start=_rfc3339(start),
            period_end=_rfc3339(end),
            adjustments_into=next_month,
            brand=ref(brand_id),
            summary=summary,
            partners=[
                PartnerSummary(partner=partner_refs[pid], currency=cur, receivable=r, payable=q, net=r - q)
                for (pid, cur), (r, q) in sorted(partner_totals.items())
            ],
            lines=brand_lines,
            adjustments=sorted(adjustments[brand_id], key=lambda a: (a.occurred_at, a.transaction_id, a.currency)),
        )
        document = signing.canonical_json(statement)
        signature, key_id = signing.sign_statement(key, document)
        documents[brand_id] = (document, signature, key_id)
    run_totals = RunTotals(
        transactions=data["transactions"],
        net_positions=net_positions,
        pair_flows=sorted(pair_flows, key=lambda f: (f.payer, f.payee, f.currency, f.kind)),
        clearing=dict(sorted(data["clearing"].items())),
    )
    return documents, run_totals


def _digest(documents: dict[str, tuple[bytes, str, str]]) -> str:
    digest = hashlib.sha256()
    for brand_id in sorted(documents):
        digest.update(brand_id.encode() + b"\n" + hashlib.sha256(documents[brand_id][0]).digest())
    return digest.hexdigest()


def _run_out(run: SettlementRun, *, already_closed: bool = False) -> RunOut:
    totals = msgspec.convert(run.totals, RunTotals)
    return RunOut(
        period=run.period,
        next_period=run.next_period,
        closed_at=run.closed_at,
        closed_by=run.closed_by,
        transactions=run.transactions,
        statements=run.statements,
        digest=run.digest,
        net_positions=totals.net_positions,
        pair_flows=totals.pair_flows,
        already_closed=already_closed,
    )


# --- the close --------------------------------------------------------------------------------------


async def close_month(
    session: AsyncSession, ctx: AuditContext, month: str, *, key_file: str, alliance_id: str
) -> RunOut:
    """Close ``month`` inside the caller's database transaction (all or nothing: a killed process
    leaves no trace and the close can simply be run again).

    Raises 409 ``month-not-over`` for the current or a future month, 409 ``later-month-closed`` when a
    later month is closed already (months close in order), 409 ``close-in-progress`` when another close
    of the month won the race, and 409 ``closed-month-changed`` if a re-run finds statements that differ
    from the stored ones (the ledger of a closed month never changes, so this means tampering).
    """
    _, end, next_month = check_month(month)
    if session.get_bind().dialect.name == "sqlite":
        # Take SQLite's write lock before reading anything: a deferred transaction that read first and
        # writes after another connection committed fails at once instead of waiting.
        await lock_chain_head(session)
    existing = await session.get(SettlementRun, month)
    if existing is not None:
        documents, _ = await build_statements(session, month, key_file=key_file, alliance_id=alliance_id)
        stored = {
            row.brand_id: row.document
            for row in (
                await session.scalars(select(SettlementStatement).where(SettlementStatement.period == month))
            ).all()
        }
        if stored != {brand_id: doc for brand_id, (doc, _, _) in documents.items()}:
            raise Problem(
                409, "closed-month-changed", f"rebuilding the statements of {month} no longer gives the stored bytes"
            )
        return _run_out(existing, already_closed=True)
    if end > utcnow():
        raise Problem(409, "month-not-over", f"{month} has not ended yet (UTC); close it after {end.isoformat()}")
    later = await session.scalar(
        select(LedgerPeriod.period).where(LedgerPeriod.period > month, LedgerPeriod.status == "closed").limit(1)
    )
    if later is not None:
        raise Problem(409, "later-month-closed", f"{later} is closed already; months close in order")

    now = utcnow()
    session.add(LedgerPeriod(period=month, status="closed", next_period=next_month, closed_at=now, closed_by=ctx.actor))
    try:
        await session.flush()
    except IntegrityError:
        raise Problem(409, "close-in-progress", f"{month} is being closed by another run") from None
    # Writers that read the month as open must be done before we add it up (docs/ledger.md): take the
    # chain head first (as every sealer does, so no sealer and this close wait on each other in the
    # opposite order), then wait out in-flight writers; new writers queue until this transaction ends
    # and then see the month closed.
    await lock_chain_head(session)
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("LOCK TABLE ledger_transactions IN SHARE MODE"))
    await seal_pending(session)
    if session.get_bind().dialect.name == "postgresql":
        # A month is millions of postings: let the hash joins and aggregates stay in memory.
        await session.execute(text("SET LOCAL work_mem = '256MB'"))

    documents, totals = await build_statements(session, month, key_file=key_file, alliance_id=alliance_id)
    run = SettlementRun(
        period=month,
        next_period=next_month,
        closed_at=now,
        closed_by=ctx.actor,
        transactions=totals.transactions,
        statements=len(documents),
        digest=_digest(documents),
        totals=msgspec.to_builtins(totals),
    )
    session.add(run)
    await session.flush()
    if documents:
        await session.execute(
            SettlementStatement.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "period": month,
                    "brand_id": brand_id,
                    "document": document,
                    "sha256": hashlib.sha256(document).hexdigest(),
                    "signature": signature,
                    "key_id": key_id,
                }
                for brand_id, (document, signature, key_id) in sorted(documents.items())
            ],
        )
    record_audit(
        session,
        ctx,
        "settlement.close",
        target=month,
        details={"transactions": totals.transactions, "statements": len(documents), "digest": run.digest},
    )
    return _run_out(run)


# --- reading runs and statements --------------------------------------------------------------------


async def list_runs(session: AsyncSession) -> list[RunOut]:
    runs = (await session.scalars(select(SettlementRun).order_by(SettlementRun.period.desc()))).all()
    return [_run_out(run) for run in runs]


async def get_run(session: AsyncSession, month: str) -> RunOut:
    check_month(month)
    run = await session.get(SettlementRun, month)
    if run is None:
        raise Problem(404, "run-not-found", f"{month} has not been closed")
    return _run_out(run)


async def get_statement(session: AsyncSession, brand_id: str, month: str) -> SettlementStatement:
    """The brand's own statement of a closed month, with the key that signed it; 404
    ``statement-not-found`` otherwise (also when the month is closed but the brand had no activity)."""
    check_month(month)
    row = await session.get(
        SettlementStatement, (month, brand_id), options=[selectinload(SettlementStatement.signing_key)]
    )
    if row is None:
        raise Problem(404, "statement-not-found", f"no statement for {month}")
    return row


def statement_json(row: SettlementStatement, public_key: bytes | None = None) -> bytes:
    """``{"signature": {...}, "statement": {...}}`` - canonical JSON (keys sorted), the statement
    exactly as signed, with the public half of the key that signed it (``row.key_id``): the key
    recorded for that id (loaded by :func:`get_statement`), else ``public_key`` if it has that id.
    409 ``statement-key-unknown`` if neither (the key that signed it was never registered)."""
    recorded = None if "signing_key" in sa_inspect(row).unloaded else row.signing_key
    if recorded is not None:
        public_key = bytes(recorded.public_key)
    if public_key is None or signing.key_id_of(public_key) != row.key_id:
        raise Problem(
            409,
            "statement-key-unknown",
            f"the statement of {row.period} was signed with key {row.key_id}, which is not on record here",
        )
    signature = signing.canonical_json(
        {
            "algorithm": "Ed25519",
            "key_id": row.key_id,
            "public_key": base64.b64encode(public_key).decode("ascii"),
            "value": row.signature,
        }
    )
    return b'{"signature":' + signature + b',"statement":' + row.document + b"}"


async def statement_bytes(session: AsyncSession, row: SettlementStatement, kind: str, key_file: str) -> bytes:
    """A stored statement as the brand downloads it (``json``, ``csv`` or ``pdf``): one place, so the API
    and the console serve the same bytes. JSON carries the key recorded at close (it may have been rotated
    since), registering the current key first if the statement predates its registration."""
    if kind == "csv":
        return statement_csv(row)
    if kind == "pdf":
        return statement_pdf(row)
    return statement_json(row, await signing.statement_public_key(session, row.key_id, key_file))


def statement_csv(row: SettlementStatement) -> bytes:
    """The statement as CSV sections (UTF-8 with BOM, so spreadsheet software reads Chinese names)."""
    statement = msgspec.json.decode(row.document, type=Statement)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["statement", statement.period, statement.brand.id, statement.brand.name])
    writer.writerow(["signature", "Ed25519", row.key_id, row.signature])
    writer.writerow([])
    writer.writerow(["section", "currency", "receivable", "payable", "net", "postings"])
    for s in statement.summary:
        writer.writerow(["summary", s.currency, s.receivable, s.payable, s.net, s.postings])
    writer.writerow([])
    writer.writerow(["section", "partner_id", "partner_name", "currency", "receivable", "payable", "net"])
    for p in statement.partners:
        writer.writerow(["partner", p.partner.id, p.partner.name, p.currency, p.receivable, p.payable, p.net])
    writer.writerow([])
    writer.writerow(
        ["section", "line_id", "partner_id", "partner_name", "kind", "direction", "currency", "amount", "count"]
    )
    for line in statement.lines:
        writer.writerow(
            [
                "line",
                line.line_id,
                line.partner.id,
                line.partner.name,
                line.kind,
                line.direction,
                line.currency,
                line.amount,
                line.count,
            ]
        )
    writer.writerow([])
    writer.writerow(
        [
            "section",
            "line_id",
            "transaction_id",
            "kind",
            "occurred_at",
            "original_period",
            "currency",
            "amount",
            "dispute_id",
        ]
    )
    for a in statement.adjustments:
        writer.writerow(
            [
                "adjustment",
                a.line_id,
                a.transaction_id,
                a.kind,
                a.occurred_at,
                a.original_period,
                a.currency,
                a.amount,
                a.dispute_id or "",
            ]
        )
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


async def exchange_key(session: AsyncSession, key_file: str, key_id: str | None = None) -> ExchangeKeyOut:
    """The exchange's current statement key, or with ``key_id`` any key that ever signed statements
    here (404 ``exchange-key-not-found``)."""
    current = signing.key_id_of((await signing.load_statement_key(session, key_file)).public_key().public_bytes_raw())
    wanted = current if key_id is None else key_id
    row = await session.scalar(select(StatementKey).where(StatementKey.key_id == wanted))
    if row is None:
        raise Problem(404, "exchange-key-not-found", f"no statement key {key_id!r} has signed here")
    return _key_out(row, current=row.key_id == current)


def _key_out(row: StatementKey, *, current: bool) -> ExchangeKeyOut:
    return ExchangeKeyOut(
        algorithm="Ed25519",
        key_id=row.key_id,
        public_key=base64.b64encode(bytes(row.public_key)).decode("ascii"),
        statement_format=STATEMENT_FORMAT,
        current=current,
        created_at=row.created_at,
        retired_at=None if current else row.retired_at,
    )


async def list_exchange_keys(session: AsyncSession, key_file: str) -> list[ExchangeKeyOut]:
    """Every statement key, oldest first; the current one has ``current: true``."""
    rows = await signing.list_statement_keys(session, key_file)
    current = signing.key_id_of((await signing.load_statement_key(session, key_file)).public_key().public_bytes_raw())
    return [_key_out(row, current=row.key_id == current) for row in rows]


async def rotate_exchange_key(session: AsyncSession, ctx: AuditContext, key_file: str) -> ExchangeKeyOut:
    """Replace the database-stored statement key (409 ``statement-key-in-file`` when the key is a file:
    replace the file instead). Statements already issued keep their key id and verify as before."""
    try:
        old_id, new_id_ = await signing.rotate_statement_key(session, key_file)
    except signing.StatementKeyInFile as exc:
        raise Problem(409, "statement-key-in-file", str(exc)) from None
    record_audit(session, ctx, "statement_key.rotate", target=new_id_, details={"previous_key_id": old_id})
    return await exchange_key(session, key_file)


# --- disputes ---------------------------------------------------------------------------------------


def _dispute_out(d: SettlementDispute) -> DisputeOut:
    return DisputeOut(
        id=d.id,
        brand_id=d.brand_id,
        period=d.period,
        line_id=d.line_id,
        reason=d.reason,
        status=d.status,
        created_at=d.created_at,
        resolved_at=d.resolved_at,
        resolution=d.resolution,
        adjustment_transaction_id=d.adjustment_transaction_id,
    )


async def open_dispute(
    session: AsyncSession, ctx: AuditContext, brand_id: str, month: str, data: DisputeIn
) -> DisputeOut:
    """Flag one line (``line_id`` of a line or an adjustment) of the brand's own statement."""
    row = await get_statement(session, brand_id, month)
    statement = msgspec.json.decode(row.document, type=Statement)
    line_ids = {line.line_id for line in statement.lines} | {a.line_id for a in statement.adjustments}
    if data.line_id not in line_ids:
        raise Problem(422, "unknown-line", f"the statement of {month} has no line {data.line_id!r}")
    reason = data.reason.strip()
    if not 0 < len(reason) <= 2000:
        raise Problem(422, "invalid-reason", "the reason must be 1-2000 characters")
    dispute = SettlementDispute(
        id=new_id("dsp"), brand_id=brand_id, period=month, line_id=data.line_id, reason=reason, created_at=utcnow()
    )
    session.add(dispute)
    await session.flush()
    record_audit(
        session, ctx, "settlement.dispute.open", brand_id=brand_id, target=dispute.id, details={"period": month}
    )
    return _dispute_out(dispute)


async def list_disputes(session: AsyncSession, brand_id: str | None) -> list[DisputeOut]:
    query = select(SettlementDispute).order_by(SettlementDispute.created_at.desc(), SettlementDispute.id)
    if brand_id is not None:
        query = query.where(SettlementDispute.brand_id == brand_id)
    return [_dispute_out(d) for d in (await session.scalars(query)).all()]


async def resolve_dispute(
    session: AsyncSession, ctx: AuditContext, dispute_id: str, data: DisputeResolveIn
) -> DisputeOut:
    """Resolve an open dispute. ``adjust`` posts "payer owes payee amount" as a ``dispute_adjustment``
    dated at the end of the disputed month, so the ledger puts it into the next open period, where it
    shows in both brands' statements as an adjustment linked to the dispute and the disputed month."""
    dispute = await session.get(SettlementDispute, dispute_id, with_for_update=True)
    if dispute is None:
        raise Problem(404, "dispute-not-found", f"no dispute {dispute_id!r}")
    if dispute.status != "open":
        raise Problem(409, "dispute-resolved", f"dispute {dispute_id} is {dispute.status} already")
    note = data.note.strip()
    if not 0 < len(note) <= 2000:
        raise Problem(422, "invalid-note", "the note must be 1-2000 characters")
    if data.action == "adjust":
        if not (data.payer and data.payee and data.currency and data.amount):
            raise Problem(422, "invalid-adjustment", "an adjustment needs payer, payee, a positive amount and currency")
        if data.amount <= 0 or data.payer == data.payee:
            raise Problem(422, "invalid-adjustment", "the amount must be positive and payer and payee must differ")
        _, end, _ = check_month(dispute.period)
        # The four clearing postings of "payer owes payee amount", as contracts.postings_for books them.
        a, cur = data.amount, data.currency
        postings = (
            contracts.Posting(contracts.payable_account(data.payer), a, cur),
            contracts.Posting(contracts.CLEARING_ACCOUNT, -a, cur),
            contracts.Posting(contracts.CLEARING_ACCOUNT, a, cur),
            contracts.Posting(contracts.receivable_account(data.payee), -a, cur),
        )
        posted = await ledger.post_adjustment(
            session,
            ctx,
            idempotency_key=f"dispute:{dispute.id}",
            kind=DISPUTE_KIND,
            postings=postings,
            occurred_at=end - timedelta(microseconds=1),
            reference={"dispute_id": dispute.id, "disputed_period": dispute.period, "line_id": dispute.line_id},
        )
        dispute.adjustment_transaction_id = posted.id
        dispute.status = "adjusted"
    else:
        dispute.status = "rejected"
    dispute.resolution = note
    dispute.resolved_at = utcnow()
    await session.flush()
    record_audit(
        session,
        ctx,
        "settlement.dispute.resolve",
        brand_id=dispute.brand_id,
        target=dispute.id,
        details={"action": data.action, "transaction": dispute.adjustment_transaction_id},
    )
    return _dispute_out(dispute)


# --- the finance report -----------------------------------------------------------------------------


async def monthly_report(session: AsyncSession, month: str, *, top: int = 10) -> ReportOut:
    """A closed month's alliance summary: net per brand, the largest partner pairs, redemptions and
    conversions with the GMV they drove, and commissions booked - all from the period's ledger rows."""
    run = await get_run(session, month)
    names = {row[0]: row[1] for row in (await session.execute(select(Brand.id, Brand.name))).all()}
    gross: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    pairs: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for flow in run.pair_flows:
        gross[(flow.payer, flow.currency)][1] += flow.amount
        gross[(flow.payee, flow.currency)][0] += flow.amount
        pairs[(flow.payer, flow.payee, flow.currency)][0] += flow.amount
        pairs[(flow.payer, flow.payee, flow.currency)][1] += flow.count
    brands = [
        ReportBrand(
            brand_id=n.brand_id,
            name=names.get(n.brand_id, n.brand_id),
            currency=n.currency,
            receivable=gross[(n.brand_id, n.currency)][0],
            payable=gross[(n.brand_id, n.currency)][1],
            net=n.net,
        )
        for n in run.net_positions
    ]
    top_pairs = sorted(
        (ReportPair(payer=k[0], payee=k[1], currency=k[2], amount=v[0], count=v[1]) for k, v in pairs.items()),
        key=lambda r: (-r.amount, r.payer, r.payee, r.currency),
    )[:top]
    t = LedgerTransaction

    async def events(model: Any, amount: Any) -> tuple[int, dict[str, int], dict[str, int]]:
        rows = (
            await session.execute(
                select(model.currency, func.count(), func.sum(amount), func.sum(model.commission))
                .join(t, t.id == model.ledger_transaction_id)
                .where(t.period == month)
                .group_by(model.currency)
            )
        ).all()
        return (
            sum(int(r[1]) for r in rows),
            {r[0]: int(r[2] or 0) for r in sorted(rows)},
            {r[0]: int(r[3] or 0) for r in sorted(rows)},
        )

    redemptions, redemption_gmv, coupon_commission = await events(Redemption, Redemption.order_amount)
    conversions, conversion_gmv, referral_commission = await events(Conversion, Conversion.order_amount)
    commissions: dict[str, int] = defaultdict(int)
    for source in (coupon_commission, referral_commission):
        for currency, amount in source.items():
            commissions[currency] += amount
    return ReportOut(
        period=month,
        brands=brands,
        top_pairs=top_pairs,
        redemptions=redemptions,
        redemption_gmv=redemption_gmv,
        conversions=conversions,
        conversion_gmv=conversion_gmv,
        commissions=dict(sorted(commissions.items())),
    )


def report_csv(report: ReportOut) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["section", "brand_id", "name", "currency", "receivable", "payable", "net"])
    for b in report.brands:
        writer.writerow(["brand", b.brand_id, b.name, b.currency, b.receivable, b.payable, b.net])
    writer.writerow([])
    writer.writerow(["section", "payer", "payee", "currency", "amount", "count"])
    for p in report.top_pairs:
        writer.writerow(["pair", p.payer, p.payee, p.currency, p.amount, p.count])
    writer.writerow([])
    writer.writerow(["section", "metric", "currency", "value"])
    writer.writerow(["total", "redemptions", "", report.redemptions])
    writer.writerow(["total", "conversions", "", report.conversions])
    for name, values in (
        ("redemption_gmv", report.redemption_gmv),
        ("conversion_gmv", report.conversion_gmv),
        ("commissions", report.commissions),
    ):
        for currency, value in values.items():
            writer.writerow(["total", name, currency, value])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")
