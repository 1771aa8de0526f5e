"""privacy.psi: the full protocol as properties, our known answers, messages and protocol rules."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.blind import RecordLengthError, alliance_dst, blind, blind_batch, hash_and_blind_batch, hash_to_point
from privacy.keys import clamp_scalar
from privacy.normalize import IdType
from privacy.psi import (
    TRUNCATED_SIZE,
    CardinalityPolicy,
    CardinalityResult,
    DeclaredCountMismatch,
    InsufficientChange,
    MatchResult,
    MatchTask,
    MembershipPolicy,
    MembershipReport,
    MembershipResult,
    ReblindAllowance,
    ReblindBudgetExceeded,
    ReportSignatureError,
    SegmentManifest,
    SegmentTooSmall,
    check_declared_count,
    check_minimum_change,
    check_segment_size,
    count_common,
    format_disclosure_policy,
    members_changed,
    membership,
    parse_disclosure_policy,
    record_count,
    require_minimum_change,
    shuffle_records,
    sign_membership_report,
    truncate,
    verify_membership_report,
)

KNOWN_ANSWERS = json.loads((Path(__file__).parent / "vectors" / "psi_known_answers.json").read_text("utf-8"))
ALLIANCE = b"alliance-psi-test"


def _record(i: int) -> bytes:
    return i.to_bytes(32, "little")


# --- known answers -------------------------------------------------------------------------------------


def test_known_answer_header() -> None:
    assert alliance_dst(KNOWN_ANSWERS["alliance_id"].encode()).decode() == KNOWN_ANSWERS["dst"]
    for name in ("scalar_a", "scalar_b"):
        scalar = bytes.fromhex(KNOWN_ANSWERS[name])
        assert clamp_scalar(scalar) == scalar


@pytest.mark.parametrize("item", KNOWN_ANSWERS["items"], ids=lambda item: item["canonical"])
def test_known_answers(item: dict[str, Any]) -> None:
    alliance = KNOWN_ANSWERS["alliance_id"].encode()
    a = bytes.fromhex(KNOWN_ANSWERS["scalar_a"])
    b = bytes.fromhex(KNOWN_ANSWERS["scalar_b"])
    point = hash_to_point(alliance, item["canonical"].encode())
    assert point.hex() == item["point"]
    assert blind(a, point).hex() == item["blinded_a"]
    assert blind(b, point).hex() == item["blinded_b"]
    assert blind(b, bytes.fromhex(item["blinded_a"])).hex() == item["doubly_blinded"]
    assert blind(a, bytes.fromhex(item["blinded_b"])).hex() == item["doubly_blinded"]
    assert truncate(bytes.fromhex(item["doubly_blinded"]))[0].hex() == item["truncated"]


# --- the whole protocol ------------------------------------------------------------------------------------

_POOL = [f"phone:+86138{i:08d}".encode() for i in range(60)]
_SETS = st.sets(st.sampled_from(_POOL), max_size=25)
_SCALARS = st.binary(min_size=32, max_size=32).map(clamp_scalar)


@settings(max_examples=15, deadline=None)
@given(_SETS, _SETS, _SCALARS, _SCALARS, st.integers(0, 2**32))
def test_protocol_cardinality_equals_intersection(
    set_a: set[bytes], set_b: set[bytes], a: bytes, b: bytes, seed: int
) -> None:
    rng = random.Random(seed)
    rows_a, rows_b = sorted(set_a), sorted(set_b)
    published_a = shuffle_records(hash_and_blind_batch(ALLIANCE, a, rows_a), rng)
    published_b = shuffle_records(hash_and_blind_batch(ALLIANCE, b, rows_b), rng)
    # cardinality: each agent re-blinds the other's segment and returns it shuffled.
    returned_by_b = shuffle_records(blind_batch(b, published_a), rng)
    returned_by_a = shuffle_records(blind_batch(a, published_b), rng)
    assert count_common(returned_by_b, returned_by_a) == len(set_a & set_b)


@settings(max_examples=15, deadline=None)
@given(_SETS, _SETS, _SCALARS, _SCALARS)
def test_protocol_membership_equals_intersection(set_a: set[bytes], set_b: set[bytes], a: bytes, b: bytes) -> None:
    rows_a, rows_b = sorted(set_a), sorted(set_b)
    e_a = hash_and_blind_batch(ALLIANCE, a, rows_a)  # A keeps the row order locally
    e_b = shuffle_records(hash_and_blind_batch(ALLIANCE, b, rows_b))
    own_in_order = blind_batch(b, e_a)  # B re-blinds E_A in order (reblind_ordered)
    theirs = blind_batch(a, e_b)  # A re-blinds E_B itself and never uploads it
    indices = membership(own_in_order, theirs)
    assert indices == sorted(indices)
    assert {rows_a[i] for i in indices} == set_a & set_b


def test_different_alliances_do_not_match() -> None:
    a, b = clamp_scalar(bytes(32)), clamp_scalar(bytes([1]) * 32)
    rows = _POOL[:10]
    e_a = hash_and_blind_batch(b"alliance-1", a, rows)
    e_b = hash_and_blind_batch(b"alliance-2", b, rows)
    assert count_common(blind_batch(b, e_a), blind_batch(a, e_b)) == 0


# --- computations ---------------------------------------------------------------------------------------------


def test_truncate() -> None:
    buf = _record(1) + _record(2)
    assert truncate(buf) == [_record(1)[:TRUNCATED_SIZE], _record(2)[:TRUNCATED_SIZE]]
    assert truncate(b"") == []


def test_count_common_counts_distinct_values() -> None:
    assert count_common(_record(1) * 3 + _record(2), _record(1) + _record(3)) == 1
    assert count_common(b"", _record(1)) == 0


def test_comparison_uses_first_16_bytes_only() -> None:
    left = bytes(16) + b"\x01" * 16
    right = bytes(16) + b"\x02" * 16
    assert count_common(left, right) == 1


def test_membership_indices() -> None:
    own = _record(5) + _record(6) + _record(7) + _record(5)
    assert membership(own, _record(7) + _record(5)) == [0, 2, 3]


@pytest.mark.parametrize("func", [count_common, membership, members_changed])
def test_record_length_errors(func: Any) -> None:
    with pytest.raises(RecordLengthError):
        func(bytes(33), _record(1))
    with pytest.raises(RecordLengthError):
        func(_record(1), bytes(31))
    with pytest.raises(TypeError):
        func("x" * 32, _record(1))


def test_record_count() -> None:
    assert record_count(bytes(96)) == 3
    assert record_count(memoryview(bytes(64))) == 2
    with pytest.raises(RecordLengthError):
        record_count(bytes(5))


def test_shuffle_is_a_permutation() -> None:
    buf = b"".join(_record(i) for i in range(200))
    shuffled = shuffle_records(buf)
    assert shuffled != buf  # 1/200! chance of a false failure
    assert sorted(truncate(shuffled)) == sorted(truncate(buf))
    assert shuffle_records(buf, random.Random(7)) == shuffle_records(buf, random.Random(7))
    assert shuffle_records(b"") == b""
    with pytest.raises(RecordLengthError):
        shuffle_records(bytes(40))


# --- messages --------------------------------------------------------------------------------------------------


def _manifest() -> SegmentManifest:
    return SegmentManifest(
        segment_id="seg-1",
        alliance_id="alliance-1",
        brand_id="acme",
        id_type=IdType.PHONE,
        size=12000,
        key_epoch="2026-11",
        name="loyal",
        tags=("vip",),
    )


def test_manifest_round_trip_and_frozen() -> None:
    manifest = _manifest()
    encoded = msgspec.json.encode(manifest)
    assert msgspec.json.decode(encoded, type=SegmentManifest) == manifest
    assert b'"id_type":"phone"' in encoded
    with pytest.raises(AttributeError):
        manifest.size = 1  # type: ignore[misc]


@pytest.mark.parametrize(("field", "value"), [("key_epoch", "2026-13"), ("size", -1), ("id_type", "fax")])
def test_manifest_validation(field: str, value: object) -> None:
    raw = msgspec.to_builtins(_manifest())
    raw[field] = value
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, SegmentManifest)


def test_match_task_round_trip() -> None:
    task = MatchTask(
        task_id="t-1",
        match_id="m-1",
        kind="reblind_ordered",
        counterparty_brand="globex",
        counterparty_segment_id="seg-9",
        declared_item_count=5000,
        key_epoch="2026-11",
        policy=MembershipPolicy("acme"),
    )
    encoded = msgspec.json.encode(task)
    assert b'"policy":{"type":"membership","to_brand":"acme"}' in encoded
    assert msgspec.json.decode(encoded, type=MatchTask) == task
    bad = encoded.replace(b"reblind_ordered", b"reblind_anything")
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(bad, type=MatchTask)


def test_match_results_union() -> None:
    key = Ed25519PrivateKey.generate()
    report = MembershipReport("m-2", "acme", "globex", 321, "2026-11")
    results: list[MatchResult] = [
        CardinalityResult("m-1", None, suppressed=True, noised=True, rounded_to=10),
        MembershipResult("m-2", "acme", sign_membership_report(report, key)),
    ]
    encoded = msgspec.json.encode(results)
    assert msgspec.json.decode(encoded, type=list[MatchResult]) == results


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("cardinality", CardinalityPolicy()),
        ("membership_to=acme", MembershipPolicy("acme")),
        ("membership_to:acme", MembershipPolicy("acme")),
    ],
)
def test_disclosure_policy_parsing(text: str, policy: object) -> None:
    assert parse_disclosure_policy(text) == policy
    assert parse_disclosure_policy(format_disclosure_policy(parse_disclosure_policy(text))) == policy


@pytest.mark.parametrize("text", ["", "membership", "membership_to=", "cardinality ", "count"])
def test_bad_disclosure_policy(text: str) -> None:
    with pytest.raises(ValueError):
        parse_disclosure_policy(text)


def test_membership_report_signature() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    report = MembershipReport("m-1", "acme", "globex", 1234, "2026-11")
    signed = sign_membership_report(report, key)
    assert verify_membership_report(signed, public) == report
    forged = msgspec.structs.replace(signed, report=msgspec.structs.replace(report, overlap_count=1235))
    with pytest.raises(ReportSignatureError):
        verify_membership_report(forged, public)
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(ReportSignatureError):
        verify_membership_report(signed, other)


# --- protocol rules ---------------------------------------------------------------------------------------------


def test_segment_size_rule() -> None:
    check_segment_size(1000)
    with pytest.raises(SegmentTooSmall):
        check_segment_size(999)
    check_segment_size(5, minimum=5)


def test_declared_count_rule() -> None:
    check_declared_count(bytes(64), 2)
    with pytest.raises(DeclaredCountMismatch):
        check_declared_count(bytes(96), 2)


def test_minimum_change_rule() -> None:
    before = b"".join(_record(i) for i in range(100))
    after = b"".join(_record(i) for i in range(30, 150))  # 30 left, 50 joined
    assert members_changed(before, after) == 80
    check_minimum_change(before, after)
    with pytest.raises(InsufficientChange):
        check_minimum_change(before, before)
    with pytest.raises(InsufficientChange):
        check_minimum_change(before, after, minimum=81)
    # The rule alone, for a change counted elsewhere (the exchange counts it in the database).
    require_minimum_change(80, 80)
    with pytest.raises(InsufficientChange, match="changed by 79 members; at least 80"):
        require_minimum_change(79, 80)


def test_reblind_allowance() -> None:
    allowance = ReblindAllowance("globex", "2026-11", limit=10)
    allowance.consume(6)
    with pytest.raises(ReblindBudgetExceeded):
        allowance.consume(5)
    assert allowance.used == 6
    allowance.consume(4)
    assert allowance.remaining == 0
    with pytest.raises(ValueError):
        allowance.consume(-1)
