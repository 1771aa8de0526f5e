"""The redemption and reversal rules as pure functions: each refusal from a snapshot, no database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

import contracts
from alliance.benefits import codes
from alliance.benefits.redemption_rules import (
    REDEEM_OPERATION,
    BenefitSnapshot,
    RedemptionPlan,
    RedemptionRequest,
    RedemptionSnapshot,
    decide_redemption,
    redemption_request,
    reprice,
)
from alliance.benefits.reversal_rules import (
    REVERSE_OPERATION,
    ReversalPlan,
    ReversalRequest,
    ReversalSnapshot,
    decide_reversal,
)
from alliance.benefits.rules import Refusal, Replay, StoredAnswer, pricing_refusal
from alliance.benefits.schemas import RedemptionCreate, RedemptionOut, ReversalCreate

NOW = datetime(2026, 5, 10, 12, tzinfo=UTC)
FUNDER, DISTRIBUTOR = "brd-funder", "brd-distributor"


def _terms(version: int = 1, start: datetime = NOW - timedelta(days=30), **changes: Any) -> contracts.ContractTerms:
    fields: dict[str, Any] = {
        "contract_id": "ctr-1",
        "version": version,
        "parties": contracts.party_pair(FUNDER, DISTRIBUTOR),
        "settlement_currency": "CNY",
        "effective_from": start,
        "coupon_commission": contracts.RateCommission(rate_bp=200),
        "referral": contracts.FixedCommission(amount=500),
        "funding": (
            contracts.FundingSplit(
                benefit=contracts.ANY_BENEFIT,
                funding_brand=FUNDER,
                distributor_brand=DISTRIBUTOR,
                funding_brand_bp=7_000,
                distributor_bp=3_000,
            ),
        ),
        **changes,
    }
    return contracts.ContractTerms(**fields)


BENEFIT = BenefitSnapshot(
    id="ben-1",
    status="active",
    valid_from=NOW - timedelta(days=1),
    valid_to=NOW + timedelta(days=30),
    channels=("store", "online"),
    currency="CNY",
    min_spend=5_000,
    new_customers_only=False,
    per_member_limit=None,
    value_kind="fixed",
    value=1_000,
    max_discount=None,
    budget_amount=100_000,
    budget_count=100,
    spent_amount=0,
    spent_count=0,
)
SNAPSHOT = RedemptionSnapshot(
    coupon_id="cpn-1",
    coupon_status="issued",
    distributor_id=DISTRIBUTOR,
    benefit=BENEFIT,
    distributor_allowed=True,
    endpoints=(),
    contract_id="ctr-1",
    versions=(_terms(),),
    rejected={},
    month_to_date=0,
    member_uses=0,
    stored=None,
)


def _request(key: str | None = "key-1", **changes: Any) -> RedemptionRequest:
    data = RedemptionCreate(
        **{"code": "7K3M9Q-XW2HBD-T4N8ZR", "order_reference": "o-1", "order_amount": 12_000, "channel": "store"}
        | changes
    )
    return RedemptionRequest(FUNDER, key, "print", data, "member-digest", "rdm-1")


def _benefit(**changes: Any) -> RedemptionSnapshot:
    return dataclasses.replace(SNAPSHOT, benefit=dataclasses.replace(BENEFIT, **changes))


REFUSALS: list[tuple[RedemptionSnapshot | None, dict[str, Any], int, str]] = [
    (None, {}, 404, "coupon-not-found"),
    (SNAPSHOT, {"key": None}, 400, "idempotency-key-required"),
    (SNAPSHOT, {"key": "k" * 300}, 400, "invalid-idempotency-key"),
    (dataclasses.replace(SNAPSHOT, coupon_status="redeemed"), {}, 409, "coupon-already-redeemed"),
    (_benefit(status="paused"), {}, 409, "benefit-paused"),
    (_benefit(status="ended"), {}, 409, "benefit-ended"),
    (_benefit(status="exhausted"), {}, 409, "budget-exhausted"),
    (_benefit(valid_to=NOW), {}, 409, "benefit-expired"),
    (_benefit(valid_from=NOW + timedelta(seconds=1)), {}, 409, "benefit-not-yet-valid"),
    (dataclasses.replace(SNAPSHOT, distributor_allowed=False), {}, 409, "distributor-not-allowed"),
    (SNAPSHOT, {"channel": "mini_program"}, 422, "channel-not-allowed"),
    (SNAPSHOT, {"currency": "USD"}, 422, "currency-mismatch"),
    (SNAPSHOT, {"order_amount": 4_999}, 422, "below-minimum-spend"),
    (_benefit(new_customers_only=True), {}, 409, "new-customers-only"),
    (_benefit(per_member_limit=1), {}, 422, "member-token-required"),
    (
        dataclasses.replace(_benefit(per_member_limit=2), member_uses=2),
        {"member_token": "m"},
        409,
        "member-limit-reached",
    ),
    (_benefit(min_spend=0, value_kind="percent", value=1, max_discount=10), {"order_amount": 99}, 422, "zero-discount"),
    (_benefit(spent_amount=99_500), {}, 409, "budget-exhausted"),
    (_benefit(spent_count=100), {}, 409, "budget-exhausted"),
    (dataclasses.replace(SNAPSHOT, distributor_id=FUNDER), {}, 409, "no-contract-in-force"),
    (dataclasses.replace(SNAPSHOT, contract_id=None, versions=()), {}, 409, "no-contract-in-force"),
    (dataclasses.replace(SNAPSHOT, versions=(_terms(start=NOW + timedelta(days=1)),)), {}, 409, "no-contract-in-force"),
    (dataclasses.replace(SNAPSHOT, rejected={1: "too generous"}), {}, 409, "no-contract-in-force"),
    (dataclasses.replace(SNAPSHOT, versions=(_terms(funding=()),)), {}, 409, "benefit-not-covered"),
]


@pytest.mark.parametrize(("snapshot", "changes", "status", "slug"), REFUSALS)
def test_each_redemption_refusal_is_decided_from_the_snapshot(
    snapshot: RedemptionSnapshot | None, changes: dict[str, Any], status: int, slug: str
) -> None:
    key = changes.pop("key", "key-1")
    decision = decide_redemption(snapshot, _request(key, **changes), NOW)
    assert isinstance(decision, Refusal), decision
    assert (decision.status, decision.slug) == (status, slug)


def test_a_rejected_version_names_itself() -> None:
    decision = decide_redemption(dataclasses.replace(SNAPSHOT, rejected={1: "too generous"}), _request(), NOW)
    assert isinstance(decision, Refusal)
    assert decision.extra == {"contract_id": "ctr-1", "rejected_version": 1}
    assert "rejected by the alliance: too generous" in decision.detail


def test_a_redemption_plan_prices_the_event_under_the_version_in_force() -> None:
    later = _terms(version=2, start=NOW - timedelta(days=1), coupon_commission=contracts.RateCommission(rate_bp=100))
    snapshot = dataclasses.replace(SNAPSHOT, versions=(_terms(), later))
    plan = decide_redemption(snapshot, _request(), NOW)
    assert isinstance(plan, RedemptionPlan)
    assert (plan.discount, plan.terms.version, plan.priced.commission, plan.guard) == (1_000, 2, 120, None)
    assert contracts.is_balanced(plan.priced.postings)


def test_a_capped_commission_is_guarded_and_repriced_from_a_locked_total() -> None:
    capped = _terms(coupon_commission=contracts.FixedCommission(amount=100, monthly_cap=1_000))
    plan = decide_redemption(dataclasses.replace(SNAPSHOT, versions=(capped,), month_to_date=950), _request(), NOW)
    assert isinstance(plan, RedemptionPlan)
    assert (plan.priced.commission, plan.guard) == (50, ("reaches", 1_000))
    again = reprice(plan, 1_000)
    assert (again.priced.commission, again.guard) == (0, None)


def test_a_stored_answer_is_replayed_or_the_key_refused() -> None:
    stored = StoredAnswer(REDEEM_OPERATION, "print", 201, b'{"id":"rdm-0"}')
    replay = decide_redemption(dataclasses.replace(SNAPSHOT, stored=stored), _request(), NOW)
    assert replay == Replay(201, b'{"id":"rdm-0"}')
    other = dataclasses.replace(SNAPSHOT, stored=dataclasses.replace(stored, fingerprint="other"))
    refused = decide_redemption(other, _request(), NOW)
    assert isinstance(refused, Refusal)
    assert refused.slug == "idempotency-key-reused"


def test_the_request_is_normalised_once() -> None:
    code = codes.generate_code()
    typed = codes.display(code).lower().replace("-", " ")
    data = RedemptionCreate(code=typed, order_reference="o", order_amount=1, channel="store")
    parsed = redemption_request(FUNDER, " key ", data, "rdm-9")
    assert not isinstance(parsed, Refusal)
    digest, request = parsed
    same = redemption_request(FUNDER, "key", msgspec.structs.replace(data, code=codes.display(code)), "rdm-8")
    assert not isinstance(same, Refusal)
    assert (digest, request.fingerprint, request.key) == (same[0], same[1].fingerprint, "key")
    mistyped = code[:-1] + ("0" if code[-1] != "0" else "1")
    malformed = redemption_request(FUNDER, "key", msgspec.structs.replace(data, code=mistyped), "rdm-7")
    assert isinstance(malformed, Refusal)
    assert malformed.slug == "malformed-coupon-code"


# --- reversal -----------------------------------------------------------------------------------------

REDEEMED = RedemptionOut(
    id="rdm-1",
    coupon_id="cpn-1",
    benefit_id="ben-1",
    funding_brand_id=FUNDER,
    distributor_brand_id=DISTRIBUTOR,
    order_reference="o-1",
    order_amount=12_000,
    discount=1_000,
    currency="CNY",
    channel="store",
    store_id=None,
    redeemed_at=NOW - timedelta(days=1),
    contract_id="ctr-1",
    contract_version=1,
    commission=240,
    ledger_transaction_id="ltx-1",
    refunded_amount=0,
    restored_discount=0,
    status="redeemed",
)
REVERSIBLE = ReversalSnapshot(REDEEMED, None, 7 * 86_400, None, 1_000, _terms(), None)


def _reversal(refund: int | None = None, key: str | None = "key-2") -> ReversalRequest:
    return ReversalRequest(FUNDER, "rdm-1", key, "print", ReversalCreate(refund_amount=refund), "rvs-1")


@pytest.mark.parametrize(
    ("snapshot", "refund", "status", "slug"),
    [
        (None, None, 404, "redemption-not-found"),
        (dataclasses.replace(REVERSIBLE, reversal_window_seconds=3_600), None, 409, "reversal-window-closed"),
        (
            dataclasses.replace(REVERSIBLE, redemption=msgspec.structs.replace(REDEEMED, refunded_amount=12_000)),
            None,
            409,
            "already-reversed",
        ),
        (REVERSIBLE, 12_001, 422, "refund-exceeds-remaining"),
    ],
)
def test_each_reversal_refusal_is_decided_from_the_snapshot(
    snapshot: ReversalSnapshot | None, refund: int | None, status: int, slug: str
) -> None:
    decision = decide_reversal(snapshot, _reversal(refund), NOW)
    assert isinstance(decision, Refusal), decision
    assert (decision.status, decision.slug) == (status, slug)


def test_partial_reversals_add_up_and_replays_are_answered() -> None:
    first = decide_reversal(REVERSIBLE, _reversal(3_000), NOW)
    assert isinstance(first, ReversalPlan)
    assert (first.refund, first.restored, first.full, first.priced.commission) == (3_000, 250, False, -60)
    rest = msgspec.structs.replace(REDEEMED, refunded_amount=3_000, restored_discount=250)
    second = decide_reversal(dataclasses.replace(REVERSIBLE, redemption=rest), _reversal(), NOW)
    assert isinstance(second, ReversalPlan)
    assert (second.refund, second.restored, second.full) == (9_000, 750, True)
    stored = StoredAnswer(REVERSE_OPERATION, "print", 201, b"{}")
    assert decide_reversal(dataclasses.replace(REVERSIBLE, stored=stored), _reversal(), NOW) == Replay(201, b"{}")
    refused = decide_reversal(REVERSIBLE, _reversal(key=None), NOW)
    assert isinstance(refused, Refusal)
    assert refused.slug == "idempotency-key-required"


@pytest.mark.parametrize(
    ("error", "status", "slug"),
    [
        (contracts.NoFundingSplit("no split"), 409, "benefit-not-covered"),
        (contracts.OutsideAttributionWindow("too late"), 409, "outside-attribution-window"),
        (contracts.CurrencyMismatch("USD"), 422, "currency-mismatch"),
        (contracts.InvalidReversal("twice"), 409, "invalid-reversal"),
        (contracts.OutsideContractPeriod("ended"), 409, "no-contract-in-force"),
        (contracts.InvalidEvent("negative"), 422, "pricing-refused"),
    ],
)
def test_pricing_refusals_have_their_own_types(error: contracts.ContractError, status: int, slug: str) -> None:
    refusal = pricing_refusal(error)
    assert (refusal.status, refusal.slug, refusal.detail) == (status, slug, str(error))
