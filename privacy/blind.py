"""Hash-to-point and X25519 blinding for the alliance's ECDH-PSI (DESIGN.md §3).

Every identifier is mapped to a Curve25519 point with RFC 9380 ``encode_to_curve`` for the suite
``curve25519_XMD:SHA-512_ELL2_NU_`` (expand_message_xmd with SHA-512, one field element of L = 48
bytes, Elligator 2 with Z = 2), domain-separated per alliance, and then blinded by X25519 with a
brand's secret scalar. Points travel as 32-byte little-endian u-coordinates (RFC 7748 encoding);
bulk data is a ``bytes`` buffer of concatenated 32-byte records.

Why no cofactor clearing: RFC 9380 finishes ``encode_to_curve`` with ``clear_cofactor`` (P = 8*Q).
We stop at Q. Every X25519 scalar is clamped (RFC 7748 §5: the three low bits are cleared), so it is
a multiple of 8 and the first blinding ``a*Q = (a/8)*(8*Q)`` lands in the prime-order subgroup anyway:
multiplying by 8 again first would only cost an extra point operation and change no comparison.
Elligator 2 (rather than a plain hash used as a u-coordinate) guarantees Q is on the curve, never on
the twist, so no curve/twist bit survives blinding (see docs/threat-model.md).

Everything here is pure: no I/O, no global state beyond constants. Field arithmetic uses gmpy2 because
a pure-Python modular exponentiation costs about three X25519 operations; the map needs no square
root, only one inversion (batched with Montgomery's trick in the bulk paths) and one Legendre symbol.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from itertools import repeat
from typing import Any, Final, cast

import gmpy2
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

__all__ = [
    "DST_PREFIX",
    "POINT_SIZE",
    "RFC9380_SUITE",
    "SCALAR_SIZE",
    "BlindingError",
    "BytesLike",
    "InvalidAllianceIdError",
    "InvalidPointError",
    "InvalidScalarError",
    "LowOrderPointError",
    "NonCanonicalPointError",
    "RecordLengthError",
    "TwistPointError",
    "alliance_dst",
    "blind",
    "blind_batch",
    "blind_batch_parallel",
    "default_workers",
    "expand_message_xmd",
    "hash_and_blind_batch",
    "hash_and_blind_batch_parallel",
    "hash_to_field",
    "hash_to_point",
    "hash_to_point_batch",
    "hash_to_u_coordinate",
    "map_to_curve_elligator2",
    "new_process_pool",
    "validate_points",
]

POINT_SIZE: Final = 32
SCALAR_SIZE: Final = 32
RFC9380_SUITE: Final = b"curve25519_XMD:SHA-512_ELL2_NU_"
# RFC 9380 §3.1 recommends "<application>-V<xx>-CS<yy>-with-<suite ID>"; the alliance id is appended so
# that the same identifier maps to unrelated points in different alliances. DST_prime carries the DST
# length, so the concatenation is unambiguous.
DST_PREFIX: Final = b"BAX-PSI-V01-CS01-with-" + RFC9380_SUITE + b":"
_MAX_DST: Final = 255

# Curve25519 (RFC 7748 §4.1): v^2 = u^3 + A*u^2 + u over GF(p), p = 2^255 - 19.
_P_INT: Final = 2**255 - 19
_P: Final[Any] = gmpy2.mpz(_P_INT)
_A: Final[Any] = gmpy2.mpz(486662)
_NEG_A: Final[Any] = _P - _A
_ONE: Final[Any] = gmpy2.mpz(1)
_Z: Final[Any] = gmpy2.mpz(2)  # RFC 9380 §4.1 / Appendix H.3: Z = 2 for curve25519
# hash_to_field: L = ceil((ceil(log2(p)) + k) / 8) = ceil((255 + 128) / 8) = 48 bytes per element.
_L: Final = 48
_SHA512_BLOCK: Final = 128
_SHA512_OUT: Final = 64
# Curve25519 u-coordinates of small order, canonical encodings only (values >= p are rejected as
# non-canonical first). Same list as libsodium's blacklist: 0 (order 1 and 2), 1 (order 4), the two
# points of order 8, and p - 1 (a point of order 4 on the twist).
_LOW_ORDER_U: Final = frozenset(
    {
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _P_INT - 1,
    }
)

# Anything with the buffer protocol that the API accepts where it says "bytes".
BytesLike = bytes | bytearray | memoryview

_mpz_from_bytes: Callable[[bytes, str], Any] = gmpy2.mpz.from_bytes
_legendre: Callable[[Any, Any], int] = gmpy2.legendre
_invert: Callable[[Any, Any], Any] = gmpy2.invert


def _fast_sha512() -> Callable[..., Any]:
    """CPython's built-in SHA-512 type: the same function as hashlib's OpenSSL one, but with about
    90 ns less overhead per call on short inputs, which is several percent of the hashing cost."""
    for name in ("_sha2", "_sha512"):  # CPython >= 3.12, then 3.11
        try:
            module = __import__(name)
        except ImportError:
            continue
        sha512 = getattr(module, "sha512", None)
        if sha512 is not None and sha512(b"abc").digest() == hashlib.sha512(b"abc").digest():
            return cast("Callable[..., Any]", sha512)
    return hashlib.sha512  # pragma: no cover


_sha512: Final = _fast_sha512()


class BlindingError(ValueError):
    """Base class of every value error raised by this module."""


class RecordLengthError(BlindingError):
    """A point, scalar or buffer has a length that is not what the format requires."""


class InvalidScalarError(RecordLengthError):
    """A PSI scalar is not exactly 32 bytes."""


class InvalidAllianceIdError(BlindingError):
    """An alliance id is empty or too long to fit the RFC 9380 DST (at most 255 bytes in all)."""


class InvalidPointError(BlindingError):
    """A 32-byte record is not an acceptable Curve25519 point; ``index`` is its record number."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep ``index`` when the error crosses a process boundary (multi-process paths).
        return (type(self), (self.message, self.index))


