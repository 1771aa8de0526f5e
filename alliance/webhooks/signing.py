"""Webhook signatures: ``X-Alliance-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The MAC covers ``f"{t}."`` followed by the raw request body, keyed with the endpoint's secret (the
whole ``whsec_...`` string, as UTF-8). Including the timestamp lets a receiver refuse replays of an old
delivery; comparing in constant time keeps the MAC from leaking byte by byte. A receiver may find
several ``v1=`` entries (reserved for secret rotation) and accepts the request if any one matches.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "sign", "verify"]

SIGNATURE_HEADER = "X-Alliance-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` sent at ``timestamp`` (now by default)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: int | None = None
) -> bool:
    """Whether ``header`` is a valid signature of ``body`` under ``secret``, made within ``tolerance``
    seconds of ``now``. Never raises on malformed input: a bad header is simply not valid."""
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and value:
            macs.append(value)
    if timestamp is None or not macs:
        return False
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, mac) for mac in macs)
