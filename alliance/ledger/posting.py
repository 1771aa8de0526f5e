"""Posting to the settlement ledger, inside the caller's database transaction.

Called by the benefits, referral and settlement domains *inside their own database transaction*, so a
redemption and its postings commit or roll back together. No HTTP objects here; bad input is a
`Problem` (422) and writes nothing.

What a writer does (see ``docs/ledger.md``): one INSERT of the transaction row, guarded by the unique
(scope, idempotency key) constraint with ``ON CONFLICT DO NOTHING``, its period chosen inside the INSERT
by the ledger's period rule (`alliance.ledger.periods`), and one multi-row INSERT of its postings. Both
statements are written once, here, in SQLAlchemy Core (:func:`ledger_ctes`): SQLite runs them one after
the other; PostgreSQL runs them as one statement of two CTEs, sent straight through asyncpg; and the
redemption fast path makes them two CTEs of its own single statement. Writers never lock or update a
shared row: the hash chain and the account balances are maintained after commit by the sealer
(`alliance.ledger.sealer`), so concurrent writers never queue behind one another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.core.audit import AuditContext, record_audit
from alliance.core.problems import Problem
from alliance.db.models import LedgerPosting, LedgerTransaction
from alliance.ledger.schemas import ReferenceValue
from alliance.ledger.validation import (
    account_brand,
    bad,
)
from alliance.ledger.writes import (
    ALLIANCE_SCOPE,
    PreparedPosting,
    post_postgresql,
    postings_insert,
    prepare_priced_event,
    prepare_transaction,
    priced_transaction,
    transaction_insert,
)

__all__ = [
    "ALLIANCE_SCOPE",
    "PostedTransaction",
    "PreparedPosting",
    "post_adjustment",
    "post_priced_event",
    "post_transaction",
    "prepare_priced_event",
    "prepare_transaction",
    "write_prepared",
]


class PostedTransaction(msgspec.Struct, frozen=True, kw_only=True):
    """A transaction as posted. ``replayed`` is true when the idempotency key had been used before and
    this is the first result, returned unchanged (nothing new was posted)."""

    id: str
    kind: str
    brand_id: str | None
    idempotency_key: str
    occurred_at: datetime
    posted_at: datetime
    period: str
    reference: dict[str, ReferenceValue]
    postings: tuple[contracts.Posting, ...]
    replayed: bool = False


def _unknown_brand() -> Problem:
    return bad("unknown-brand", "a posting names a brand that is not a member of the alliance")


async def _begin_like_sqlalchemy(adapter: Any) -> None:
    """Open the session's database transaction the way SQLAlchemy's asyncpg cursor does before its first
    statement (``_start_transaction`` when no transaction is tracked). Uses a private hook of SQLAlchemy's
    asyncpg adapter; if a future version lacks it nothing happens, the caller sees no transaction on the
    connection and takes SQLAlchemy's own execution path instead - slower, never outside the transaction.
    ``tests/alliance/ledger`` checks that a post rolls back with its caller's transaction."""
    start = getattr(adapter, "_start_transaction", None)
    if start is not None and getattr(adapter, "_transaction", False) is None:
        await start()


async def _insert_postgresql(session: AsyncSession, prepared: PreparedPosting) -> str | None:
    statement, direct = post_postgresql()
    params = prepared.params()
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if driver is not None and not driver.is_in_transaction():
        await _begin_like_sqlalchemy(raw.dbapi_connection)
    if driver is not None and driver.is_in_transaction():
        # The caller's transaction is open on this very connection: send the statement straight through
        # asyncpg (about a third of the CPU of SQLAlchemy's execution path, on the hottest write).
        try:
            inserted = await driver.fetchrow(direct.sql, *direct.args(params))
        except asyncpg.ForeignKeyViolationError:
            raise _unknown_brand() from None
    else:  # first statement of the transaction: let SQLAlchemy begin it
        try:
            inserted = (await session.execute(statement, params)).first()
        except IntegrityError as exc:
            if "foreign key" not in str(exc.orig).lower():
                raise
            raise _unknown_brand() from None
    return None if inserted is None else str(inserted[1])


async def _insert_generic(session: AsyncSession, prepared: PreparedPosting) -> str | None:
    """SQLite (and any other backend): the same two statements, one after the other."""
    dialect = session.get_bind().dialect.name
    params = prepared.params()
    try:
        inserted = (await session.execute(transaction_insert(dialect), params)).first()
        if inserted is None:
            return None
        if prepared.postings:
            await session.execute(postings_insert(dialect), params)
    except IntegrityError as exc:  # the brand foreign keys, checked per row
        if "foreign key" not in str(exc.orig).lower():
            raise
        raise _unknown_brand() from None
    return str(inserted[1])


async def write_prepared(session: AsyncSession, prepared: PreparedPosting) -> str | None:
    """Write a prepared transaction in the caller's database transaction; its period, or ``None`` if
    its (scope, idempotency key) was used before (nothing written)."""
    if session.get_bind().dialect.name == "postgresql":
        return await _insert_postgresql(session, prepared)
    return await _insert_generic(session, prepared)


