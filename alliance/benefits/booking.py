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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import BigInteger, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.contracts import service as contract_service
from alliance.core.problems import Problem
from alliance.db.models import CommissionMonthTotal, ContractVersion
from alliance.ledger import service as ledger_service

__all__ = [
    "Booking",
    "TotalsContended",
    "book",
    "commission_rule",
    "dialect_insert",
    "price",
    "pricing_problem",
    "settle",
    "terms_in_force",
    "terms_version",
]


def dialect_insert(session: AsyncSession, table: Any) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the session's backend (PostgreSQL or SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def pricing_problem(exc: contracts.ContractError) -> Problem:
    """A pricing refusal as a problem response with its own type."""
    if isinstance(exc, contracts.NoFundingSplit):
        return Problem(409, "benefit-not-covered", str(exc))
    if isinstance(exc, contracts.OutsideAttributionWindow):
        return Problem(409, "outside-attribution-window", str(exc))
    if isinstance(exc, contracts.CurrencyMismatch):
        return Problem(422, "currency-mismatch", str(exc))
    if isinstance(exc, contracts.InvalidReversal):
        return Problem(409, "invalid-reversal", str(exc))
    if isinstance(exc, contracts.NoContractInForce | contracts.OutsideContractPeriod):
        return Problem(409, "no-contract-in-force", str(exc))
    return Problem(422, "pricing-refused", str(exc))


async def terms_in_force(session: AsyncSession, brand_x: str, brand_y: str, at: datetime) -> contracts.ContractTerms:
    """The signed contract version between two brands at ``at``; 409 ``no-contract-in-force`` if none."""
    return await contract_service.terms_in_force(session, brand_x, brand_y, at)


async def terms_version(session: AsyncSession, contract_id: str, version: int) -> contracts.ContractTerms:
    """One stored contract version (the one that priced an original event; versions never change)."""
    row = await session.get(ContractVersion, (contract_id, version))
    if row is None:  # pragma: no cover - a redemption always names a version that exists
        raise Problem(409, "no-contract-in-force", f"contract {contract_id} has no version {version}")
    return contract_service.terms_of(row)


async def _lock_month_to_date(session: AsyncSession, key: dict[str, str]) -> int:
    """Lock the (contract, kind, payer, month) total (creating it at 0) and return its value."""
    statement = dialect_insert(session, CommissionMonthTotal).values(**key, total=0)
    statement = statement.on_conflict_do_update(
        index_elements=["contract_id", "kind", "payer_brand_id", "month"],
        set_={"total": CommissionMonthTotal.total},
    ).returning(CommissionMonthTotal.total)
    return int((await session.execute(statement)).scalar_one())


def _total_key(terms: contracts.ContractTerms, kind: str, payer: str, month: str) -> dict[str, str]:
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
    posted = await ledger_service.post_priced_event(
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


def commission_rule(
    event: contracts.CouponRedemption | contracts.ReferralConversion, terms: contracts.ContractTerms
) -> tuple[contracts.CommissionRule, str, str]:
    """The commission rule that prices ``event``, its total's kind and the brand that pays it."""
    if isinstance(event, contracts.CouponRedemption):
        return terms.coupon_commission, "coupon", event.funding_brand
    return terms.referral, "referral", event.receiver_brand


def price(
    event: contracts.CouponRedemption | contracts.ReferralConversion,
    terms: contracts.ContractTerms,
    month_to_date: int,
    *,
    guarded: bool,
) -> tuple[contracts.PricedEvent, tuple[str, int] | None]:
    """Price ``event`` given the month-to-date total and, when ``guarded`` (the total was read without a
    lock), the guard under which :func:`settle` may add its commission (see :func:`book`). Raises
    ``contracts.ContractError`` on a pricing refusal."""
    rule = commission_rule(event, terms)[0]
    priced = contracts.price_event(event, terms, month_to_date=month_to_date)
    if rule.monthly_cap is None or not guarded:
        return priced, None
    uncapped = contracts.commission_amount(msgspec.structs.replace(rule, monthly_cap=None), event.order_amount)
    if uncapped == 0:
        return priced, None
    if priced.commission == uncapped:
        return priced, ("fits", rule.monthly_cap)
    if priced.commission > 0:
        return priced, ("reaches", rule.monthly_cap)
    return priced, ("at-cap", rule.monthly_cap)


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
                key = _total_key(terms, commission_kind, payer, contracts.month_of(event.occurred_at))
                if lock_totals:
                    month_to_date = await _lock_month_to_date(session, key)
                else:
                    month_to_date = int(await session.scalar(_READ_TOTAL, key) or 0)
            priced, guard = price(event, terms, month_to_date, guarded=not lock_totals)
    except contracts.ContractError as exc:
        raise pricing_problem(exc) from None
    transaction_id = await _post(
        session, priced, brand_id=brand_id, kind=kind, occurred_at=event.occurred_at, reference=reference
    )
    key = _total_key(terms, priced.commission_kind, priced.commission_payer, priced.commission_month)
    return Booking(priced, transaction_id, key, guard)


_READ_TOTAL = select(CommissionMonthTotal.total).where(
    CommissionMonthTotal.contract_id == bindparam("contract_id"),
    CommissionMonthTotal.kind == bindparam("kind"),
    CommissionMonthTotal.payer_brand_id == bindparam("payer_brand_id"),
    CommissionMonthTotal.month == bindparam("month"),
)


_KEY_COLUMNS = ["contract_id", "kind", "payer_brand_id", "month"]


@functools.cache
def _add_statement(dialect: str, guard: str | None) -> Any:
    """``INSERT ... ON CONFLICT DO UPDATE SET total = total + :amount [WHERE guard] RETURNING total``,
    built once per backend and guard kind."""
    amount = bindparam("p_amount", type_=BigInteger())
    cap = bindparam("p_cap", type_=BigInteger())
    total = CommissionMonthTotal.total
    condition = {
        None: None,
        "fits": total + amount <= cap,  # uncapped commission: any total with room for it gives that price
        "reaches": total + amount == cap,  # capped: exactly the total that leaves this much room
        "at-cap": total >= cap,  # nothing left under the cap
    }[guard]
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert_(CommissionMonthTotal).values(
        contract_id=bindparam("p_contract"),
        kind=bindparam("p_kind"),
        payer_brand_id=bindparam("p_payer"),
        month=bindparam("p_month"),
        total=amount,
    )
    return statement.on_conflict_do_update(
        index_elements=_KEY_COLUMNS, set_={"total": total + amount}, where=condition
    ).returning(total)


async def settle(session: AsyncSession, booking: Booking) -> None:
    """Add the booking's commission to its month-to-date total, checking its guard; call it last in the
    transaction (the total is a row every event of the month updates, so its lock is held until commit
    and should be held briefly). Raises :class:`TotalsContended` if the guard fails."""
    commission = booking.priced.commission
    guard, cap = booking.guard if booking.guard is not None else (None, 0)
    if guard is None and not commission:
        return
    key = booking.total_key
    params = {
        "p_contract": key["contract_id"],
        "p_kind": key["kind"],
        "p_payer": key["payer_brand_id"],
        "p_month": key["month"],
        "p_amount": commission,
        "p_cap": cap,
    }
    statement = _add_statement(session.get_bind().dialect.name, guard)
    if (await session.execute(statement, params)).first() is None:
        raise TotalsContended(booking.priced.event_id)
