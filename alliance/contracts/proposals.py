"""Proposing and signing contract versions.

A contract is started with version 1 (`propose_contract`); later versions are appended
(`propose_version`) and take effect only once both parties have signed them before they start
(`sign_version`; docs/decisions.md). Signatures are verified against the signer's current key.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.contracts.keys import current_signing_key
from alliance.contracts.schemas import ContractOut, ContractProposal
from alliance.contracts.views import contract_for, contract_out, get_contract, load_versions, terms_of
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Brand, Contract, ContractReview, ContractSignature, ContractVersion, SigningKey

__all__ = ["propose_contract", "propose_version", "sign_version"]


def _invalid(exc: contracts.InvalidTerms) -> Problem:
    slug = "invalid-version" if isinstance(exc, contracts.InvalidVersion) else "invalid-terms"
    return Problem(
        422,
        slug,
        str(exc),
        extra={"problems": [{"field": path, "message": message} for path, message in exc.problems]},
    )


def _build_terms(
    proposal: ContractProposal, contract_id: str, version: int, parties: tuple[str, str]
) -> contracts.ContractTerms:
    return contracts.ContractTerms(
        contract_id=contract_id,
        version=version,
        parties=parties,
        settlement_currency=proposal.settlement_currency,
        # Any offset is accepted on the wire; the signed terms always say UTC.
        effective_from=proposal.effective_from.astimezone(UTC),
        effective_to=proposal.effective_to.astimezone(UTC) if proposal.effective_to else None,
        funding=proposal.funding,
        coupon_commission=proposal.coupon_commission,
        referral=proposal.referral,
        attribution_window_seconds=proposal.attribution_window_seconds,
        psi=proposal.psi,
        note=proposal.note,
    )


def _store_version(
    session: AsyncSession, terms: contracts.ContractTerms, proposed_by: str, now: datetime
) -> ContractVersion:
    row = ContractVersion(
        contract_id=terms.contract_id,
        version=terms.version,
        canonical=contracts.canonical_bytes(terms),
        fingerprint=contracts.fingerprint(terms),
        effective_from=terms.effective_from,
        effective_to=terms.effective_to,
        proposed_by=proposed_by,
        proposed_at=now,
    )
    session.add(row)
    return row


def _first_version_parties(brand_id: str, proposal: ContractProposal) -> tuple[str, str]:
    """The ordered pair a new contract's version 1 names (the caller among them)."""
    if proposal.parties is None:
        raise Problem(422, "invalid-terms", "parties: a new contract names its two parties")
    if brand_id not in proposal.parties:
        raise Problem(403, "not-a-party", "a brand can only propose contracts it is a party to")
    if proposal.version not in (None, 1):
        raise Problem(422, "invalid-version", "a new contract starts at version 1")
    try:
        return contracts.party_pair(*proposal.parties)
    except ValueError as exc:
        raise Problem(422, "invalid-terms", f"parties: {exc}") from None


async def _check_new_pair(session: AsyncSession, parties: tuple[str, str], counterparty: str) -> None:
    """The counterparty is an active brand and the pair has no contract yet."""
    other = await session.get(Brand, counterparty) if contracts.is_valid_id(counterparty) else None
    if other is None or other.status != "active":
        raise Problem(422, "unknown-brand", f"{counterparty!r} is not an active brand of the alliance")
    existing = await session.scalar(
        select(Contract.id).where(Contract.party_a == parties[0], Contract.party_b == parties[1])
    )
    if existing is not None:
        raise Problem(
            409,
            "contract-exists",
            "these brands already have a contract: propose a new version of it",
            extra={"contract_id": existing},
        )


async def propose_contract(
    session: AsyncSession, ctx: AuditContext, brand_id: str, proposal: ContractProposal
) -> ContractOut:
    """Start a contract between the caller and one other brand, with ``proposal`` as version 1.

    The exchange assigns the contract id. Refuses (403 ``not-a-party``) terms whose parties do not
    include the caller, (422 ``unknown-brand``) a counterparty that is not an active member, (409
    ``contract-exists``) a second contract for the same pair - propose a new version of it instead -
    and (422 ``invalid-terms``) anything `contracts.validate_terms` rejects. Version 1 may start in the
    past: no event between the pair could be priced before a contract existed.
    """
    parties = _first_version_parties(brand_id, proposal)
    counterparty = parties[1] if parties[0] == brand_id else parties[0]
    await _check_new_pair(session, parties, counterparty)
    terms = _build_terms(proposal, new_id("ctr"), 1, parties)
    try:
        contracts.validate_new_version([], terms)
    except contracts.InvalidTerms as exc:
        raise _invalid(exc) from None
    now = utcnow()
    contract = Contract(
        id=terms.contract_id, party_a=parties[0], party_b=parties[1], created_by=brand_id, created_at=now
    )
    session.add(contract)
    try:
        await session.flush()
    except IntegrityError:  # the other party proposed at the same instant
        raise Problem(409, "contract-exists", "these brands already have a contract") from None
    row = _store_version(session, terms, brand_id, now)
    await session.flush()
    record_audit(
        session,
        ctx,
        "contract.propose",
        brand_id=brand_id,
        target=contract.id,
        details={"version": 1, "fingerprint": row.fingerprint, "counterparty": counterparty},
    )
    return contract_out(contract, [row], {}, brand_id)


