"""Posting to the settlement ledger, and reading it back (each brand only its own side).

Called by the benefits, referral and settlement domains *inside their own database transaction*, so a
redemption and its postings commit or roll back together. No HTTP objects here; bad input is a
`Problem` (422) and writes nothing.

What a writer does (see ``docs/ledger.md``): one INSERT of the transaction row, guarded by the unique
(scope, idempotency key) constraint with ``ON CONFLICT DO NOTHING``, and one multi-row INSERT of its
postings - on PostgreSQL both in a single statement. Writers never lock or update a shared row: the
hash chain and the account balances are maintained after commit by the sealer
(`alliance.ledger.sealer`), so concurrent writers never queue behind one another.

Public API:

* ``await post_transaction(session, *, brand_id, idempotency_key, kind, postings, occurred_at,
  reference=None, allow_empty=False) -> PostedTransaction``
* ``await post_priced_event(session, priced, *, brand_id, idempotency_key, occurred_at, kind=None,
  reference=None) -> PostedTransaction``
* ``await open_period_for(session, occurred_at) -> str`` - the period a transaction would post into now
* ``await live_balances(session, brand_id) -> list[AccountBalance]`` - exact, including unsealed postings
* ``await list_transactions(session, *, brand_id, ...) -> TransactionPage``
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import msgspec
from sqlalchemy import Select, Table, and_, exists, func, literal, or_, select, union_all
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import LedgerAccount, LedgerPeriod, LedgerPosting, LedgerTransaction
from alliance.ledger.schemas import (
    AccountBalance,
    BalancesOut,
    NetPosition,
    PostingOut,
    ReferenceValue,
    TransactionOut,
    TransactionPage,
)

__all__ = [
    "ALLIANCE_SCOPE",
    "MAX_AMOUNT",
    "MAX_POSTINGS",
    "PG_POST_CTE",
    "PostedTransaction",
    "PreparedPosting",
    "account_brand",
    "balances_out",
    "get_transaction",
    "list_transactions",
    "live_balances",
    "open_period_for",
    "post_adjustment",
    "post_priced_event",
    "post_transaction",
    "prepare_priced_event",
]

ALLIANCE_SCOPE = "alliance"
"""Idempotency scope of transactions the exchange posts on its own account (no brand)."""
MAX_AMOUNT = contracts.MAX_MINOR_UNITS
MAX_POSTINGS = 1000
_MAX_REFERENCE_KEYS = 32
_MAX_REFERENCE_TEXT = 256
_KIND = re.compile(r"[a-z][a-z0-9_.]{0,31}")
_ALLIANCE_ACCOUNT = re.compile(r"alliance:[a-z][a-z0-9_]{0,31}")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


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


# --- validation -------------------------------------------------------------------------------------


def _bad(slug: str, detail: str) -> Problem:
    return Problem(422, slug, detail)


def account_brand(account: object) -> str | None:
    """The brand an account belongs to (``brand:<id>:payable|receivable``), ``None`` for the
    exchange's own ``alliance:<name>`` accounts; 422 ``invalid-account`` for anything else."""
    if not isinstance(account, str) or len(account) > 100:
        raise _bad("invalid-account", f"{account!r} is not a ledger account")
    return _account_brand(account)


@functools.lru_cache(maxsize=4096)
def _account_brand(account: str) -> str | None:  # a handful of accounts recur on every post: parse once
    parsed = contracts.parse_brand_account(account)
    if parsed is not None:
        if not contracts.is_valid_id(parsed[0]):
            raise _bad("invalid-account", f"{account!r} does not name a valid brand id")
        return parsed[0]
    if _ALLIANCE_ACCOUNT.fullmatch(account):
        return None
    raise _bad(
        "invalid-account",
        f"{account!r} is not a ledger account: use brand:<id>:receivable, brand:<id>:payable or alliance:<name>",
    )


