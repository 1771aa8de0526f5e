"""Brands' contract signing keys: the current Ed25519 key and its history.

A key is retired, never deleted, when a brand registers a new one, so every stored signature stays
verifiable under the key it names (docs/decisions.md).
"""

from __future__ import annotations

import base64

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.contracts.schemas import SigningKeyOut, SigningKeysOut
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Brand, SigningKey

__all__ = ["current_signing_key", "register_signing_key", "signing_keys"]


def _key_out(key: SigningKey, current_id: str | None) -> SigningKeyOut:
    return SigningKeyOut(
        key_id=key.id,
        public_key=base64.b64encode(key.public_key).decode("ascii"),
        created_at=key.created_at,
        retired_at=key.retired_at,
        current=key.id == current_id,
    )


async def signing_keys(session: AsyncSession, brand_id: str) -> SigningKeysOut:
    """The brand's current signing key and its whole key history, newest first."""
    keys = (
        await session.scalars(
            select(SigningKey)
            .where(SigningKey.brand_id == brand_id)
            .order_by(SigningKey.created_at.desc(), SigningKey.id.desc())
        )
    ).all()
    current = next((k for k in keys if k.retired_at is None), None)
    current_id = current.id if current else None
    return SigningKeysOut(
        current=_key_out(current, current_id) if current else None,
        history=[_key_out(k, current_id) for k in keys],
    )


async def current_signing_key(session: AsyncSession, brand_id: str) -> SigningKey | None:
    return await session.scalar(
        select(SigningKey)
        .where(SigningKey.brand_id == brand_id, SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc(), SigningKey.id.desc())
        .limit(1)
    )


async def register_signing_key(
    session: AsyncSession, ctx: AuditContext, brand_id: str, public_key: bytes
) -> SigningKeysOut:
    """Make ``public_key`` the brand's current Ed25519 key; the previous one is retired, not deleted,
    so signatures made with it stay verifiable. Registering the current key again changes nothing."""
    try:
        contracts.load_public_key(public_key)
    except contracts.InvalidKeyLength as exc:
        raise Problem(422, "invalid-signing-key", str(exc)) from None
    # Serialise key changes of one brand: the brand row lock on PostgreSQL; on SQLite the first write
    # below takes the database write lock before anything is read back.
    await session.execute(select(Brand.id).where(Brand.id == brand_id).with_for_update())
    current = await current_signing_key(session, brand_id)
    if current is not None and current.public_key == public_key:
        return await signing_keys(session, brand_id)
    now = utcnow()
    await session.execute(
        update(SigningKey)
        .where(SigningKey.brand_id == brand_id, SigningKey.retired_at.is_(None))
        .values(retired_at=now)
    )
    key = SigningKey(id=new_id("sgk"), brand_id=brand_id, public_key=public_key, created_at=now)
    session.add(key)
    await session.flush()
    record_audit(
        session,
        ctx,
        "signing_key.register",
        brand_id=brand_id,
        target=key.id,
        details={"replaces": current.id if current else None},
    )
    return await signing_keys(session, brand_id)
