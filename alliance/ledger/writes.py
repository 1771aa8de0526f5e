"""What a ledger post writes, before it is written: the validated transaction (`PreparedPosting`) and
the two statements that write it, in SQLAlchemy Core, written once.

SQLite runs the statements one after the other (:func:`transaction_insert`, :func:`postings_insert`);
PostgreSQL runs them as one statement of two CTEs (:func:`ledger_ctes`), sent straight through asyncpg;
the redemption fast path makes the same two CTEs part of its own single statement. The period is chosen
inside the INSERT by the ledger's period rule (`alliance.ledger.periods.period_of`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import BigInteger, SmallInteger, String, Table, bindparam, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement

import contracts
from alliance.core.ids import new_id
from alliance.db.base import UTCDateTime, utcnow
from alliance.db.direct import DirectStatement
from alliance.db.models import LedgerPosting, LedgerTransaction
from alliance.db.rows import json_rows, json_text
from alliance.ledger.periods import period_of
from alliance.ledger.schemas import ReferenceValue
from alliance.ledger.validation import priced_reference, validate_header, validate_postings, validate_reference

__all__ = [
    "ALLIANCE_SCOPE",
    "PreparedPosting",
    "ledger_ctes",
    "post_postgresql",
    "postings_insert",
    "prepare_priced_event",
    "prepare_transaction",
    "priced_transaction",
    "transaction_insert",
]

ALLIANCE_SCOPE = "alliance"
"""Idempotency scope of transactions the exchange posts on its own account (no brand)."""


@dataclass(frozen=True, slots=True)
class PreparedPosting:
    """A transaction validated for the ledger, not written yet: the parameters of :func:`ledger_ctes`
    (:meth:`params`). :func:`post_transaction` writes it; the redemption fast path writes it inside its
    own statement."""

    id: str
    scope: str
    idempotency_key: str
    brand_id: str | None
    kind: str
    occurred_at: datetime
    posted_at: datetime
    month: str
    reference: dict[str, ReferenceValue]
    postings: tuple[contracts.Posting, ...]
    postings_json: str

    def params(self) -> dict[str, Any]:
        return {
            "l_id": self.id,
            "l_scope": self.scope,
            "l_key": self.idempotency_key,
            "l_brand": self.brand_id,
            "l_kind": self.kind,
            "l_occurred": self.occurred_at,
            "l_posted": self.posted_at,
            "l_month": self.month,
            "l_reference": msgspec.json.encode(self.reference).decode("utf-8"),
            "l_postings": self.postings_json,
        }


def prepare_transaction(
    *,
    brand_id: str | None,
    idempotency_key: str,
    kind: str,
    postings: Sequence[contracts.Posting],
    occurred_at: datetime,
    reference: Mapping[str, object] | None = None,
    allow_empty: bool = False,
) -> PreparedPosting:
    """Validate a transaction as :func:`post_transaction` does (422 problems) and give it an id."""
    occurred = validate_header(kind, idempotency_key, occurred_at, brand_id)
    brands = validate_postings(postings, allow_empty)
    return PreparedPosting(
        id=new_id("ltx"),
        scope=brand_id or ALLIANCE_SCOPE,
        idempotency_key=idempotency_key,
        brand_id=brand_id,
        kind=kind,
        occurred_at=occurred,
        posted_at=utcnow(),
        month=contracts.month_of(occurred),
        reference=validate_reference(reference),
        postings=tuple(postings),  # validated Posting values, frozen
        # One JSON parameter for all postings: amounts stay exact (JSON integers are parsed from their
        # digits into bigint).
        postings_json=msgspec.json.encode(
            [
                {"line": line, "account": p.account, "brand_id": brand, "amount": p.amount, "currency": p.currency}
                for line, (p, brand) in enumerate(zip(postings, brands, strict=True))
            ]
        ).decode("utf-8"),
    )


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
    return prepare_transaction(**priced_transaction(priced, brand_id, idempotency_key, occurred_at, kind, reference))


def priced_transaction(
    priced: contracts.PricedEvent,
    brand_id: str | None,
    idempotency_key: str,
    occurred_at: datetime,
    kind: str | None,
    reference: Mapping[str, object] | None,
) -> dict[str, Any]:
    """The transaction of a priced event: its postings, kind (default: the commission kind) and a
    reference recording the event and the contract version that priced it (the caller adds its ids).
    An event priced to nothing is still recorded, with no postings, so its idempotency key is spent."""
    return {
        "brand_id": brand_id,
        "idempotency_key": idempotency_key,
        "kind": kind or priced.commission_kind,
        "postings": priced.postings,
        "occurred_at": occurred_at,
        "reference": {**priced_reference(priced), **(reference or {})},
        "allow_empty": True,
    }


# --- the two statements ------------------------------------------------------------------------------

_POSTING_COLUMNS = (
    ("line", SmallInteger()),
    ("account", String()),
    ("brand_id", String()),
    ("amount", BigInteger()),
    ("currency", String()),
)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def transaction_insert(dialect: str, gate: ColumnElement[bool] | None = None) -> Any:
    """``INSERT INTO ledger_transactions ... ON CONFLICT (scope, key) DO NOTHING RETURNING id, period``,
    the period by the ledger's rule; written only where ``gate`` holds (a caller's success condition)."""
    t = _table(LedgerTransaction)
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    source = select(
        bindparam("l_id", type_=String()),
        bindparam("l_scope", type_=String()),
        bindparam("l_key", type_=String()),
        bindparam("l_brand", type_=String()),
        bindparam("l_kind", type_=String()),
        bindparam("l_occurred", type_=UTCDateTime()),
        bindparam("l_posted", type_=UTCDateTime()),
        period_of(bindparam("l_month", type_=String())),
        json_text("l_reference", dialect),
    ).where(true() if gate is None else gate)
    names = ["id", "idempotency_scope", "idempotency_key", "brand_id", "kind", "occurred_at", "posted_at"]
    return (
        insert(t)
        .from_select([*names, "period", "reference"], source)
        .on_conflict_do_nothing(index_elements=["idempotency_scope", "idempotency_key"])
        .returning(t.c.id, t.c.period)
    )


def postings_insert(dialect: str, transaction: Any = None) -> Any:
    """``INSERT INTO ledger_postings ... SELECT`` the rows of the JSON parameter ``l_postings``, for the
    transaction ``l_id`` - or, given the ``transaction`` CTE, for the transaction it inserted (none if it
    inserted none)."""
    p = _table(LedgerPosting)
    legs = json_rows("l_postings", _POSTING_COLUMNS, dialect, "legs")
    legs_columns = [legs.c[key] for key, _ in _POSTING_COLUMNS]
    if transaction is None:
        source = select(bindparam("l_id", type_=String()), *legs_columns).select_from(legs)
    else:
        source = select(transaction.c.id, *legs_columns).select_from(transaction).join(legs, true())
    return p.insert().from_select(["transaction_id", *(key for key, _ in _POSTING_COLUMNS)], source.where(true()))


def ledger_ctes(dialect: str, gate: ColumnElement[bool] | None = None) -> tuple[Any, Any]:
    """Both statements as CTEs (``ledger_tx`` returning id and period, ``ledger_postings``) for one
    PostgreSQL statement; ``gate`` as in :func:`transaction_insert`."""
    transaction = transaction_insert(dialect, gate).cte("ledger_tx")
    postings = postings_insert(dialect, transaction).returning(_table(LedgerPosting).c.line).cte("ledger_postings")
    return transaction, postings


@functools.cache
def post_postgresql() -> tuple[Any, DirectStatement]:
    """The transaction and its postings in ONE PostgreSQL statement (one round trip), as Core and as
    compiled for asyncpg."""
    transaction, postings = ledger_ctes("postgresql")
    statement = select(transaction.c.id, transaction.c.period).add_cte(transaction).add_cte(postings)
    return statement, DirectStatement(statement)