def _check_amount(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad("invalid-amount", f"{where}: amounts are integers of minor units, got {type(value).__name__}")
    if not -MAX_AMOUNT <= value <= MAX_AMOUNT:
        raise _bad("amount-out-of-range", f"{where}: {value} is outside the signed 64-bit range")
    if value == 0:
        raise _bad("invalid-amount", f"{where}: a posting of zero moves nothing; leave it out")
    return value


def _validate_postings(postings: Sequence[contracts.Posting], allow_empty: bool) -> list[str | None]:
    """Check every posting and that they balance per currency; returns each posting's brand."""
    if not isinstance(postings, tuple | list):  # (cheaper than an ABC check on the hot path)
        raise _bad("invalid-postings", "postings must be a list or tuple of Posting")
    if not postings and not allow_empty:
        raise _bad("invalid-postings", "a transaction needs at least one posting")
    if len(postings) > MAX_POSTINGS:
        raise _bad("invalid-postings", f"at most {MAX_POSTINGS} postings per transaction")
    brands: list[str | None] = []
    totals: dict[str, int] = defaultdict(int)
    for index, posting in enumerate(postings):
        where = f"postings[{index}]"
        if not isinstance(posting, contracts.Posting):
            raise _bad("invalid-postings", f"{where}: expected a Posting, got {type(posting).__name__}")
        brands.append(account_brand(posting.account))
        amount = _check_amount(posting.amount, where)
        try:
            contracts.validate_currency(posting.currency)
        except contracts.UnknownCurrency as exc:
            raise _bad("unknown-currency", f"{where}: {exc}") from None
        totals[posting.currency] += amount
    unbalanced = {currency: total for currency, total in totals.items() if total}
    if unbalanced:
        detail = ", ".join(f"{currency} {total:+d}" for currency, total in sorted(unbalanced.items()))
        raise Problem(
            422,
            "unbalanced-transaction",
            f"postings must sum to zero in every currency; off by {detail}",
            extra={"imbalance": unbalanced},
        )
    return brands


def _validate_reference(reference: Mapping[str, object] | None) -> dict[str, ReferenceValue]:
    if reference is None:
        return {}
    if not isinstance(reference, dict) and isinstance(reference, Mapping):  # dict first: no ABC check
        reference = dict(reference)
    if not isinstance(reference, dict) or len(reference) > _MAX_REFERENCE_KEYS:
        raise _bad("invalid-reference", f"reference must be a mapping of at most {_MAX_REFERENCE_KEYS} entries")
    clean: dict[str, ReferenceValue] = {}
    for key, value in reference.items():
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            raise _bad("invalid-reference", f"reference key {key!r} must be a string of 1-64 characters")
        if isinstance(value, bool) or value is None:
            clean[key] = value
        elif isinstance(value, int):
            if not -MAX_AMOUNT <= value <= MAX_AMOUNT:
                raise _bad("invalid-reference", f"reference[{key!r}] is outside the signed 64-bit range")
            clean[key] = value
        elif isinstance(value, str) and len(value) <= _MAX_REFERENCE_TEXT:
            clean[key] = value
        else:
            raise _bad(
                "invalid-reference",
                f"reference[{key!r}] must be a string (<= {_MAX_REFERENCE_TEXT} chars), an integer, a bool or "
                f"null, got {type(value).__name__}",
            )
    return clean


def _validate_header(kind: object, idempotency_key: object, occurred_at: object, brand_id: object) -> datetime:
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise _bad("invalid-kind", f"kind must match {_KIND.pattern}, got {kind!r}")
    if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 255 or not idempotency_key.isprintable():
        raise _bad("invalid-idempotency-key", "the idempotency key must be 1-255 printable characters")
    if brand_id is not None and not contracts.is_valid_id(brand_id):
        raise _bad("invalid-brand", f"{brand_id!r} is not a brand id")
    if not isinstance(occurred_at, datetime) or occurred_at.utcoffset() is None:
        raise _bad("invalid-occurred-at", "occurred_at must be a timezone-aware datetime")
    return occurred_at.astimezone(UTC)


# --- periods ----------------------------------------------------------------------------------------


def _period_of(month: str) -> Any:
    """SQL for "the open period a transaction of ``month`` posts into": the month itself unless it is
    closed, else the period after the last closed one (closes happen in month order)."""
    later_closed = select(func.max(LedgerPeriod.next_period)).where(
        LedgerPeriod.period >= month, LedgerPeriod.status == "closed"
    )
    return func.coalesce(later_closed.scalar_subquery(), month)


async def open_period_for(session: AsyncSession, occurred_at: datetime) -> str:
    """The period (``YYYY-MM``) a transaction that occurred at ``occurred_at`` posts into right now.

    This is the hook of the monthly close (issue 6): a month is closed by inserting a `LedgerPeriod`
    row (``status='closed'``, ``next_period``); later transactions of that month then post into the next
    open period as adjustments. Writers evaluate the same rule inside their INSERT.
    """
    period = await session.scalar(select(_period_of(contracts.month_of(occurred_at.astimezone(UTC)))))
    return str(period)


# --- writing ----------------------------------------------------------------------------------------

# PostgreSQL: the transaction row and all its postings in ONE statement (one round trip). The period
# is chosen inside the INSERT; ON CONFLICT leaves an existing (scope, key) alone and returns no row,
# so no posting is written either.
_PG_POST = """
    WITH t AS (
        INSERT INTO ledger_transactions
            (id, idempotency_scope, idempotency_key, brand_id, kind, occurred_at, posted_at, period, reference)
        VALUES (
            $1, $2, $3, $4, $5, $6, $7,
            COALESCE((SELECT max(next_period) FROM ledger_periods WHERE period >= $8 AND status = 'closed'), $8),
            CAST($9 AS json))
        ON CONFLICT (idempotency_scope, idempotency_key) DO NOTHING
        RETURNING id, period
    ), p AS (
        INSERT INTO ledger_postings (transaction_id, line, account, brand_id, amount, currency)
        SELECT t.id, u.line, u.account, u.brand_id, u.amount, u.currency
        FROM t CROSS JOIN json_to_recordset(CAST($10 AS json))
            AS u(line smallint, account varchar, brand_id varchar, amount bigint, currency varchar)
    )
    SELECT id, period FROM t
"""


async def _begin_like_sqlalchemy(adapter: Any) -> None:
    """Open the session's database transaction the way SQLAlchemy's asyncpg cursor does before its first
    statement (``_start_transaction`` when no transaction is tracked). Uses a private hook of SQLAlchemy's
    asyncpg adapter; if a future version lacks it nothing happens, the caller sees no transaction on the
    connection and takes SQLAlchemy's own execution path instead - slower, never outside the transaction.
    ``tests/alliance/ledger`` checks that a post rolls back with its caller's transaction."""
    start = getattr(adapter, "_start_transaction", None)
    if start is not None and getattr(adapter, "_transaction", False) is None:
        await start()


async def _insert_postgresql(
    session: AsyncSession,
    row: dict[str, Any],
    postings: Sequence[contracts.Posting],
    brands: list[str | None],
) -> str | None:
    args = (
        row["id"],
        row["idempotency_scope"],
        row["idempotency_key"],
        row["brand_id"],
        row["kind"],
        row["occurred_at"],
        row["posted_at"],
        row["month"],
        msgspec.json.encode(row["reference"]).decode("utf-8"),
        # One JSON parameter rather than five arrays: asyncpg inspects every array element through
        # abstract-base-class checks, which cost more than the encoding. Amounts stay exact (JSON
        # integers are parsed from their digits into bigint).
        msgspec.json.encode(
            [
                {"line": line, "account": p.account, "brand_id": brand, "amount": p.amount, "currency": p.currency}
                for line, (p, brand) in enumerate(zip(postings, brands, strict=True))
            ]
        ).decode("utf-8"),
    )
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if driver is not None and not driver.is_in_transaction():
        await _begin_like_sqlalchemy(raw.dbapi_connection)
    if driver is not None and driver.is_in_transaction():
        # The caller's transaction is open on this very connection: send the statement straight through
        # asyncpg (about a third of the CPU of SQLAlchemy's execution path, on the hottest write).
        try:
            inserted = await driver.fetchrow(_PG_POST, *args)
        except asyncpg.ForeignKeyViolationError:
            raise _bad("unknown-brand", "a posting names a brand that is not a member of the alliance") from None
    else:  # first statement of the transaction: let SQLAlchemy begin it
        try:
            inserted = (await connection.exec_driver_sql(_PG_POST, args)).first()
        except IntegrityError as exc:
            if "foreign key" not in str(exc.orig).lower():
                raise
            raise _bad("unknown-brand", "a posting names a brand that is not a member of the alliance") from None
    return None if inserted is None else str(inserted[1])


async def _insert_generic(
    session: AsyncSession,
    row: dict[str, Any],
    postings: Sequence[contracts.Posting],
    brands: list[str | None],
) -> str | None:
    """SQLite (and any other backend): the same as `_insert_postgresql` in two statements."""
    table: Table = LedgerTransaction.__table__  # type: ignore[assignment]
    postings_table: Table = LedgerPosting.__table__  # type: ignore[assignment]
    values = {k: v for k, v in row.items() if k != "month"}
    values["period"] = _period_of(row["month"])
    statement = (
        sqlite_insert(table)
        .values(values)
        .on_conflict_do_nothing(index_elements=["idempotency_scope", "idempotency_key"])
        .returning(table.c.period)
    )
    try:
        period = (await session.execute(statement)).scalar_one_or_none()
        if period is None:
            return None
        if postings:
            legs = [
                {
                    "transaction_id": row["id"],
                    "line": line,
                    "account": p.account,
                    "brand_id": brand,
                    "amount": p.amount,
                    "currency": p.currency,
                }
                for line, (p, brand) in enumerate(zip(postings, brands, strict=True))
            ]
            await session.execute(postings_table.insert().values(legs))
    except IntegrityError as exc:  # the brand foreign keys, checked per row
        if "foreign key" not in str(exc.orig).lower():
            raise
        raise _bad("unknown-brand", "a posting names a brand that is not a member of the alliance") from None
    return str(period)


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
    occurred = _validate_header(kind, idempotency_key, occurred_at, brand_id)
    brands = _validate_postings(postings, allow_empty)
    clean_reference = _validate_reference(reference)
    scope = brand_id or ALLIANCE_SCOPE
    row: dict[str, Any] = {
        "id": new_id("ltx"),
        "idempotency_scope": scope,
        "idempotency_key": idempotency_key,
        "brand_id": brand_id,
        "kind": kind,
        "occurred_at": occurred,
        "posted_at": utcnow(),
        "month": contracts.month_of(occurred),
        "reference": clean_reference,
    }
    insert = _insert_postgresql if session.get_bind().dialect.name == "postgresql" else _insert_generic
    period = await insert(session, row, postings, brands)
    if period is not None:
        return PostedTransaction(
            id=row["id"],
            kind=kind,
            brand_id=brand_id,
            idempotency_key=idempotency_key,
            occurred_at=occurred,
            posted_at=row["posted_at"],
            period=period,
            reference=clean_reference,
            postings=tuple(postings),  # validated Posting values, frozen
        )
    tx, stored = await _stored(session, scope, idempotency_key)
    same = (
        tx.kind == kind
        and tx.brand_id == brand_id
        and tx.occurred_at == occurred
        and dict(tx.reference) == clean_reference
        and [(p.account, p.amount, p.currency) for p in stored] == [(p.account, p.amount, p.currency) for p in postings]
    )
    if not same:
        raise Problem(
            409,
            "idempotency-key-reused",
            "this idempotency key was already used for a different transaction",
            extra={"transaction_id": tx.id},
        )
    return _posted(tx, stored, replayed=True)


@dataclass(frozen=True, slots=True)
class PreparedPosting:
    """A priced event's ledger transaction, validated exactly as :func:`post_priced_event` validates it,
    as the parameters of :data:`PG_POST_CTE` - for a caller that writes it inside a larger PostgreSQL
    statement (the redemption fast path) instead of posting it with its own round trip."""

    id: str
    scope: str
    idempotency_key: str
    brand_id: str | None
    kind: str
    occurred_at: datetime
    posted_at: datetime
    month: str
    reference_json: str
    postings_json: str


# The body of `_PG_POST` as two CTEs (``ledger_tx``, ``ledger_postings``) with named placeholders that
# the caller replaces by its own ``$n`` parameters: {id} {scope} {key} {brand} {kind} {occurred}
# {posted} {month} {reference} {postings}; ``{guard}`` is a FROM item that must yield a row for the
# transaction to be written (the caller's success condition). The period rule is the ledger's.
PG_POST_CTE = """
ledger_tx AS (
    INSERT INTO ledger_transactions
        (id, idempotency_scope, idempotency_key, brand_id, kind, occurred_at, posted_at, period, reference)
    SELECT {id}, {scope}, {key}, {brand}, {kind}, {occurred}, {posted},
        COALESCE((SELECT max(next_period) FROM ledger_periods WHERE period >= {month} AND status = 'closed'),
                 {month}),
        CAST({reference} AS json)
    FROM {guard}
    ON CONFLICT (idempotency_scope, idempotency_key) DO NOTHING
    RETURNING id, period
), ledger_postings AS (
    INSERT INTO ledger_postings (transaction_id, line, account, brand_id, amount, currency)
    SELECT ledger_tx.id, u.line, u.account, u.brand_id, u.amount, u.currency
    FROM ledger_tx CROSS JOIN json_to_recordset(CAST({postings} AS json))
        AS u(line smallint, account varchar, brand_id varchar, amount bigint, currency varchar)
    RETURNING 1
)"""


def prepare_priced_event(
    priced: contracts.PricedEvent,
    *,
    brand_id: str | None,
    idempotency_key: str,
    occurred_at: datetime,
    kind: str | None = None,
    reference: Mapping[str, object] | None = None,
) -> PreparedPosting:
    """What :func:`post_priced_event` would write, validated the same way (422 problems), not written."""
    kind = kind or priced.commission_kind
    occurred = _validate_header(kind, idempotency_key, occurred_at, brand_id)
    brands = _validate_postings(priced.postings, True)
    clean_reference = _validate_reference({**_priced_reference(priced), **(reference or {})})
    return PreparedPosting(
        id=new_id("ltx"),
        scope=brand_id or ALLIANCE_SCOPE,
        idempotency_key=idempotency_key,
        brand_id=brand_id,
        kind=kind,
        occurred_at=occurred,
        posted_at=utcnow(),
        month=contracts.month_of(occurred),
        reference_json=msgspec.json.encode(clean_reference).decode("utf-8"),
        postings_json=msgspec.json.encode(
            [
                {"line": line, "account": p.account, "brand_id": brand, "amount": p.amount, "currency": p.currency}
                for line, (p, brand) in enumerate(zip(priced.postings, brands, strict=True))
            ]
        ).decode("utf-8"),
    )


def _priced_reference(priced: contracts.PricedEvent) -> dict[str, object]:
    return {
        "event_id": priced.event_id,
        "contract_id": priced.contract_id,
        "contract_version": priced.contract_version,
        "commission": priced.commission,
        "commission_kind": priced.commission_kind,
        "commission_payer": priced.commission_payer,
        "commission_payee": priced.commission_payee,
        "commission_month": priced.commission_month,
    }


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
    base = _priced_reference(priced)
    base.update(reference or {})
    return await post_transaction(
        session,
        brand_id=brand_id,
        idempotency_key=idempotency_key,
        kind=kind or priced.commission_kind,
        postings=priced.postings,
        occurred_at=occurred_at,
        reference=base,
        allow_empty=True,
    )


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


# --- reading: balances ------------------------------------------------------------------------------


async def live_balances(session: AsyncSession, brand_id: str | None) -> list[AccountBalance]:
    """Exact balances now: the sealed balance of each account plus its postings not sealed yet.

    One statement, hence one snapshot: a sealer committing meanwhile can neither double-count nor drop
    a posting. ``brand_id`` None: every account (operator view).
    """
    sealed = select(LedgerAccount.account, LedgerAccount.currency, LedgerAccount.balance.label("amount"))
    pending = (
        select(LedgerPosting.account, LedgerPosting.currency, LedgerPosting.amount.label("amount"))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerTransaction.seq.is_(None))
    )
    if brand_id is not None:
        sealed = sealed.where(LedgerAccount.brand_id == brand_id)
        pending = pending.where(LedgerPosting.brand_id == brand_id)
    both = union_all(sealed, pending).subquery()
    rows = (
        await session.execute(
            select(both.c.account, both.c.currency, func.sum(both.c.amount))
            .group_by(both.c.account, both.c.currency)
            .order_by(both.c.account, both.c.currency)
        )
    ).all()
    return [AccountBalance(account=r[0], currency=r[1], balance=int(r[2])) for r in rows]


