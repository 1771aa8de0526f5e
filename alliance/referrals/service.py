"""Referral tokens and conversions. No HTTP objects here.

A referral exists only under a signed contract between the two brands in force when it is issued; its
token expires at the end of the contract's attribution window (or sooner if asked). A conversion is
accepted once per referral: ``UPDATE referrals ... WHERE status = 'open'`` has one winner and the
unique ``conversions.referral_id`` backs it, so the same conversion reported twice (or concurrently)
posts one ledger transaction.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.benefits import booking
from alliance.contracts import service as contract_service
from alliance.core import idempotency
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Brand, Conversion, ExchangeSigningKey, Referral
from alliance.referrals import conversion_rules as rules
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
    terms = await contract_service.terms_in_force(session, referrer_id, data.receiver_brand_id, now)
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


async def _token_snapshot(session: AsyncSession, caller_id: str, token: str) -> rules.TokenSnapshot:
    """The token decoded (not trusted) with the key and the referral it names."""
    try:
        payload, body, signature = tokens.decode_unverified(token)
    except tokens.InvalidToken as exc:
        return rules.TokenSnapshot(caller_id, None, b"", b"", str(exc), None, None)
    key = await session.get(ExchangeSigningKey, payload.kid) if payload.to == caller_id else None
    referral = await session.get(Referral, payload.rid) if key is not None else None
    public_key = key.public_key if key is not None else None
    return rules.TokenSnapshot(caller_id, payload, body, signature, None, public_key, referral)


async def _snapshot(session: AsyncSession, caller_id: str, data: ConversionCreate) -> rules.ConversionSnapshot:
    """What :func:`rules.decide` reads: the token's state, the referral's conversion, the contract."""
    token = await _token_snapshot(session, caller_id, data.token)
    referral = token.referral
    prior = history = None
    if referral is not None and referral.status != "open":
        prior = await _prior_conversion(session, referral.id)
    elif referral is not None:
        history = await contract_service.load_history(session, referral.referrer_brand_id, caller_id)
    return rules.ConversionSnapshot(token, data, utcnow(), new_id("cnv"), prior, history)


async def _prior_conversion(session: AsyncSession, referral_id: str) -> Conversion | None:
    return await session.scalar(select(Conversion).where(Conversion.referral_id == referral_id))


def _replay_or_raise(outcome: Problem | rules.Replay) -> idempotency.IdempotentResult[ConversionOut]:
    if isinstance(outcome, Problem):
        raise outcome
    return idempotency.IdempotentResult(201, conversion_out(outcome.conversion), replayed=True)


async def convert(
    session: AsyncSession, ctx: AuditContext, caller_id: str, idempotency_key: str | None, data: ConversionCreate
) -> idempotency.IdempotentResult[ConversionOut]:
    """Report a referred member's purchase at the caller (the receiving brand) and post the commission.

    Refused (`alliance.referrals.conversion_rules`): a bad or foreign token (400/404), an expired one
    (409 ``referral-expired``), no contract in force (409), a conversion outside the contract's
    attribution window (409 ``outside-attribution-window``), a second different conversion of one
    referral (409 ``referral-already-converted``). The same conversion reported again, with the same
    key or the same order, returns the first answer and posts nothing.
    """
    refusal = rules.check_token(await _token_snapshot(session, caller_id, data.token))
    if refusal is not None:  # 400/404 before anything else
        raise refusal
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
    """Load the snapshot, decide, and book the plan (or answer the replay / raise the refusal)."""
    replay = await idempotency.lookup(session, caller_id, key, CONVERT_OPERATION, print_, ConversionOut)
    if replay is not None:
        return replay
    snapshot = await _snapshot(session, caller_id, data)
    decision = rules.decide(snapshot)
    if not isinstance(decision, rules.ConversionPlan):
        return _replay_or_raise(decision)
    won = await session.execute(
        update(Referral)
        .where(Referral.id == decision.referral.id, Referral.status == "open")
        .values(status="converted")
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        replay = await idempotency.lookup(session, caller_id, key, CONVERT_OPERATION, print_, ConversionOut)
        if replay is not None:
            return replay
        return _replay_or_raise(rules.already_converted(await _prior_conversion(session, decision.referral.id), data))
    return await _book(session, ctx, caller_id, key, print_, data, decision, lock_totals=lock_totals)


async def _book(
    session: AsyncSession,
    ctx: AuditContext,
    caller_id: str,
    key: str,
    print_: str,
    data: ConversionCreate,
    plan: rules.ConversionPlan,
    *,
    lock_totals: bool,
) -> idempotency.IdempotentResult[ConversionOut]:
    """Book a decided conversion: ledger transaction, conversion row, webhooks, audit, idempotency."""
    referral, terms, event = plan.referral, plan.terms, plan.event
    booked = await booking.book(
        session,
        event,
        terms,
        brand_id=caller_id,
        kind="referral_conversion",
        reference={"conversion_id": event.event_id, "referral_id": referral.id},
        lock_totals=lock_totals,
    )
    conversion = _conversion_row(plan, booked, data.order_reference)
    session.add(conversion)
    body = conversion_out(conversion)
    await webhooks.enqueue(session, "conversion.created", {caller_id: body, referral.referrer_brand_id: body})
    record_audit(
        session,
        ctx,
        "conversion.create",
        brand_id=caller_id,
        target=conversion.id,
        details={"referral_id": referral.id, "commission": booked.priced.commission, "currency": data.currency},
    )
    idempotency.remember(session, caller_id, key, CONVERT_OPERATION, print_, 201, body, conversion.id)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        replay = await idempotency.lookup(session, caller_id, key, CONVERT_OPERATION, print_, ConversionOut)
        if replay is not None:
            return replay
        raise rules.lost_race() from None
    await booking.settle(session, booked)
    return idempotency.IdempotentResult(201, body)


def _conversion_row(plan: rules.ConversionPlan, booked: booking.Booking, order_reference: str) -> Conversion:
    event = plan.event
    return Conversion(
        id=event.event_id,
        referral_id=plan.referral.id,
        referrer_brand_id=event.referrer_brand,
        receiver_brand_id=event.receiver_brand,
        order_reference=order_reference,
        order_amount=event.order_amount,
        currency=event.currency,
        occurred_at=event.occurred_at,
        contract_id=plan.terms.contract_id,
        contract_version=plan.terms.version,
        commission=booked.priced.commission,
        ledger_transaction_id=booked.transaction_id,
    )
