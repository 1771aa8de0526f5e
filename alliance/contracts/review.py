"""The alliance's review of contract versions, and the re-verification of stored signatures.

An approval is recorded and audited; a rejection is a veto - the rejected version never governs
anything, and the terms in force answer 409 ``no-contract-in-force`` for the period it would have
governed (an earlier version does not come back). Review is not a gate: a version is in force once
both parties sign it, reviewed or not (docs/decisions.md).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.contracts.schemas import ContractOut
from alliance.contracts.views import contract_for, get_contract, load_signatures, load_versions, terms_of
from alliance.core.audit import AuditContext, record_audit
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import ContractReview, ContractVersion, SigningKey

__all__ = ["review_version", "verify_stored_signatures"]


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
    contract = await contract_for(session, contract_id, None)
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
    await _store_review(session, ctx, row, existing, outcome, reason)
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


async def _store_review(
    session: AsyncSession,
    ctx: AuditContext,
    row: ContractVersion,
    existing: ContractReview | None,
    outcome: str,
    reason: str | None,
) -> None:
    """Record (or change) the version's review to ``outcome``, by the caller, now."""
    now = utcnow()
    if existing is None:
        session.add(
            ContractReview(
                contract_id=row.contract_id,
                version=row.version,
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
        raise Problem(409, "review-conflict", f"version {row.version} was just reviewed; reload and retry") from None


async def verify_stored_signatures(session: AsyncSession, contract_id: str) -> None:
    """Re-verify every stored signature of the contract under the key it names (retired keys included).

    Raises `contracts.SignatureInvalid` naming the first version and brand that fail; the console and
    audits use it to show that what is stored is what was signed.
    """
    contract = await contract_for(session, contract_id, None)
    versions = {v.version: v for v in (await load_versions(session, [contract.id]))[contract.id]}
    signatures = await load_signatures(session, [contract.id])
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
