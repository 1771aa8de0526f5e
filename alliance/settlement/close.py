"""The monthly close: lock the period, seal the ledger, add it up, write each brand's signed statement
and the run - all in the caller's database transaction (docs/decisions.md, docs/settlement.md).

A killed close leaves nothing and is simply run again; a re-run of a closed month rebuilds the
statements and checks they are byte-identical to the stored ones.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import msgspec
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.audit import AuditContext, record_audit
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import LedgerPeriod, SettlementRun, SettlementStatement
from alliance.ledger import quarantine
from alliance.ledger.sealer import lock_chain_head, seal_pending
from alliance.settlement.months import check_month
from alliance.settlement.schemas import RunOut
from alliance.settlement.statements import RunTotals, build_statements

__all__ = ["close_month", "get_run", "list_runs"]


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
        await _check_unchanged(session, month, key_file=key_file, alliance_id=alliance_id)
        return _run_out(existing, already_closed=True)
    await _check_closable(session, month, end)
    now = utcnow()
    await _lock_period(session, ctx, month, next_month, now)
    documents, totals = await build_statements(session, month, key_file=key_file, alliance_id=alliance_id)
    run = await _store_run(session, ctx, month, next_month, now, documents, totals)
    record_audit(
        session,
        ctx,
        "settlement.close",
        target=month,
        details={"transactions": totals.transactions, "statements": len(documents), "digest": run.digest},
    )
    return _run_out(run)


async def _check_unchanged(session: AsyncSession, month: str, *, key_file: str, alliance_id: str) -> None:
    """A closed month's statements, rebuilt, are the stored bytes (409 ``closed-month-changed``)."""
    documents, _ = await build_statements(session, month, key_file=key_file, alliance_id=alliance_id)
    stored = {
        row.brand_id: row.document
        for row in (await session.scalars(select(SettlementStatement).where(SettlementStatement.period == month))).all()
    }
    if stored != {brand_id: doc for brand_id, (doc, _, _) in documents.items()}:
        raise Problem(
            409, "closed-month-changed", f"rebuilding the statements of {month} no longer gives the stored bytes"
        )


async def _check_closable(session: AsyncSession, month: str, end: datetime) -> None:
    """The month has ended (UTC) and no later month is closed (months close in order)."""
    if end > utcnow():
        raise Problem(409, "month-not-over", f"{month} has not ended yet (UTC); close it after {end.isoformat()}")
    later = await session.scalar(
        select(LedgerPeriod.period).where(LedgerPeriod.period > month, LedgerPeriod.status == "closed").limit(1)
    )
    if later is not None:
        raise Problem(409, "later-month-closed", f"{later} is closed already; months close in order")


async def _lock_period(session: AsyncSession, ctx: AuditContext, month: str, next_month: str, now: datetime) -> None:
    """Mark the period closed, wait out its writers and seal the ledger, ready to be added up."""
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
    held = await quarantine.held_count(session, month)
    if held:  # its statements would leave them out, and a release later would land in a closed month
        raise Problem(
            409,
            "ledger-quarantine",
            f"{held} transaction(s) of {month} are held in the ledger quarantine: release or exclude them first "
            "(alliance ledger quarantine list)",
            extra={"held": held},
        )
    if session.get_bind().dialect.name == "postgresql":
        # A month is millions of postings: let the hash joins and aggregates stay in memory.
        await session.execute(text("SET LOCAL work_mem = '256MB'"))


async def _store_run(
    session: AsyncSession,
    ctx: AuditContext,
    month: str,
    next_month: str,
    now: datetime,
    documents: dict[str, tuple[bytes, str, str]],
    totals: RunTotals,
) -> SettlementRun:
    """The run row and one statement row per brand (the exact signed bytes)."""
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
    return run


async def list_runs(session: AsyncSession) -> list[RunOut]:
    runs = (await session.scalars(select(SettlementRun).order_by(SettlementRun.period.desc()))).all()
    return [_run_out(run) for run in runs]


async def get_run(session: AsyncSession, month: str) -> RunOut:
    check_month(month)
    run = await session.get(SettlementRun, month)
    if run is None:
        raise Problem(404, "run-not-found", f"{month} has not been closed")
    return _run_out(run)
