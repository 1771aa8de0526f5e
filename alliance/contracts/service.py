"""Contracts between brands: registered signing keys, proposed versions, verified signatures, and the
terms in force that other domains price and match under.

No HTTP objects here. Errors are `Problem`s; another brand's contract answers exactly like a missing
one (404). A version is *signed* when both parties' signatures are stored, and only signed versions
ever govern anything (`terms_in_force`).

Functions other domains call:

* ``await terms_in_force(session, brand_x, brand_y, at) -> ContractTerms`` (409 ``no-contract-in-force``)
* ``await psi_terms_in_force(session, brand_x, brand_y, at) -> tuple[ContractTerms, PsiTerms]``
  (409 ``no-contract-in-force`` / ``psi-not-allowed``)
* ``await signed_versions(session, contract_id) -> list[ContractTerms]``
* ``await verify_stored_signatures(session, contract_id) -> None`` (re-checks every stored signature
  against the key it was made with; raises ``SignatureInvalid``)

The alliance reviews versions (``review_version``, called by the operator API and the console): an
approval is recorded and audited; a rejection is a veto - the rejected version never governs anything,
and ``terms_in_force`` answers 409 ``no-contract-in-force`` for the period it would have governed (an
earlier version does not come back). Review is not a gate: a version is in force once both parties
sign it, reviewed or not (docs/decisions.md).
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import msgspec
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.contracts.schemas import (
    ContractOut,
    ContractProposal,
    ReviewOut,
    SignatureOut,
    SigningKeyOut,
    SigningKeysOut,
    VersionOut,
)
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Brand, Contract, ContractReview, ContractSignature, ContractVersion, SigningKey

__all__ = [
    "contract_out",
    "contract_views",
    "current_signing_key",
    "get_contract",
    "list_contracts",
    "propose_contract",
    "propose_version",
    "psi_terms_in_force",
    "register_signing_key",
    "review_version",
    "sign_version",
    "signed_versions",
    "signing_keys",
    "terms_from_canonical",
    "terms_in_force",
    "terms_of",
    "verify_stored_signatures",
]


# --- signing keys -----------------------------------------------------------------------------------


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


# --- reading contracts ------------------------------------------------------------------------------


def terms_of(version: ContractVersion) -> contracts.ContractTerms:
    """The terms stored in a version row (its canonical bytes, decoded and re-checked)."""
    return terms_from_canonical(version.contract_id, version.version, version.canonical)


def terms_from_canonical(contract_id: str, version: int, canonical: bytes) -> contracts.ContractTerms:
    """The terms of a version's stored canonical bytes, decoded and re-checked."""
    terms = msgspec.json.decode(canonical[len(contracts.DOMAIN_PREFIX) :], type=contracts.ContractTerms)
    if contracts.canonical_bytes(terms) != canonical:  # pragma: no cover - storage corruption
        raise RuntimeError(f"stored contract {contract_id} v{version} is not canonical")
    return terms


async def _contract_for(session: AsyncSession, contract_id: str, brand_id: str | None) -> Contract:
    contract = await session.get(Contract, contract_id)
    if contract is None or (brand_id is not None and brand_id not in (contract.party_a, contract.party_b)):
        raise Problem(404, "contract-not-found", f"no contract {contract_id!r} for this brand")
    return contract


async def _versions(session: AsyncSession, contract_ids: Sequence[str]) -> dict[str, list[ContractVersion]]:
    rows = (
        await session.scalars(
            select(ContractVersion)
            .where(ContractVersion.contract_id.in_(contract_ids))
            .order_by(ContractVersion.contract_id, ContractVersion.version)
        )
    ).all()
    grouped: dict[str, list[ContractVersion]] = defaultdict(list)
    for row in rows:
        grouped[row.contract_id].append(row)
    return grouped


async def _signatures(
    session: AsyncSession, contract_ids: Sequence[str]
) -> dict[tuple[str, int], list[ContractSignature]]:
    rows = (
        await session.scalars(
            select(ContractSignature)
            .where(ContractSignature.contract_id.in_(contract_ids))
            .order_by(ContractSignature.signed_at, ContractSignature.brand_id)
        )
    ).all()
    grouped: dict[tuple[str, int], list[ContractSignature]] = defaultdict(list)
    for row in rows:
        grouped[(row.contract_id, row.version)].append(row)
    return grouped


async def _reviews(session: AsyncSession, contract_ids: Sequence[str]) -> dict[tuple[str, int], ContractReview]:
    rows = (await session.scalars(select(ContractReview).where(ContractReview.contract_id.in_(contract_ids)))).all()
    return {(row.contract_id, row.version): row for row in rows}