def balances_out(brand_id: str, accounts: list[AccountBalance]) -> BalancesOut:
    """A brand's balances plus its net position per currency (positive: the alliance owes the brand)."""
    net: dict[str, int] = defaultdict(int)
    for account in accounts:
        if contracts.parse_brand_account(account.account) is not None:
            net[account.currency] -= account.balance
    return BalancesOut(
        brand_id=brand_id,
        accounts=accounts,
        net=[NetPosition(currency=c, net=n) for c, n in sorted(net.items())],
        as_of=utcnow(),
    )


# --- reading: transactions --------------------------------------------------------------------------


async def _views(
    session: AsyncSession, rows: Sequence[LedgerTransaction], brand_id: str | None
) -> list[TransactionOut]:
    postings: dict[str, list[LedgerPosting]] = defaultdict(list)
    if rows:
        posting_query = (
            select(LedgerPosting)
            .where(LedgerPosting.transaction_id.in_([r.id for r in rows]))
            .order_by(LedgerPosting.transaction_id, LedgerPosting.line)
        )
        if brand_id is not None:
            posting_query = posting_query.where(LedgerPosting.brand_id == brand_id)
        for posting in (await session.scalars(posting_query)).all():
            postings[posting.transaction_id].append(posting)
    operator = brand_id is None
    return [
        TransactionOut(
            id=r.id,
            kind=r.kind,
            occurred_at=r.occurred_at,
            posted_at=r.posted_at,
            period=r.period,
            reference=dict(r.reference),
            postings=[PostingOut(account=p.account, amount=p.amount, currency=p.currency) for p in postings[r.id]],
            sealed=r.seq is not None,
            hash=r.hash,
            idempotency_key=r.idempotency_key if operator or r.idempotency_scope == brand_id else None,
            brand_id=r.brand_id if operator else None,
            seq=r.seq if operator else None,
            prev_hash=r.prev_hash if operator else None,
        )
        for r in rows
    ]


