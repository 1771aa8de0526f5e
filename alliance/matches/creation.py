"""Requesting a match: the checks that decide whether two published segments may be matched, and the
match job with its agents' tasks.

A match exists only under the signed contract in force between the two brands whose PSI terms cover
both segments (``alliance.contracts.service.psi_terms_in_force``); the terms fix the disclosure policy
(parsed by `privacy.disclosure`), minimum k, rounding and the pair's monthly differential-privacy
budget. A re-match of a pair must differ enough from the earlier ones (`privacy.psi`'s minimum-change
rule, against differencing attacks).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.contracts.service import psi_terms_in_force
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import MatchJob, MatchTaskRow, Segment
from alliance.matches.lifecycle import budget_row, month_of
from alliance.matches.schemas import MatchCreate
from alliance.segments import storage
from alliance.segments.config import PsiSettings
from alliance.segments.service import get_own_segment, get_published_segment
from privacy.disclosure import DisclosurePolicy, MembershipPolicy, format_disclosure_policy, parse_disclosure_policy
from privacy.psi import InsufficientChange, require_minimum_change

__all__ = ["create_match"]

_RELEASING_STATES = ("waiting_for_reblinds", "computing", "done")


def _parsed(text: str) -> DisclosurePolicy | None:
    try:
        return parse_disclosure_policy(text)
    except ValueError:
        return None


def _disclosure(psi: contracts.PsiTerms, requested: str | None, parties: tuple[str, str]) -> DisclosurePolicy:
    """The contract's disclosure policy, which the request may only restate (409 ``disclosure-mismatch``),
    and which must be one the exchange can run between these parties (409 ``unsupported-disclosure``)."""
    policy = _parsed(psi.disclosure)
    if requested is not None and (policy is None or _parsed(requested) != policy):
        raise Problem(
            409,
            "disclosure-mismatch",
            f"the contract in force says {psi.disclosure!r}, not {requested!r}",
            extra={"contract_disclosure": psi.disclosure},
        )
    if policy is None or (isinstance(policy, MembershipPolicy) and policy.to_brand not in parties):
        raise Problem(
            409, "unsupported-disclosure", f"the contract's disclosure policy {psi.disclosure!r} cannot be run"
        )
    return policy


def _check_covered(terms: contracts.ContractTerms, psi: contracts.PsiTerms, own: Segment, other: Segment) -> None:
    """Both segments are listed, by id or tag, in the contract's PSI terms (403 otherwise)."""
    for segment, whose in ((own, "your"), (other, "the counterparty's")):
        if not psi.allows_segment(segment.id, segment.tags):
            raise Problem(
                403,
                "segment-not-covered",
                f"contract {terms.contract_id} v{terms.version} does not allow matching {whose} segment "
                f"{segment.id} (neither its id nor its tags are listed)",
            )


def _check_comparable(own: Segment, other: Segment, settings: PsiSettings) -> None:
    """Both segments are large enough, of one identifier type and blinded in one key epoch."""
    for segment in (own, other):
        if segment.size < settings.min_segment_size:
            raise Problem(
                422,
                "segment-too-small",
                f"segment {segment.id} has {segment.size} members; at least {settings.min_segment_size} are required",
                extra={"min_segment_size": settings.min_segment_size},
            )
    if own.id_type != other.id_type:
        raise Problem(422, "id-type-mismatch", f"cannot match {own.id_type} identifiers with {other.id_type}")
    if own.key_epoch != other.key_epoch:
        raise Problem(
            409,
            "key-epoch-mismatch",
            f"the segments are blinded in different key epochs ({own.key_epoch} and {other.key_epoch})",
        )


async def _members_changed(session: AsyncSession, before: Segment, after: Segment, settings: PsiSettings) -> int:
    """Members in one segment and not the other, compared on singly blinded values (same key epoch)."""
    if before.id == after.id:
        return 0
    common = await storage.count_common(session, before.id, after.id, memory_limit=settings.memory_join_limit)
    return before.size + after.size - 2 * common


