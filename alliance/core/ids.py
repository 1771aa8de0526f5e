"""Identifiers for stored objects: a short type prefix and 80 random bits, readable in logs and URLs."""

from __future__ import annotations

import base64
import secrets

__all__ = ["new_id"]

# 10 random bytes are exactly 16 base32 digits; the standard alphabet is mapped to Crockford's (lower
# case, no i, l, o, u). Encoding in C instead of a divmod loop: ids are made several times per request.
_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz")


def new_id(prefix: str) -> str:
    """``new_id("brd")`` -> ``"brd_8x2k..."``; 16 base32 characters carry 80 random bits."""
    return f"{prefix}_{base64.b32encode(secrets.token_bytes(10)).translate(_CROCKFORD).decode()}"