async def _replayed(session: AsyncSession, prepared: PreparedPosting) -> PostedTransaction:
    """The transaction first posted under the prepared one's (scope, key), if it is the same one;
    409 ``idempotency-key-reused`` otherwise."""
    tx, stored = await _stored(session, prepared.scope, prepared.idempotency_key)
    same = (
        tx.kind == prepared.kind
        and tx.brand_id == prepared.brand_id
        and tx.occurred_at == prepared.occurred_at
        and dict(tx.reference) == prepared.reference
        and [(p.account, p.amount, p.currency) for p in stored]
        == [(p.account, p.amount, p.currency) for p in prepared.postings]
    )
    if not same:
        raise Problem(
            409,
            "idempotency-key-reused",
            "this idempotency key was already used for a different transaction",
            extra={"transaction_id": tx.id},
        )
    return _posted(tx, stored, replayed=True)


async def _stored(session: AsyncSession, scope: str, key: str) -> tuple[LedgerTransaction, list[LedgerPosting]]:
    tx = (
        await session.scalars(
            select(LedgerTransaction).where(
                LedgerTransaction.idempotency_scope == scope, LedgerTransaction.idempotency_key == key
            )
        )
    ).one()
    postings = (
        await session.scalars(
            select(LedgerPosting).where(LedgerPosting.transaction_id == tx.id).order_by(LedgerPosting.line)
        )
    ).all()
    return tx, list(postings)


def _posted(tx: LedgerTransaction, postings: Sequence[LedgerPosting], replayed: bool) -> PostedTransaction:
    return PostedTransaction(
        id=tx.id,
        kind=tx.kind,
        brand_id=tx.brand_id,
        idempotency_key=tx.idempotency_key,
        occurred_at=tx.occurred_at,
        posted_at=tx.posted_at,
        period=tx.period,
        reference=dict(tx.reference),
        postings=tuple(contracts.Posting(p.account, p.amount, p.currency) for p in postings),
        replayed=replayed,
    )


async def post_transaction(
    session: AsyncSession,
    *,
    brand_id: str | None,
    idempotency_key: str,
    kind: str,
    postings: Sequence[contracts.Posting],
    occurred_at: datetime,
    reference: Mapping[str, object] | None = None,
    allow_empty: bool = False,
) -> PostedTransaction:
    """Post one balanced transaction in the caller's database transaction (the caller commits).

    * ``brand_id`` is the brand on whose behalf it is posted and the idempotency scope (``None``: the
      exchange itself). (brand, ``idempotency_key``) is unique: a replay with the same content returns
      the first transaction with ``replayed=True`` and posts nothing; a replay with different content
      is 409 ``idempotency-key-reused``.
    * ``postings``: integer minor units, debit positive, within the signed 64-bit range, non-zero, in
      active ISO 4217 currencies, on ``brand:<id>:receivable|payable`` or ``alliance:<name>`` accounts,
      summing to zero per currency. Violations are 422 problems (``unbalanced-transaction``,
      ``unknown-currency``, ``invalid-amount``, ``amount-out-of-range``, ``invalid-account``, ...).
    * ``reference`` (flat; strings, integers, bools, null) is shown to every brand whose accounts the
      transaction touches: put only identifiers all of them may see.
    * The period is the UTC month of ``occurred_at``, or the next open one if that month is closed.

    The transaction is hash-chained by the sealer shortly after commit; until then ``seq``/``hash`` are
    unset, but balances read through `live_balances` already include it.
    """
    prepared = prepare_transaction(
        brand_id=brand_id,
        idempotency_key=idempotency_key,
        kind=kind,
        postings=postings,
        occurred_at=occurred_at,
        reference=reference,
        allow_empty=allow_empty,
    )
    period = await write_prepared(session, prepared)
    if period is not None:
        return PostedTransaction(
            id=prepared.id,
            kind=kind,
            brand_id=brand_id,
            idempotency_key=idempotency_key,
            occurred_at=prepared.occurred_at,
            posted_at=prepared.posted_at,
            period=period,
            reference=prepared.reference,
            postings=prepared.postings,
        )
    return await _replayed(session, prepared)


async def post_priced_event(
    session: AsyncSession,
    priced: contracts.PricedEvent,
    *,
    brand_id: str | None,
    idempotency_key: str,
    occurred_at: datetime,
    kind: str | None = None,
    reference: Mapping[str, object] | None = None,
) -> PostedTransaction:
    """Book a priced event (`contracts.price_event`) as one transaction.

    ``kind`` defaults to the event's commission kind (``coupon`` / ``referral``); pass e.g.
    ``coupon_reversal`` for a reversal. The reference records the event id, the contract version that
    priced it and the commission (callers add their own ids). An event priced to nothing (no
    obligations) is still recorded, with no postings, so its idempotency key is spent.
    """
    transaction = priced_transaction(priced, brand_id, idempotency_key, occurred_at, kind, reference)
    return await post_transaction(session, **transaction)


async def post_adjustment(
    session: AsyncSession,
    ctx: AuditContext,
    *,
    idempotency_key: str,
    kind: str,
    postings: Sequence[contracts.Posting],
    occurred_at: datetime,
    reference: Mapping[str, object] | None = None,
) -> PostedTransaction:
    """An operator's manual transaction (corrections, fees), posted and audited in one transaction."""
    posted = await post_transaction(
        session,
        brand_id=None,
        idempotency_key=idempotency_key,
        kind=kind,
        postings=postings,
        occurred_at=occurred_at,
        reference=reference,
    )
    if not posted.replayed:
        touched = sorted({b for b in (account_brand(p.account) for p in postings) if b})
        record_audit(
            session,
            ctx,
            "ledger.adjustment",
            target=posted.id,
            details={"kind": kind, "postings": len(postings), "brands": touched, "period": posted.period},
        )
    return posted
