"""Where benefits and referrals meet contracts and the ledger: the terms in force, exact month-to-date
commission totals, pricing, and posting, all inside the caller's database transaction.

Lock order (every money-moving path follows it, so concurrent transactions cannot deadlock):
coupon or redemption or referral row -> member usage row -> benefit row -> month-to-date total. The
ledger writes lock no shared row. The benefit row and the month-to-date total are *hot* (every
redemption of a benefit, every event of a contract's month updates them) and a row lock is held until
commit, so they are updated last, just before commit, to keep that time short.

Monthly caps stay exact: the commission is priced from the month-to-date total and added to it by one
conditional ``UPDATE`` that holds only if the total still gives that price (see :func:`book`), else the
whole transaction is retried with the total locked before pricing.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import BigInteger, String, Table, and_, bindparam, func, or_, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

import contracts
from alliance.benefits.rules import Refusal, commission_rule, contract_in_force, price, pricing_refusal
from alliance.contracts import service as contract_service
from alliance.core.problems import Problem
from alliance.db.models import CommissionMonthTotal, Contract, ContractReview, ContractSignature, ContractVersion
from alliance.db.rows import json_list
from alliance.ledger import posting
from contracts.bounds import MAX_TOTAL

__all__ = [
    "Booking",
    "TotalsContended",
    "add_to_total",
    "book",
    "commission_rule",
    "contract_history",
    "contract_versions",
    "dialect_insert",
    "lock_month_to_date",
    "price",
    "pricing_problem",
    "session_canonical",
    "settle",
    "terms_in_force",
    "terms_of_versions",
    "total_key",
    "total_params",
]


def dialect_insert(session: AsyncSession, table: Any) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the session's backend (PostgreSQL or SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def pricing_problem(exc: contracts.ContractError) -> Problem:
    """A pricing refusal as a problem response with its own type."""
    return pricing_refusal(exc).problem()


# Contract versions never change once stored (a change is a new version), so their decoded terms are
# kept per process: (contract id, version) -> terms. Which versions are signed, rejected and in force is
# read every time.
_TERMS: dict[tuple[str, int], contracts.ContractTerms] = {}
_TERMS_MAX = 4_096


async def terms_of_versions(
    fetch_canonical: Callable[[str, int], Awaitable[bytes | None]], contract_id: str, versions: Sequence[int]
) -> tuple[contracts.ContractTerms, ...]:
    """The terms of the contract's ``versions``, decoded once per process (``fetch_canonical`` reads a
    version's stored canonical bytes, for the ones not seen yet)."""
    for version in versions:
        if (contract_id, version) not in _TERMS:
            canonical = await fetch_canonical(contract_id, version)
            if canonical is None:  # pragma: no cover - the caller just read the version's number
                continue
            if len(_TERMS) >= _TERMS_MAX:
                _TERMS.clear()
            _TERMS[(contract_id, version)] = contract_service.terms_from_canonical(contract_id, version, canonical)
    return tuple(_TERMS[(contract_id, v)] for v in versions if (contract_id, v) in _TERMS)


def session_canonical(session: AsyncSession) -> Callable[[str, int], Awaitable[bytes | None]]:
    """``fetch_canonical`` for :func:`terms_of_versions` through a session."""

    async def fetch(contract_id: str, version: int) -> bytes | None:
        found = await session.scalar(
            select(ContractVersion.canonical).where(
                ContractVersion.contract_id == contract_id, ContractVersion.version == version
            )
        )
        return None if found is None else bytes(found)

    return fetch


def contract_versions(dialect: str, contract_id: Any) -> tuple[Any, Any]:
    """Two scalar subqueries on the contract ``contract_id``: its fully signed version numbers, and its
    rejected versions with the alliance's reason - what `contracts.version_in_force` needs."""
    v, s, r = ContractVersion, ContractSignature, ContractReview
    signatures = select(func.count()).where(s.contract_id == v.contract_id, s.version == v.version)
    signed = select(json_list(dialect, v.version)).where(
        v.contract_id == contract_id, signatures.scalar_subquery() == 2
    )
    rejected = select(json_list(dialect, r.version, r.reason)).where(
        r.contract_id == contract_id, r.decision == "rejected"
    )
    return signed.scalar_subquery(), rejected.scalar_subquery()