async def _earlier_matches(session: AsyncSession, own: Segment, other: Segment) -> list[MatchJob]:
    """The pair's matches in this key epoch that released, or will release, a result."""
    brands = (own.brand_id, other.brand_id)
    query = select(MatchJob).where(
        MatchJob.requester_brand_id.in_(brands),
        MatchJob.responder_brand_id.in_(brands),
        MatchJob.key_epoch == own.key_epoch,
        MatchJob.state.in_(_RELEASING_STATES),
    )
    return list((await session.scalars(query)).all())


async def _change_since(
    session: AsyncSession, match: MatchJob, own: Segment, other: Segment, settings: PsiSettings
) -> int:
    """How much the more changed side differs from what ``match`` compared."""
    by_brand = {
        match.requester_brand_id: match.requester_segment_id,
        match.responder_brand_id: match.responder_segment_id,
    }
    before_own = await session.get(Segment, by_brand[own.brand_id])
    before_other = await session.get(Segment, by_brand[other.brand_id])
    assert before_own is not None
    assert before_other is not None
    return max(
        await _members_changed(session, before_own, own, settings),
        await _members_changed(session, before_other, other, settings),
    )


async def _check_minimum_change(session: AsyncSession, own: Segment, other: Segment, settings: PsiSettings) -> None:
    """Refuse a re-match of the pair (same epoch) unless one side changed by ``min_member_change``.

    Two counts over segments that differ in one member reveal whether that member is in the other
    brand's segment (a differencing attack); `privacy.psi.require_minimum_change` (the rule of
    `check_minimum_change`) is applied against every earlier match of the pair that released, or will
    release, a result, with the change counted in the database.
    """
    if settings.min_member_change == 0:  # the rule is off: nothing to count
        return
    for match in await _earlier_matches(session, own, other):
        changed = await _change_since(session, match, own, other, settings)
        try:
            require_minimum_change(changed, settings.min_member_change)
        except InsufficientChange:
            raise Problem(
                409,
                "insufficient-change",
                f"match {match.id} already compared these brands' segments in epoch {own.key_epoch}; one side "
                f"must differ by at least {settings.min_member_change} members (it differs by {changed})",
                extra={"previous_match_id": match.id, "members_changed": changed},
            ) from None


async def _dp_budget(
    session: AsyncSession,
    psi: contracts.PsiTerms,
    policy: DisclosurePolicy,
    pair: tuple[str, str],
    settings: PsiSettings,
    now: datetime,
) -> int | None:
    """The pair's monthly DP budget a cardinality release draws on (None: exact counts or membership);
    409 ``privacy-budget-exhausted`` when one more release does not fit this month."""
    dp_budget = psi.dp_epsilon_milli_per_month if not isinstance(policy, MembershipPolicy) else None
    if dp_budget is None:
        return None
    budget = await budget_row(session, pair[0], pair[1], month_of(now))
    if dp_budget - budget.spent_milli < settings.release_epsilon_milli:
        raise Problem(
            409,
            "privacy-budget-exhausted",
            f"this month's differential-privacy budget of the pair is spent "
            f"({budget.spent_milli} of {dp_budget} milli-epsilon)",
        )
    return dp_budget


async def _segments(session: AsyncSession, brand_id: str, data: MatchCreate) -> tuple[Segment, Segment]:
    """The caller's published segment and another brand's published segment."""
    own = await get_own_segment(session, brand_id, data.segment_id)
    if own.status != "published":
        raise Problem(409, "segment-not-published", f"publish segment {own.id} before matching it")
    other = await get_published_segment(session, data.counterparty_segment_id)
    if other.brand_id == brand_id:
        raise Problem(422, "same-brand", "both segments belong to the caller; match with another brand's segment")
    return own, other