def _review_out(review: ContractReview | None) -> ReviewOut | None:
    if review is None:
        return None
    decision: Literal["approved", "rejected"] = "rejected" if review.decision == "rejected" else "approved"
    return ReviewOut(decision=decision, reason=review.reason, reviewed_at=review.reviewed_at)


def _version_out(
    version: ContractVersion, signatures: list[ContractSignature], review: ContractReview | None = None
) -> VersionOut:
    terms = terms_of(version)
    signers = {s.brand_id for s in signatures}
    missing = [brand for brand in terms.parties if brand not in signers]
    status = "partially_signed" if signatures and missing else ("proposed" if missing else "signed")
    return VersionOut(
        version=version.version,
        terms=terms,
        canonical=base64.b64encode(version.canonical).decode("ascii"),
        fingerprint=version.fingerprint,
        proposed_by=version.proposed_by,
        proposed_at=version.proposed_at,
        signatures=[SignatureOut(brand_id=s.brand_id, key_id=s.key_id, signed_at=s.signed_at) for s in signatures],
        missing_signers=missing,
        signed=not missing,
        status=status,
        review=_review_out(review),
    )


def _settle_statuses(views: list[VersionOut], at: datetime) -> int | None:
    """Give each signed version its status at ``at``; returns the version in force (None if none is:
    no signed version covers ``at``, or the one that would is rejected)."""
    signed = [view.terms for view in views if view.signed]
    governing: int | None = None
    if signed:
        try:
            governing = contracts.version_in_force(signed, at).version
        except contracts.NoContractInForce:
            governing = None
    started = [t for t in signed if t.effective_from <= at]
    for view in views:
        if view.review is not None and view.review.decision == "rejected":
            view.status = "rejected"
        elif not view.signed:
            continue
        elif view.version == governing:
            view.status = "in_force"
        elif view.terms.effective_from > at:
            view.status = "scheduled"
        elif any((t.effective_from, t.version) > (view.terms.effective_from, view.version) for t in started):
            view.status = "superseded"
        else:
            view.status = "ended"
    in_force = next((view for view in views if view.version == governing), None)
    return governing if in_force is not None and in_force.status == "in_force" else None


def contract_out(
    contract: Contract,
    versions: list[ContractVersion],
    signatures: dict[tuple[str, int], list[ContractSignature]],
    viewer: str | None,
    at: datetime | None = None,
    reviews: dict[tuple[str, int], ContractReview] | None = None,
) -> ContractOut:
    version_views = [
        _version_out(v, signatures.get((v.contract_id, v.version), []), (reviews or {}).get((v.contract_id, v.version)))
        for v in versions
    ]
    in_force = _settle_statuses(version_views, at or utcnow())
    counterparty = None
    if viewer is not None:
        counterparty = contract.party_b if viewer == contract.party_a else contract.party_a
    return ContractOut(
        contract_id=contract.id,
        parties=(contract.party_a, contract.party_b),
        counterparty=counterparty,
        created_at=contract.created_at,
        in_force_version=in_force,
        versions=version_views,
    )


async def get_contract(session: AsyncSession, contract_id: str, brand_id: str | None) -> ContractOut:
    """One contract with every version and signature; ``brand_id`` None is the operator's view."""
    contract = await _contract_for(session, contract_id, brand_id)
    versions = await _versions(session, [contract.id])
    signatures = await _signatures(session, [contract.id])
    reviews = await _reviews(session, [contract.id])
    return contract_out(contract, versions[contract.id], signatures, brand_id, reviews=reviews)


async def contract_views(
    session: AsyncSession, rows: Sequence[Contract], viewer: str | None = None
) -> list[ContractOut]:
    """The views of already loaded contracts (three statements whatever their number): the console's
    pages load a keyset page of contracts and show them exactly as the API does."""
    if not rows:
        return []
    ids = [c.id for c in rows]
    versions = await _versions(session, ids)
    signatures = await _signatures(session, ids)
    reviews = await _reviews(session, ids)
    return [contract_out(c, versions.get(c.id, []), signatures, viewer, reviews=reviews) for c in rows]


async def list_contracts(session: AsyncSession, brand_id: str | None) -> list[ContractOut]:
    """The brand's contracts (both directions), oldest first; every contract for the operator."""
    query = select(Contract).order_by(Contract.created_at, Contract.id)
    if brand_id is not None:
        query = query.where(or_(Contract.party_a == brand_id, Contract.party_b == brand_id))
    rows = list((await session.scalars(query)).all())
    if not rows:
        return []
    ids = [c.id for c in rows]
    versions = await _versions(session, ids)
    signatures = await _signatures(session, ids)
    reviews = await _reviews(session, ids)
    return [contract_out(c, versions.get(c.id, []), signatures, brand_id, reviews=reviews) for c in rows]


