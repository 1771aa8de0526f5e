"""Pricing: an event plus the contract version in force at its time -> balanced ledger postings.

Pure functions, no I/O. The caller (the ledger service) looks up the version with
`contracts.versions.version_in_force`, passes the month-to-date commission already charged, books the
returned postings as one transaction, and adds `PricedEvent.commission` to its month-to-date total.

Obligations
    Pricing first says who owes whom, as `Obligation(payer, payee, amount, reason)`:

    * Coupon redemption of face value V, benefit funded by F, coupon handed out by distributor D,
      honoured (discount given at the till) by the redeemer R (= F in our flow): each funder owes R its
      share of V, ``D's share = floor(V * distributor_bp / 10_000)`` and ``F's share = V - D's share``;
      a funder that is R itself owes nothing (it already gave the discount). F also owes D the coupon
      commission (the distributor's referral fee).
    * Referral conversion: the receiving brand owes the referring brand the referral commission.

Postings (double entry, all through the clearing account)
    Each obligation of amount a from X to Y becomes four postings in the settlement currency::

        brand:X:payable      +a    X owes the alliance a
        alliance:clearing    -a
        alliance:clearing    +a
        brand:Y:receivable   -a    the alliance owes Y a

    Signs follow the debit-positive convention of the clearing house's books: a ``payable`` account
    carries a positive balance (what the brand owes), a ``receivable`` account a negative one (what the
    brand is owed), and ``alliance:clearing`` returns to zero after every event. Every event's postings
    therefore sum to zero per currency, and a brand's net position is
    ``-(balance(receivable) + balance(payable))`` - its receivable minus its payable in plain
    magnitudes; `net_positions` computes it. Zero amounts produce no obligation and no posting.

Rounding (integers only, never floats)
    Every computed amount one brand owes another is rounded toward zero, i.e. in the payer's favour:
    rate commissions are ``floor(order_amount * rate_bp / 10_000)``; the distributor's funding share is
    floored and the funding brand, who published the benefit, carries the remainder. A partial reversal
    reverses ``floor(a * refunded_so_far / order_amount)`` of each original amount a *cumulatively*, so a
    series of partial refunds never reverses more than the original, and the refund that completes the
    order reverses exactly what is left.

Caps
    ``commission = min(raw, per_event_cap, monthly_cap - month_to_date)`` (never below zero). The
    month-to-date total is kept by the caller per (contract_id, commission kind, paying brand, UTC
    month); `PricedEvent` names all four so the key cannot be guessed wrong. A reversal gives its
    (negative) commission back to the month of the original event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

import msgspec

from contracts.bounds import MAX_AMOUNT
from contracts.currencies import validate_currency
from contracts.errors import (
    CurrencyMismatch,
    InvalidEvent,
    InvalidReversal,
    NoFundingSplit,
    NotAParty,
    OutsideAttributionWindow,
    OutsideContractPeriod,
    PricingError,
)
from contracts.terms import (
    BASIS_POINTS_PER_UNIT,
    CommissionRule,
    ContractTerms,
    FixedCommission,
    FundingSplit,
    RateCommission,
    UtcDateTime,
)
from contracts.validation import validate_terms

__all__ = [
    "CLEARING_ACCOUNT",
    "CommissionKind",
    "CouponRedemption",
    "Event",
    "Obligation",
    "ObligationReason",
    "OriginalEvent",
    "Posting",
    "PricedEvent",
    "ReferralConversion",
    "Reversal",
    "balances",
    "commission_amount",
    "funding_shares",
    "is_balanced",
    "month_of",
    "net_positions",
    "parse_brand_account",
    "payable_account",
    "postings_for",
    "price_coupon_redemption",
    "price_event",
    "price_referral_conversion",
    "price_reversal",
    "receivable_account",
]

CLEARING_ACCOUNT = "alliance:clearing"
_MAX_EVENT_ID_CHARS = 128

ObligationReason: TypeAlias = Literal["coupon_funding", "coupon_commission", "referral_commission"]
CommissionKind: TypeAlias = Literal["coupon", "referral"]


def receivable_account(brand_id: str) -> str:
    """``brand:<id>:receivable``: what the alliance owes the brand (credit balance)."""
    return f"brand:{brand_id}:receivable"


def payable_account(brand_id: str) -> str:
    """``brand:<id>:payable``: what the brand owes the alliance (debit balance)."""
    return f"brand:{brand_id}:payable"


def parse_brand_account(account: str) -> tuple[str, Literal["payable", "receivable"]] | None:
    """``("acme", "payable")`` for ``brand:acme:payable``; ``None`` for any non-brand account."""
    parts = account.split(":")
    if len(parts) == 3 and parts[0] == "brand" and parts[1]:
        if parts[2] == "payable":
            return parts[1], "payable"
        if parts[2] == "receivable":
            return parts[1], "receivable"
    return None


class Posting(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One leg of a ledger transaction: a signed amount of minor units (debit positive)."""

    account: str
    amount: int
    currency: str


