"""Brand onboarding, suspension and API-key lifecycle. No HTTP objects here: routes and the CLI both
call these functions, and each writes its audit row in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.brands.schemas import ApiKeyOut, BrandOut, IssuedApiKey
from alliance.core.audit import AuditContext, record_audit
from alliance.core.auth import digest_key, forget_cached_keys, generate_key
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import ApiKey, Brand

__all__ = [
    "brand_out",
    "create_admin_key",
    "create_brand",
    "get_brand",
    "issue_key",
    "key_out",
    "list_admin_keys",
    "list_brands",
    "list_keys",
    "reactivate_brand",
    "revoke_admin_key",
    "revoke_key",
    "rotate_key",
    "suspend_brand",
]


def brand_out(brand: Brand) -> BrandOut:
    return BrandOut(
        id=brand.id,
        name=brand.name,
        category=brand.category,
        status=brand.status,
        created_at=brand.created_at,
        suspended_at=brand.suspended_at,
    )


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        prefix=f"bax_{key.prefix}_…",
        label=key.label,
        role=key.role,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


def _new_key(brand_id: str | None, role: str, label: str) -> tuple[ApiKey, str]:
    prefix, secret = generate_key()
    key = ApiKey(
        id=new_id("key"),
        brand_id=brand_id,
        role=role,
        label=label,
        prefix=prefix,
        digest=digest_key(secret),
        created_at=utcnow(),
    )
    return key, secret


async def create_brand(
    session: AsyncSession, ctx: AuditContext, name: str, category: str | None = None
) -> tuple[Brand, IssuedApiKey]:
    """Onboard a brand and give it its first API key. Names are unique across the alliance."""
    name = name.strip()
    existing = await session.scalar(select(Brand.id).where(Brand.name == name))
    if existing is not None:
        raise Problem(409, "brand-exists", f"a brand named {name!r} already exists", extra={"brand_id": existing})
    brand = Brand(id=new_id("brd"), name=name, category=category, status="active", created_at=utcnow())
    session.add(brand)
    key, secret = _new_key(brand.id, "brand", "initial")
    session.add(key)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent onboarding of the same name won the race
        raise Problem(409, "brand-exists", f"a brand named {name!r} already exists") from None
    record_audit(session, ctx, "brand.create", brand_id=brand.id, target=brand.id, details={"name": name})
    record_audit(session, ctx, "api_key.create", brand_id=brand.id, target=key.id, details={"label": "initial"})
    return brand, IssuedApiKey(key=key_out(key), secret=secret)


async def list_brands(session: AsyncSession) -> Sequence[Brand]:
    return (await session.scalars(select(Brand).order_by(Brand.created_at, Brand.id))).all()


async def get_brand(session: AsyncSession, brand_id: str) -> Brand:
    brand = await session.get(Brand, brand_id)
    if brand is None:
        raise Problem(404, "brand-not-found", f"no brand {brand_id!r}")
    return brand


async def suspend_brand(session: AsyncSession, ctx: AuditContext, brand_id: str, reason: str = "") -> Brand:
    """A suspended brand's keys stop working at once; its data stays for settlement."""
    brand = await get_brand(session, brand_id)
    if brand.status != "suspended":
        brand.status = "suspended"
        brand.suspended_at = utcnow()
        forget_cached_keys()
        record_audit(session, ctx, "brand.suspend", brand_id=brand.id, target=brand.id, details={"reason": reason})
    return brand


async def reactivate_brand(session: AsyncSession, ctx: AuditContext, brand_id: str) -> Brand:
    brand = await get_brand(session, brand_id)
    if brand.status != "active":
        brand.status = "active"
        brand.suspended_at = None
        record_audit(session, ctx, "brand.reactivate", brand_id=brand.id, target=brand.id)
    return brand


async def list_keys(session: AsyncSession, brand_id: str) -> Sequence[ApiKey]:
    return (await session.scalars(select(ApiKey).where(ApiKey.brand_id == brand_id).order_by(ApiKey.created_at))).all()


async def _own_key(session: AsyncSession, brand_id: str, key_id: str) -> ApiKey:
    # A key of another brand is reported exactly like a missing one: no probing of foreign ids.
    key = await session.get(ApiKey, key_id)
    if key is None or key.brand_id != brand_id:
        raise Problem(404, "api-key-not-found", f"no API key {key_id!r} for this brand")
    return key


async def issue_key(session: AsyncSession, ctx: AuditContext, brand_id: str, label: str = "") -> IssuedApiKey:
    await get_brand(session, brand_id)
    key, secret = _new_key(brand_id, "brand", label)
    session.add(key)
    await session.flush()
    record_audit(session, ctx, "api_key.create", brand_id=brand_id, target=key.id, details={"label": label})
    return IssuedApiKey(key=key_out(key), secret=secret)