# --- proposing --------------------------------------------------------------------------------------


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
    if proposal.parties is None:
        raise Problem(422, "invalid-terms", "parties: a new contract names its two parties")
    if brand_id not in proposal.parties:
        raise Problem(403, "not-a-party", "a brand can only propose contracts it is a party to")
    if proposal.version not in (None, 1):
        raise Problem(422, "invalid-version", "a new contract starts at version 1")
    try:
        parties = contracts.party_pair(*proposal.parties)
    except ValueError as exc:
        raise Problem(422, "invalid-terms", f"parties: {exc}") from None
    counterparty = parties[1] if parties[0] == brand_id else parties[0]
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
    contract = await _contract_for(session, contract_id, brand_id)
    parties = (contract.party_a, contract.party_b)
    if proposal.parties is not None and sorted(proposal.parties) != list(parties):
        raise Problem(422, "invalid-version", f"parties: a new version keeps the parties {parties!r}")
    existing = [terms_of(v) for v in (await _versions(session, [contract.id]))[contract.id]]
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
    contract = await _contract_for(session, contract_id, brand_id)
    row = await session.get(ContractVersion, (contract.id, version))
    if row is None:
        raise Problem(404, "version-not-found", f"contract {contract_id!r} has no version {version}")
    terms = terms_of(row)
    review = await session.get(ContractReview, (contract.id, version))
    if review is not None and review.decision == "rejected":
        raise Problem(409, "version-rejected", f"the alliance rejected version {version}: {review.reason}")
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
    already = await session.get(ContractSignature, (contract.id, version, brand_id))
    if already is None:
        now = utcnow()
        if version > 1 and now >= terms.effective_from:
            raise Problem(
                409,
                "version-start-passed",
                f"version {version} took effect at {terms.effective_from.isoformat()} before it was signed; "
                "propose a new version that starts in the future",
            )
        session.add(
            ContractSignature(
                contract_id=contract.id,
                version=version,
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
        record_audit(
            session,
            ctx,
            "contract.sign",
            brand_id=brand_id,
            target=contract.id,
            details={"version": version, "fingerprint": row.fingerprint, "key_id": key.id},
        )
    return await get_contract(session, contract.id, brand_id)


# --- terms in force ---------------------------------------------------------------------------------


async def _signed_rows(session: AsyncSession, contract_id: str) -> list[tuple[ContractVersion, ContractReview | None]]:
    """Every fully signed version with the alliance's review of it (one statement)."""
    fully_signed = (
        select(ContractSignature.version)
        .where(ContractSignature.contract_id == contract_id)
        .group_by(ContractSignature.version)
        .having(func.count() == 2)
    )
    rows = await session.execute(
        select(ContractVersion, ContractReview)
        .outerjoin(
            ContractReview,
            (ContractReview.contract_id == ContractVersion.contract_id)
            & (ContractReview.version == ContractVersion.version),
        )
        .where(ContractVersion.contract_id == contract_id, ContractVersion.version.in_(fully_signed))
        .order_by(ContractVersion.version)
    )
    return [(version, review) for version, review in rows.all()]


async def signed_versions(session: AsyncSession, contract_id: str) -> list[contracts.ContractTerms]:
    """Every version of the contract that both parties have signed, in version order (rejected ones
    included: a rejected version still ends its predecessor's period)."""
    return [terms_of(row) for row, _ in await _signed_rows(session, contract_id)]


async def terms_in_force(session: AsyncSession, brand_x: str, brand_y: str, at: datetime) -> contracts.ContractTerms:
    """The signed contract version between two brands that governs instant ``at`` (UTC).

    Raises 409 ``no-contract-in-force`` when the brands have no contract, no version signed by both, or
    none covering ``at``. The argument order of the brands does not matter.
    """
    if brand_x == brand_y:
        raise Problem(409, "no-contract-in-force", "a brand has no contract with itself")
    party_a, party_b = contracts.party_pair(brand_x, brand_y)
    contract_id = await session.scalar(
        select(Contract.id).where(Contract.party_a == party_a, Contract.party_b == party_b)
    )
    if contract_id is None:
        raise Problem(409, "no-contract-in-force", "these brands have no contract")
    rows = await _signed_rows(session, contract_id)
    try:
        terms = contracts.version_in_force([terms_of(row) for row, _ in rows], at)
    except contracts.NoContractInForce as exc:
        raise Problem(409, "no-contract-in-force", str(exc), extra={"contract_id": contract_id}) from None
    review = next((review for row, review in rows if row.version == terms.version), None)
    if review is not None and review.decision == "rejected":
        raise Problem(
            409,
            "no-contract-in-force",
            f"version {terms.version} of contract {contract_id} was rejected by the alliance: {review.reason}",
            extra={"contract_id": contract_id, "rejected_version": terms.version},
        )
    return terms


async def psi_terms_in_force(
    session: AsyncSession, brand_x: str, brand_y: str, at: datetime
) -> tuple[contracts.ContractTerms, contracts.PsiTerms]:
    """The version in force and its PSI terms; 409 ``psi-not-allowed`` if that version allows no matching."""
    terms = await terms_in_force(session, brand_x, brand_y, at)
    if terms.psi is None:
        raise Problem(
            409,
            "psi-not-allowed",
            f"contract {terms.contract_id} version {terms.version} allows no audience matching",
        )
    return terms, terms.psi


# --- the alliance's review ---------------------------------------------------------------------------


async def review_version(
    session: AsyncSession,
    ctx: AuditContext,
    contract_id: str,
    version: int,
    decision: Literal["approve", "reject"],
    reason: str | None = None,
) -> ContractOut:
    """Record the alliance's review of a version (the operator's view of the contract is returned).

    ``approve`` records who approved it and when (approving again changes nothing); ``reject`` needs a
    reason (422 ``review-reason-required``) and takes the version out of force for good: an approved
    version may still be rejected, a rejected one is never approved again (409 ``version-rejected``).
    Both are audited (``contract.approve`` / ``contract.reject``) in the caller's transaction.
    """
    contract = await _contract_for(session, contract_id, None)
    row = await session.get(ContractVersion, (contract.id, version))
    if row is None:
        raise Problem(404, "version-not-found", f"contract {contract_id!r} has no version {version}")
    reason = (reason or "").strip()[:500] or None
    if decision == "reject" and reason is None:
        raise Problem(422, "review-reason-required", "a rejection needs a reason: the parties will read it")
    existing = await session.get(ContractReview, (contract.id, version), with_for_update=True)
    if existing is not None and existing.decision == "rejected":
        raise Problem(
            409,
            "version-rejected",
            f"version {version} was rejected on {existing.reviewed_at.isoformat()}; a rejection is final",
        )
    outcome = "approved" if decision == "approve" else "rejected"
    if existing is not None and existing.decision == outcome:
        return await get_contract(session, contract.id, None)
    now = utcnow()
    if existing is None:
        session.add(
            ContractReview(
                contract_id=contract.id,
                version=version,
                decision=outcome,
                reason=reason,
                reviewed_by=ctx.actor[:100],
                reviewed_at=now,
            )
        )
    else:
        existing.decision, existing.reason, existing.reviewed_by, existing.reviewed_at = (
            outcome,
            reason,
            ctx.actor[:100],
            now,
        )
    try:
        await session.flush()
    except IntegrityError:  # another operator reviewed it at the same instant
        raise Problem(409, "review-conflict", f"version {version} was just reviewed; reload and retry") from None
    record_audit(
        session,
        ctx,
        f"contract.{decision}",
        target=contract.id,
        details={
            "version": version,
            "fingerprint": row.fingerprint,
            "parties": [contract.party_a, contract.party_b],
            **({"reason": reason} if reason else {}),
        },
    )
    return await get_contract(session, contract.id, None)


async def verify_stored_signatures(session: AsyncSession, contract_id: str) -> None:
    """Re-verify every stored signature of the contract under the key it names (retired keys included).

    Raises `contracts.SignatureInvalid` naming the first version and brand that fail; the console and
    audits use it to show that what is stored is what was signed.
    """
    contract = await _contract_for(session, contract_id, None)
    versions = {v.version: v for v in (await _versions(session, [contract.id]))[contract.id]}
    signatures = await _signatures(session, [contract.id])
    key_ids = {s.key_id for rows in signatures.values() for s in rows}
    keys = {k.id: k for k in (await session.scalars(select(SigningKey).where(SigningKey.id.in_(key_ids)))).all()}
    for (_, number), rows in sorted(signatures.items()):
        terms = terms_of(versions[number])
        if contracts.fingerprint(terms) != versions[number].fingerprint:
            raise contracts.SignatureInvalid(f"version {number}: stored fingerprint does not match its terms")
        for sig in rows:
            key = keys.get(sig.key_id)
            if key is None or key.brand_id != sig.brand_id:
                raise contracts.SignatureInvalid(f"version {number}: key {sig.key_id} is not {sig.brand_id}'s")
            try:
                contracts.verify_signature(key.public_key, terms, sig.signature)
            except (contracts.SignatureInvalid, contracts.InvalidSignatureLength) as exc:
                raise contracts.SignatureInvalid(f"version {number}, brand {sig.brand_id}: {exc}") from exc
