"""Whether a referral conversion may happen, and what it books: the rules of ``POST /v1/conversions``
as pure functions over a snapshot of what the command reads (no I/O).

:func:`decide` returns a refusal (a `Problem`, not raised: its slug, status, detail and extra), a
:class:`Replay` of the conversion already booked for the referral, or a :class:`ConversionPlan`. Each
refusal is decided in exactly one function, in the order the API documents:

1. the token (:func:`check_token`): malformed (400 ``malformed-referral-token``), not for the caller or
   naming an unknown key or referral (404 ``referral-not-found``, exactly like a missing one), or a
   signature that does not verify (400 ``invalid-referral-token``);
2. the referral already converted (:func:`already_converted`): the same order again is a replay of the
   first answer; another order is 409 ``referral-already-converted``;
3. the token's expiry (:func:`check_expiry`, 409 ``referral-expired``);
4. the contract in force between the brands now (:func:`terms_now`, 409 ``no-contract-in-force``,
   decided by `contracts.version_in_force`);
5. pricing (:func:`check_pricing`): outside the attribution window (409), another currency than the
   contract's (422), ... as `alliance.benefits.booking.pricing_problem` maps `contracts` errors.

A conversion that lost the race for its referral to a concurrent one is :func:`lost_race` (409).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import contracts
from alliance.benefits.booking import pricing_problem
from alliance.contracts.in_force import ContractHistory, terms_between
from alliance.core.problems import Problem
from alliance.db.models import Conversion, Referral
from alliance.referrals import tokens
from alliance.referrals.schemas import ConversionCreate

__all__ = [
    "ConversionPlan",
    "ConversionSnapshot",
    "Replay",
    "TokenSnapshot",
    "already_converted",
    "check_expiry",
    "check_pricing",
    "check_token",
    "decide",
    "lost_race",
    "terms_now",
]


@dataclass(frozen=True, slots=True)
class TokenSnapshot:
    """What the token names, and the stored state it is checked against (read, never trusted)."""

    caller_id: str
    payload: tokens.TokenPayload | None  # None: the token could not be decoded (``malformed``)
    body: bytes
    signature: bytes
    malformed: str | None  # why it could not be decoded
    public_key: bytes | None  # the exchange key the token names (None if unknown)
    referral: Referral | None  # the referral the token names (None if unknown)


@dataclass(frozen=True, slots=True)
class ConversionSnapshot:
    """Everything a conversion's decision reads, loaded before deciding (`Referral` and `Conversion`
    rows are read for their columns only)."""

    token: TokenSnapshot
    request: ConversionCreate
    now: datetime
    conversion_id: str  # the id the conversion (and its ledger event) gets if it is booked
    prior: Conversion | None  # the conversion already booked for the referral, if any
    contract: ContractHistory | None  # the brands' contract (None if they have none)


@dataclass(frozen=True, slots=True)
class Replay:
    """The same conversion reported again (another key, or a client that lost the first answer)."""

    conversion: Conversion


@dataclass(frozen=True, slots=True)
class ConversionPlan:
    """What to book: the referral to mark converted, the terms that price it and the priced event."""

    referral: Referral
    terms: contracts.ContractTerms
    event: contracts.ReferralConversion


def check_token(snapshot: TokenSnapshot) -> Problem | None:
    """Refuse a token that is malformed, forged, not for the caller, or names nothing stored."""
    not_found = Problem(404, "referral-not-found", "no such referral token for this brand")
    payload = snapshot.payload
    if payload is None:
        return Problem(400, "malformed-referral-token", snapshot.malformed)
    if payload.to != snapshot.caller_id or snapshot.public_key is None:
        return not_found
    try:
        tokens.verify_token(Ed25519PublicKey.from_public_bytes(snapshot.public_key), snapshot.body, snapshot.signature)
    except tokens.InvalidToken:
        return Problem(400, "invalid-referral-token", "the token's signature does not verify")
    referral = snapshot.referral
    if referral is None or referral.receiver_brand_id != snapshot.caller_id or referral.key_id != payload.kid:
        return not_found
    return None


def already_converted(prior: Conversion | None, request: ConversionCreate) -> Problem | Replay:
    """A second conversion of a converted referral: the same order is a replay, another is refused."""
    if prior is not None and (prior.order_reference, prior.order_amount, prior.currency) == (
        request.order_reference,
        request.order_amount,
        request.currency,
    ):
        return Replay(prior)
    return Problem(
        409,
        "referral-already-converted",
        "this referral has already been converted (commission is paid once per referral)",
        extra={"conversion_id": prior.id} if prior is not None else None,
    )


def check_expiry(referral: Referral, now: datetime) -> Problem | None:
    """Refuse a conversion at or after the token's expiry."""
    if now >= referral.expires_at:
        return Problem(409, "referral-expired", f"this referral token expired at {referral.expires_at.isoformat()}")
    return None


def terms_now(snapshot: ConversionSnapshot, referral: Referral) -> contracts.ContractTerms | Problem:
    """The contract version between referrer and receiver in force now, or the refusal."""
    try:
        return terms_between(referral.referrer_brand_id, snapshot.token.caller_id, snapshot.contract, snapshot.now)
    except Problem as refusal:
        return refusal


def check_pricing(event: contracts.ReferralConversion, terms: contracts.ContractTerms) -> Problem | None:
    """Refuse what the contract cannot price (the month-to-date total changes the amount, never whether
    an event can be priced, so it is priced here with none)."""
    try:
        contracts.price_referral_conversion(event, terms)
    except contracts.ContractError as exc:
        return pricing_problem(exc)
    return None


def lost_race() -> Problem:
    """A concurrent request converted the referral between the checks and the booking."""
    return Problem(409, "conflict", "a concurrent request converted this referral; retry")


def _event(snapshot: ConversionSnapshot, referral: Referral) -> contracts.ReferralConversion:
    return contracts.ReferralConversion(
        event_id=snapshot.conversion_id,
        occurred_at=snapshot.now,
        referrer_brand=referral.referrer_brand_id,
        receiver_brand=snapshot.token.caller_id,
        referred_at=referral.issued_at.astimezone(UTC),
        order_amount=snapshot.request.order_amount,
        currency=snapshot.request.currency,
    )


def decide(snapshot: ConversionSnapshot) -> Problem | Replay | ConversionPlan:
    """The decision on a conversion: a refusal, a replay, or the plan to book (see the module)."""
    refusal = check_token(snapshot.token)
    if refusal is not None:
        return refusal
    referral = snapshot.token.referral
    assert referral is not None  # check_token refuses a token naming no referral
    if referral.status != "open":
        return already_converted(snapshot.prior, snapshot.request)
    refusal = check_expiry(referral, snapshot.now)
    if refusal is not None:
        return refusal
    terms = terms_now(snapshot, referral)
    if isinstance(terms, Problem):
        return terms
    event = _event(snapshot, referral)
    refusal = check_pricing(event, terms)
    if refusal is not None:
        return refusal
    return ConversionPlan(referral=referral, terms=terms, event=event)