async def propose_version(
    session: AsyncSession, ctx: AuditContext, brand_id: str, contract_id: str, proposal: ContractProposal
) -> ContractOut:
    """Append the next version to one of the caller's contracts.

    It keeps the parties and the currency and must start after the latest version and not in the past
    (`contracts.validate_new_version` with ``not_before=now``): a version never re-prices booked events.
    """
    contract = await contract_for(session, contract_id, brand_id)
    parties = (contract.party_a, contract.party_b)
    if proposal.parties is not None and sorted(proposal.parties) != list(parties):
        raise Problem(422, "invalid-version", f"parties: a new version keeps the parties {parties!r}")
    existing = [terms_of(v) for v in (await load_versions(session, [contract.id]))[contract.id]]
    number = proposal.version if proposal.version is not None else len(existing) + 1
    terms = _build_terms(proposal, contract.id, number, parties)
    now = utcnow()
    try:
        contracts.validate_new_version(existing, terms, not_before=now)
    except contracts.InvalidTerms as exc:
        raise _invalid(exc) from None
    row = _store_version(session, terms, brand_id, now)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent proposal took this number
        raise Problem(409, "version-exists", f"version {number} was just proposed; reload and retry") from None
    record_audit(
        session,
        ctx,
        "contract.propose",
        brand_id=brand_id,
        target=contract.id,
        details={"version": number, "fingerprint": row.fingerprint},
    )
    return await get_contract(session, contract.id, brand_id)


# --- signing ----------------------------------------------------------------------------------------


async def sign_version(
    session: AsyncSession, ctx: AuditContext, brand_id: str, contract_id: str, version: int, signature: bytes
) -> ContractOut:
    """Record the caller's signature of a version after verifying it against the caller's current key.

    Refuses with 422 ``signature-invalid`` a signature that does not verify over the version's canonical
    bytes (forged, made with another key, or over other terms), 409 ``no-signing-key`` before a key is
    registered, and 409 ``version-start-passed`` for a version after the first whose start has passed
    (it would re-price events already booked under its predecessor). Signing again is a no-op.
    """
    contract = await contract_for(session, contract_id, brand_id)
    row = await session.get(ContractVersion, (contract.id, version))
    if row is None:
        raise Problem(404, "version-not-found", f"contract {contract_id!r} has no version {version}")
    terms = terms_of(row)
    review = await session.get(ContractReview, (contract.id, version))
    if review is not None and review.decision == "rejected":
        raise Problem(409, "version-rejected", f"the alliance rejected version {version}: {review.reason}")
    key = await _verified_signer_key(session, brand_id, terms, signature)
    already = await session.get(ContractSignature, (contract.id, version, brand_id))
    if already is None:
        await _store_signature(session, row, terms, brand_id, key, signature)
        record_audit(
            session,
            ctx,
            "contract.sign",
            brand_id=brand_id,
            target=contract.id,
            details={"version": version, "fingerprint": row.fingerprint, "key_id": key.id},
        )
    return await get_contract(session, contract.id, brand_id)


async def _verified_signer_key(
    session: AsyncSession, brand_id: str, terms: contracts.ContractTerms, signature: bytes
) -> SigningKey:
    """The brand's current key, under which ``signature`` verifies over ``terms``."""
    key = await current_signing_key(session, brand_id)
    if key is None:
        raise Problem(409, "no-signing-key", "register a signing key first (PUT /v1/signing-key)")
    try:
        contracts.verify_signature(key.public_key, terms, signature)
    except (contracts.SignatureInvalid, contracts.InvalidSignatureLength) as exc:
        raise Problem(
            422,
            "signature-invalid",
            f"the signature does not verify under your current signing key {key.id}: {exc}",
        ) from None
    return key


async def _store_signature(
    session: AsyncSession,
    row: ContractVersion,
    terms: contracts.ContractTerms,
    brand_id: str,
    key: SigningKey,
    signature: bytes,
) -> None:
    """Store a first signature of the version by the brand (a later version only before it starts)."""
    now = utcnow()
    if row.version > 1 and now >= terms.effective_from:
        raise Problem(
            409,
            "version-start-passed",
            f"version {row.version} took effect at {terms.effective_from.isoformat()} before it was signed; "
            "propose a new version that starts in the future",
        )
    session.add(
        ContractSignature(
            contract_id=row.contract_id,
            version=row.version,
            brand_id=brand_id,
            key_id=key.id,
            signature=bytes(signature),
            signed_at=now,
        )
    )
    try:
        await session.flush()
    except IntegrityError:  # the same brand signed concurrently: the first signature stands
        raise Problem(409, "already-signed", "this version was just signed by your brand") from None
