"""Identifiers for stored objects: a short type prefix and 80 random bits, readable in logs and URLs."""

from __future__ import annotations

import secrets

__all__ = ["new_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id(prefix: str) -> str:
    """``new_id("brd")`` -> ``"brd_8x2k..."``; 16 base32 characters carry 80 random bits."""
    value = secrets.randbits(80)
    chars = []
    for _ in range(16):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_{''.join(chars)}"
