"""Pricing: worked examples, precise errors, and the ledger invariants as hypothesis properties."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import (
    CLEARING_ACCOUNT,
    CommissionRule,
    ContractTerms,
    CouponRedemption,
    CurrencyMismatch,
    Event,
    FixedCommission,
    FundingSplit,
    InvalidEvent,
    InvalidReversal,
    NoFundingSplit,
    NotAParty,
    Obligation,
    OutsideAttributionWindow,
    OutsideContractPeriod,
    Posting,
    PricedEvent,
    PricingError,
    RateCommission,
    ReferralConversion,
    Reversal,
    UnknownCurrency,
    balances,
    commission_amount,
    is_balanced,
    month_of,
    net_positions,
    parse_brand_account,
    payable_account,
    price_coupon_redemption,
    price_event,
    price_referral_conversion,
    price_reversal,
    receivable_account,
)
from contracts.bounds import MAX_AMOUNT

START = datetime(2026, 1, 1, tzinfo=UTC)
AT = datetime(2026, 3, 15, 10, 30, tzinfo=UTC)
PARTIES = ("alpha", "beta")


def split(funder: str, distributor: str, distributor_bp: int, benefit: str = "*") -> FundingSplit:
    return FundingSplit(
        benefit=benefit,
        funding_brand=funder,
        distributor_brand=distributor,
        funding_brand_bp=10_000 - distributor_bp,
        distributor_bp=distributor_bp,
    )


def make_terms(**overrides: Any) -> ContractTerms:
    fields: dict[str, Any] = {
        "contract_id": "ctr-1",
        "version": 1,
        "parties": PARTIES,
        "settlement_currency": "CNY",
        "effective_from": START,
        "funding": (split("alpha", "beta", 3000), split("beta", "alpha", 5000)),
        "coupon_commission": RateCommission(rate_bp=500, per_event_cap=3_000, monthly_cap=10_000),
        "referral": FixedCommission(amount=800, monthly_cap=2_000),
        "attribution_window_seconds": 7 * 86_400,
    }
    fields.update(overrides)
    return ContractTerms(**fields)


TERMS = make_terms()


def coupon(**overrides: Any) -> CouponRedemption:
    fields: dict[str, Any] = {
        "event_id": "evt-1",
        "occurred_at": AT,
        "benefit_id": "bnf-1",
        "funding_brand": "alpha",
        "distributor_brand": "beta",
        "redeemer_brand": "alpha",
        "face_value": 10_000,
        "order_amount": 50_000,
        "currency": "CNY",
    }
    fields.update(overrides)
    return CouponRedemption(**fields)


def referral(**overrides: Any) -> ReferralConversion:
    fields: dict[str, Any] = {
        "event_id": "evt-2",
        "occurred_at": AT,
        "referrer_brand": "beta",
        "receiver_brand": "alpha",
        "referred_at": AT - timedelta(days=1),
        "order_amount": 20_000,
        "currency": "CNY",
    }
    fields.update(overrides)
    return ReferralConversion(**fields)


def negated(postings: tuple[Posting, ...]) -> tuple[Posting, ...]:
    return tuple(Posting(p.account, -p.amount, p.currency) for p in postings)


def nonzero(mapping: dict[Any, int]) -> dict[Any, int]:
    return {key: value for key, value in mapping.items() if value}


# --- worked examples ---------------------------------------------------------------------------------


def test_coupon_redeemed_by_the_funding_brand() -> None:
    # 100.00 CNY off a 500.00 CNY order; beta distributed it and bears 30 %; commission 5 % capped at 30.00.
    priced = price_coupon_redemption(coupon(), TERMS)
    assert priced.obligations == (
        Obligation(payer="beta", payee="alpha", amount=3_000, currency="CNY", reason="coupon_funding"),
        Obligation(payer="alpha", payee="beta", amount=2_500, currency="CNY", reason="coupon_commission"),
    )
    assert priced.postings == (
        Posting("brand:beta:payable", 3_000, "CNY"),
        Posting("alliance:clearing", -3_000, "CNY"),
        Posting("alliance:clearing", 3_000, "CNY"),
        Posting("brand:alpha:receivable", -3_000, "CNY"),
        Posting("brand:alpha:payable", 2_500, "CNY"),
        Posting("alliance:clearing", -2_500, "CNY"),
        Posting("alliance:clearing", 2_500, "CNY"),
        Posting("brand:beta:receivable", -2_500, "CNY"),
    )
    assert net_positions(priced.postings) == {("alpha", "CNY"): 500, ("beta", "CNY"): -500}
    assert priced.commission == 2_500
    assert (priced.commission_kind, priced.commission_payer, priced.commission_payee) == ("coupon", "alpha", "beta")
    assert priced.commission_month == "2026-03"
    assert (priced.contract_id, priced.contract_version, priced.currency) == ("ctr-1", 1, "CNY")


def test_coupon_redeemed_by_the_distributor() -> None:
    priced = price_coupon_redemption(coupon(redeemer_brand="beta"), TERMS)
    assert [(o.payer, o.payee, o.amount, o.reason) for o in priced.obligations] == [
        ("alpha", "beta", 7_000, "coupon_funding"),
        ("alpha", "beta", 2_500, "coupon_commission"),
    ]
    assert net_positions(priced.postings) == {("alpha", "CNY"): -9_500, ("beta", "CNY"): 9_500}


def test_benefit_specific_split_wins_over_the_default() -> None:
    terms = make_terms(funding=(split("alpha", "beta", 3000), split("alpha", "beta", 0, benefit="bnf-solo")))
    priced = price_coupon_redemption(coupon(benefit_id="bnf-solo"), terms)
    assert [o.reason for o in priced.obligations] == ["coupon_commission"]  # alpha funds it all, owes no one


def test_funding_rounds_down_for_the_distributor() -> None:
    terms = make_terms(funding=(split("alpha", "beta", 3333),))
    priced = price_coupon_redemption(coupon(face_value=100, order_amount=100), terms)
    assert priced.obligations[0].amount == 33  # floor(33.33); alpha carries the remaining 67
    priced = price_coupon_redemption(coupon(face_value=2, order_amount=2), terms)
    assert [o.reason for o in priced.obligations] == []  # floor(0.67) = 0 and commission floor(0.1) = 0


def test_rate_commission_rounds_down_and_respects_the_per_event_cap() -> None:
    assert price_coupon_redemption(coupon(order_amount=39_999), TERMS).commission == 1_999  # 1999.95
    assert price_coupon_redemption(coupon(order_amount=1_000_000), TERMS).commission == 3_000


def test_monthly_cap_uses_the_month_to_date() -> None:
    assert price_coupon_redemption(coupon(), TERMS, month_to_date=9_000).commission == 1_000
    capped = price_coupon_redemption(coupon(), TERMS, month_to_date=10_000)
    assert capped.commission == 0
    assert [o.reason for o in capped.obligations] == ["coupon_funding"]
    # A cap lowered by a new version below what was already charged: nothing more, never negative.
    assert price_coupon_redemption(coupon(), TERMS, month_to_date=50_000).commission == 0


def test_referral_conversion() -> None:
    priced = price_referral_conversion(referral(), TERMS, month_to_date=1_500)
    assert priced.obligations == (
        Obligation(payer="alpha", payee="beta", amount=500, currency="CNY", reason="referral_commission"),
    )
    assert (priced.commission, priced.commission_kind, priced.commission_payer) == (500, "referral", "alpha")
    assert net_positions(priced.postings) == {("alpha", "CNY"): -500, ("beta", "CNY"): 500}


def test_referral_attribution_window_is_half_open() -> None:
    window = timedelta(days=7)
    price_referral_conversion(referral(referred_at=AT - window + timedelta(microseconds=1)), TERMS)
    price_referral_conversion(referral(referred_at=AT), TERMS)
    with pytest.raises(OutsideAttributionWindow, match="604800 s attribution window"):
        price_referral_conversion(referral(referred_at=AT - window), TERMS)
    with pytest.raises(InvalidEvent, match="precedes its referral"):
        price_referral_conversion(referral(referred_at=AT + timedelta(seconds=1)), TERMS)


def test_month_boundaries_are_utc() -> None:
    late = datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)
    assert price_coupon_redemption(coupon(occurred_at=late), TERMS).commission_month == "2026-01"
    assert month_of(datetime(2026, 2, 1, 7, 0, tzinfo=timezone(timedelta(hours=8)))) == "2026-01"
    with pytest.raises(ValueError, match="timezone-aware"):
        month_of(datetime(2026, 2, 1))  # naive on purpose


def test_account_helpers() -> None:
    assert payable_account("alpha") == "brand:alpha:payable"
    assert receivable_account("alpha") == "brand:alpha:receivable"
    assert parse_brand_account("brand:alpha:payable") == ("alpha", "payable")
    assert parse_brand_account("brand:alpha:receivable") == ("alpha", "receivable")
    assert parse_brand_account(CLEARING_ACCOUNT) is None
    assert parse_brand_account("brand:alpha:fees") is None


def test_events_travel_as_a_tagged_union() -> None:
    original = coupon()
    events: list[Event] = [
        original,
        referral(),
        Reversal(event_id="r", occurred_at=AT, original=original, original_commission=5),
    ]
    wire = msgspec.json.encode(events)
    assert b'"type":"coupon_redemption"' in wire
    assert b'"type":"reversal"' in wire
    assert msgspec.json.decode(wire, type=list[Event]) == events
    priced = msgspec.json.decode(msgspec.json.encode(price_event(original, TERMS)), type=PricedEvent)
    assert priced == price_event(original, TERMS)


# --- precise errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "error", "message"),
    [
        (coupon(currency="USD"), CurrencyMismatch, "is in USD but contract 'ctr-1' settles in CNY"),
        (coupon(currency="ABC"), UnknownCurrency, "'ABC' is not an active ISO 4217"),
        (coupon(funding_brand="gamma"), NotAParty, "funding brand 'gamma' is not a party"),
        (coupon(distributor_brand="gamma"), NotAParty, "distributor brand 'gamma' is not a party"),
        (coupon(redeemer_brand="gamma"), NotAParty, "redeemer brand 'gamma' is not a party"),
        (coupon(distributor_brand="alpha"), InvalidEvent, "cannot distribute its own benefit"),
        (coupon(face_value=-1), InvalidEvent, "face_value must not be negative, got -1"),
        (coupon(order_amount=-5, face_value=0), InvalidEvent, "order_amount must not be negative"),
        (coupon(order_amount=2**63), InvalidEvent, "order_amount must be at most"),
        (coupon(face_value=10.0), InvalidEvent, "face_value must be an integer of minor units, got float"),
        (coupon(face_value=60_000), InvalidEvent, "face_value 60000 exceeds order_amount 50000"),
        (coupon(occurred_at=datetime(2026, 3, 1)), InvalidEvent, "timezone-aware"),  # naive on purpose
        (coupon(event_id=""), InvalidEvent, "event_id must be a non-empty string"),
        (coupon(occurred_at=START - timedelta(seconds=1)), OutsideContractPeriod, "is outside version 1"),
        (referral(referrer_brand="alpha"), InvalidEvent, "cannot earn a referral commission from itself"),
        (referral(receiver_brand="gamma"), NotAParty, "receiver brand 'gamma' is not a party"),
        (referral(currency="JPY"), CurrencyMismatch, "is in JPY"),
    ],
)
def test_unpriceable_events(event: Event, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)) as info:
        price_event(event, TERMS)
    assert isinstance(info.value, ValueError)


def test_no_funding_split() -> None:
    terms = make_terms(funding=(split("alpha", "beta", 3000, benefit="bnf-9"),))
    with pytest.raises(NoFundingSplit, match="no funding split for benefit 'bnf-1' funded by 'alpha'"):
        price_coupon_redemption(coupon(), terms)


def test_event_after_the_version_ended() -> None:
    terms = make_terms(effective_to=AT)
    with pytest.raises(OutsideContractPeriod):
        price_coupon_redemption(coupon(), terms)


def test_month_to_date_must_be_a_non_negative_integer() -> None:
    with pytest.raises(PricingError, match="month_to_date"):
        price_coupon_redemption(coupon(), TERMS, month_to_date=-1)


def test_price_event_refuses_other_objects() -> None:
    with pytest.raises(TypeError):
        price_event(object(), TERMS)  # type: ignore[arg-type]


# --- reversals ---------------------------------------------------------------------------------------


def reversal_of(priced_original: PricedEvent, original: CouponRedemption | ReferralConversion, **kw: Any) -> Reversal:
    fields: dict[str, Any] = {
        "event_id": "rev-1",
        "occurred_at": original.occurred_at + timedelta(days=40),
        "original": original,
        "original_commission": priced_original.commission,
    }
    fields.update(kw)
    return Reversal(**fields)


def test_full_reversal_negates_the_original() -> None:
    original = coupon()
    priced = price_coupon_redemption(original, TERMS, month_to_date=9_000)  # commission capped at 1_000
    reversed_ = price_reversal(reversal_of(priced, original), TERMS)
    assert reversed_.postings == negated(priced.postings)
    assert reversed_.commission == -1_000
    assert reversed_.commission_month == "2026-03"  # given back to the original's month
    assert nonzero(balances(priced.postings + reversed_.postings)) == {}


def test_partial_reversals_are_cumulative_and_finish_exactly() -> None:
    original = coupon(face_value=10_001, order_amount=30_001)
    priced = price_coupon_redemption(original, TERMS)
    first = price_reversal(reversal_of(priced, original, refund_amount=10_000), TERMS)
    second = price_reversal(reversal_of(priced, original, refund_amount=10_000, already_refunded=10_000), TERMS)
    last = price_reversal(reversal_of(priced, original, already_refunded=20_000), TERMS)
    total = priced.postings + first.postings + second.postings + last.postings
    assert nonzero(balances(total)) == {}
    assert priced.commission + first.commission + second.commission + last.commission == 0


def test_reversal_of_a_referral() -> None:
    original = referral()
    priced = price_referral_conversion(original, TERMS)
    reversed_ = price_event(reversal_of(priced, original, refund_amount=5_000), TERMS)
    assert reversed_.obligations == (
        Obligation(payer="alpha", payee="beta", amount=-200, currency="CNY", reason="referral_commission"),
    )
    assert reversed_.commission == -200


def test_partial_reversals_round_down_cumulatively() -> None:
    # 800 of commission over an order of 3, refunded one unit at a time: floor(800/3) = 266, then
    # floor(1600/3) - 266 = 267, then the remaining 267. Never more than 800 in total, exactly 800 at the end.
    original = referral(order_amount=3)
    priced = price_referral_conversion(original, TERMS)
    steps = [
        price_reversal(reversal_of(priced, original, refund_amount=1, already_refunded=already), TERMS).commission
        for already in (0, 1, 2)
    ]
    assert steps == [-266, -267, -267]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"refund_amount": 50_001}, "refund of 50001 would reverse more than remains: 50000 of 50000"),
        ({"refund_amount": 30_000, "already_refunded": 30_000}, "would reverse more than remains: 20000"),
        ({"already_refunded": 50_000}, "is already fully reversed"),
        ({"already_refunded": 50_001}, "already_refunded 50001 exceeds the original order_amount 50000"),
        ({"refund_amount": 0}, "refund_amount must be positive"),
        ({"original_commission": 3_001}, "original_commission 3001 exceeds the 2500 the contract allows"),
        ({"occurred_at": AT - timedelta(seconds=1)}, "precedes its original"),
        ({"event_id": "evt-1"}, "needs its own event_id"),
    ],
)
def test_invalid_reversals(overrides: dict[str, Any], message: str) -> None:
    original = coupon()
    priced = price_coupon_redemption(original, TERMS)
    with pytest.raises(InvalidReversal, match=re.escape(message)):
        price_reversal(reversal_of(priced, original, **overrides), TERMS)


# --- properties --------------------------------------------------------------------------------------

MAX = MAX_AMOUNT  # every amount that can enter (contracts.bounds)
amounts = st.integers(0, MAX)
caps = st.none() | st.integers(0, MAX)
PROPERTY = settings(max_examples=150, deadline=None)


@st.composite
def commission_rules(draw: st.DrawFn) -> CommissionRule:
    per_event_cap, monthly_cap = draw(caps), draw(caps)
    if draw(st.booleans()):
        return FixedCommission(amount=draw(amounts), per_event_cap=per_event_cap, monthly_cap=monthly_cap)
    return RateCommission(rate_bp=draw(st.integers(0, 10_000)), per_event_cap=per_event_cap, monthly_cap=monthly_cap)


@st.composite
def contract_terms(draw: st.DrawFn) -> ContractTerms:
    return make_terms(
        settlement_currency=draw(st.sampled_from(["CNY", "JPY", "KWD", "USD", "HKD"])),
        funding=(
            split("alpha", "beta", draw(st.integers(0, 10_000))),
            split("beta", "alpha", draw(st.integers(0, 10_000))),
        ),
        coupon_commission=draw(commission_rules()),
        referral=draw(commission_rules()),
        attribution_window_seconds=draw(st.integers(1, 90 * 86_400)),
    )


@st.composite
def coupon_events(draw: st.DrawFn, terms: ContractTerms, order: int | None = None) -> CouponRedemption:
    funder = draw(st.sampled_from(PARTIES))
    distributor = terms.counterparty(funder)
    order_amount = draw(amounts) if order is None else order
    return CouponRedemption(
        event_id="evt-c",
        occurred_at=START + timedelta(seconds=draw(st.integers(0, 365 * 86_400))),
        benefit_id=draw(st.sampled_from(["bnf-1", "bnf-2"])),
        funding_brand=funder,
        distributor_brand=distributor,
        redeemer_brand=draw(st.sampled_from([funder, funder, distributor])),
        face_value=draw(st.integers(0, order_amount)),
        order_amount=order_amount,
        currency=terms.settlement_currency,
    )


@st.composite
def referral_events(draw: st.DrawFn, terms: ContractTerms, order: int | None = None) -> ReferralConversion:
    referrer = draw(st.sampled_from(PARTIES))
    occurred_at = START + timedelta(seconds=draw(st.integers(0, 365 * 86_400)))
    return ReferralConversion(
        event_id="evt-r",
        occurred_at=occurred_at,
        referrer_brand=referrer,
        receiver_brand=terms.counterparty(referrer),
        referred_at=occurred_at - timedelta(seconds=draw(st.integers(0, terms.attribution_window_seconds - 1))),
        order_amount=draw(amounts) if order is None else order,
        currency=terms.settlement_currency,
    )


@st.composite
def priced_scenarios(draw: st.DrawFn) -> tuple[ContractTerms, CouponRedemption | ReferralConversion, int]:
    terms = draw(contract_terms())
    event: CouponRedemption | ReferralConversion = (
        draw(coupon_events(terms)) if draw(st.booleans()) else draw(referral_events(terms))
    )
    return terms, event, draw(amounts)


def raw_commission(rule: CommissionRule, order_amount: int) -> Fraction:
    if isinstance(rule, FixedCommission):
        return Fraction(rule.amount)
    return Fraction(order_amount * rule.rate_bp, 10_000)


@PROPERTY
@given(priced_scenarios())
def test_every_event_balances_per_currency(scenario: tuple[ContractTerms, Any, int]) -> None:
    terms, event, month_to_date = scenario
    priced = price_event(event, terms, month_to_date=month_to_date)
    assert is_balanced(priced.postings)
    assert (
        balances(p for p in priced.postings if p.account == CLEARING_ACCOUNT).get(
            (CLEARING_ACCOUNT, terms.settlement_currency), 0
        )
        == 0
    )
    assert all(p.amount != 0 and p.currency == terms.settlement_currency for p in priced.postings)
    assert all(o.amount > 0 and o.payer != o.payee for o in priced.obligations)
    assert {p.account for p in priced.postings} <= {
        CLEARING_ACCOUNT,
        *(f"brand:{b}:{side}" for b in PARTIES for side in ("payable", "receivable")),
    }
    assert sum(net_positions(priced.postings).values()) == 0

    # The net positions are what the contract says, computed independently with exact fractions.
    expected: dict[tuple[str, str], int] = defaultdict(int)
    key = terms.settlement_currency
    commission = priced.commission
    if isinstance(event, CouponRedemption):
        chosen = terms.funding_split_for(event.benefit_id, event.funding_brand)
        assert chosen is not None
        exact_distributor_share = Fraction(event.face_value * chosen.distributor_bp, 10_000)
        distributor_share = math.floor(exact_distributor_share)
        assert distributor_share <= exact_distributor_share < distributor_share + 1
        expected[(event.redeemer_brand, key)] += event.face_value
        expected[(event.distributor_brand, key)] -= distributor_share
        expected[(event.funding_brand, key)] -= event.face_value - distributor_share
        expected[(event.funding_brand, key)] -= commission
        expected[(event.distributor_brand, key)] += commission
    else:
        expected[(event.receiver_brand, key)] -= commission
        expected[(event.referrer_brand, key)] += commission
    assert nonzero(net_positions(priced.postings)) == nonzero(expected)


@PROPERTY
@given(priced_scenarios())
def test_caps_are_never_exceeded(scenario: tuple[ContractTerms, Any, int]) -> None:
    terms, event, month_to_date = scenario
    priced = price_event(event, terms, month_to_date=month_to_date)
    rule = terms.coupon_commission if isinstance(event, CouponRedemption) else terms.referral
    commission = priced.commission
    assert 0 <= commission <= raw_commission(rule, event.order_amount)
    if rule.per_event_cap is not None:
        assert commission <= rule.per_event_cap
    if rule.monthly_cap is not None:
        assert commission <= max(0, rule.monthly_cap - month_to_date)
    # ... and it is not under-charged: below the raw amount only because a cap binds.
    if commission < math.floor(raw_commission(rule, event.order_amount)):
        assert commission == rule.per_event_cap or (
            rule.monthly_cap is not None and commission == max(0, rule.monthly_cap - month_to_date)
        )
    commission_postings = [o for o in priced.obligations if o.reason.endswith("commission")]
    assert sum(o.amount for o in commission_postings) == commission


@PROPERTY
@given(contract_terms(), st.data())
def test_monthly_cap_holds_over_a_month_of_events(terms: ContractTerms, data: st.DataObject) -> None:
    orders = data.draw(st.lists(amounts, min_size=1, max_size=12))
    month_to_date: dict[tuple[str, str, str], int] = defaultdict(int)
    for order in orders:
        event: CouponRedemption | ReferralConversion = (
            data.draw(coupon_events(terms, order))
            if data.draw(st.booleans())
            else data.draw(referral_events(terms, order))
        )
        event = msgspec.structs.replace(event, occurred_at=datetime(2026, 5, 10, tzinfo=UTC))
        if isinstance(event, ReferralConversion):
            event = msgspec.structs.replace(event, referred_at=event.occurred_at)
        probe = price_event(event, terms)  # learn the bucket key
        bucket = (probe.commission_kind, probe.commission_payer, probe.commission_month)
        priced = price_event(event, terms, month_to_date=month_to_date[bucket])
        month_to_date[bucket] += priced.commission
    for (kind, _payer, _month), total in month_to_date.items():
        rule = terms.coupon_commission if kind == "coupon" else terms.referral
        if rule.monthly_cap is not None:
            assert total <= rule.monthly_cap


@PROPERTY
@given(priced_scenarios(), st.integers(0, 400 * 86_400))
def test_full_reversal_exactly_cancels(scenario: tuple[ContractTerms, Any, int], later: int) -> None:
    terms, event, month_to_date = scenario
    priced = price_event(event, terms, month_to_date=month_to_date)
    reversal = Reversal(
        event_id="rev",
        occurred_at=event.occurred_at + timedelta(seconds=later),
        original=event,
        original_commission=priced.commission,
    )
    reversed_ = price_event(reversal, terms)
    assert reversed_.postings == negated(priced.postings)
    assert nonzero(balances(priced.postings + reversed_.postings)) == {}
    assert reversed_.commission == -priced.commission
    assert reversed_.commission_month == priced.commission_month
    assert is_balanced(reversed_.postings)


@st.composite
def partial_refund_scenarios(
    draw: st.DrawFn,
) -> tuple[ContractTerms, CouponRedemption | ReferralConversion, int, list[int], bool]:
    terms = draw(contract_terms())
    order = draw(st.integers(1, MAX))
    event: CouponRedemption | ReferralConversion = (
        draw(coupon_events(terms, order)) if draw(st.booleans()) else draw(referral_events(terms, order))
    )
    cuts = sorted(set(draw(st.lists(st.integers(1, order), min_size=1, max_size=5))))
    refunds = [b - a for a, b in zip([0, *cuts], cuts, strict=False)]
    return terms, event, draw(amounts), refunds, draw(st.booleans())


@PROPERTY
@given(partial_refund_scenarios())
def test_partial_reversals_never_reverse_more_than_the_original(
    scenario: tuple[ContractTerms, Any, int, list[int], bool],
) -> None:
    terms, event, month_to_date, refunds, finish_with_full = scenario
    priced = price_event(event, terms, month_to_date=month_to_date)
    original = balances(priced.postings)
    reversed_total: dict[tuple[str, str], int] = defaultdict(int)
    commission_reversed = 0
    already = 0
    steps: list[int | None] = list(refunds)
    if finish_with_full and sum(refunds) < event.order_amount:
        steps.append(None)
    for index, refund in enumerate(steps):
        step = price_event(
            Reversal(
                event_id=f"rev-{index}",
                occurred_at=event.occurred_at,
                original=event,
                original_commission=priced.commission,
                refund_amount=refund,
                already_refunded=already,
            ),
            terms,
        )
        assert is_balanced(step.postings)
        for key, amount in balances(step.postings).items():
            reversed_total[key] += amount
        commission_reversed -= step.commission
        already += event.order_amount - already if refund is None else refund
        # Never past the original, account by account, and always in the reversing direction.
        for key, amount in reversed_total.items():
            assert abs(amount) <= abs(original.get(key, 0))
            assert amount == 0 or (amount > 0) != (original[key] > 0)
        assert 0 <= commission_reversed <= priced.commission
        assert sum(abs(a) for a in reversed_total.values()) <= sum(abs(a) for a in original.values())
    if already == event.order_amount:  # fully refunded, by partials or a final full reversal: exact
        assert all(reversed_total[key] == -amount for key, amount in original.items())
        assert commission_reversed == priced.commission


def test_commission_amount_helper() -> None:
    rule = RateCommission(rate_bp=1234, per_event_cap=100, monthly_cap=1000)
    assert commission_amount(rule, 500) == 61
    assert commission_amount(rule, 5_000) == 100
    assert commission_amount(rule, 5_000, month_to_date=950) == 50
    assert commission_amount(FixedCommission(amount=7), 0) == 7
