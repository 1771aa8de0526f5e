"""`alliance.referrals.conversion_rules`: every refusal of a conversion, decided without I/O.

The API tests (test_referrals.py) check the same refusals end to end on both backends; these pin each
one to the single rule that decides it, on hand-built snapshots.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import contracts
from alliance.contracts.in_force import ContractHistory
from alliance.core.problems import Problem
from alliance.db.models import Conversion, Referral
from alliance.referrals import conversion_rules as rules
from alliance.referrals import tokens
from alliance.referrals.schemas import ConversionCreate

REFERRER, RECEIVER = "brand-a", "brand-b"
ISSUED = datetime(2026, 3, 1, 12, tzinfo=UTC)
NOW = ISSUED + timedelta(hours=1)
KEY = Ed25519PrivateKey.generate()


def _terms(version: int = 1, **overrides: Any) -> contracts.ContractTerms:
    fields: dict[str, Any] = {
        "contract_id": "ctr-1",
        "version": version,
        "parties": (REFERRER, RECEIVER),
        "settlement_currency": "CNY",
        "effective_from": ISSUED - timedelta(days=1),
        "coupon_commission": contracts.FixedCommission(amount=100),
        "referral": contracts.FixedCommission(amount=500),
        **overrides,
    }
    return contracts.ContractTerms(**fields)


def _referral(**overrides: Any) -> Referral:
    fields: dict[str, Any] = {
        "id": "ref-1",
        "referrer_brand_id": REFERRER,
        "receiver_brand_id": RECEIVER,
        "contract_id": "ctr-1",
        "issued_at": ISSUED,
        "expires_at": ISSUED + timedelta(days=1),
        "key_id": "xkey-1",
        "status": "open",
        **overrides,
    }
    return Referral(**fields)


def _token(**overrides: Any) -> str:
    payload = tokens.TokenPayload(rid="ref-1", frm=REFERRER, to=RECEIVER, iat=0, exp=0, kid="xkey-1")
    return tokens.sign_token(KEY, msgspec.structs.replace(payload, **overrides))


def _token_snapshot(token: str | None = None, referral: Referral | None = None) -> rules.TokenSnapshot:
    payload, body, signature = tokens.decode_unverified(token or _token())
    public = KEY.public_key().public_bytes_raw()
    return rules.TokenSnapshot(RECEIVER, payload, body, signature, None, public, referral or _referral())


def _request(**overrides: Any) -> ConversionCreate:
    fields: dict[str, Any] = {"token": "t", "order_reference": "po-1", "order_amount": 30_000, "currency": "CNY"}
    return ConversionCreate(**{**fields, **overrides})


def _snapshot(**overrides: Any) -> rules.ConversionSnapshot:
    fields: dict[str, Any] = {
        "token": _token_snapshot(),
        "request": _request(),
        "now": NOW,
        "conversion_id": "cnv-1",
        "prior": None,
        "contract": ContractHistory("ctr-1", (_terms(),)),
        **overrides,
    }
    return rules.ConversionSnapshot(**fields)


def _refused(decision: object, status: int, slug: str) -> Problem:
    assert isinstance(decision, Problem), decision
    assert (decision.status, decision.slug) == (status, slug)
    return decision


def test_a_valid_conversion_is_planned() -> None:
    plan = rules.decide(_snapshot())
    assert isinstance(plan, rules.ConversionPlan)
    assert plan.terms.version == 1
    assert plan.event == contracts.ReferralConversion(
        event_id="cnv-1",
        occurred_at=NOW,
        referrer_brand=REFERRER,
        receiver_brand=RECEIVER,
        referred_at=ISSUED,
        order_amount=30_000,
        currency="CNY",
    )


def test_malformed_token() -> None:
    snapshot = rules.TokenSnapshot(RECEIVER, None, b"", b"", "not base64url", None, None)
    refusal = _refused(rules.decide(_snapshot(token=snapshot)), 400, "malformed-referral-token")
    assert refusal.detail == "not base64url"


@pytest.mark.parametrize(
    "token_snapshot",
    [
        pytest.param(replace(_token_snapshot(), caller_id="brand-c"), id="another-receiver"),
        pytest.param(replace(_token_snapshot(), public_key=None), id="unknown-key"),
        pytest.param(replace(_token_snapshot(), referral=None), id="unknown-referral"),
        pytest.param(_token_snapshot(referral=_referral(receiver_brand_id="brand-c")), id="referral-of-another"),
        pytest.param(_token_snapshot(referral=_referral(key_id="xkey-2")), id="referral-under-another-key"),
    ],
)
def test_foreign_or_unknown_token_is_not_found(token_snapshot: rules.TokenSnapshot) -> None:
    _refused(rules.decide(_snapshot(token=token_snapshot)), 404, "referral-not-found")


def test_forged_signature() -> None:
    forged = replace(_token_snapshot(), signature=bytes(64))
    _refused(rules.decide(_snapshot(token=forged)), 400, "invalid-referral-token")


def test_second_conversion_replays_the_same_order_and_refuses_another() -> None:
    converted = _token_snapshot(referral=_referral(status="converted"))
    prior = Conversion(id="cnv-0", order_reference="po-1", order_amount=30_000, currency="CNY")
    replay = rules.decide(_snapshot(token=converted, prior=prior))
    assert replay == rules.Replay(prior)
    other = rules.decide(_snapshot(token=converted, prior=prior, request=_request(order_reference="po-2")))
    assert _refused(other, 409, "referral-already-converted").extra == {"conversion_id": "cnv-0"}
    unknown = rules.decide(_snapshot(token=converted, prior=None))
    assert _refused(unknown, 409, "referral-already-converted").extra is None


def test_expired_token() -> None:
    refusal = _refused(rules.decide(_snapshot(now=ISSUED + timedelta(days=1))), 409, "referral-expired")
    assert refusal.detail == "this referral token expired at 2026-03-02T12:00:00+00:00"


def test_no_contract_in_force() -> None:
    _refused(rules.decide(_snapshot(contract=None)), 409, "no-contract-in-force")
    ended = ContractHistory("ctr-1", (_terms(effective_to=NOW),))
    assert _refused(rules.decide(_snapshot(contract=ended)), 409, "no-contract-in-force").extra == {
        "contract_id": "ctr-1"
    }
    rejected = ContractHistory("ctr-1", (_terms(),), {1: "not allowed"})
    refusal = _refused(rules.decide(_snapshot(contract=rejected)), 409, "no-contract-in-force")
    assert refusal.extra == {"contract_id": "ctr-1", "rejected_version": 1}


def test_outside_the_attribution_window_of_the_version_in_force() -> None:
    # Version 2 (in force at the conversion) shortened the window below the time since the referral.
    shorter = _terms(2, effective_from=NOW - timedelta(minutes=1), attribution_window_seconds=60)
    history = ContractHistory("ctr-1", (_terms(), shorter))
    _refused(rules.decide(_snapshot(contract=history)), 409, "outside-attribution-window")


def test_another_currency_than_the_contract() -> None:
    _refused(rules.decide(_snapshot(request=_request(currency="USD"))), 422, "currency-mismatch")


def test_the_refusal_order_is_token_conversion_expiry_contract_pricing() -> None:
    late_and_uncovered = _snapshot(now=ISSUED + timedelta(days=2), contract=None, request=_request(currency="USD"))
    _refused(rules.decide(late_and_uncovered), 409, "referral-expired")
    converted = _token_snapshot(referral=_referral(status="converted"))
    _refused(rules.decide(replace(late_and_uncovered, token=converted)), 409, "referral-already-converted")
    _refused(rules.decide(_snapshot(contract=None, request=_request(currency="USD"))), 409, "no-contract-in-force")


def test_lost_race() -> None:
    _refused(rules.lost_race(), 409, "conflict")
