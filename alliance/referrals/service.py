"""Referral tokens and conversions. No HTTP objects here.

A referral exists only under a signed contract between the two brands in force when it is issued; its
token expires at the end of the contract's attribution window (or sooner if asked). A conversion is
accepted once per referral: ``UPDATE referrals ... WHERE status = 'open'`` has one winner and the
unique ``conversions.referral_id`` backs it, so the same conversion reported twice (or concurrently)
posts one ledger transaction.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.benefits import booking
from alliance.core import idempotency
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Brand, Conversion, ExchangeSigningKey, Referral
from alliance.referrals import tokens
from alliance.referrals.schemas import ConversionCreate, ConversionOut, ReferralCreate, ReferralOut, SigningKeyOut
from alliance.webhooks import service as webhooks

__all__ = [
    "CONVERT_OPERATION",
    "conversion_out",
    "convert",
    "create_referral",
    "get_conversion",
    "get_referral",
    "referral_out",
    "signing_key",
]

CONVERT_OPERATION = "conversion.create"
_TOKEN_FORMAT = "rft1.<base64url payload>.<base64url Ed25519 signature over 'BAX-REFERRAL-V1\\n' + payload>"  # noqa: S105 - a format description, not a secret
_PURPOSE = "referral"


def referral_out(referral: Referral, token: str | None = None) -> ReferralOut:
    return ReferralOut(
        id=referral.id,
        referrer_brand_id=referral.referrer_brand_id,
        receiver_brand_id=referral.receiver_brand_id,
        campaign=referral.campaign,
        contract_id=referral.contract_id,
        issued_at=referral.issued_at,
        expires_at=referral.expires_at,
        status=referral.status,
        token=token,
    )


def conversion_out(conversion: Conversion) -> ConversionOut:
    return ConversionOut(
        id=conversion.id,
        referral_id=conversion.referral_id,
        referrer_brand_id=conversion.referrer_brand_id,
        receiver_brand_id=conversion.receiver_brand_id,
        order_reference=conversion.order_reference,
        order_amount=conversion.order_amount,
        currency=conversion.currency,
        occurred_at=conversion.occurred_at,
        contract_id=conversion.contract_id,
        contract_version=conversion.contract_version,
        commission=conversion.commission,
        ledger_transaction_id=conversion.ledger_transaction_id,
    )


async def _signing_key(session: AsyncSession) -> ExchangeSigningKey:
    """The exchange's referral key, created on first use (race-free: the purpose is unique)."""
    key = await session.scalar(select(ExchangeSigningKey).where(ExchangeSigningKey.purpose == _PURPOSE))
    if key is not None:
        return key
    private = Ed25519PrivateKey.generate()
    statement = (
        booking.dialect_insert(session, ExchangeSigningKey)
        .values(
            id=new_id("xkey"),
            purpose=_PURPOSE,
            private_key=private.private_bytes_raw(),
            public_key=private.public_key().public_bytes_raw(),
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["purpose"])
    )
    await session.execute(statement)
    key = await session.scalar(select(ExchangeSigningKey).where(ExchangeSigningKey.purpose == _PURPOSE))
    assert key is not None
    return key


async def signing_key(session: AsyncSession) -> SigningKeyOut:
    key = await _signing_key(session)
    return SigningKeyOut(
        key_id=key.id,
        algorithm="Ed25519",
        public_key=tokens.b64(key.public_key),
        token_format=_TOKEN_FORMAT,
    )


