"""The worked example "From pricing to statement" in docs/settlement.md, computed by the pricing library:
the numbers in the document are the numbers the code produces."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import contracts
from contracts import CouponRedemption, ReferralConversion, Reversal

DOC = Path(__file__).resolve().parents[2] / "docs" / "settlement.md"
A, B = "brd_A", "brd_B"
TERMS = contracts.ContractTerms(
    contract_id="ctr_example",
    version=1,
    parties=(A, B),
    settlement_currency="CNY",
    effective_from=datetime(2026, 1, 1, tzinfo=UTC),
    funding=(
        contracts.FundingSplit(
            benefit="*", funding_brand=A, distributor_brand=B, funding_brand_bp=7000, distributor_bp=3000
        ),
    ),
    coupon_commission=contracts.RateCommission(rate_bp=500, per_event_cap=2000),
    referral=contracts.FixedCommission(amount=800),
)


def at(day: int) -> datetime:
    return datetime(2026, 3, day, 12, tzinfo=UTC)


def test_the_worked_example_is_what_pricing_computes() -> None:
    redemption = CouponRedemption(
        event_id="rdm_1",
        occurred_at=at(3),
        benefit_id="ben_bedding",
        funding_brand=A,
        distributor_brand=B,
        redeemer_brand=A,
        face_value=3200,
        order_amount=32000,
        currency="CNY",
    )
    priced = contracts.price_event(redemption, TERMS)
    assert {(o.payer, o.payee, o.amount) for o in priced.obligations} == {(B, A, 960), (A, B, 1600)}
    assert priced.commission == 1600

    refund = contracts.price_event(
        Reversal(
            event_id="rev_1",
            occurred_at=at(9),
            original=redemption,
            original_commission=priced.commission,
            refund_amount=8000,
        ),
        TERMS,
    )
    assert {(o.payer, o.payee, o.amount) for o in refund.obligations} == {(B, A, -240), (A, B, -400)}

    conversion = contracts.price_event(
        ReferralConversion(
            event_id="cnv_1",
            occurred_at=at(20),
            referrer_brand=A,
            receiver_brand=B,
            referred_at=at(18),
            order_amount=20000,
            currency="CNY",
        ),
        TERMS,
    )
    assert [(o.payer, o.payee, o.amount) for o in conversion.obligations] == [(B, A, 800)]

    postings = [*priced.postings, *refund.postings, *conversion.postings]
    nets = contracts.net_positions(postings)
    assert nets[(A, "CNY")] == 320
    assert nets[(B, "CNY")] == -320
    text = DOC.read_text(encoding="utf-8")
    for figure in ("960", "1,600", "-240", "-400", "800", "+320", "-320", "720", "1,200", "1,520"):
        assert figure in text, figure
