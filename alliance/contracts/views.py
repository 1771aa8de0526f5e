"""Reading contracts: stored versions decoded and re-checked, and the views the API and the console
show (every version with its signatures, review and status at an instant).

Another brand's contract answers exactly like a missing one (404).
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import msgspec
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.contracts.schemas import ContractOut, ReviewOut, SignatureOut, VersionOut
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Contract, ContractReview, ContractSignature, ContractVersion

__all__ = [
    "contract_for",
    "contract_out",
    "contract_views",
    "get_contract",
    "list_contracts",
    "load_reviews",
    "load_signatures",
    "load_versions",
    "terms_from_canonical",
    "terms_of",
]


def terms_of(version: ContractVersion) -> contracts.ContractTerms:
    """The terms stored in a version row (its canonical bytes, decoded and re-checked)."""
    return terms_from_canonical(version.contract_id, version.version, version.canonical)


def terms_from_canonical(contract_id: str, version: int, canonical: bytes) -> contracts.ContractTerms:
    """The terms of a version's stored canonical bytes, decoded and re-checked."""
    terms = msgspec.json.decode(canonical[len(contracts.DOMAIN_PREFIX) :], type=contracts.ContractTerms)
    if contracts.canonical_bytes(terms) != canonical:  # pragma: no cover - storage corruption
        raise RuntimeError(f"stored contract {contract_id} v{version} is not canonical")
    return terms


async def contract_for(session: AsyncSession, contract_id: str, brand_id: str | None) -> Contract:
    contract = await session.get(Contract, contract_id)
    if contract is None or (brand_id is not None and brand_id not in (contract.party_a, contract.party_b)):
        raise Problem(404, "contract-not-found", f"no contract {contract_id!r} for this brand")
    return contract


async def load_versions(session: AsyncSession, contract_ids: Sequence[str]) -> dict[str, list[ContractVersion]]:
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


async def load_signatures(
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


async def load_reviews(session: AsyncSession, contract_ids: Sequence[str]) -> dict[tuple[str, int], ContractReview]:
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
    no signed version covers ``at``, or the one that would is rejected - `contracts.version_in_force`)."""
    signed = [view.terms for view in views if view.signed]
    rejected = {view.version for view in views if view.review is not None and view.review.decision == "rejected"}
    governing: int | None = None
    if signed:
        try:
            governing = contracts.version_in_force(signed, at, rejected=rejected).version
        except contracts.NoContractInForce:
            governing = None
    started = [t for t in signed if t.effective_from <= at]
    for view in views:
        if view.version in rejected:
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
    return governing


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
    contract = await contract_for(session, contract_id, brand_id)
    versions = await load_versions(session, [contract.id])
    signatures = await load_signatures(session, [contract.id])
    reviews = await load_reviews(session, [contract.id])
    return contract_out(contract, versions[contract.id], signatures, brand_id, reviews=reviews)


async def contract_views(
    session: AsyncSession, rows: Sequence[Contract], viewer: str | None = None
) -> list[ContractOut]:
    """The views of already loaded contracts (three statements whatever their number): the console's
    pages load a keyset page of contracts and show them exactly as the API does."""
    if not rows:
        return []
    ids = [c.id for c in rows]
    versions = await load_versions(session, ids)
    signatures = await load_signatures(session, ids)
    reviews = await load_reviews(session, ids)
    return [contract_out(c, versions.get(c.id, []), signatures, viewer, reviews=reviews) for c in rows]


async def list_contracts(session: AsyncSession, brand_id: str | None) -> list[ContractOut]:
    """The brand's contracts (both directions), oldest first; every contract for the operator."""
    query = select(Contract).order_by(Contract.created_at, Contract.id)
    if brand_id is not None:
        query = query.where(or_(Contract.party_a == brand_id, Contract.party_b == brand_id))
    return await contract_views(session, list((await session.scalars(query)).all()), brand_id)
