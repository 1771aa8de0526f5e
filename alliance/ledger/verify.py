"""Ledger verification: recompute the hash chain and every balance, and name the first thing wrong.

Checks, in chain order: ``seq`` runs 1, 2, 3... without gaps; each ``prev_hash`` is the previous hash
(64 zeros before the first); each stored hash equals the recomputed one; each transaction's postings are
valid (amount within 64 bits and non-zero, active currency, ``brand_id`` matching the account) and
balance per currency. Then committed-but-unsealed transactions (which must balance too), postings
without a transaction, every stored
account balance against the sum of sealed postings, and the chain head against the last transaction.

The first problem is reported with the transaction id and ``seq`` (or the account) and why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.core.database import database_unavailable
from alliance.db.base import utcnow
from alliance.db.models import LedgerAccount, LedgerChainHead, LedgerPosting, LedgerTransaction
from alliance.ledger import quarantine
from alliance.ledger.chain import GENESIS_HASH, ChainPosting, transaction_hash
from alliance.ledger.schemas import VerifyProblem, VerifyReport
from alliance.ledger.sealer import lock_chain_head, seal_pending

__all__ = ["verify_ledger"]

_CHUNK = 2000


class _Failed(Exception):
    def __init__(self, problem: VerifyProblem) -> None:
        super().__init__(problem.reason)
        self.problem = problem


def _posting_problem(leg: Any) -> str | None:
    amount = leg.amount
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        return f"posting line {leg.line} has amount {amount!r}"
    if not -contracts.MAX_MINOR_UNITS <= amount <= contracts.MAX_MINOR_UNITS:
        return f"posting line {leg.line} amount {amount} is outside 64 bits"
    if leg.currency not in contracts.ISO_4217_MINOR_UNITS:
        return f"posting line {leg.line} has unknown currency {leg.currency!r}"
    parsed = contracts.parse_brand_account(leg.account)
    expected = parsed[0] if parsed else None
    if parsed is None and not leg.account.startswith("alliance:"):
        return f"posting line {leg.line} is on an invalid account {leg.account!r}"
    if leg.brand_id != expected:
        return f"posting line {leg.line} says brand {leg.brand_id!r} but its account {leg.account!r} is {expected!r}'s"
    return None


def _check_postings(tx: Any, legs: list[Any]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        reason = _posting_problem(leg)
        if reason:
            raise _Failed(VerifyProblem(reason=reason, transaction_id=tx.id, seq=tx.seq))
        totals[leg.currency] += leg.amount
    unbalanced = {c: v for c, v in totals.items() if v}
    if unbalanced:
        detail = ", ".join(f"{c} {v:+d}" for c, v in sorted(unbalanced.items()))
        raise _Failed(VerifyProblem(reason=f"postings do not balance: {detail}", transaction_id=tx.id, seq=tx.seq))


async def _postings_of(session: AsyncSession, ids: list[str]) -> dict[str, list[Any]]:
    p = LedgerPosting.__table__
    legs: dict[str, list[Any]] = defaultdict(list)
    rows = await session.execute(select(p).where(p.c.transaction_id.in_(ids)).order_by(p.c.transaction_id, p.c.line))
    for leg in rows.all():
        legs[leg.transaction_id].append(leg)
    return legs


async def _check_chain(
    session: AsyncSession, sums: dict[tuple[str, str], int], progress: Callable[[int], None] | None = None
) -> tuple[int, str, str | None]:
    """Walk the sealed chain; returns (last seq, last hash, last id) and fills ``sums``."""
    t = LedgerTransaction.__table__
    expected_seq, prev_hash, last_id = 1, GENESIS_HASH, None
    while True:
        if progress is not None:
            progress(expected_seq - 1)
        rows = (await session.execute(select(t).where(t.c.seq >= expected_seq).order_by(t.c.seq).limit(_CHUNK))).all()
        if not rows:
            return expected_seq - 1, prev_hash, last_id
        legs = await _postings_of(session, [r.id for r in rows])
        for tx in rows:
            if tx.seq != expected_seq:
                raise _Failed(
                    VerifyProblem(
                        reason=f"chain gap: seq {expected_seq} is missing before this transaction (seq {tx.seq})",
                        transaction_id=tx.id,
                        seq=tx.seq,
                    )
                )
            if tx.prev_hash != prev_hash:
                raise _Failed(
                    VerifyProblem(
                        reason=f"prev_hash does not match the hash of the transaction before it "
                        f"({last_id or 'genesis'}, seq {expected_seq - 1})",
                        transaction_id=tx.id,
                        seq=tx.seq,
                    )
                )
            own = legs.get(tx.id, [])
            if tx.sealed_at is None or tx.hash is None:
                raise _Failed(
                    VerifyProblem(reason="sealed without a hash or sealed_at", transaction_id=tx.id, seq=tx.seq)
                )
            recomputed = transaction_hash(
                seq=tx.seq,
                prev_hash=tx.prev_hash,
                id=tx.id,
                idempotency_scope=tx.idempotency_scope,
                idempotency_key=tx.idempotency_key,
                brand_id=tx.brand_id,
                kind=tx.kind,
                occurred_at=tx.occurred_at,
                posted_at=tx.posted_at,
                period=tx.period,
                reference=tx.reference,
                sealed_at=tx.sealed_at,
                postings=[ChainPosting(x.line, x.account, x.brand_id, x.amount, x.currency) for x in own],
            )
            if recomputed != tx.hash:
                raise _Failed(
                    VerifyProblem(
                        reason="hash mismatch: the transaction or one of its postings changed after sealing",
                        transaction_id=tx.id,
                        seq=tx.seq,
                    )
                )
            _check_postings(tx, own)
            for leg in own:
                sums[(leg.account, leg.currency)] += leg.amount
            prev_hash, last_id = tx.hash, tx.id
            expected_seq += 1


async def _check_pending(session: AsyncSession) -> int:
    t = LedgerTransaction.__table__
    rows = (await session.execute(select(t).where(t.c.seq.is_(None)).order_by(t.c.posted_at, t.c.id))).all()
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        legs = await _postings_of(session, [r.id for r in chunk])
        for tx in chunk:
            if tx.prev_hash is not None or tx.hash is not None or tx.sealed_at is not None:
                raise _Failed(VerifyProblem(reason="has chain columns but no seq", transaction_id=tx.id))
            _check_postings(tx, legs.get(tx.id, []))
    return len(rows)


async def _check_orphans(session: AsyncSession) -> None:
    t, p = LedgerTransaction.__table__, LedgerPosting.__table__
    orphan = (
        await session.execute(
            select(p.c.transaction_id, p.c.line)
            .select_from(p.outerjoin(t, t.c.id == p.c.transaction_id))
            .where(t.c.id.is_(None))
            .limit(1)
        )
    ).first()
    if orphan is not None:
        raise _Failed(
            VerifyProblem(
                reason=f"posting line {orphan.line} belongs to no transaction (transaction row missing)",
                transaction_id=orphan.transaction_id,
            )
        )


async def _check_balances(session: AsyncSession, sums: dict[tuple[str, str], int]) -> None:
    stored = {(a.account, a.currency): a for a in (await session.scalars(select(LedgerAccount))).all()}
    for key in sorted(set(stored) | set(sums)):
        account, currency = key
        row = stored.get(key)
        have = row.balance if row is not None else 0
        want = sums.get(key, 0)
        if have != want:
            raise _Failed(
                VerifyProblem(
                    reason=f"stored balance {have} but the sealed postings sum to {want}",
                    account=account,
                    currency=currency,
                )
            )
        if row is not None:
            parsed = contracts.parse_brand_account(account)
            if row.brand_id != (parsed[0] if parsed else None):
                raise _Failed(
                    VerifyProblem(
                        reason=f"account row names brand {row.brand_id!r}", account=account, currency=currency
                    )
                )


async def _seal_first(session: AsyncSession) -> tuple[int, VerifyProblem | None]:
    """Seal what is pending, in a savepoint: a failure is reported as the problem, never raised (an
    outage still is: there is nothing to verify against)."""
    try:
        async with session.begin_nested():
            return await seal_pending(session), None
    except Exception as exc:
        if database_unavailable(exc):
            raise
        reason = f"sealing the pending transactions failed: {type(exc).__name__}: {str(exc)[:300]}"
        return 0, VerifyProblem(reason=reason)


async def verify_ledger(
    session: AsyncSession, *, seal: bool = True, progress: Callable[[int], None] | None = None
) -> VerifyReport:
    """Verify the whole ledger inside the caller's transaction and return a report (never raises for a
    ledger problem: ``ok`` is false and ``problem`` says what and where).

    With ``seal`` (the default) pending transactions are sealed first, so everything committed so far
    is checked against the chain. The chain head stays locked until the caller's transaction ends, so
    no sealer moves the chain or the balances while they are compared.

    ``progress``, if given, is called with the number of sealed transactions checked so far, before each
    chunk of the chain walk (the console shows it while a long verification runs).
    """
    sealed_now, problem = await _seal_first(session) if seal else (0, None)
    if not seal or problem is not None:
        await lock_chain_head(session)
    head = await session.get(LedgerChainHead, 1, populate_existing=True)
    head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS_HASH)
    sums: dict[tuple[str, str], int] = defaultdict(int)
    transactions = 0
    pending = 0
    try:
        last_seq, last_hash, last_id = await _check_chain(session, sums, progress)
        transactions = last_seq
        if (head_seq, head_hash) != (last_seq, last_hash):
            raise _Failed(
                VerifyProblem(
                    reason=f"the chain head says seq {head_seq} / {head_hash[:16]}... but the chain ends at seq "
                    f"{last_seq} / {last_hash[:16]}... (transactions cut off or head edited)",
                    transaction_id=last_id,
                    seq=last_seq or None,
                )
            )
        pending = await _check_pending(session)
        await _check_orphans(session)
        await _check_balances(session, sums)
    except _Failed as failed:
        problem = problem or failed.problem
    if problem is None:
        count = await session.scalar(select(func.count()).select_from(LedgerTransaction))
        if int(count or 0) != transactions + pending:  # pragma: no cover - defensive: rows outside both sets
            problem = VerifyProblem(reason=f"{count} transactions stored, {transactions + pending} accounted for")
    held = await quarantine.list_quarantine(session, "held")
    return VerifyReport(
        quarantined=len(held),
        quarantined_ids=[row.transaction_id for row in held[:20]],
        ok=problem is None,
        transactions=transactions,
        pending=pending,
        sealed_now=sealed_now,
        head_seq=head_seq,
        head_hash=head_hash,
        checked_at=utcnow(),
        problem=problem,
    )