class Obligation(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`payer` owes `payee` `amount` minor units for `reason`; negative only in a reversal."""

    payer: str
    payee: str
    amount: int
    currency: str
    reason: ObligationReason


# --- events -----------------------------------------------------------------------------------------


class CouponRedemption(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type", tag="coupon_redemption"
):
    """A coupon was honoured: `face_value` is the discount given, `order_amount` the order's value before it.

    `funding_brand` published the benefit, `distributor_brand` handed the coupon to its member,
    `redeemer_brand` gave the discount (the funding brand in our flow).
    """

    event_id: str
    occurred_at: UtcDateTime
    benefit_id: str
    funding_brand: str
    distributor_brand: str
    redeemer_brand: str
    face_value: int
    order_amount: int
    currency: str


class ReferralConversion(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type", tag="referral_conversion"
):
    """A member referred by `referrer_brand` (token issued at `referred_at`) bought at `receiver_brand`.

    The conversion earns commission only inside the contract's attribution window,
    ``referred_at <= occurred_at < referred_at + attribution_window_seconds``.
    """

    event_id: str
    occurred_at: UtcDateTime
    referrer_brand: str
    receiver_brand: str
    referred_at: UtcDateTime
    order_amount: int
    currency: str


OriginalEvent: TypeAlias = CouponRedemption | ReferralConversion


class Reversal(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type", tag="reversal"):
    """A refund of (part of) an earlier event, priced against the version in force at the *original* time.

    `original_commission` is the commission actually charged for the original (its
    `PricedEvent.commission`, which depended on the month-to-date at that time and cannot be recomputed).
    `refund_amount` is the part of the original `order_amount` refunded now, ``None`` for everything
    that remains; `already_refunded` is the sum of earlier partial refunds of the same original.
    """

    event_id: str
    occurred_at: UtcDateTime
    original: OriginalEvent
    original_commission: int
    refund_amount: int | None = None
    already_refunded: int = 0


Event: TypeAlias = CouponRedemption | ReferralConversion | Reversal
"""Tagged on the wire by ``"type": "coupon_redemption" | "referral_conversion" | "reversal"``."""


class PricedEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The result of pricing one event: what to book and what to add to the month-to-date total.

    `commission` is signed (negative for a reversal). Add it to the month-to-date total keyed by
    (`contract_id`, `commission_kind`, `commission_payer`, `commission_month`).
    """

    event_id: str
    contract_id: str
    contract_version: int
    currency: str
    obligations: tuple[Obligation, ...]
    postings: tuple[Posting, ...]
    commission: int
    commission_kind: CommissionKind
    commission_payer: str
    commission_payee: str
    commission_month: str


# --- building blocks --------------------------------------------------------------------------------


def month_of(at: datetime) -> str:
    """The UTC calendar month of `at` as ``YYYY-MM``, the period of monthly caps and statements."""
    if at.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got naive {at.isoformat()}")
    utc = at - (at.utcoffset() or timedelta(0))
    return f"{utc.year:04d}-{utc.month:02d}"


def commission_amount(rule: CommissionRule, order_amount: int, month_to_date: int = 0) -> int:
    """Commission due for one event under `rule`, after the per-event and monthly caps.

    Rate commissions round down. The result is never negative, never above `per_event_cap`, and never
    more than what is left of `monthly_cap` after `month_to_date` (zero once the cap is reached).
    """
    if isinstance(rule, RateCommission):
        amount = order_amount * rule.rate_bp // BASIS_POINTS_PER_UNIT
    elif isinstance(rule, FixedCommission):
        amount = rule.amount
    else:
        raise TypeError(f"expected FixedCommission or RateCommission, got {type(rule).__name__}")
    if rule.per_event_cap is not None:
        amount = min(amount, rule.per_event_cap)
    if rule.monthly_cap is not None:
        amount = min(amount, max(0, rule.monthly_cap - month_to_date))
    return max(0, amount)


def funding_shares(face_value: int, split: FundingSplit) -> tuple[int, int]:
    """(funding brand's share, distributor's share) of `face_value`; they add up to it exactly.

    The distributor's share is rounded down and the funding brand carries the remainder.
    """
    distributor_share = face_value * split.distributor_bp // BASIS_POINTS_PER_UNIT
    return face_value - distributor_share, distributor_share


def postings_for(obligations: Iterable[Obligation]) -> tuple[Posting, ...]:
    """The four clearing-account postings of each obligation, in order (see the module docstring)."""
    postings: list[Posting] = []
    for obligation in obligations:
        amount, currency = obligation.amount, obligation.currency
        postings.append(Posting(payable_account(obligation.payer), amount, currency))
        postings.append(Posting(CLEARING_ACCOUNT, -amount, currency))
        postings.append(Posting(CLEARING_ACCOUNT, amount, currency))
        postings.append(Posting(receivable_account(obligation.payee), -amount, currency))
    return tuple(postings)


def balances(postings: Iterable[Posting]) -> dict[tuple[str, str], int]:
    """Sum of posted amounts per (account, currency), zero balances included."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for posting in postings:
        totals[(posting.account, posting.currency)] += posting.amount
    return dict(totals)


def is_balanced(postings: Iterable[Posting]) -> bool:
    """Whether the postings sum to zero in every currency: the invariant of every transaction."""
    per_currency: dict[str, int] = defaultdict(int)
    for posting in postings:
        per_currency[posting.currency] += posting.amount
    return all(total == 0 for total in per_currency.values())


def net_positions(postings: Iterable[Posting]) -> dict[tuple[str, str], int]:
    """Per (brand, currency): what the alliance owes the brand (positive) or the brand owes (negative).

    Equal to receivable minus payable in plain magnitudes, i.e. ``-(receivable + payable)`` in the
    debit-positive balances; the basis of multilateral netting at the monthly close.
    """
    positions: dict[tuple[str, str], int] = defaultdict(int)
    for posting in postings:
        parsed = parse_brand_account(posting.account)
        if parsed is not None:
            positions[(parsed[0], posting.currency)] -= posting.amount
    return dict(positions)


# --- validation of events ---------------------------------------------------------------------------


def _require_amount(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"{name} must be an integer of minor units, got {type(value).__name__} {value!r}")
    if value < 0:
        raise InvalidEvent(f"{name} must not be negative, got {value}")
    if value > MAX_AMOUNT:
        raise InvalidEvent(f"{name} must be at most {MAX_AMOUNT} (contracts.bounds), got {value}")
    return value


def _require_event_time(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidEvent(f"{name} must be a timezone-aware UTC datetime, got {value!r}")
    if value.utcoffset() != timedelta(0):
        raise InvalidEvent(f"{name} must be in UTC, got offset {value.utcoffset()}")
    return value


def _require_event_id(value: object, name: str = "event_id") -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_EVENT_ID_CHARS:
        raise InvalidEvent(f"{name} must be a non-empty string of at most {_MAX_EVENT_ID_CHARS} chars")
    return value


def _require_party(terms: ContractTerms, brand: str, role: str) -> None:
    if brand not in terms.parties:
        raise NotAParty(f"{role} {brand!r} is not a party to contract {terms.contract_id!r} {terms.parties}")


def _check_common(event: OriginalEvent, terms: ContractTerms) -> None:
    """Checks shared by both original event kinds: id, time in the version's period, currency, order."""
    validate_terms(terms)
    _require_event_id(event.event_id)
    occurred_at = _require_event_time(event.occurred_at, "occurred_at")
    validate_currency(event.currency)
    if event.currency != terms.settlement_currency:
        raise CurrencyMismatch(
            f"event {event.event_id!r} is in {event.currency} but contract {terms.contract_id!r} "
            f"settles in {terms.settlement_currency}"
        )
    if not terms.covers(occurred_at):
        raise OutsideContractPeriod(
            f"event {event.event_id!r} at {occurred_at.isoformat()} is outside version {terms.version} "
            f"of {terms.contract_id!r} ({terms.effective_from.isoformat()} to "
            f"{terms.effective_to.isoformat() if terms.effective_to else 'open end'})"
        )
    _require_amount(event.order_amount, "order_amount")


def _coupon_split(event: CouponRedemption, terms: ContractTerms) -> FundingSplit:
    _check_common(event, terms)
    face_value = _require_amount(event.face_value, "face_value")
    if face_value > event.order_amount:
        raise InvalidEvent(f"face_value {face_value} exceeds order_amount {event.order_amount}")
    _require_party(terms, event.funding_brand, "funding brand")
    _require_party(terms, event.distributor_brand, "distributor brand")
    _require_party(terms, event.redeemer_brand, "redeemer brand")
    if event.funding_brand == event.distributor_brand:
        raise InvalidEvent(f"brand {event.funding_brand!r} cannot distribute its own benefit to itself")
    split = terms.funding_split_for(event.benefit_id, event.funding_brand)
    if split is None:
        raise NoFundingSplit(
            f"contract {terms.contract_id!r} v{terms.version} has no funding split for benefit "
            f"{event.benefit_id!r} funded by {event.funding_brand!r} and no '*' default"
        )
    return split


def _coupon_obligations(event: CouponRedemption, split: FundingSplit, commission: int) -> list[Obligation]:
    funding_share, distributor_share = funding_shares(event.face_value, split)
    obligations = [
        Obligation(
            payer=funder,
            payee=event.redeemer_brand,
            amount=share,
            currency=event.currency,
            reason="coupon_funding",
        )
        for funder, share in ((event.funding_brand, funding_share), (event.distributor_brand, distributor_share))
        if share and funder != event.redeemer_brand
    ]
    if commission:
        obligations.append(
            Obligation(
                payer=event.funding_brand,
                payee=event.distributor_brand,
                amount=commission,
                currency=event.currency,
                reason="coupon_commission",
            )
        )
    return obligations


def _check_referral(event: ReferralConversion, terms: ContractTerms) -> None:
    _check_common(event, terms)
    _require_party(terms, event.referrer_brand, "referrer brand")
    _require_party(terms, event.receiver_brand, "receiver brand")
    if event.referrer_brand == event.receiver_brand:
        raise InvalidEvent(f"brand {event.referrer_brand!r} cannot earn a referral commission from itself")
    referred_at = _require_event_time(event.referred_at, "referred_at")
    if event.occurred_at < referred_at:
        raise InvalidEvent(
            f"conversion at {event.occurred_at.isoformat()} precedes its referral at {referred_at.isoformat()}"
        )
    window = timedelta(seconds=terms.attribution_window_seconds)
    if event.occurred_at >= referred_at + window:
        raise OutsideAttributionWindow(
            f"conversion {event.event_id!r} at {event.occurred_at.isoformat()} is after the "
            f"{terms.attribution_window_seconds} s attribution window of the referral at {referred_at.isoformat()}"
        )


def _referral_obligations(event: ReferralConversion, commission: int) -> list[Obligation]:
    if not commission:
        return []
    return [
        Obligation(
            payer=event.receiver_brand,
            payee=event.referrer_brand,
            amount=commission,
            currency=event.currency,
            reason="referral_commission",
        )
    ]


def _require_month_to_date(month_to_date: object) -> int:
    if isinstance(month_to_date, bool) or not isinstance(month_to_date, int) or month_to_date < 0:
        raise PricingError(f"month_to_date must be a non-negative integer, got {month_to_date!r}")
    return month_to_date


def _priced(
    *,
    event_id: str,
    terms: ContractTerms,
    obligations: list[Obligation],
    commission: int,
    kind: CommissionKind,
    payer: str,
    payee: str,
    month: str,
) -> PricedEvent:
    return PricedEvent(
        event_id=event_id,
        contract_id=terms.contract_id,
        contract_version=terms.version,
        currency=terms.settlement_currency,
        obligations=tuple(obligations),
        postings=postings_for(obligations),
        commission=commission,
        commission_kind=kind,
        commission_payer=payer,
        commission_payee=payee,
        commission_month=month,
    )


# --- pricing ----------------------------------------------------------------------------------------


def price_coupon_redemption(event: CouponRedemption, terms: ContractTerms, *, month_to_date: int = 0) -> PricedEvent:
    """Price a coupon redemption under the version in force at `event.occurred_at`.

    `month_to_date` is the coupon commission the funding brand has already been charged under this
    contract in the event's UTC month. Raises `CurrencyMismatch`, `NotAParty`, `NoFundingSplit`,
    `OutsideContractPeriod`, `InvalidEvent` (e.g. a discount larger than the order).
    """
    split = _coupon_split(event, terms)
    mtd = _require_month_to_date(month_to_date)
    commission = commission_amount(terms.coupon_commission, event.order_amount, mtd)
    return _priced(
        event_id=event.event_id,
        terms=terms,
        obligations=_coupon_obligations(event, split, commission),
        commission=commission,
        kind="coupon",
        payer=event.funding_brand,
        payee=event.distributor_brand,
        month=month_of(event.occurred_at),
    )


def price_referral_conversion(
    event: ReferralConversion, terms: ContractTerms, *, month_to_date: int = 0
) -> PricedEvent:
    """Price a referral conversion: the receiving brand owes the referrer the (capped) commission.

    `month_to_date` is the referral commission the receiving brand has already been charged under this
    contract in the event's UTC month. Raises `OutsideAttributionWindow` past the window, and the
    errors of `price_coupon_redemption`.
    """
    _check_referral(event, terms)
    mtd = _require_month_to_date(month_to_date)
    commission = commission_amount(terms.referral, event.order_amount, mtd)
    return _priced(
        event_id=event.event_id,
        terms=terms,
        obligations=_referral_obligations(event, commission),
        commission=commission,
        kind="referral",
        payer=event.receiver_brand,
        payee=event.referrer_brand,
        month=month_of(event.occurred_at),
    )


def _reversed_so_far(amount: int, numerator: int, denominator: int) -> int:
    # Floor of amount * numerator / denominator with 0 <= numerator <= denominator: at most `amount`,
    # and exactly `amount` once numerator == denominator.
    return amount * numerator // denominator


def price_reversal(reversal: Reversal, terms: ContractTerms) -> PricedEvent:
    """Price a (partial) reversal of an earlier event; `terms` is the version that priced the original.

    The original's obligations are rebuilt from its event and `original_commission`, then reversed in
    proportion to the refunded part of its `order_amount`, cumulatively and rounded down (see the module
    docstring). A full reversal with nothing refunded before is the exact negation of the original's
    postings. Raises `InvalidReversal` when nothing remains to reverse, the refund exceeds what remains,
    the reversal precedes its original, or `original_commission` is more than the contract allows.
    """
    original = reversal.original
    rule, split = _reversal_rule(original, terms)
    original_commission = _check_reversal(reversal, rule)
    before, after, denominator = _refund_fraction(reversal)
    originals, kind, payer, payee = _original_obligations(original, split, original_commission)
    obligations: list[Obligation] = []
    for obligation in originals:
        delta = _reversed_so_far(obligation.amount, after, denominator) - _reversed_so_far(
            obligation.amount, before, denominator
        )
        if delta:
            obligations.append(msgspec.structs.replace(obligation, amount=-delta))
    commission_delta = _reversed_so_far(original_commission, after, denominator) - _reversed_so_far(
        original_commission, before, denominator
    )
    return _priced(
        event_id=reversal.event_id,
        terms=terms,
        obligations=obligations,
        commission=-commission_delta,
        kind=kind,
        payer=payer,
        payee=payee,
        month=month_of(original.occurred_at),
    )


def _reversal_rule(original: object, terms: ContractTerms) -> tuple[CommissionRule, FundingSplit | None]:
    """The commission rule that priced the original (and its funding split, for a coupon)."""
    if isinstance(original, CouponRedemption):
        return terms.coupon_commission, _coupon_split(original, terms)
    if isinstance(original, ReferralConversion):
        _check_referral(original, terms)
        return terms.referral, None
    raise InvalidReversal(f"cannot reverse a {type(original).__name__}; only coupon redemptions and conversions")


def _check_reversal(reversal: Reversal, rule: CommissionRule) -> int:
    """The reversal's own id and time, and the original's commission (within what the rule allows)."""
    original = reversal.original
    _require_event_id(reversal.event_id)
    if reversal.event_id == original.event_id:
        raise InvalidReversal("a reversal needs its own event_id, distinct from the original's")
    occurred_at = _require_event_time(reversal.occurred_at, "occurred_at")
    if occurred_at < original.occurred_at:
        raise InvalidReversal(
            f"reversal at {occurred_at.isoformat()} precedes its original at {original.occurred_at.isoformat()}"
        )
    original_commission = _require_amount(reversal.original_commission, "original_commission")
    allowed = commission_amount(rule, original.order_amount, 0)
    if original_commission > allowed:
        raise InvalidReversal(
            f"original_commission {original_commission} exceeds the {allowed} the contract allows for the original"
        )
    return original_commission


def _refund_fraction(reversal: Reversal) -> tuple[int, int, int]:
    """(refunded before, refunded after, order amount): the cumulative fractions reversed so far."""
    base = reversal.original.order_amount
    already = _require_amount(reversal.already_refunded, "already_refunded")
    if already > base:
        raise InvalidReversal(f"already_refunded {already} exceeds the original order_amount {base}")
    if base and already == base:
        raise InvalidReversal(f"event {reversal.original.event_id!r} is already fully reversed")
    if reversal.refund_amount is None:
        target = base
    else:
        refund = _require_amount(reversal.refund_amount, "refund_amount")
        if refund == 0:
            raise InvalidReversal("refund_amount must be positive; use None for a full reversal")
        if already + refund > base:
            raise InvalidReversal(
                f"refund of {refund} would reverse more than remains: {base - already} of {base} "
                f"(already refunded {already})"
            )
        target = already + refund
    # For an order of value 0 only a full reversal is possible (any positive refund exceeds it).
    return (already, target, base) if base else (0, 1, 1)


def _original_obligations(
    original: OriginalEvent, split: FundingSplit | None, original_commission: int
) -> tuple[list[Obligation], CommissionKind, str, str]:
    """The original's obligations rebuilt, with its commission kind, payer and payee."""
    if isinstance(original, CouponRedemption):
        assert split is not None
        originals = _coupon_obligations(original, split, original_commission)
        return originals, "coupon", original.funding_brand, original.distributor_brand
    originals = _referral_obligations(original, original_commission)
    return originals, "referral", original.receiver_brand, original.referrer_brand


def price_event(event: Event, terms: ContractTerms, *, month_to_date: int = 0) -> PricedEvent:
    """Price any event. For a `Reversal`, `terms` is the version in force at the original event's time
    and `month_to_date` is ignored (a reversal only gives commission back, it never charges any).
    """
    if isinstance(event, CouponRedemption):
        return price_coupon_redemption(event, terms, month_to_date=month_to_date)
    if isinstance(event, ReferralConversion):
        return price_referral_conversion(event, terms, month_to_date=month_to_date)
    if isinstance(event, Reversal):
        return price_reversal(event, terms)
    raise TypeError(f"cannot price a {type(event).__name__}")
