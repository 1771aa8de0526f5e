"""API-key authentication for the partner API (``/v1``) and the operator API (``/admin/v1``).

Keys look like ``bax_<8-char prefix>_<43-char secret>``: 256 random bits after the prefix. Only the
SHA-256 digest is stored; a fast hash is the right tool for a high-entropy key (there is no dictionary
to guess from), and it keeps authentication off the hot path's critical budget.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from sqlalchemy import select, update

from alliance.core.database import session_factory
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import ApiKey, Brand

__all__ = [
    "BrandCaller",
    "Principal",
    "admin_guard",
    "brand_guard",
    "digest_key",
    "forget_cached_keys",
    "generate_key",
    "provide_admin",
    "provide_caller",
]

KEY_SCHEME = "bax"
_LAST_USED_RESOLUTION = timedelta(minutes=1)
# Successful authentications are remembered per process for this long (key digest -> principal), so a
# busy key costs no database round trip on most requests. Revoking or rotating a key and suspending a
# brand clear this process's cache at once; other worker processes notice within the TTL
# (docs/decisions.md). Failures are never cached: a new or reactivated key works on its next call.
AUTH_CACHE_TTL = 5.0
_AUTH_CACHE_MAX = 10_000
_auth_cache: dict[str, tuple[float, Principal]] = {}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a brand (through one of its keys) or an operator."""

    key_id: str
    role: str  # "brand" | "admin"
    brand_id: str | None = None
    brand_name: str | None = None

    @property
    def actor(self) -> str:
        if self.role == "brand":
            return f"brand:{self.brand_id}/key:{self.key_id}"
        return f"admin:key:{self.key_id}"


def generate_key() -> tuple[str, str]:
    """A new key as ``(prefix, full_key)``; the full key is shown once and never stored."""
    prefix = secrets.token_hex(4)
    return prefix, f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"


def forget_cached_keys() -> None:
    """Drop every remembered authentication in this process (after a revocation or suspension)."""
    _auth_cache.clear()


def digest_key(full_key: str) -> str:
    return hashlib.sha256(full_key.encode("utf-8")).hexdigest()


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization")
    if not header:
        raise Problem(
            401,
            "unauthenticated",
            "send your API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="alliance"'},
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(KEY_SCHEME + "_") or len(token) > 200:
        raise Problem(
            401,
            "unauthenticated",
            "the Authorization header must be 'Bearer bax_...'",
            headers={"WWW-Authenticate": 'Bearer realm="alliance", error="invalid_token"'},
        )
    return token


async def _authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    token = _bearer(connection)
    digest = digest_key(token)
    cached = _auth_cache.get(digest)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    principal = await _authenticate_in_database(connection, digest)
    if len(_auth_cache) >= _AUTH_CACHE_MAX:
        _auth_cache.clear()
    _auth_cache[digest] = (time.monotonic() + AUTH_CACHE_TTL, principal)
    return principal


async def _authenticate_in_database(connection: ASGIConnection[Any, Any, Any, Any], digest: str) -> Principal:
    factory = session_factory(connection.app.state)
    async with factory() as session:
        row = (
            await session.execute(
                select(ApiKey, Brand).outerjoin(Brand, Brand.id == ApiKey.brand_id).where(ApiKey.digest == digest)
            )
        ).first()
        if row is None or row[0].revoked_at is not None:
            raise Problem(
                401,
                "unauthenticated",
                "the API key is unknown or revoked",
                headers={"WWW-Authenticate": 'Bearer realm="alliance", error="invalid_token"'},
            )
        key, brand = row
        if brand is not None and brand.status != "active":
            raise Problem(403, "brand-suspended", "this brand is suspended from the alliance")
        now = utcnow()
        if key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION:
            await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
            await session.commit()
        return Principal(
            key_id=key.id,
            role=key.role,
            brand_id=key.brand_id,
            brand_name=brand.name if brand is not None else None,
        )


async def brand_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Every ``/v1`` route: the caller must hold an active key of an active brand."""
    principal = await _authenticate(connection)
    if principal.role != "brand":
        raise Problem(403, "forbidden", "operator keys cannot call the partner API")
    connection.state.principal = principal


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Every ``/admin/v1`` route: the caller must hold an operator key."""
    principal = await _authenticate(connection)
    if principal.role != "admin":
        raise Problem(403, "forbidden", "this route needs an operator key")
    connection.state.principal = principal


@dataclass(frozen=True, slots=True)
class BrandCaller:
    """The brand calling a ``/v1`` route: unlike a `Principal`, its ``brand_id`` is always set."""

    brand_id: str
    key_id: str


def provide_caller(request: Request[Any, Any, Any]) -> BrandCaller:
    """The authenticated brand (checked by :func:`brand_guard`)."""
    principal: Principal = request.state.principal
    if principal.brand_id is None:  # pragma: no cover - brand_guard admits brand keys only
        raise Problem(403, "forbidden", "operator keys cannot call the partner API")
    return BrandCaller(principal.brand_id, principal.key_id)


def provide_admin(request: Request[Any, Any, Any]) -> Principal:
    """The authenticated operator (set by :func:`admin_guard`)."""
    principal: Principal = request.state.principal
    return principal