async def _active_key_count(session: AsyncSession, brand_id: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.brand_id == brand_id, ApiKey.revoked_at.is_(None))
    )
    return int(count or 0)


async def revoke_key(session: AsyncSession, ctx: AuditContext, brand_id: str, key_id: str) -> ApiKey:
    """Revoke a key. The last active key cannot be revoked (the brand would lock itself out): issue
    or rotate first."""
    key = await _own_key(session, brand_id, key_id)
    if key.revoked_at is None:
        if await _active_key_count(session, brand_id) <= 1:
            raise Problem(
                409,
                "last-active-key",
                "this is the brand's only active key; issue a new one (or rotate this one) before revoking it",
            )
        key.revoked_at = utcnow()
        forget_cached_keys()
        record_audit(session, ctx, "api_key.revoke", brand_id=brand_id, target=key.id)
    return key


async def rotate_key(session: AsyncSession, ctx: AuditContext, brand_id: str, key_id: str) -> IssuedApiKey:
    """Replace a key by a new one with the same label; the old one stops working immediately."""
    old = await _own_key(session, brand_id, key_id)
    if old.revoked_at is not None:
        raise Problem(409, "api-key-revoked", "a revoked key cannot be rotated; issue a new key instead")
    new, secret = _new_key(brand_id, old.role, old.label)
    old.revoked_at = utcnow()
    forget_cached_keys()
    session.add(new)
    await session.flush()
    record_audit(session, ctx, "api_key.rotate", brand_id=brand_id, target=old.id, details={"replacement": new.id})
    return IssuedApiKey(key=key_out(new), secret=secret)


async def create_admin_key(session: AsyncSession, ctx: AuditContext, label: str = "") -> IssuedApiKey:
    """An operator key for the admin API (``/admin/v1``); created from the CLI on the exchange host."""
    key, secret = _new_key(None, "admin", label)
    session.add(key)
    await session.flush()
    record_audit(session, ctx, "admin_key.create", target=key.id, details={"label": label})
    return IssuedApiKey(key=key_out(key), secret=secret)


async def list_admin_keys(session: AsyncSession) -> Sequence[ApiKey]:
    """Every operator key, oldest first (revoked ones too: the list is the record)."""
    return (
        await session.scalars(select(ApiKey).where(ApiKey.role == "admin").order_by(ApiKey.created_at, ApiKey.id))
    ).all()


def _prefix_of(reference: str) -> str:
    """``bax_1a2b3c4d_…``, ``bax_1a2b3c4d`` or ``1a2b3c4d`` -> ``1a2b3c4d``."""
    text = reference.strip().removesuffix("…").removesuffix("...").strip("_")
    return text.removeprefix("bax_").split("_", 1)[0]


async def _admin_key(session: AsyncSession, reference: str) -> ApiKey:
    """An operator key by id (``key_...``) or by prefix (as listed: ``bax_1a2b3c4d_…``, or the 8 hex
    characters). Never a full secret: a prefix is enough and is what operators see."""
    key = await session.get(ApiKey, reference.strip())
    if key is not None and key.role == "admin":
        return key
    prefix = _prefix_of(reference)
    found = (
        (await session.scalars(select(ApiKey).where(ApiKey.role == "admin", ApiKey.prefix == prefix))).all()
        if prefix
        else []
    )
    if len(found) > 1:
        raise Problem(
            409,
            "ambiguous-key-prefix",
            f"{len(found)} operator keys have the prefix {prefix!r}; name one by its id",
            extra={"key_ids": [k.id for k in found]},
        )
    if not found:
        raise Problem(404, "api-key-not-found", f"no operator key {reference!r}")
    return found[0]


async def revoke_admin_key(session: AsyncSession, ctx: AuditContext, reference: str) -> ApiKey:
    """Revoke an operator key (by id or prefix); it stops working in this process at once, in other
    worker processes within the authentication cache's TTL. The last active operator key cannot be
    revoked (nobody could call the operator API any more): add another one first. Revoking a revoked
    key changes nothing and writes no audit row."""
    key = await _admin_key(session, reference)
    if key.revoked_at is None:
        # Lock the active operator keys (PostgreSQL; SQLite has one writer): two operators revoking
        # the last two keys at once must not both see "another one is left".
        active = (
            await session.scalars(
                select(ApiKey.id).where(ApiKey.role == "admin", ApiKey.revoked_at.is_(None)).with_for_update()
            )
        ).all()
        if len(active) <= 1:
            raise Problem(
                409,
                "last-active-key",
                "this is the only active operator key; add another (`alliance admin-key add`) before revoking it",
            )
        key.revoked_at = utcnow()
        await session.flush()
        forget_cached_keys()
        record_audit(session, ctx, "admin_key.revoke", target=key.id, details={"prefix": key.prefix})
    return key
