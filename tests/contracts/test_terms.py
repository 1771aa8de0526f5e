"""Contract terms: validation messages, decoding at the edge, version history and the version in force."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from contracts import (
    ISO_4217_MINOR_UNITS,
    ContractError,
    ContractTerms,
    FixedCommission,
    FundingSplit,
    InvalidTerms,
    InvalidVersion,
    NoContractInForce,
    NotAParty,
    PsiTerms,
    RateCommission,
    UnknownCurrency,
    VersionRejected,
    decode_terms,
    format_minor_units,
    minor_unit_exponent,
    party_pair,
    validate_currency,
    validate_new_version,
    validate_terms,
    version_in_force,
)
from privacy.disclosure import MembershipPolicy

JAN = datetime(2026, 1, 1, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def make_terms(**overrides: Any) -> ContractTerms:
    fields: dict[str, Any] = {
        "contract_id": "ctr-1",
        "version": 1,
        "parties": ("alpha", "beta"),
        "settlement_currency": "CNY",
        "effective_from": JAN,
        "funding": (
            FundingSplit(
                benefit="*", funding_brand="alpha", distributor_brand="beta", funding_brand_bp=7000, distributor_bp=3000
            ),
        ),
        "coupon_commission": RateCommission(rate_bp=500, per_event_cap=1_000, monthly_cap=100_000),
        "referral": FixedCommission(amount=300, monthly_cap=50_000),
        "psi": PsiTerms(segment_tags=("vip",)),
    }
    fields.update(overrides)
    return ContractTerms(**fields)


def split(**overrides: Any) -> FundingSplit:
    fields: dict[str, Any] = {
        "benefit": "*",
        "funding_brand": "alpha",
        "distributor_brand": "beta",
        "funding_brand_bp": 7000,
        "distributor_bp": 3000,
    }
    fields.update(overrides)
    return FundingSplit(**fields)


def problems_of(terms: ContractTerms) -> list[tuple[str, str]]:
    with pytest.raises(InvalidTerms) as info:
        validate_terms(terms)
    return info.value.problems


def test_valid_terms_pass_and_round_trip_through_json() -> None:
    terms = make_terms(note="春季 campaign")
    validate_terms(terms)
    assert decode_terms(msgspec.json.encode(terms)) == terms


def test_defaults_are_the_documented_ones() -> None:
    terms = make_terms()
    assert terms.psi is not None
    assert terms.psi.min_k == 100
    assert terms.psi.disclosure == "cardinality"
    assert terms.attribution_window_seconds == 30 * 86_400


NEGATIVE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "shares do not sum to 10000",
        {"funding": (split(funding_brand_bp=6000, distributor_bp=3000),)},
        "funding[0]",
        "funding_brand_bp + distributor_bp must be 10000 bp, got 6000 + 3000 = 9000",
    ),
    (
        "shares over 10000",
        {"funding": (split(funding_brand_bp=6000, distributor_bp=5000),)},
        "funding[0]",
        "got 6000 + 5000 = 11000",
    ),
    (
        "negative share",
        {"funding": (split(funding_brand_bp=10_001, distributor_bp=-1),)},
        "funding[0].distributor_bp",
        "share (bp) must not be negative, got -1",
    ),
    (
        "funding brand not a party",
        {"funding": (split(funding_brand="gamma"),)},
        "funding[0].funding_brand",
        "'gamma' is not a party to this contract",
    ),
    (
        "distributor not a party",
        {"funding": (split(distributor_brand="gamma"),)},
        "funding[0].distributor_brand",
        "'gamma' is not a party to this contract",
    ),
    (
        "brand funds and distributes",
        {"funding": (split(distributor_brand="alpha"),)},
        "funding[0].distributor_brand",
        "the funding brand and the distributor must be different parties",
    ),
    (
        "duplicate split",
        {"funding": (split(), split(funding_brand_bp=5000, distributor_bp=5000))},
        "funding[1].benefit",
        "duplicate split for benefit '*' funded by 'alpha' (already at funding[0])",
    ),
    (
        "bad benefit selector",
        {"funding": (split(benefit="all benefits"),)},
        "funding[0].benefit",
        "must be a benefit id or '*'",
    ),
    (
        "negative fixed commission",
        {"coupon_commission": FixedCommission(amount=-1)},
        "coupon_commission.amount",
        "amount must not be negative, got -1",
    ),
    (
        "negative per-event cap",
        {"coupon_commission": RateCommission(rate_bp=100, per_event_cap=-5)},
        "coupon_commission.per_event_cap",
        "cap must not be negative, got -5",
    ),
    (
        "negative monthly cap",
        {"referral": FixedCommission(amount=1, monthly_cap=-1)},
        "referral.monthly_cap",
        "cap must not be negative, got -1",
    ),
    (
        "rate above 100 %",
        {"referral": RateCommission(rate_bp=10_001)},
        "referral.rate_bp",
        "rate (bp) must be at most 10000, got 10001",
    ),
    (
        "float amount slipped in by code",
        {"referral": FixedCommission(amount=1.5)},  # type: ignore[arg-type]
        "referral.amount",
        "amount must be an integer, got float 1.5",
    ),
    (
        "amount beyond int64",
        {"referral": FixedCommission(amount=2**63)},
        "referral.amount",
        "must be at most 1000000000000",
    ),
    (
        "amount beyond the money bound (contracts.bounds)",
        {"referral": FixedCommission(amount=10**12 + 1)},
        "referral.amount",
        "must be at most 1000000000000",
    ),
    ("unknown currency", {"settlement_currency": "XYZ"}, "settlement_currency", "'XYZ' is not an active ISO 4217"),
    ("lower-case currency", {"settlement_currency": "cny"}, "settlement_currency", "'cny' is not an active ISO 4217"),
    ("withdrawn currency", {"settlement_currency": "HRK"}, "settlement_currency", "'HRK' is not an active ISO 4217"),
    ("metal is no currency", {"settlement_currency": "XAU"}, "settlement_currency", "'XAU' is not an active"),
    (
        "party paying itself",
        {"parties": ("alpha", "alpha"), "funding": ()},
        "parties",
        "a brand cannot contract with (or pay) itself: 'alpha' twice",
    ),
    (
        "parties out of order",
        {"parties": ("beta", "alpha")},
        "parties",
        "must be in ascending order so each pair has one encoding: use ('alpha', 'beta')",
    ),
    (
        "party id with a colon",
        {"parties": ("al:pha", "beta"), "funding": ()},
        "parties[0]",
        "'al:pha' is not a valid brand id",
    ),
    ("bad contract id", {"contract_id": ""}, "contract_id", "'' is not a valid id"),
    ("version zero", {"version": 0}, "version", "version must be at least 1, got 0"),
    ("bool version", {"version": True}, "version", "version must be an integer, got bool"),
    (
        "effective_to equal to effective_from",
        {"effective_to": JAN},
        "effective_to",
        "must be after effective_from (2026-01-01T00:00:00+00:00), got 2026-01-01T00:00:00+00:00",
    ),
    (
        "effective_to before effective_from",
        {"effective_to": JAN - timedelta(days=1)},
        "effective_to",
        "must be after effective_from",
    ),
    (
        "naive effective_from",
        {"effective_from": datetime(2026, 1, 1)},  # naive on purpose
        "effective_from",
        "must be timezone-aware (UTC), got a naive datetime",
    ),
    (
        "non-UTC effective_to",
        {"effective_to": datetime(2026, 6, 1, tzinfo=timezone(timedelta(hours=8)))},
        "effective_to",
        "must be in UTC, got offset 8:00:00",
    ),
    (
        "zero attribution window",
        {"attribution_window_seconds": 0},
        "attribution_window_seconds",
        "attribution window (s) must be at least 1, got 0",
    ),
    (
        "membership to a non-party",
        {"psi": PsiTerms(segment_tags=("vip",), disclosure="membership_to:gamma")},
        "psi.disclosure",
        "membership_to names 'gamma', which is not a party ('alpha', 'beta')",
    ),
    (
        "unknown disclosure policy",
        {"psi": PsiTerms(segment_tags=("vip",), disclosure="everything")},
        "psi.disclosure",
        "must be 'cardinality' or 'membership_to:<brand>', got 'everything'",
    ),
    (
        "min_k zero",
        {"psi": PsiTerms(segment_tags=("vip",), min_k=0)},
        "psi.min_k",
        "min_k must be at least 1, got 0",
    ),
    (
        "zero DP budget",
        {"psi": PsiTerms(segment_tags=("vip",), dp_epsilon_milli_per_month=0)},
        "psi.dp_epsilon_milli_per_month",
        "DP budget (milli-epsilon) must be at least 1, got 0",
    ),
    (
        "psi allowing nothing",
        {"psi": PsiTerms()},
        "psi",
        "allows no segment: list segment_tags or segment_ids, or omit psi",
    ),
    (
        "duplicate segment tag",
        {"psi": PsiTerms(segment_tags=("vip", "vip"))},
        "psi.segment_tags[1]",
        "duplicate segment tag 'vip'",
    ),
    (
        "bad segment id",
        {"psi": PsiTerms(segment_ids=("seg 1",))},
        "psi.segment_ids[0]",
        "'seg 1' is not a valid segment id",
    ),
    (
        "zero rounding step",
        {"psi": PsiTerms(segment_tags=("vip",), round_cardinality_to=0)},
        "psi.round_cardinality_to",
        "rounding step must be at least 1, got 0",
    ),
    ("note too long", {"note": "x" * 4_001}, "note", "must be a string of at most 4000 characters"),
]


@pytest.mark.parametrize(
    ("overrides", "path", "message"),
    [pytest.param(o, p, m, id=name) for name, o, p, m in NEGATIVE_CASES],
)
def test_invalid_terms_name_the_field_and_the_reason(overrides: dict[str, Any], path: str, message: str) -> None:
    problems = problems_of(make_terms(**overrides))
    assert any(p == path and message in m for p, m in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    terms = make_terms(
        settlement_currency="XYZ",
        effective_to=JAN,
        funding=(split(funding_brand_bp=1),),
        referral=FixedCommission(amount=-1),
    )
    paths = {path for path, _ in problems_of(terms)}
    assert {"settlement_currency", "effective_to", "funding[0]", "referral.amount"} <= paths


def test_invalid_terms_is_a_value_error_with_a_readable_message() -> None:
    with pytest.raises(InvalidTerms) as info:
        validate_terms(make_terms(settlement_currency="XYZ"))
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ContractError)
    assert str(info.value) == "settlement_currency: 'XYZ' is not an active ISO 4217 currency code"


def test_validate_terms_refuses_other_types() -> None:
    with pytest.raises(TypeError):
        validate_terms({"contract_id": "x"})  # type: ignore[arg-type]


def test_membership_to_a_party_is_fine() -> None:
    psi = PsiTerms(segment_ids=("seg-1",), disclosure="membership_to:beta", dp_epsilon_milli_per_month=1500)
    validate_terms(make_terms(psi=psi))
    assert psi.membership_recipient() == "beta"
    assert PsiTerms(segment_tags=("vip",)).membership_recipient() is None


def test_signed_terms_spell_the_disclosure_policy_canonically() -> None:
    # privacy.disclosure reads both spellings; signed terms carry only the canonical colon form.
    psi = PsiTerms(segment_ids=("seg-1",), disclosure="membership_to=beta")
    assert psi.policy() == MembershipPolicy("beta")
    with pytest.raises(InvalidTerms, match="must be 'cardinality' or 'membership_to:<brand>'"):
        validate_terms(make_terms(psi=psi))


def test_psi_segment_selection() -> None:
    psi = PsiTerms(segment_tags=("vip", "new"), segment_ids=("seg-9",))
    assert psi.allows_segment("seg-9", [])
    assert psi.allows_segment("seg-1", ["loyal", "new"])
    assert not psi.allows_segment("seg-1", ["loyal"])


# --- decoding at the edge ----------------------------------------------------------------------------


def test_decode_refuses_floats_in_money() -> None:
    raw = msgspec.json.encode(make_terms()).replace(b'"amount":300', b'"amount":300.0')
    with pytest.raises(InvalidTerms) as info:
        decode_terms(raw)
    assert info.value.problems == [("referral.amount", "Expected `int`, got `float`")]


def test_decode_refuses_unknown_fields() -> None:
    raw = msgspec.json.encode(make_terms()).replace(b'"version":1', b'"version":1,"exclusivity":true')
    with pytest.raises(InvalidTerms) as info:
        decode_terms(raw)
    assert info.value.problems == [("$", "Object contains unknown field `exclusivity`")]


def test_decode_refuses_naive_timestamps() -> None:
    raw = msgspec.json.encode(make_terms()).replace(b"2026-01-01T00:00:00Z", b"2026-01-01T00:00:00")
    with pytest.raises(InvalidTerms) as info:
        decode_terms(raw)
    assert info.value.problems[0][0] == "effective_from"


def test_decode_refuses_malformed_json_and_invalid_content() -> None:
    with pytest.raises(InvalidTerms, match="malformed JSON"):
        decode_terms(b"{not json")
    with pytest.raises(InvalidTerms, match="not an active ISO 4217"):
        decode_terms(msgspec.json.encode(make_terms(settlement_currency="ABC")))


def test_decode_accepts_offsets_but_validation_wants_utc() -> None:
    raw = msgspec.json.encode(make_terms()).replace(b"2026-01-01T00:00:00Z", b"2026-01-01T08:00:00+08:00")
    with pytest.raises(InvalidTerms, match="must be in UTC"):
        decode_terms(raw)


# --- helpers on the terms ----------------------------------------------------------------------------


def test_funding_split_lookup_prefers_the_benefit_then_the_default_of_that_funder() -> None:
    specific = split(benefit="bnf-1", funding_brand_bp=10_000, distributor_bp=0)
    reverse_default = split(funding_brand="beta", distributor_brand="alpha", funding_brand_bp=5000, distributor_bp=5000)
    terms = make_terms(funding=(split(), specific, reverse_default))
    validate_terms(terms)
    assert terms.funding_split_for("bnf-1", "alpha") == specific
    assert terms.funding_split_for("bnf-2", "alpha") == split()
    assert terms.funding_split_for("bnf-1", "beta") == reverse_default
    assert make_terms(funding=(specific,)).funding_split_for("bnf-2", "alpha") is None


def test_counterparty_and_party_pair() -> None:
    terms = make_terms()
    assert terms.counterparty("alpha") == "beta"
    assert terms.counterparty("beta") == "alpha"
    with pytest.raises(NotAParty):
        terms.counterparty("gamma")
    assert party_pair("beta", "alpha") == ("alpha", "beta")
    with pytest.raises(ValueError, match="two different brands"):
        party_pair("alpha", "alpha")


def test_currency_table() -> None:
    for code in ("CNY", "USD", "EUR", "HKD", "JPY", "GBP", "SGD", "KWD", "CLF", "XCG", "SLE", "ZWG"):
        assert validate_currency(code) == code
    assert minor_unit_exponent("JPY") == 0
    assert minor_unit_exponent("CNY") == 2
    assert minor_unit_exponent("KWD") == 3
    assert minor_unit_exponent("CLF") == 4
    assert len(ISO_4217_MINOR_UNITS) > 150
    assert all(len(code) == 3 and code.isupper() for code in ISO_4217_MINOR_UNITS)
    for withdrawn in ("HRK", "BGN", "SLL", "ZWL", "ANG", "XXX", "XTS", "cny", ""):
        with pytest.raises(UnknownCurrency):
            validate_currency(withdrawn)
    assert format_minor_units(-12_345, "CNY") == "-123.45"
    assert format_minor_units(5, "KWD") == "0.005"
    assert format_minor_units(1200, "JPY") == "1200"


# --- version history ---------------------------------------------------------------------------------


def v(version: int, start: datetime, end: datetime | None = None, **overrides: Any) -> ContractTerms:
    return make_terms(version=version, effective_from=start, effective_to=end, **overrides)


def version_problems(existing: list[ContractTerms], new: ContractTerms, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidVersion) as info:
        validate_new_version(existing, new, **kwargs)
    return info.value.problems


def test_consecutive_versions_are_accepted() -> None:
    v1, v2, v3 = v(1, JAN), v(2, utc(2026, 3, 1)), v(3, utc(2026, 6, 1), utc(2026, 9, 1))
    validate_new_version([], v1)
    validate_new_version([v1], v2)
    validate_new_version([v2, v1], v3)  # history order does not matter
    validate_new_version([v1, v2, v3], v(4, utc(2027, 1, 1)))  # after a gap


def test_first_version_must_be_one() -> None:
    assert version_problems([], v(2, JAN)) == [("version", "the first version of a contract must be 1, got 2")]


def test_versions_are_immutable() -> None:
    v1 = v(1, JAN)
    problems = version_problems([v1], v(1, utc(2026, 2, 1)))
    assert ("version", "version 1 already exists and versions are immutable: propose version 2") in problems
    # Even re-proposing identical content is refused; the service dedupes by fingerprint.
    assert version_problems([v1], v1)[0][0] == "version"


def test_versions_are_consecutive() -> None:
    problems = version_problems([v(1, JAN)], v(3, utc(2026, 2, 1)))
    assert problems == [("version", "versions are consecutive: expected 2, got 3")]


def test_new_version_keeps_parties_and_currency() -> None:
    other_pair = v(2, utc(2026, 2, 1), parties=("alpha", "gamma"), funding=())
    assert version_problems([v(1, JAN)], other_pair)[0][0] == "parties"
    other_currency = v(2, utc(2026, 2, 1), settlement_currency="USD")
    (problem,) = version_problems([v(1, JAN)], other_currency)
    assert problem == (
        "settlement_currency",
        "cannot change from CNY to USD within a contract; start a new contract",
    )
    other_contract = v(2, utc(2026, 2, 1), contract_id="ctr-2")
    assert version_problems([v(1, JAN)], other_contract)[0][0] == "contract_id"


@pytest.mark.parametrize("start", [JAN, JAN - timedelta(days=1)], ids=["same-instant", "earlier"])
def test_overlapping_or_out_of_order_versions_are_refused(start: datetime) -> None:
    (problem,) = version_problems([v(1, JAN)], v(2, start))
    assert problem[0] == "effective_from"
    assert "must be after version 1's effective_from (2026-01-01T00:00:00+00:00)" in problem[1]


def test_retroactive_versions_can_be_refused() -> None:
    now = utc(2026, 4, 1)
    validate_new_version([v(1, JAN)], v(2, now), not_before=now)
    (problem,) = version_problems([v(1, JAN)], v(2, utc(2026, 3, 1)), not_before=now)
    assert problem[0] == "effective_from"
    assert "cannot take effect retroactively" in problem[1]


def test_invalid_new_terms_raise_invalid_terms() -> None:
    with pytest.raises(InvalidTerms) as info:
        validate_new_version([], v(1, JAN, settlement_currency="XYZ"))
    assert type(info.value) is InvalidTerms


def test_broken_history_is_reported() -> None:
    with pytest.raises(InvalidVersion, match=r"not numbered 1\.\.2"):
        validate_new_version([v(1, JAN), v(3, utc(2026, 2, 1))], v(3, utc(2026, 3, 1)))


# --- version in force --------------------------------------------------------------------------------

V1 = v(1, JAN)
V2 = v(2, utc(2026, 3, 1))
V3 = v(3, utc(2026, 6, 1), utc(2026, 9, 1))
HISTORY = [V1, V2, V3]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (JAN, 1),
        (utc(2026, 2, 28, 23, 59, 59) + timedelta(microseconds=999_999), 1),
        (utc(2026, 3, 1), 2),
        (utc(2026, 5, 31, 12), 2),
        (utc(2026, 6, 1), 3),
        (utc(2026, 8, 31, 23, 59, 59), 3),
    ],
)
def test_version_in_force_follows_supersession(at: datetime, expected: int) -> None:
    assert version_in_force(HISTORY, at).version == expected
    shuffled = HISTORY[:]
    random.Random(expected).shuffle(shuffled)
    assert version_in_force(shuffled, at).version == expected


def test_nothing_in_force_before_the_first_version() -> None:
    with pytest.raises(NoContractInForce, match="the first signed version starts at 2026-01-01T00:00:00"):
        version_in_force(HISTORY, JAN - timedelta(microseconds=1))


def test_nothing_in_force_after_the_last_version_ends() -> None:
    with pytest.raises(NoContractInForce, match="version 3 ended at 2026-09-01") as info:
        version_in_force(HISTORY, utc(2026, 9, 1))
    assert info.value.at == utc(2026, 9, 1)
    assert isinstance(info.value, LookupError)


def test_a_gap_between_versions_is_a_gap_in_the_contract() -> None:
    v1 = v(1, JAN, utc(2026, 2, 1))
    v2 = v(2, utc(2026, 3, 1))
    assert version_in_force([v1, v2], utc(2026, 1, 31)).version == 1
    with pytest.raises(NoContractInForce, match="version 1 ended"):
        version_in_force([v1, v2], utc(2026, 2, 15))
    assert version_in_force([v1, v2], utc(2026, 3, 1)).version == 2


def test_a_later_version_cuts_an_earlier_end_date_short() -> None:
    v1 = v(1, JAN, utc(2026, 12, 31))
    v2 = v(2, utc(2026, 3, 1), utc(2026, 4, 1))
    assert version_in_force([v1, v2], utc(2026, 3, 15)).version == 2
    # v2 superseded v1 and then ended: v1 does not come back.
    with pytest.raises(NoContractInForce):
        version_in_force([v1, v2], utc(2026, 5, 1))


def test_a_rejected_version_governs_nothing_and_its_predecessor_does_not_come_back() -> None:
    assert version_in_force(HISTORY, utc(2026, 2, 1), rejected={2}).version == 1
    with pytest.raises(VersionRejected, match="version 2 was rejected by the alliance") as info:
        version_in_force(HISTORY, utc(2026, 4, 1), rejected={2})
    assert info.value.version == 2
    assert isinstance(info.value, NoContractInForce)
    assert version_in_force(HISTORY, utc(2026, 7, 1), rejected={2}).version == 3


def test_version_in_force_input_errors() -> None:
    with pytest.raises(NoContractInForce, match="no signed version"):
        version_in_force([], JAN)
    with pytest.raises(ValueError, match="timezone-aware"):
        version_in_force(HISTORY, datetime(2026, 3, 1))  # naive on purpose
    with pytest.raises(ValueError, match="different contracts"):
        version_in_force([V1, v(2, utc(2026, 3, 1), contract_id="ctr-2")], utc(2026, 4, 1))


def test_a_rejected_version_carries_the_alliances_reason() -> None:
    rejected = {2: "commission above the alliance's ceiling"}
    assert version_in_force(HISTORY, utc(2026, 2, 1), rejected=rejected).version == 1
    with pytest.raises(VersionRejected, match="version 2 was rejected by the alliance: commission above") as info:
        version_in_force(HISTORY, utc(2026, 3, 15), rejected=rejected)
    assert (info.value.version, info.value.reason) == (2, rejected[2])
    assert isinstance(info.value, NoContractInForce)
    # A rejected version still ends its predecessor's period, and a later one takes over from it.
    assert version_in_force(HISTORY, utc(2026, 6, 1), rejected=rejected).version == 3
    assert version_in_force(HISTORY, utc(2026, 3, 15), rejected={}).version == 2