async def create_referral(
    session: AsyncSession, ctx: AuditContext, referrer_id: str, data: ReferralCreate
) -> ReferralOut:
    """A signed token for a member the caller refers to ``receiver_brand_id``; returned once."""
    if data.receiver_brand_id == referrer_id:
        raise Problem(422, "invalid-referral", "a brand cannot refer a member to itself")
    receiver = await session.get(Brand, data.receiver_brand_id)
    if receiver is None or receiver.status != "active":
        raise Problem(404, "brand-not-found", f"{data.receiver_brand_id!r} is not an active brand of the alliance")
    now = utcnow().replace(microsecond=0)
    terms = await booking.terms_in_force(session, referrer_id, data.receiver_brand_id, now)
    lifetime = terms.attribution_window_seconds
    if data.ttl_seconds is not None:
        lifetime = min(lifetime, data.ttl_seconds)
    key = await _signing_key(session)
    referral = Referral(
        id=new_id("ref"),
        referrer_brand_id=referrer_id,
        receiver_brand_id=data.receiver_brand_id,
        member_hash=(
            hashlib.sha256(f"bax-member-v1:{referrer_id}:{data.member_token}".encode()).hexdigest()
            if data.member_token is not None
            else None
        ),
        campaign=data.campaign,
        contract_id=terms.contract_id,
        issued_at=now,
        expires_at=now + timedelta(seconds=lifetime),
        key_id=key.id,
        status="open",
    )
    session.add(referral)
    await session.flush()
    payload = tokens.TokenPayload(
        rid=referral.id,
        frm=referrer_id,
        to=data.receiver_brand_id,
        iat=int(now.timestamp()),
        exp=int(referral.expires_at.timestamp()),
        kid=key.id,
    )
    token = tokens.sign_token(Ed25519PrivateKey.from_private_bytes(key.private_key), payload)
    record_audit(
        session,
        ctx,
        "referral.create",
        brand_id=referrer_id,
        target=referral.id,
        details={"receiver_brand_id": data.receiver_brand_id, "expires_at": referral.expires_at.isoformat()},
    )
    return referral_out(referral, token)


async def get_referral(session: AsyncSession, caller_id: str, referral_id: str) -> ReferralOut:
    """A referral the caller issued (the token itself is never shown again)."""
    referral = await session.get(Referral, referral_id)
    if referral is None or referral.referrer_brand_id != caller_id:
        raise Problem(404, "referral-not-found", f"no referral {referral_id!r} issued by this brand")
    return referral_out(referral)


async def get_conversion(session: AsyncSession, caller_id: str, conversion_id: str) -> ConversionOut:
    """A conversion the caller reported or earned commission on."""
    conversion = await session.get(Conversion, conversion_id)
    if conversion is None or caller_id not in (conversion.receiver_brand_id, conversion.referrer_brand_id):
        raise Problem(404, "conversion-not-found", f"no conversion {conversion_id!r} for this brand")
    return conversion_out(conversion)


async def _verified_referral(session: AsyncSession, caller_id: str, token: str) -> Referral:
    not_found = Problem(404, "referral-not-found", "no such referral token for this brand")
    try:
        payload, body, signature = tokens.decode_unverified(token)
    except tokens.InvalidToken as exc:
        raise Problem(400, "malformed-referral-token", str(exc)) from None
    if payload.to != caller_id:
        raise not_found
    key = await session.get(ExchangeSigningKey, payload.kid)
    if key is None:
        raise not_found
    try:
        tokens.verify_token(Ed25519PublicKey.from_public_bytes(key.public_key), body, signature)
    except tokens.InvalidToken:
        raise Problem(400, "invalid-referral-token", "the token's signature does not verify") from None
    referral = await session.get(Referral, payload.rid)
    if referral is None or referral.receiver_brand_id != caller_id or referral.key_id != payload.kid:
        raise not_found
    return referral


async def convert(
    session: AsyncSession, ctx: AuditContext, caller_id: str, idempotency_key: str | None, data: ConversionCreate
) -> idempotency.IdempotentResult[ConversionOut]:
    """Report a referred member's purchase at the caller (the receiving brand) and post the commission.

    Refused: a bad or foreign token (400/404), an expired one (409 ``referral-expired``), a conversion
    outside the contract's attribution window (409 ``outside-attribution-window``), a second different
    conversion of one referral (409 ``referral-already-converted``). The same conversion reported again,
    with the same key or the same order, returns the first answer and posts nothing.
    """
    await _verified_referral(session, caller_id, data.token)  # 400/404 before anything else
    key = idempotency.require_key(idempotency_key)
    print_ = idempotency.fingerprint(CONVERT_OPERATION, data)
    try:
        return await _convert(session, ctx, caller_id, key, print_, data, lock_totals=False)
    except booking.TotalsContended:
        await session.rollback()
    return await _convert(session, ctx, caller_id, key, print_, data, lock_totals=True)


