"""Coupon codes: random, typeable, self-checking, stored only as a digest.

A code is 17 Crockford base32 symbols of randomness (85 bits) and one check symbol, shown in three
groups of six: ``7K3M9Q-XW2HBD-T4N8ZR``. The check symbol is Crockford's: the value of the 17 symbols
modulo 37. Because 37 is prime and larger than 32, it catches every single wrong symbol and every swap
of two adjacent symbols. Crockford maps remainders 32-36 to ``* ~ $ = U``, which are awkward to type,
so codes whose remainder would be one of those are simply drawn again: every check symbol stays in the
32-symbol alphabet, at a cost of log2(37/32) = 0.21 bits (84.8 bits remain, over the required 80).

Reading is forgiving in Crockford's way: case is ignored, hyphens and spaces are dropped, ``O`` reads
as ``0`` and ``I``/``L`` as ``1``. A code whose check symbol does not match is refused before any
database lookup, so a typo gets a precise error and costs no query.

Codes are high-entropy, so a fast hash is the right digest (nothing to guess from a dictionary); the
domain prefix keeps these digests apart from any other SHA-256 in the system.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["CODE_SYMBOLS", "RANDOM_BITS", "MalformedCode", "code_digest", "display", "generate_code", "normalize_code"]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {symbol: index for index, symbol in enumerate(ALPHABET)}
_ALIASES = {"O": "0", "I": "1", "L": "1"}
DATA_SYMBOLS = 17
CODE_SYMBOLS = DATA_SYMBOLS + 1
RANDOM_BITS = DATA_SYMBOLS * 5
_CHECK_MODULUS = 37
_DIGEST_PREFIX = b"bax-coupon-v1:"


class MalformedCode(ValueError):
    """Not a well-formed coupon code (wrong length, a symbol outside the alphabet, or a bad check)."""


def _check_value(data: str) -> int:
    value = 0
    for symbol in data:
        value = value * 32 + _VALUE[symbol]
    return value % _CHECK_MODULUS


def generate_code() -> str:
    """A new canonical code (18 symbols, no separators); use :func:`display` to group it for people."""
    while True:
        data = "".join(ALPHABET[secrets.randbelow(32)] for _ in range(DATA_SYMBOLS))
        check = _check_value(data)
        if check < 32:
            return data + ALPHABET[check]


def display(code: str) -> str:
    """``7K3M9QXW2HBDT4N8ZR`` -> ``7K3M9Q-XW2HBD-T4N8ZR``."""
    return "-".join(code[i : i + 6] for i in range(0, len(code), 6))


def normalize_code(text: str) -> str:
    """The canonical form of a typed code; :class:`MalformedCode` says what is wrong with it."""
    if not isinstance(text, str) or len(text) > 64:
        raise MalformedCode("a coupon code is 18 symbols, e.g. 7K3M9Q-XW2HBD-T4N8ZR")
    cleaned = text.upper().replace("-", "").replace(" ", "")
    cleaned = "".join(_ALIASES.get(c, c) for c in cleaned)
    if len(cleaned) != CODE_SYMBOLS:
        raise MalformedCode(f"a coupon code has {CODE_SYMBOLS} symbols, this one has {len(cleaned)}")
    bad = sorted({c for c in cleaned if c not in _VALUE})
    if bad:
        raise MalformedCode(f"a coupon code uses the symbols 0-9 and A-Z except I, L, O, U; got {''.join(bad)!r}")
    data, check = cleaned[:DATA_SYMBOLS], cleaned[DATA_SYMBOLS]
    if _VALUE[check] != _check_value(data):
        raise MalformedCode("the coupon code's check symbol does not match: a symbol was mistyped or swapped")
    return cleaned


def code_digest(code: str) -> str:
    """Hex SHA-256 of a canonical code, as stored and looked up."""
    return hashlib.sha256(_DIGEST_PREFIX + code.encode("ascii")).hexdigest()
