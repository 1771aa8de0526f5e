"""privacy.blind: RFC 9380 vectors, blinding, point validation and the multi-process path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privacy import blind as blind_module
from privacy.blind import (
    DST_PREFIX,
    POINT_SIZE,
    BlindingError,
    InvalidAllianceIdError,
    InvalidPointError,
    InvalidScalarError,
    LowOrderPointError,
    NonCanonicalPointError,
    RecordLengthError,
    TwistPointError,
    alliance_dst,
    blind,
    blind_batch,
    blind_batch_parallel,
    expand_message_xmd,
    hash_and_blind_batch,
    hash_and_blind_batch_parallel,
    hash_to_field,
    hash_to_point,
    hash_to_point_batch,
    hash_to_u_coordinate,
    map_to_curve_elligator2,
    new_process_pool,
    validate_points,
)
from privacy.keys import clamp_scalar

VECTORS = Path(__file__).parent / "vectors"
P = 2**255 - 19
A = 486662
ALLIANCE = b"alliance-test"
SCALAR_A = clamp_scalar(bytes(range(32)))
SCALAR_B = clamp_scalar(bytes(range(100, 132)))
LOW_ORDER = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    P - 1,
]
TWIST_U = 2  # u^3 + A*u^2 + u is a non-square for u = 2


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


XMD = _load("rfc9380_expand_message_xmd_SHA-512.json")
ELL2 = _load("rfc9380_curve25519_XMD_SHA-512_ELL2_NU_.json")
ELL2_DST = ELL2["dst"].encode()


def _u_bytes(u: int) -> bytes:
    return u.to_bytes(POINT_SIZE, "little")


def _x_double(x: int) -> int:
    """x-only doubling on Curve25519 (affine), to check the RFC's P = clear_cofactor(Q) = 8*Q."""
    numerator = (x * x - 1) ** 2 % P
    denominator = 4 * x * (x * x + A * x + 1) % P
    return numerator * pow(denominator, -1, P) % P


def _ids(n: int, tag: str = "x") -> list[bytes]:
    return [f"custom:{tag}-{i}".encode() for i in range(n)]


# --- RFC 9380 known answers -------------------------------------------------------------------------


@pytest.mark.parametrize("vector", XMD["vectors"], ids=lambda v: f"{v['msg'][:8]!r}-{v['len_in_bytes']}")
def test_expand_message_xmd_rfc9380_k3(vector: dict[str, Any]) -> None:
    out = expand_message_xmd(vector["msg"].encode(), XMD["dst"].encode(), vector["len_in_bytes"])
    assert out.hex() == vector["uniform_bytes"]


@pytest.mark.parametrize("vector", ELL2["vectors"], ids=lambda v: repr(v["msg"][:8]))
def test_hash_to_field_rfc9380_j42(vector: dict[str, Any]) -> None:
    assert hash_to_field(vector["msg"].encode(), ELL2_DST) == int(vector["u[0]"], 16)


@pytest.mark.parametrize("vector", ELL2["vectors"], ids=lambda v: repr(v["msg"][:8]))
def test_map_to_curve_rfc9380_j42(vector: dict[str, Any]) -> None:
    q_x = int(vector["Q.x"], 16)
    assert map_to_curve_elligator2(int(vector["u[0]"], 16)) == q_x
    assert hash_to_u_coordinate(vector["msg"].encode(), ELL2_DST) == _u_bytes(q_x)
    # Our point is Q; the RFC's encode_to_curve output is P = 8*Q (we rely on X25519's clamping instead).
    assert _x_double(_x_double(_x_double(q_x))) == int(vector["P.x"], 16)


def test_bulk_path_matches_rfc9380_j42() -> None:
    msgs = [v["msg"].encode() for v in ELL2["vectors"]]
    dst_prime = ELL2_DST + bytes((len(ELL2_DST),))
    expected = [_u_bytes(int(v["Q.x"], 16)) for v in ELL2["vectors"]]
    assert blind_module._hash_chunk(dst_prime, msgs) == expected


def test_expand_message_xmd_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError):
        expand_message_xmd(b"", b"x" * 256, 32)
    with pytest.raises(ValueError):
        expand_message_xmd(b"", b"dst", 0)
    with pytest.raises(ValueError):
        expand_message_xmd(b"", b"dst", 255 * 64 + 1)
    with pytest.raises(TypeError):
        expand_message_xmd("abc", b"dst", 32)  # type: ignore[arg-type]


# --- hash_to_point ------------------------------------------------------------------------------------


def test_alliance_dst_is_prefix_plus_id() -> None:
    assert alliance_dst(ALLIANCE) == DST_PREFIX + ALLIANCE
    assert hash_to_point(ALLIANCE, b"phone:+8613800138000") == hash_to_u_coordinate(
        b"phone:+8613800138000", DST_PREFIX + ALLIANCE
    )