async def contract_history(
    fetch_canonical: Callable[[str, int], Awaitable[bytes | None]],
    contract_id: str | None,
    signed: str | None,
    rejected: str | None,
) -> tuple[tuple[contracts.ContractTerms, ...], dict[int, str]]:
    """The contract's fully signed versions and its rejections, from the two columns of
    :func:`contract_versions` (JSON text)."""
    if contract_id is None:
        return (), {}
    numbers = [version for (version,) in msgspec.json.decode(signed or "[]")]
    versions = await terms_of_versions(fetch_canonical, contract_id, numbers)
    return versions, {version: reason for version, reason in msgspec.json.decode(rejected or "[]")}


@functools.cache
def _contract_read(dialect: str) -> Any:
    signed, rejected = contract_versions(dialect, Contract.id)
    return select(Contract.id, signed, rejected).where(
        Contract.party_a == bindparam("p_a", type_=String()), Contract.party_b == bindparam("p_b", type_=String())
    )


async def terms_in_force(session: AsyncSession, brand_x: str, brand_y: str, at: datetime) -> contracts.ContractTerms:
    """The signed contract version between two brands that governs ``at`` (`contracts.version_in_force`);
    409 ``no-contract-in-force`` if none does (no contract, no version covering ``at``, or the one that
    would is rejected). The argument order of the brands does not matter."""
    party_a, party_b = contracts.party_pair(brand_x, brand_y) if brand_x != brand_y else (brand_x, brand_y)
    statement = _contract_read(session.get_bind().dialect.name)
    row = (await session.execute(statement, {"p_a": party_a, "p_b": party_b})).first()
    contract_id = None if row is None else row[0]
    versions, rejected = await contract_history(
        session_canonical(session), contract_id, *(row or (None, None, None))[1:]
    )
    terms = contract_in_force((brand_x, brand_y), contract_id, versions, rejected, at)
    if isinstance(terms, Refusal):
        raise terms.problem()
    return terms


async def lock_month_to_date(session: AsyncSession, key: dict[str, str]) -> int:
    """Lock the (contract, kind, payer, month) total (creating it at 0) and return its value."""
    statement = dialect_insert(session, CommissionMonthTotal).values(**key, total=0)
    statement = statement.on_conflict_do_update(
        index_elements=["contract_id", "kind", "payer_brand_id", "month"],
        set_={"total": CommissionMonthTotal.total},
    ).returning(CommissionMonthTotal.total)
    return int((await session.execute(statement)).scalar_one())


def total_key(terms: contracts.ContractTerms, kind: str, payer: str, month: str) -> dict[str, str]:
    return {"contract_id": terms.contract_id, "kind": kind, "payer_brand_id": payer, "month": month}


async def _post(
    session: AsyncSession,
    priced: contracts.PricedEvent,
    *,
    brand_id: str,
    kind: str,
    occurred_at: datetime,
    reference: dict[str, Any],
) -> str:
    posted = await posting.post_priced_event(
        session,
        priced,
        brand_id=brand_id,
        idempotency_key=f"{kind}:{priced.event_id}",
        occurred_at=occurred_at,
        kind=kind,
        reference=reference,
    )
    return posted.id


class TotalsContended(Exception):
    """The month-to-date total moved under an optimistic booking so that the commission priced no
    longer holds; the caller rolls back and books again with ``lock_totals=True``."""


@dataclass(frozen=True, slots=True)
class Booking:
    """A priced and posted event whose commission still has to be added to its month-to-date total
    (:func:`settle`, the last statement before commit)."""

    priced: contracts.PricedEvent
    transaction_id: str
    total_key: dict[str, str]
    guard: tuple[str, int] | None