async def _convert(
    session: AsyncSession,
    ctx: AuditContext,
    caller_id: str,
    key: str,
    print_: str,
    data: ConversionCreate,
    *,
    lock_totals: bool,
) -> idempotency.IdempotentResult[ConversionOut]:
    replay = await idempotency.lookup(session, caller_id, key, CONVERT_OPERATION, print_, ConversionOut)
    if replay is not None:
        return replay
    referral = await _verified_referral(session, caller_id, data.token)
    if referral.status != "open":
        return await _already_converted(session, referral.id, data)
    now = utcnow()
    if now >= referral.expires_at:
        raise Problem(409, "referral-expired", f"this referral token expired at {referral.expires_at.isoformat()}")
    terms = await booking.terms_in_force(session, referral.referrer_brand_id, caller_id, now)

    won = await session.execute(
        update(Referral)
        .where(Referral.id == referral.id, Referral.status == "open")
        .values(status="converted")
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        replay = await idempotency.lookup(session, caller_id, key, CONVERT_OPERATION, print_, ConversionOut)
        if replay is not None:
            return replay
        return await _already_converted(session, referral.id, data)
    conversion = Conversion(
        id=new_id("cnv"),
        referral_id=referral.id,
        referrer_brand_id=referral.referrer_brand_id,
        receiver_brand_id=caller_id,
        order_reference=data.order_reference,
        order_amount=data.order_amount,
        currency=data.currency,
        occurred_at=now,
        contract_id=terms.contract_id,
        contract_version=terms.version,
        commission=0,
    )
    event = contracts.ReferralConversion(
        event_id=conversion.id,
        occurred_at=now,
        referrer_brand=referral.referrer_brand_id,
        receiver_brand=caller_id,
        referred_at=referral.issued_at.astimezone(UTC),
        order_amount=data.order_amount,
        currency=data.currency,
    )
    booked = await booking.book(
        session,
        event,
        terms,
        brand_id=caller_id,
        kind="referral_conversion",
        reference={"conversion_id": conversion.id, "referral_id": referral.id},
        lock_totals=lock_totals,
    )
    priced, transaction_id = booked.priced, booked.transaction_id
    conversion.commission = priced.commission
    conversion.ledger_transaction_id = transaction_id
    session.add(conversion)
    body = conversion_out(conversion)
    await webhooks.enqueue(session, "conversion.created", {caller_id: body, referral.referrer_brand_id: body})
    record_audit(
        session,
        ctx,
        "conversion.create",
        brand_id=caller_id,
        target=conversion.id,
        details={"referral_id": referral.id, "commission": priced.commission, "currency": data.currency},
    )
    idempotency.remember(session, caller_id, key, CONVERT_OPERATION, print_, 201, body, conversion.id)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        replay = await idempotency.lookup(session, caller_id, key, CONVERT_OPERATION, print_, ConversionOut)
        if replay is not None:
            return replay
        raise Problem(409, "conflict", "a concurrent request converted this referral; retry") from None
    await booking.settle(session, booked)
    return idempotency.IdempotentResult(201, body)


async def _already_converted(
    session: AsyncSession, referral_id: str, data: ConversionCreate
) -> idempotency.IdempotentResult[ConversionOut]:
    existing = await session.scalar(select(Conversion).where(Conversion.referral_id == referral_id))
    if existing is not None and (existing.order_reference, existing.order_amount, existing.currency) == (
        data.order_reference,
        data.order_amount,
        data.currency,
    ):
        # The same conversion reported again (another key, or a client that lost the first answer).
        return idempotency.IdempotentResult(201, conversion_out(existing), replayed=True)
    raise Problem(
        409,
        "referral-already-converted",
        "this referral has already been converted (commission is paid once per referral)",
        extra={"conversion_id": existing.id} if existing is not None else None,
    )