def test_alliance_id_separates_domains() -> None:
    identifier = b"phone:+8613800138000"
    assert hash_to_point(b"alliance-1", identifier) != hash_to_point(b"alliance-2", identifier)


@pytest.mark.parametrize("alliance_id", [b"", b"a" * (255 - len(DST_PREFIX) + 1)])
def test_bad_alliance_id(alliance_id: bytes) -> None:
    with pytest.raises(InvalidAllianceIdError):
        hash_to_point(alliance_id, b"email:a@b.cn")


def test_longest_alliance_id_fits() -> None:
    assert len(hash_to_point(b"a" * (255 - len(DST_PREFIX)), b"email:a@b.cn")) == POINT_SIZE


def test_hash_to_point_type_errors() -> None:
    with pytest.raises(TypeError):
        hash_to_point("alliance", b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hash_to_point(ALLIANCE, "email:a@b.cn")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hash_to_point_batch(ALLIANCE, [b"ok", "not bytes"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        map_to_curve_elligator2(1.5)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=40))
def test_batch_equals_single_and_points_are_valid(msgs: list[bytes]) -> None:
    batch = hash_to_point_batch(ALLIANCE, msgs)
    assert batch == b"".join(hash_to_point(ALLIANCE, m) for m in msgs)
    validate_points(batch)  # Elligator 2 output is always on the curve


def test_batch_spans_several_chunks() -> None:
    msgs = _ids(blind_module._CHUNK * 2 + 3)
    batch = hash_to_point_batch(ALLIANCE, msgs)
    for index in (0, blind_module._CHUNK - 1, blind_module._CHUNK, len(msgs) - 1):
        assert batch[index * 32 : index * 32 + 32] == hash_to_point(ALLIANCE, msgs[index])


def test_empty_batches() -> None:
    assert hash_to_point_batch(ALLIANCE, []) == b""
    assert hash_and_blind_batch(ALLIANCE, SCALAR_A, []) == b""
    assert blind_batch(SCALAR_A, b"") == b""
    validate_points(b"")


# --- blinding --------------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32), st.binary(max_size=64))
def test_blinding_commutes(raw_a: bytes, raw_b: bytes, identifier: bytes) -> None:
    point = hash_to_point(ALLIANCE, identifier)
    assert blind(raw_b, blind(raw_a, point)) == blind(raw_a, blind(raw_b, point))


def test_unclamped_scalar_acts_like_clamped() -> None:
    point = hash_to_point(ALLIANCE, b"custom:1")
    raw = bytes(range(1, 33))
    assert blind(raw, point) == blind(clamp_scalar(raw), point)


def test_hash_and_blind_equals_composition() -> None:
    msgs = _ids(10)
    assert hash_and_blind_batch(ALLIANCE, SCALAR_A, msgs) == blind_batch(SCALAR_A, hash_to_point_batch(ALLIANCE, msgs))


def test_blinded_points_validate() -> None:
    blinded = hash_and_blind_batch(ALLIANCE, SCALAR_A, _ids(50))
    validate_points(blinded)
    validate_points(blind_batch(SCALAR_B, blinded))


@pytest.mark.parametrize("scalar", [b"", bytes(31), bytes(33)])
def test_wrong_scalar_length(scalar: bytes) -> None:
    point = hash_to_point(ALLIANCE, b"x")
    with pytest.raises(InvalidScalarError) as excinfo:
        blind(scalar, point)
    assert isinstance(excinfo.value, ValueError)
    with pytest.raises(InvalidScalarError):
        blind_batch(scalar, point)
    with pytest.raises(InvalidScalarError):
        hash_and_blind_batch(ALLIANCE, scalar, [b"x"])


@pytest.mark.parametrize("point", [b"", bytes(31), bytes(33), bytes(64)])
def test_wrong_point_length(point: bytes) -> None:
    with pytest.raises(RecordLengthError) as excinfo:
        blind(SCALAR_A, point)
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize("size", [1, 31, 33, 65])
def test_wrong_buffer_length(size: int) -> None:
    with pytest.raises(RecordLengthError):
        blind_batch(SCALAR_A, bytes(size))
    with pytest.raises(RecordLengthError):
        validate_points(bytes(size))


def test_wrong_types() -> None:
    point = hash_to_point(ALLIANCE, b"x")
    with pytest.raises(TypeError):
        blind("a" * 32, point)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        blind(SCALAR_A, point.hex())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        blind_batch(SCALAR_A, [point])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        validate_points(point.hex())  # type: ignore[arg-type]


def test_bytes_like_inputs_accepted() -> None:
    point = hash_to_point(ALLIANCE, b"x")
    expected = blind(SCALAR_A, point)
    assert blind(bytearray(SCALAR_A), memoryview(point)) == expected
    assert blind_batch(SCALAR_A, bytearray(point * 2)) == expected * 2


@pytest.mark.parametrize("u", LOW_ORDER)
def test_low_order_point_rejected_by_blind(u: int) -> None:
    with pytest.raises(LowOrderPointError) as excinfo:
        blind(SCALAR_A, _u_bytes(u))
    assert isinstance(excinfo.value, InvalidPointError)
    assert isinstance(excinfo.value, ValueError)


def test_low_order_point_in_batch_reports_index() -> None:
    buf = hash_to_point_batch(ALLIANCE, _ids(5))
    buf = buf[: 3 * 32] + _u_bytes(LOW_ORDER[2]) + buf[3 * 32 :]
    with pytest.raises(LowOrderPointError) as excinfo:
        blind_batch(SCALAR_A, buf)
    assert excinfo.value.index == 3


# --- validate_points -------------------------------------------------------------------------------------


@pytest.mark.parametrize("u", LOW_ORDER)
def test_validate_rejects_low_order(u: int) -> None:
    good = hash_to_point_batch(ALLIANCE, _ids(2))
    with pytest.raises(LowOrderPointError) as excinfo:
        validate_points(good + _u_bytes(u))
    assert excinfo.value.index == 2


@pytest.mark.parametrize("u", [P, P + 1, P + 9, 2**255 - 1, 2**256 - 1, 9 + 2**255])
def test_validate_rejects_non_canonical(u: int) -> None:
    with pytest.raises(NonCanonicalPointError) as excinfo:
        validate_points(u.to_bytes(32, "little"))
    assert excinfo.value.index == 0
    assert isinstance(excinfo.value, BlindingError)


def test_validate_rejects_twist_point() -> None:
    good = hash_to_point_batch(ALLIANCE, _ids(1))
    with pytest.raises(TwistPointError) as excinfo:
        validate_points(good + _u_bytes(TWIST_U))
    assert excinfo.value.index == 1


def test_validate_accepts_base_point() -> None:
    validate_points(_u_bytes(9))


def test_twist_points_exist_among_raw_hashes() -> None:
    # Why Elligator: a plain 32-byte hash used as u lands on the twist about half the time.
    raw = b"".join(
        (int.from_bytes(expand_message_xmd(bytes([i]), b"t", 32), "little") % P).to_bytes(32, "little")
        for i in range(64)
    )
    twist = 0
    for i in range(64):
        try:
            validate_points(raw[i * 32 : i * 32 + 32])
        except TwistPointError:
            twist += 1
    assert 10 < twist < 54


# --- multi-process path ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Any:
    with new_process_pool(2) as executor:
        yield executor


def test_parallel_equals_single_process(pool: Any) -> None:
    msgs = _ids(61, "par")
    single = hash_and_blind_batch(ALLIANCE, SCALAR_A, msgs)
    assert hash_and_blind_batch_parallel(ALLIANCE, SCALAR_A, msgs, chunk_records=7, executor=pool) == single
    assert blind_batch_parallel(SCALAR_B, single, chunk_records=5, executor=pool) == blind_batch(SCALAR_B, single)


def test_parallel_creates_its_own_pool() -> None:
    msgs = _ids(20, "own")
    expected = hash_and_blind_batch(ALLIANCE, SCALAR_A, msgs)
    assert hash_and_blind_batch_parallel(ALLIANCE, SCALAR_A, msgs, workers=2, chunk_records=6) == expected


def test_parallel_small_input_runs_in_process() -> None:
    msgs = _ids(3)
    expected = hash_and_blind_batch(ALLIANCE, SCALAR_A, msgs)
    assert hash_and_blind_batch_parallel(ALLIANCE, SCALAR_A, msgs) == expected
    assert blind_batch_parallel(SCALAR_A, hash_to_point_batch(ALLIANCE, msgs), workers=1) == expected


def test_parallel_error_keeps_absolute_index(pool: Any) -> None:
    buf = bytearray(hash_to_point_batch(ALLIANCE, _ids(30)))
    buf[23 * 32 : 24 * 32] = _u_bytes(LOW_ORDER[3])
    with pytest.raises(LowOrderPointError) as excinfo:
        blind_batch_parallel(SCALAR_A, bytes(buf), chunk_records=4, executor=pool)
    assert excinfo.value.index == 23


def test_parallel_bad_arguments() -> None:
    with pytest.raises(ValueError):
        hash_and_blind_batch_parallel(ALLIANCE, SCALAR_A, _ids(3), workers=0)
    with pytest.raises(ValueError):
        blind_batch_parallel(SCALAR_A, bytes(64), chunk_records=0)


def test_parallel_wrong_length() -> None:
    with pytest.raises(RecordLengthError):
        blind_batch_parallel(SCALAR_A, bytes(33))


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=20), min_size=0, max_size=30), st.integers(min_value=1, max_value=9))
def test_parallel_property(pool: Any, msgs: list[bytes], chunk: int) -> None:
    expected = hash_and_blind_batch(ALLIANCE, SCALAR_B, msgs)
    got = hash_and_blind_batch_parallel(ALLIANCE, SCALAR_B, msgs, chunk_records=chunk, executor=pool)
    assert got == expected
