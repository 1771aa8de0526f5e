"""The terms in force between two brands: what benefits, referrals and matches price and match under.

Which version governs an instant is decided by one pure function, `contracts.version_in_force`; this
module loads what it needs (the pair's contract, its fully signed versions and the alliance's
rejections: a `ContractHistory`) and turns its answer into the service's refusal. :func:`terms_between`
is pure, so command rules (for example `alliance.referrals.conversion_rules`) decide on a loaded
history without I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.contracts.views import terms_of
from alliance.core.problems import Problem
from alliance.db.models import Contract, ContractReview, ContractSignature, ContractVersion

__all__ = [
    "ContractHistory",
    "load_history",
    "psi_terms_in_force",
    "signed_versions",
    "terms_between",
    "terms_in_force",
]


@dataclass(frozen=True, slots=True)
class ContractHistory:
    """A pair's contract as far as "what is in force" needs it: its fully signed versions (rejected ones
    included: a rejected version still ends its predecessor's period) and the alliance's rejections
    (version -> reason)."""

    contract_id: str
    signed: tuple[contracts.ContractTerms, ...]
    rejections: Mapping[int, str] = field(default_factory=dict)


def terms_between(brand_x: str, brand_y: str, history: ContractHistory | None, at: datetime) -> contracts.ContractTerms:
    """The version of the pair's contract (``history``, None if they have none) that governs ``at``.

    Raises 409 ``no-contract-in-force`` when a brand names itself, the brands have no contract, no
    version signed by both covers ``at``, or the one that would is rejected. Pure.
    """
    if brand_x == brand_y:
        raise Problem(409, "no-contract-in-force", "a brand has no contract with itself")
    if history is None:
        raise Problem(409, "no-contract-in-force", "these brands have no contract")
    contract_id = history.contract_id
    try:
        return contracts.version_in_force(history.signed, at, rejected=history.rejections.keys())
    except contracts.VersionRejected as exc:
        raise Problem(
            409,
            "no-contract-in-force",
            f"version {exc.version} of contract {contract_id} was rejected by the alliance: "
            f"{history.rejections[exc.version]}",
            extra={"contract_id": contract_id, "rejected_version": exc.version},
        ) from None
    except contracts.NoContractInForce as exc:
        raise Problem(409, "no-contract-in-force", str(exc), extra={"contract_id": contract_id}) from None


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


async def load_history(session: AsyncSession, brand_x: str, brand_y: str) -> ContractHistory | None:
    """The pair's contract history (None if the brands have no contract, or are one brand)."""
    if brand_x == brand_y:
        return None
    party_a, party_b = contracts.party_pair(brand_x, brand_y)
    contract_id = await session.scalar(
        select(Contract.id).where(Contract.party_a == party_a, Contract.party_b == party_b)
    )
    if contract_id is None:
        return None
    rows = await _signed_rows(session, contract_id)
    return ContractHistory(
        contract_id=contract_id,
        signed=tuple(terms_of(row) for row, _ in rows),
        rejections={
            row.version: review.reason or ""
            for row, review in rows
            if review is not None and review.decision == "rejected"
        },
    )


async def signed_versions(session: AsyncSession, contract_id: str) -> list[contracts.ContractTerms]:
    """Every version of the contract that both parties have signed, in version order (rejected ones
    included: a rejected version still ends its predecessor's period)."""
    return [terms_of(row) for row, _ in await _signed_rows(session, contract_id)]


async def terms_in_force(session: AsyncSession, brand_x: str, brand_y: str, at: datetime) -> contracts.ContractTerms:
    """The signed contract version between two brands that governs instant ``at`` (UTC).

    Raises 409 ``no-contract-in-force`` when the brands have no contract, no version signed by both, or
    none covering ``at`` (or the one covering it is rejected). The argument order of the brands does
    not matter.
    """
    return terms_between(brand_x, brand_y, await load_history(session, brand_x, brand_y), at)


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