def _tasks(
    match: MatchJob, own: Segment, other: Segment, policy: DisclosurePolicy, now: datetime
) -> list[MatchTaskRow]:
    """The agents' tasks: both re-blind shuffled (cardinality), or the other side re-blinds the
    recipient's segment in order and the recipient intersects (membership)."""

    def task(brand: str, kind: str, own_seg: Segment, input_seg: Segment, state: str) -> MatchTaskRow:
        return MatchTaskRow(
            id=new_id("tsk"),
            match_id=match.id,
            brand_id=brand,
            kind=kind,
            own_segment_id=own_seg.id,
            input_segment_id=input_seg.id,
            declared_item_count=input_seg.size,
            state=state,
            created_at=now,
        )

    if not isinstance(policy, MembershipPolicy):
        return [
            task(other.brand_id, "reblind_shuffled", other, own, "open"),
            task(own.brand_id, "reblind_shuffled", own, other, "open"),
        ]
    recipient = policy.to_brand
    mine, theirs = (own, other) if recipient == own.brand_id else (other, own)
    return [
        task(theirs.brand_id, "reblind_ordered", theirs, mine, "open"),
        task(recipient, "intersect", mine, theirs, "pending"),
    ]


def _new_match(
    own: Segment,
    other: Segment,
    terms: contracts.ContractTerms,
    policy: DisclosurePolicy,
    dp_budget: int | None,
    settings: PsiSettings,
    now: datetime,
) -> MatchJob:
    psi = terms.psi
    assert psi is not None
    return MatchJob(
        id=new_id("mat"),
        requester_brand_id=own.brand_id,
        responder_brand_id=other.brand_id,
        requester_segment_id=own.id,
        responder_segment_id=other.id,
        key_epoch=own.key_epoch,
        disclosure=format_disclosure_policy(policy),
        min_k=psi.min_k,
        round_to=psi.round_cardinality_to,
        dp_budget_milli=dp_budget,
        basis="contract",
        contract_id=terms.contract_id,
        contract_version=terms.version,
        state="requested",
        requested_at=now,
        approved_at=now,
        expires_at=now + timedelta(seconds=settings.match_ttl_seconds),
    )


async def create_match(
    session: AsyncSession, ctx: AuditContext, brand_id: str, data: MatchCreate, settings: PsiSettings
) -> MatchJob:
    """Request a match of the caller's published segment with another brand's published segment.

    Refuses: 404 for a segment that is not the caller's / not a published segment; 409 for the caller's
    unpublished segment, no contract in force or no PSI in it (``no-contract-in-force``,
    ``psi-not-allowed``), a key-epoch mismatch, a re-match without enough change, or an exhausted DP
    budget; 403 when the contract's PSI terms do not cover a segment; 422 for segments below the
    minimum size, of different identifier types, or both the caller's own.
    """
    own, other = await _segments(session, brand_id, data)
    now = utcnow()
    terms, psi = await psi_terms_in_force(session, brand_id, other.brand_id, now)
    _check_covered(terms, psi, own, other)
    policy = _disclosure(psi, data.disclosure, (own.brand_id, other.brand_id))
    _check_comparable(own, other, settings)
    await _check_minimum_change(session, own, other, settings)
    dp_budget = await _dp_budget(session, psi, policy, (brand_id, other.brand_id), settings, now)
    match = _new_match(own, other, terms, policy, dp_budget, settings, now)
    session.add(match)
    await session.flush()
    session.add_all(_tasks(match, own, other, policy, now))
    match.state = "waiting_for_reblinds"
    await session.flush()
    details: dict[str, Any] = {
        "segment_id": own.id,
        "counterparty_brand": other.brand_id,
        "counterparty_segment_id": other.id,
        "disclosure": match.disclosure,
        "contract_id": terms.contract_id,
        "contract_version": terms.version,
    }
    record_audit(session, ctx, "match.request", brand_id=brand_id, target=match.id, details=details)
    return match