class NonCanonicalPointError(InvalidPointError):
    """A u-coordinate is >= p: a second encoding of some point, usable to fingerprint uploads."""


class TwistPointError(InvalidPointError):
    """A u-coordinate lies on the quadratic twist; honest parties never produce one."""


class LowOrderPointError(InvalidPointError):
    """A point of small order: blinding it gives the all-zero value and would collide everything."""


# --- RFC 9380 building blocks -----------------------------------------------------------------------


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 §5.3.1 expand_message_xmd with SHA-512, exactly as specified.

    Raises ``ValueError`` for a DST over 255 bytes or an output length the RFC forbids.
    """
    _require_bytes("msg", msg)
    _require_bytes("dst", dst)
    if len(dst) > _MAX_DST:
        raise ValueError("DST longer than 255 bytes; RFC 9380 §5.3.3 requires hashing it first")
    ell = -(-len_in_bytes // _SHA512_OUT)
    if len_in_bytes < 1 or ell > 255 or len_in_bytes > 65535:
        raise ValueError(f"len_in_bytes out of range: {len_in_bytes}")
    dst_prime = bytes(dst) + bytes((len(dst),))
    b_0 = _sha512(bytes(_SHA512_BLOCK) + bytes(msg) + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    b_i = _sha512(b_0 + b"\x01" + dst_prime).digest()
    out = [b_i]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b_0, b_i, strict=True))
        b_i = _sha512(mixed + bytes((i,)) + dst_prime).digest()
        out.append(b_i)
    return b"".join(out)[:len_in_bytes]


def hash_to_field(msg: bytes, dst: bytes) -> int:
    """RFC 9380 §5.2 hash_to_field for GF(2^255 - 19), count = 1, L = 48 (the ``u[0]`` of the vectors)."""
    return int.from_bytes(expand_message_xmd(msg, dst, _L), "big") % _P_INT


def map_to_curve_elligator2(u: int) -> int:
    """RFC 9380 §6.7.1 Elligator 2 for curve25519 (Z = 2); returns only the u-coordinate of Q.

    The u-coordinate needs no square root: x1 = -A / (1 + Z*u^2); if g(x1) = x1^3 + A*x1^2 + x1 is a
    square (Legendre symbol, 0 counting as square like the RFC's is_square) the point is x1, otherwise
    it is x2 = -x1 - A, whose g(x2) = Z*u^2*g(x1) is then a square.
    """
    if not isinstance(u, int):
        raise TypeError("u must be an int")
    uu = gmpy2.mpz(u) % _P
    # 1 + 2*u^2 is never 0: that would need u^2 = -1/2, and -1/2 is a non-square mod p (-1 is a square
    # and 2 is not, as p = 5 mod 8). So the RFC's "if x1 == 0" branch is unreachable here.
    x1 = _NEG_A * _invert((_Z * uu * uu + 1) % _P, _P) % _P
    if _legendre(x1 * (x1 * (x1 + _A) + 1) % _P, _P) < 0:
        x1 = (_NEG_A - x1) % _P
    return int(x1)


def alliance_dst(alliance_id: bytes) -> bytes:
    """The RFC 9380 domain separation tag of an alliance: ``DST_PREFIX + alliance_id``."""
    _require_bytes("alliance_id", alliance_id)
    if not alliance_id:
        raise InvalidAllianceIdError("alliance id must not be empty")
    dst = DST_PREFIX + bytes(alliance_id)
    if len(dst) > _MAX_DST:
        raise InvalidAllianceIdError(
            f"alliance id too long: at most {_MAX_DST - len(DST_PREFIX)} bytes, got {len(alliance_id)}"
        )
    return dst


def hash_to_u_coordinate(msg: bytes, dst: bytes) -> bytes:
    """RFC 9380 encode_to_curve for curve25519_XMD:SHA-512_ELL2_NU_ *before* clear_cofactor.

    Returns Q's u-coordinate as 32 little-endian bytes. Exposed with an explicit DST so it can be
    checked against the RFC's own test vectors; protocol code calls :func:`hash_to_point`.
    """
    return map_to_curve_elligator2(hash_to_field(msg, dst)).to_bytes(POINT_SIZE, "little")


def hash_to_point(alliance_id: bytes, canonical: bytes) -> bytes:
    """P(x): the Curve25519 point (32-byte u-coordinate) of a canonical identifier in an alliance."""
    _require_bytes("canonical", canonical)
    return hash_to_u_coordinate(canonical, alliance_dst(alliance_id))


# --- bulk hashing -----------------------------------------------------------------------------------

# Items are mapped in chunks: long enough to amortise the one inversion of Montgomery's trick, short
# enough that the intermediate lists stay in cache.
_CHUNK: Final = 512


def _hash_chunk(dst_prime: bytes, msgs: Sequence[bytes]) -> list[bytes]:
    """Map a chunk of messages to u-coordinates: the agent's hot loop.

    Same results as :func:`hash_to_u_coordinate`, restructured for speed: the SHA-512 state after the
    all-zero first block (Z_pad) is computed once and copied; all inversions of 1 + 2u^2 share one
    ``invert`` (Montgomery's trick: three multiplications per item instead of an extended gcd); the
    Legendre symbol gets g(x1) unreduced and reduces it in C.
    """
    p = _P
    tail0 = _L.to_bytes(2, "big") + b"\x00" + dst_prime  # I2OSP(len_in_bytes, 2) || I2OSP(0, 1) || DST'
    tail1 = b"\x01" + dst_prime
    copy_zpad = _sha512(bytes(_SHA512_BLOCK)).copy
    sha512 = _sha512
    from_bytes = _mpz_from_bytes
    denominators: list[Any] = []
    prefixes: list[Any] = []
    add_denominator = denominators.append
    add_prefix = prefixes.append
    acc = _ONE
    for msg in msgs:
        h = copy_zpad()
        h.update(msg)
        h.update(tail0)
        # ell = 1: u is the first 48 bytes of b_1 = H(b_0 || I2OSP(1, 1) || DST'), reduced mod p below.
        u = from_bytes(sha512(h.digest() + tail1).digest()[:_L], "big")
        d = (2 * u * u + 1) % p
        add_denominator(d)
        add_prefix(acc)
        acc = acc * d % p
    # Walk backwards: inv holds -A / (d_0 * ... * d_i), so inv * prefix_i = x1_i = -A / d_i.
    inv = _invert(acc, p) * _NEG_A % p
    neg_a = _NEG_A
    a = _A
    legendre = _legendre
    out: list[bytes] = []
    add = out.append
    denominators.reverse()
    prefixes.reverse()
    for d, prefix in zip(denominators, prefixes, strict=True):
        x1 = inv * prefix % p
        inv = inv * d % p
        if legendre(x1 * (x1 * (x1 + a) + 1), p) < 0:
            x1 = neg_a - x1
        add(x1.to_bytes(POINT_SIZE, "little"))
    out.reverse()
    return out


def _check_canonicals(canonicals: Sequence[bytes]) -> None:
    for value in canonicals:
        if not isinstance(value, bytes):
            raise TypeError(f"canonical identifiers must be bytes, got {type(value).__name__}")


def hash_to_point_batch(alliance_id: bytes, canonicals: Sequence[bytes]) -> bytes:
    """``hash_to_point`` for many identifiers; returns the concatenated 32-byte points in input order."""
    dst = alliance_dst(alliance_id)
    _check_canonicals(canonicals)
    dst_prime = dst + bytes((len(dst),))
    return b"".join(
        b"".join(_hash_chunk(dst_prime, canonicals[i : i + _CHUNK])) for i in range(0, len(canonicals), _CHUNK)
    )


# --- blinding -----------------------------------------------------------------------------------------


def _private_key(scalar: BytesLike) -> X25519PrivateKey:
    _require_bytes("scalar", scalar)
    if len(scalar) != SCALAR_SIZE:
        raise InvalidScalarError(f"scalar must be {SCALAR_SIZE} bytes, got {len(scalar)}")
    return X25519PrivateKey.from_private_bytes(bytes(scalar))


def blind(scalar: BytesLike, point: BytesLike) -> bytes:
    """X25519(scalar, point): one (re-)blinding. ``b*(a*P) == a*(b*P)``, which is what PSI relies on.

    Raises ``InvalidScalarError``/``RecordLengthError`` on wrong lengths, ``TypeError`` on non-bytes,
    and ``LowOrderPointError`` when the result is the all-zero value (a small-order input point).
    """
    key = _private_key(scalar)
    _require_bytes("point", point)
    if len(point) != POINT_SIZE:
        raise RecordLengthError(f"point must be {POINT_SIZE} bytes, got {len(point)}")
    try:
        return key.exchange(X25519PublicKey.from_public_bytes(bytes(point)))
    except ValueError:
        # cryptography refuses an all-zero shared secret (RFC 7748 §6.1 check).
        raise LowOrderPointError("point of small order (all-zero X25519 result)") from None


def _records(buf: BytesLike) -> list[bytes]:
    _require_bytes("buf", buf)
    data = bytes(buf)
    if len(data) % POINT_SIZE:
        raise RecordLengthError(f"buffer length {len(data)} is not a multiple of {POINT_SIZE}")
    return [data[i : i + POINT_SIZE] for i in range(0, len(data), POINT_SIZE)]


def _exchange_all(key: X25519PrivateKey, points: list[bytes], first_index: int) -> bytes:
    """Blind many points with one private-key object; map() keeps the per-item overhead in C."""
    try:
        return b"".join(map(key.exchange, map(X25519PublicKey.from_public_bytes, points)))
    except ValueError:
        pass
    # Slow path, only to report which record was of small order.
    for offset, point in enumerate(points):
        try:
            key.exchange(X25519PublicKey.from_public_bytes(point))
        except ValueError:
            raise LowOrderPointError("point of small order (all-zero X25519 result)", first_index + offset) from None
    raise AssertionError("unreachable: batch failed but no single point did")  # pragma: no cover


def blind_batch(scalar: BytesLike, buf: BytesLike) -> bytes:
    """Blind (or re-blind) every 32-byte record of ``buf``; output records are in input order."""
    key = _private_key(scalar)
    return _exchange_all(key, _records(buf), 0)


def _hash_and_blind(dst_prime: bytes, key: X25519PrivateKey, canonicals: Sequence[bytes], start: int) -> bytes:
    parts = []
    for i in range(0, len(canonicals), _CHUNK):
        parts.append(_exchange_all(key, _hash_chunk(dst_prime, canonicals[i : i + _CHUNK]), start + i))
    return b"".join(parts)


def hash_and_blind_batch(alliance_id: bytes, scalar: BytesLike, canonicals: Sequence[bytes]) -> bytes:
    """``blind(scalar, hash_to_point(alliance_id, x))`` for every identifier, concatenated in order.

    This is what a brand publishes (before shuffling): its singly blinded segment.
    """
    dst = alliance_dst(alliance_id)
    key = _private_key(scalar)
    _check_canonicals(canonicals)
    return _hash_and_blind(dst + bytes((len(dst),)), key, canonicals, 0)


# --- multi-process paths ----------------------------------------------------------------------------------


def default_workers() -> int:
    """Number of CPUs this process may run on (every core by default)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_PARALLEL_CHUNK: Final = 8192


def _blind_job(scalar: bytes, start: int, chunk: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(scalar)
    points = [chunk[i : i + POINT_SIZE] for i in range(0, len(chunk), POINT_SIZE)]
    return _exchange_all(key, points, start)


def _hash_and_blind_job(dst_prime: bytes, scalar: bytes, start: int, canonicals: list[bytes]) -> bytes:
    return _hash_and_blind(dst_prime, X25519PrivateKey.from_private_bytes(scalar), canonicals, start)


def new_process_pool(workers: int | None = None) -> ProcessPoolExecutor:
    """A process pool for the ``*_parallel`` functions' ``executor`` argument (every core by default).

    Workers start with forkserver (spawn where unavailable), not fork: the agent may run inside a
    threaded process, where fork can deadlock.
    """
    workers = default_workers() if workers is None else workers
    methods = multiprocessing.get_all_start_methods()
    method = "forkserver" if "forkserver" in methods else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def _check_parallel_args(workers: int | None, chunk_records: int) -> int:
    if chunk_records < 1:
        raise ValueError("chunk_records must be positive")
    count = default_workers() if workers is None else workers
    if count < 1:
        raise ValueError("workers must be positive")
    return count


def blind_batch_parallel(
    scalar: BytesLike,
    buf: BytesLike,
    *,
    workers: int | None = None,
    chunk_records: int = _PARALLEL_CHUNK,
    executor: Executor | None = None,
) -> bytes:
    """:func:`blind_batch` spread over processes (all cores by default); same bytes, same order.

    Pass ``executor`` to reuse a pool across calls (a new pool costs a few hundred milliseconds);
    small inputs or ``workers=1`` run in this process.
    """
    _private_key(scalar)
    count = _check_parallel_args(workers, chunk_records)
    _require_bytes("buf", buf)
    data = bytes(buf)
    if len(data) % POINT_SIZE:
        raise RecordLengthError(f"buffer length {len(data)} is not a multiple of {POINT_SIZE}")
    n = len(data) // POINT_SIZE
    if executor is None and (count == 1 or n <= chunk_records):
        return blind_batch(scalar, data)
    starts = range(0, n, chunk_records)
    chunks = (data[s * POINT_SIZE : (s + chunk_records) * POINT_SIZE] for s in starts)
    return _run(executor, count, _blind_job, repeat(bytes(scalar)), starts, chunks)


def hash_and_blind_batch_parallel(
    alliance_id: bytes,
    scalar: BytesLike,
    canonicals: Sequence[bytes],
    *,
    workers: int | None = None,
    chunk_records: int = _PARALLEL_CHUNK,
    executor: Executor | None = None,
) -> bytes:
    """:func:`hash_and_blind_batch` spread over processes (all cores by default); same bytes, same order."""
    dst = alliance_dst(alliance_id)
    _private_key(scalar)
    _check_canonicals(canonicals)
    count = _check_parallel_args(workers, chunk_records)
    n = len(canonicals)
    if executor is None and (count == 1 or n <= chunk_records):
        return hash_and_blind_batch(alliance_id, scalar, canonicals)
    starts = range(0, n, chunk_records)
    chunks = (list(canonicals[s : s + chunk_records]) for s in starts)
    dst_prime = dst + bytes((len(dst),))
    return _run(executor, count, _hash_and_blind_job, repeat(dst_prime), repeat(bytes(scalar)), starts, chunks)


def _run(executor: Executor | None, workers: int, fn: Callable[..., bytes], *iterables: Any) -> bytes:
    if executor is not None:
        return b"".join(executor.map(fn, *iterables))
    with new_process_pool(workers) as pool:
        return b"".join(pool.map(fn, *iterables))


# --- exchange-side validation -------------------------------------------------------------------------------


def validate_points(buf: BytesLike) -> None:
    """Check an uploaded buffer of 32-byte points; raise on the first bad record.

    Rejects, in this order: a length that is not a multiple of 32 (``RecordLengthError``), a
    u-coordinate >= p (``NonCanonicalPointError``), a small-order point (``LowOrderPointError``),
    and a point on the twist (``TwistPointError``: the Legendre symbol of u^3 + A*u^2 + u is -1).
    Elligator 2 outputs and their blindings are always on the curve, so a twist point can only come
    from a party that is not following the protocol. Cost: one Legendre symbol per point, about 2 us.
    """
    _require_bytes("buf", buf)
    data = bytes(buf)
    if len(data) % POINT_SIZE:
        raise RecordLengthError(f"buffer length {len(data)} is not a multiple of {POINT_SIZE}")
    p = _P
    a = _A
    legendre = _legendre
    from_bytes = _mpz_from_bytes
    low_order = _LOW_ORDER_U
    for index, offset in enumerate(range(0, len(data), POINT_SIZE)):
        u = from_bytes(data[offset : offset + POINT_SIZE], "little")
        if u >= p:
            raise NonCanonicalPointError("u-coordinate is not reduced modulo p", index)
        if u in low_order:
            raise LowOrderPointError("point of small order", index)
        if legendre(u * (u * (u + a) + 1) % p, p) != 1:
            raise TwistPointError("point is on the twist, not on Curve25519", index)


def _require_bytes(name: str, value: object) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