async def get_transaction(session: AsyncSession, transaction_id: str, brand_id: str | None) -> TransactionOut:
    """One transaction as ``brand_id`` may see it (404 if it does not touch the brand's accounts)."""
    query = _filtered(
        select(LedgerTransaction).where(LedgerTransaction.id == transaction_id),
        brand_id=brand_id,
        kind=None,
        period=None,
        currency=None,
        occurred_from=None,
        occurred_to=None,
    )
    row = await session.scalar(query)
    if row is None:
        raise Problem(404, "transaction-not-found", f"no ledger transaction {transaction_id!r}")
    return (await _views(session, [row], brand_id))[0]


def _encode_cursor(posted_at: datetime, tx_id: str) -> str:
    return base64.urlsafe_b64encode(f"{posted_at.isoformat()}|{tx_id}".encode()).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        at_text, tx_id = raw.split("|", 1)
        at = datetime.fromisoformat(at_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "invalid-cursor", "the cursor is not one this API returned") from None
    if at.utcoffset() is None:
        raise Problem(400, "invalid-cursor", "the cursor is not one this API returned")
    return at, tx_id


def _filtered(
    query: Select[Any],
    *,
    brand_id: str | None,
    kind: str | None,
    period: str | None,
    currency: str | None,
    occurred_from: datetime | None,
    occurred_to: datetime | None,
) -> Select[Any]:
    t = LedgerTransaction
    if brand_id is not None:
        own = [LedgerPosting.transaction_id == t.id, LedgerPosting.brand_id == brand_id]
        if currency is not None:
            own.append(LedgerPosting.currency == currency)
        query = query.where(exists(select(literal(1)).where(and_(*own))))
    elif currency is not None:
        query = query.where(
            exists(select(literal(1)).where(LedgerPosting.transaction_id == t.id, LedgerPosting.currency == currency))
        )
    if kind is not None:
        query = query.where(t.kind == kind)
    if period is not None:
        if not _MONTH.fullmatch(period):
            raise Problem(400, "invalid-period", "period must be YYYY-MM")
        query = query.where(t.period == period)
    if occurred_from is not None:
        query = query.where(t.occurred_at >= occurred_from)
    if occurred_to is not None:
        query = query.where(t.occurred_at < occurred_to)
    return query