async def book(
    session: AsyncSession,
    event: contracts.Event,
    terms: contracts.ContractTerms,
    *,
    brand_id: str,
    kind: str,
    reference: dict[str, Any],
    lock_totals: bool = False,
) -> Booking:
    """Price ``event`` under ``terms`` and post its postings as one ledger transaction (an event priced
    to nothing is still recorded, with no postings). Pricing refusals become problems.

    Monthly caps need the month-to-date total. By default it is read without a lock and the commission
    it implies is *guarded*: :func:`settle` adds it only if the total at that moment still gives the same
    commission (far below the cap, any total that leaves room for it; at the cap, exactly the total that
    was read), else raises :class:`TotalsContended`. With ``lock_totals`` the total is locked first
    (``INSERT ... ON CONFLICT DO UPDATE``) and the commission is exact by construction.
    """
    try:
        if isinstance(event, contracts.Reversal):
            priced, guard = contracts.price_reversal(event, terms), None
        else:
            rule, commission_kind, payer = commission_rule(event, terms)
            month_to_date = 0
            if rule.monthly_cap is not None:
                key = total_key(terms, commission_kind, payer, contracts.month_of(event.occurred_at))
                if lock_totals:
                    month_to_date = await lock_month_to_date(session, key)
                else:
                    month_to_date = int(await session.scalar(_READ_TOTAL, key) or 0)
            priced, guard = price(event, terms, month_to_date, guarded=not lock_totals)
    except contracts.ContractError as exc:
        raise pricing_problem(exc) from None
    transaction_id = await _post(
        session, priced, brand_id=brand_id, kind=kind, occurred_at=event.occurred_at, reference=reference
    )
    key = total_key(terms, priced.commission_kind, priced.commission_payer, priced.commission_month)
    return Booking(priced, transaction_id, key, guard)


_READ_TOTAL = select(CommissionMonthTotal.total).where(
    CommissionMonthTotal.contract_id == bindparam("contract_id"),
    CommissionMonthTotal.kind == bindparam("kind"),
    CommissionMonthTotal.payer_brand_id == bindparam("payer_brand_id"),
    CommissionMonthTotal.month == bindparam("month"),
)


def add_to_total(dialect: str, gate: ColumnElement[bool] | None = None) -> Any:
    """``INSERT ... ON CONFLICT DO UPDATE SET total = total + t_amount WHERE <guard> RETURNING total``: add
    a commission to its month-to-date total if the total still gives the price it was priced at. The
    guard ``t_guard`` (``None``: always) is the kind `rules.price` chose, ``t_cap`` the cap."""
    totals: Table = CommissionMonthTotal.__table__  # type: ignore[assignment]
    amount = bindparam("t_amount", type_=BigInteger())
    cap = bindparam("t_cap", type_=BigInteger())
    guard = bindparam("t_guard", type_=String())
    total = totals.c.total
    condition = and_(
        or_(
            guard.is_(None),
            and_(guard == "fits", total + amount <= cap),  # uncapped: any total with room for it gives that price
            and_(guard == "reaches", total + amount == cap),  # capped: exactly the total that leaves this much room
            and_(guard == "at-cap", total >= cap),  # nothing left under the cap
        ),
        total + amount
        <= MAX_TOTAL,  # a running total never passes the bound (contracts.bounds): a 409, not an overflow
    )
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    source = select(
        bindparam("t_contract", type_=String()),
        bindparam("t_kind", type_=String()),
        bindparam("t_payer", type_=String()),
        bindparam("t_month", type_=String()),
        amount,
    ).where(true() if gate is None else gate)
    return (
        insert(totals)
        .from_select(["contract_id", "kind", "payer_brand_id", "month", "total"], source)
        .on_conflict_do_update(
            index_elements=["contract_id", "kind", "payer_brand_id", "month"],
            set_={"total": total + amount},
            where=condition,
        )
        .returning(total)
    )


def total_params(booking: Booking) -> dict[str, Any]:
    """The parameters of :func:`add_to_total` for a booking."""
    guard, cap = booking.guard if booking.guard is not None else (None, 0)
    key = booking.total_key
    return {
        "t_contract": key["contract_id"],
        "t_kind": key["kind"],
        "t_payer": key["payer_brand_id"],
        "t_month": key["month"],
        "t_amount": booking.priced.commission,
        "t_cap": cap,
        "t_guard": guard,
    }


async def settle(session: AsyncSession, booking: Booking) -> None:
    """Add the booking's commission to its month-to-date total, checking its guard; call it last in the
    transaction (the total is a row every event of the month updates, so its lock is held until commit
    and should be held briefly). Raises :class:`TotalsContended` if the guard fails."""
    if booking.guard is None and not booking.priced.commission:
        return
    statement = add_to_total(session.get_bind().dialect.name)
    if (await session.execute(statement, total_params(booking))).first() is None:
        raise TotalsContended(booking.priced.event_id)