async def list_transactions(
    session: AsyncSession,
    *,
    brand_id: str | None,
    kind: str | None = None,
    period: str | None = None,
    currency: str | None = None,
    occurred_from: datetime | None = None,
    occurred_to: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> TransactionPage:
    """Transactions newest first (by ``posted_at``, then id), ``limit`` per page; pass ``next_cursor``
    back as ``cursor`` for the next page.

    For a brand (``brand_id`` set): only transactions that touch its accounts, and of each only its own
    postings; the chain position and the other side stay hidden. ``brand_id`` None: everything, with
    ``seq`` and ``prev_hash`` (operator view).
    """
    t = LedgerTransaction
    query = select(t).order_by(t.posted_at.desc(), t.id.desc()).limit(limit + 1)
    query = _filtered(
        query,
        brand_id=brand_id,
        kind=kind,
        period=period,
        currency=currency,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
    )
    if cursor:
        at, tx_id = _decode_cursor(cursor)
        query = query.where(or_(t.posted_at < at, and_(t.posted_at == at, t.id < tx_id)))
    rows = list((await session.scalars(query)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    items = await _views(session, rows, brand_id)
    return TransactionPage(
        items=items, next_cursor=_encode_cursor(rows[-1].posted_at, rows[-1].id) if more and rows else None
    )
