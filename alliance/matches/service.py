"""Match jobs and agent tasks: private set intersection through the exchange (DESIGN.md §3).

No HTTP objects here. A match exists only under the signed contract in force between the two brands
whose PSI terms cover both segments (``alliance.contracts.service.psi_terms_in_force``); the terms fix
the disclosure policy, minimum k, rounding and the pair's monthly differential-privacy budget.

State machine of a match: ``requested`` (checks run) -> ``waiting_for_reblinds`` (agents have tasks) ->
``computing`` -> ``done``; ``failed`` (an agent refused, a budget ran out) and ``expired`` (not done by
``expires_at``) are terminal too. Tasks: ``pending`` -> ``open`` -> ``done`` | ``failed`` | ``cancelled``.

- ``cardinality``: each agent re-blinds the other's published segment and returns it shuffled; the
  exchange counts common 16-byte truncations and releases the count through :mod:`privacy.noise`.
- ``membership_to:X``: the other brand's agent re-blinds X's segment in order; only X's agent may
  download that (its ``intersect`` task), re-blinds the other's segment itself, intersects locally and
  reports the count signed with its Ed25519 key, which the exchange verifies and passes on.

What the caller may rely on: a brand reaches only matches it is a party to and only its own tasks
(anything else is 404, exactly like a missing id); re-blinded sets go to nobody but the membership
recipient and are deleted when the match ends; the exact count of a cardinality match is never stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import msgspec
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.contracts.service import current_signing_key, psi_terms_in_force
from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import MatchJob, MatchTaskRow, PsiBudget, Segment
from alliance.matches.schemas import MatchCreate, MatchOut, MatchResultOut, TaskOut
from alliance.segments import storage
from alliance.segments.config import PsiSettings
from alliance.segments.service import get_own_segment, get_published_segment
from privacy.noise import BudgetExhausted, PrivacyBudget, release_count
from privacy.psi import (
    CardinalityResult,
    MembershipResult,
    ReportSignatureError,
    SignedMembershipReport,
    verify_membership_report,
)

__all__ = [
    "ACTIVE_STATES",
    "compute_match",
    "create_match",
    "expire_due",
    "get_match",
    "get_task",
    "list_matches",
    "list_tasks",
    "match_out",
    "match_result",
    "refuse_task",
    "submit_membership_report",
    "submit_task_result",
    "task_input_set",
    "task_out",
    "task_reblinded_set",
]

ACTIVE_STATES = ("requested", "waiting_for_reblinds", "computing")
_RELEASING_STATES = ("waiting_for_reblinds", "computing", "done")
_REBLIND_KINDS = ("reblind_shuffled", "reblind_ordered")


# --- reading --------------------------------------------------------------------------------------


def _role(match: MatchJob, brand_id: str) -> str:
    return "requester" if match.requester_brand_id == brand_id else "responder"


def _sides(match: MatchJob, brand_id: str) -> tuple[str, str, str]:
    """(own segment, counterparty brand, counterparty segment) from ``brand_id``'s point of view."""
    if match.requester_brand_id == brand_id:
        return match.requester_segment_id, match.responder_brand_id, match.responder_segment_id
    return match.responder_segment_id, match.requester_brand_id, match.requester_segment_id


def _result(match: MatchJob) -> MatchResultOut | None:
    if match.state != "done" or match.result is None:
        return None
    result: MatchResultOut = msgspec.convert(match.result, MatchResultOut)
    return result


async def match_out(session: AsyncSession, match: MatchJob, brand_id: str) -> MatchOut:
    own, counterparty, counterparty_segment = _sides(match, brand_id)
    other = await session.get(Segment, counterparty_segment)
    assert other is not None
    return MatchOut(
        id=match.id,
        state=match.state,
        role="requester" if _role(match, brand_id) == "requester" else "responder",
        segment_id=own,
        counterparty_brand=counterparty,
        counterparty_segment_id=counterparty_segment,
        counterparty_segment_size=other.size,
        key_epoch=match.key_epoch,
        disclosure=match.disclosure,
        min_k=match.min_k,
        round_to=match.round_to,
        differential_privacy=match.dp_budget_milli is not None,
        basis=match.basis,
        contract_id=match.contract_id,
        contract_version=match.contract_version,
        failure_reason=match.failure_reason,
        requested_at=match.requested_at,
        expires_at=match.expires_at,
        completed_at=match.completed_at,
        result=_result(match),
    )


def task_out(task: MatchTaskRow, match: MatchJob) -> TaskOut:
    _, counterparty, _ = _sides(match, task.brand_id)
    return TaskOut(
        id=task.id,
        match_id=task.match_id,
        kind=task.kind,  # type: ignore[arg-type]
        state=task.state,
        segment_id=task.own_segment_id,
        counterparty_brand=counterparty,
        counterparty_segment_id=task.input_segment_id,
        declared_item_count=task.declared_item_count,
        key_epoch=match.key_epoch,
        disclosure=match.disclosure,
        expires_at=match.expires_at,
        failure_reason=task.failure_reason,
    )


async def _match_for(session: AsyncSession, brand_id: str, match_id: str, *, lock: bool = False) -> MatchJob:
    query = select(MatchJob).where(
        MatchJob.id == match_id,
        or_(MatchJob.requester_brand_id == brand_id, MatchJob.responder_brand_id == brand_id),
    )
    if lock:
        query = query.with_for_update()
    match = await session.scalar(query)
    if match is None:
        raise Problem(404, "match-not-found", f"no match {match_id!r} for this brand")
    return match


async def get_match(
    session: AsyncSession, ctx: AuditContext, brand_id: str, match_id: str, settings: PsiSettings
) -> MatchJob:
    """One of the brand's matches, brought up to date (expired if overdue; a stuck computation retried)."""
    match = await _match_for(session, brand_id, match_id)
    if match.state in ("requested", "waiting_for_reblinds") and utcnow() >= match.expires_at:
        await expire_due(session, ctx, brand_id)
        await session.refresh(match)
    elif (
        match.state == "computing"
        and match.computing_since is not None
        and utcnow() - match.computing_since > timedelta(seconds=settings.compute_retry_seconds)
    ):
        await compute_match(session, ctx, match.id, settings)
        await session.refresh(match)
    return match


async def list_matches(session: AsyncSession, ctx: AuditContext, brand_id: str) -> Sequence[MatchJob]:
    await expire_due(session, ctx, brand_id)
    query = (
        select(MatchJob)
        .where(or_(MatchJob.requester_brand_id == brand_id, MatchJob.responder_brand_id == brand_id))
        .order_by(MatchJob.requested_at.desc(), MatchJob.id)
        .limit(500)
    )
    return (await session.scalars(query)).all()


async def match_result(
    session: AsyncSession, ctx: AuditContext, brand_id: str, match_id: str, settings: PsiSettings
) -> MatchResultOut:
    match = await get_match(session, ctx, brand_id, match_id, settings)
    result = _result(match)
    if result is None:
        raise Problem(
            409,
            "match-not-done",
            f"the match is {match.state}" + (f": {match.failure_reason}" if match.failure_reason else ""),
            extra={"state": match.state},
        )
    return result


async def list_tasks(
    session: AsyncSession, ctx: AuditContext, brand_id: str, state: str | None = "open"
) -> list[tuple[MatchTaskRow, MatchJob]]:
    await expire_due(session, ctx, brand_id)
    query = (
        select(MatchTaskRow, MatchJob)
        .join(MatchJob, MatchJob.id == MatchTaskRow.match_id)
        .where(MatchTaskRow.brand_id == brand_id)
        .order_by(MatchTaskRow.created_at, MatchTaskRow.id)
        .limit(500)
    )
    if state:
        query = query.where(MatchTaskRow.state == state)
    return [(task, match) for task, match in (await session.execute(query)).all()]


async def get_task(
    session: AsyncSession, brand_id: str, task_id: str, *, lock: bool = False
) -> tuple[MatchTaskRow, MatchJob]:
    query = select(MatchTaskRow).where(MatchTaskRow.id == task_id, MatchTaskRow.brand_id == brand_id)
    if lock:
        query = query.with_for_update()
    task = await session.scalar(query)
    if task is None:
        raise Problem(404, "task-not-found", f"no task {task_id!r} for this brand")
    match = await session.get(MatchJob, task.match_id)
    assert match is not None
    return task, match


def _require_open(task: MatchTaskRow, match: MatchJob) -> None:
    if match.state not in ("waiting_for_reblinds",) or utcnow() >= match.expires_at:
        raise Problem(409, "match-not-active", f"the match is {match.state}", extra={"state": match.state})
    if task.state != "open":
        raise Problem(409, "task-not-open", f"the task is {task.state}", extra={"state": task.state})


async def task_input_set(session: AsyncSession, brand_id: str, task_id: str) -> tuple[str, int]:
    """The set an open task's agent downloads as its items: the counterparty's published segment.

    Returns (set id, item count). This is the only way a brand receives another brand's points, and
    only for an open task of a match under the contract.
    """
    task, match = await get_task(session, brand_id, task_id)
    _require_open(task, match)
    return task.input_segment_id, task.declared_item_count


async def task_reblinded_set(session: AsyncSession, brand_id: str, task_id: str) -> tuple[str, int]:
    """For the membership recipient's ``intersect`` task only: the counterparty's ordered re-blinding
    of the recipient's own segment (never given to anyone else)."""
    task, match = await get_task(session, brand_id, task_id)
    if task.kind != "intersect":
        raise Problem(409, "not-an-intersect-task", "only the membership recipient's intersect task has this")
    _require_open(task, match)
    source = await session.scalar(
        select(MatchTaskRow).where(MatchTaskRow.match_id == match.id, MatchTaskRow.kind == "reblind_ordered")
    )
    assert source is not None
    assert source.state == "done"
    return source.id, int(source.result_items or 0)


# --- creating a match -------------------------------------------------------------------------------


def _parse_disclosure(disclosure: str, parties: tuple[str, str]) -> str | None:
    """The membership recipient (a party) or None for cardinality; 409 for a policy we cannot run."""
    if disclosure == "cardinality":
        return None
    for prefix in ("membership_to:", "membership_to="):
        if disclosure.startswith(prefix):
            recipient = disclosure[len(prefix) :]
            if recipient in parties:
                return recipient
    raise Problem(409, "unsupported-disclosure", f"the contract's disclosure policy {disclosure!r} cannot be run")


async def _members_changed(session: AsyncSession, before: Segment, after: Segment, settings: PsiSettings) -> int:
    """Members in one segment and not the other, compared on singly blinded values (same key epoch)."""
    if before.id == after.id:
        return 0
    common = await storage.count_common(session, before.id, after.id, memory_limit=settings.memory_join_limit)
    return before.size + after.size - 2 * common


async def _check_minimum_change(session: AsyncSession, own: Segment, other: Segment, settings: PsiSettings) -> None:
    """Refuse a re-match of the pair (same epoch) unless one side changed by ``min_member_change``.

    Two counts over segments that differ in one member reveal whether that member is in the other
    brand's segment (a differencing attack); this is :func:`privacy.psi.check_minimum_change` applied
    against every earlier match of the pair that released, or will release, a result.
    """
    if settings.min_member_change == 0:
        return
    brands = (own.brand_id, other.brand_id)
    earlier = (
        await session.scalars(
            select(MatchJob).where(
                MatchJob.requester_brand_id.in_(brands),
                MatchJob.responder_brand_id.in_(brands),
                MatchJob.key_epoch == own.key_epoch,
                MatchJob.state.in_(_RELEASING_STATES),
            )
        )
    ).all()
    for match in earlier:
        by_brand = {
            match.requester_brand_id: match.requester_segment_id,
            match.responder_brand_id: match.responder_segment_id,
        }
        before_own = await session.get(Segment, by_brand[own.brand_id])
        before_other = await session.get(Segment, by_brand[other.brand_id])
        assert before_own is not None
        assert before_other is not None
        changed = max(
            await _members_changed(session, before_own, own, settings),
            await _members_changed(session, before_other, other, settings),
        )
        if changed < settings.min_member_change:
            raise Problem(
                409,
                "insufficient-change",
                f"match {match.id} already compared these brands' segments in epoch {own.key_epoch}; one side "
                f"must differ by at least {settings.min_member_change} members (it differs by {changed})",
                extra={"previous_match_id": match.id, "members_changed": changed},
            )


async def _budget_row(session: AsyncSession, brand_x: str, brand_y: str, month: str) -> PsiBudget:
    """The pair's budget row for the month, locked (created on first use)."""
    low, high = sorted((brand_x, brand_y))
    query = select(PsiBudget).where(PsiBudget.brand_low == low, PsiBudget.brand_high == high, PsiBudget.month == month)
    row = await session.scalar(query.with_for_update())
    if row is None:
        try:
            async with session.begin_nested():
                session.add(PsiBudget(brand_low=low, brand_high=high, month=month, spent_milli=0, updated_at=utcnow()))
        except IntegrityError:  # created concurrently; read theirs
            pass
        row = await session.scalar(query.with_for_update())
    assert row is not None
    return row


def _month(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


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
    own = await get_own_segment(session, brand_id, data.segment_id)
    if own.status != "published":
        raise Problem(409, "segment-not-published", f"publish segment {own.id} before matching it")
    other = await get_published_segment(session, data.counterparty_segment_id)
    if other.brand_id == brand_id:
        raise Problem(422, "same-brand", "both segments belong to the caller; match with another brand's segment")
    now = utcnow()
    terms, psi = await psi_terms_in_force(session, brand_id, other.brand_id, now)
    for segment, whose in ((own, "your"), (other, "the counterparty's")):
        if not psi.allows_segment(segment.id, segment.tags):
            raise Problem(
                403,
                "segment-not-covered",
                f"contract {terms.contract_id} v{terms.version} does not allow matching {whose} segment "
                f"{segment.id} (neither its id nor its tags are listed)",
            )
    if data.disclosure is not None and data.disclosure.replace("=", ":") != psi.disclosure.replace("=", ":"):
        raise Problem(
            409,
            "disclosure-mismatch",
            f"the contract in force says {psi.disclosure!r}, not {data.disclosure!r}",
            extra={"contract_disclosure": psi.disclosure},
        )
    recipient = _parse_disclosure(psi.disclosure, (own.brand_id, other.brand_id))
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
    await _check_minimum_change(session, own, other, settings)
    dp_budget = psi.dp_epsilon_milli_per_month if recipient is None else None
    if dp_budget is not None:
        budget = await _budget_row(session, brand_id, other.brand_id, _month(now))
        if dp_budget - budget.spent_milli < settings.release_epsilon_milli:
            raise Problem(
                409,
                "privacy-budget-exhausted",
                f"this month's differential-privacy budget of the pair is spent "
                f"({budget.spent_milli} of {dp_budget} milli-epsilon)",
            )
    match = MatchJob(
        id=new_id("mat"),
        requester_brand_id=brand_id,
        responder_brand_id=other.brand_id,
        requester_segment_id=own.id,
        responder_segment_id=other.id,
        key_epoch=own.key_epoch,
        disclosure=psi.disclosure.replace("membership_to=", "membership_to:"),
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
    session.add(match)
    await session.flush()

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

    if recipient is None:
        tasks = [
            task(other.brand_id, "reblind_shuffled", other, own, "open"),
            task(brand_id, "reblind_shuffled", own, other, "open"),
        ]
    else:
        mine, theirs = (own, other) if recipient == brand_id else (other, own)
        tasks = [
            task(theirs.brand_id, "reblind_ordered", theirs, mine, "open"),
            task(recipient, "intersect", mine, theirs, "pending"),
        ]
    session.add_all(tasks)
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


# --- agent work -------------------------------------------------------------------------------------


async def _end_match(session: AsyncSession, match: MatchJob, state: str, reason: str | None) -> None:
    """Move a match to a terminal state: cancel unfinished tasks and delete every re-blinded set."""
    match.state = state
    match.failure_reason = reason[:500] if reason else None
    match.completed_at = utcnow()
    match.computing_since = None
    tasks = (await session.scalars(select(MatchTaskRow).where(MatchTaskRow.match_id == match.id))).all()
    for task in tasks:
        if task.state in ("pending", "open"):
            task.state = "cancelled"
        await storage.delete_set(session, task.id)


async def submit_task_result(
    session: AsyncSession,
    ctx: AuditContext,
    brand_id: str,
    task_id: str,
    body: AsyncIterator[bytes],
    *,
    content_length: int | None = None,
) -> tuple[MatchTaskRow, MatchJob, bool]:
    """Store a re-blind task's result (streamed 32-byte records, exactly the declared count, each a
    valid point). Returns (task, match, ready): ``ready`` means the caller should commit and then run
    :func:`compute_match`. A wrong count or a bad point is a 4xx and changes nothing."""
    task, match = await get_task(session, brand_id, task_id)
    if task.kind not in _REBLIND_KINDS:
        raise Problem(409, "not-a-reblind-task", "an intersect task reports a signed count (PUT .../report)")
    _require_open(task, match)
    expected = task.declared_item_count
    if content_length is not None and content_length != expected * 32:
        raise Problem(
            422 if content_length < expected * 32 else 413,
            "wrong-item-count",
            f"the result must be exactly {expected} records ({expected * 32} bytes), got {content_length} bytes",
            extra={"expected_items": expected},
        )
    ingested = await storage.ingest_points(session, task.id, body, max_items=expected)
    if ingested.items != expected:
        raise Problem(
            422,
            "wrong-item-count",
            f"the result must be exactly {expected} records, got {ingested.items}",
            extra={"expected_items": expected},
        )
    # Serialise the two agents' completions on the match row, then re-check under the lock.
    match = await _match_for(session, brand_id, match.id, lock=True)
    await session.refresh(task)
    _require_open(task, match)
    task.state = "done"
    task.result_items = ingested.items
    task.completed_at = utcnow()
    record_audit(
        session,
        ctx,
        "match.task_result",
        brand_id=brand_id,
        target=task.id,
        details={"match_id": match.id, "items": ingested.items, "kind": task.kind},
    )
    siblings = (
        await session.scalars(select(MatchTaskRow).where(MatchTaskRow.match_id == match.id, MatchTaskRow.id != task.id))
    ).all()
    ready = False
    if task.kind == "reblind_ordered":
        for sibling in siblings:
            if sibling.kind == "intersect" and sibling.state == "pending":
                sibling.state = "open"
    elif all(s.state == "done" for s in siblings):
        match.state = "computing"
        match.computing_since = utcnow()
        ready = True
    await session.flush()
    return task, match, ready


async def compute_match(session: AsyncSession, ctx: AuditContext, match_id: str, settings: PsiSettings) -> MatchJob:
    """Count a cardinality match's common values and release the count per the terms (idempotent:
    a match that is no longer ``computing`` is returned as it is)."""
    match = await session.scalar(select(MatchJob).where(MatchJob.id == match_id).with_for_update())
    assert match is not None
    if match.state != "computing":
        return match
    tasks = (await session.scalars(select(MatchTaskRow).where(MatchTaskRow.match_id == match.id))).all()
    set_x, set_y = (t.id for t in tasks)
    true_count = await storage.count_common(session, set_x, set_y, memory_limit=settings.memory_join_limit)
    budget = None
    epsilon = None
    if match.dp_budget_milli is not None:
        row = await _budget_row(session, match.requester_brand_id, match.responder_brand_id, _month(utcnow()))
        budget = PrivacyBudget(
            (row.brand_low, row.brand_high), row.month, _milli(match.dp_budget_milli), _milli(row.spent_milli)
        )
        epsilon = _milli(settings.release_epsilon_milli)
    try:
        released = release_count(true_count, k=match.min_k, epsilon=epsilon, budget=budget, round_to=match.round_to)
    except BudgetExhausted as exc:
        await _end_match(session, match, "failed", f"privacy budget exhausted: {exc}")
        record_audit(
            session,
            ctx,
            "match.fail",
            brand_id=match.requester_brand_id,
            target=match.id,
            details={"reason": "privacy-budget"},
        )
        return match
    if match.dp_budget_milli is not None:
        row.spent_milli += settings.release_epsilon_milli
        row.updated_at = utcnow()
    result = CardinalityResult(
        match_id=match.id,
        count=released.value,
        suppressed=released.suppressed,
        noised=released.noised,
        rounded_to=released.rounded_to,
    )
    match.result = msgspec.to_builtins(result)
    await _end_match(session, match, "done", None)
    record_audit(
        session,
        ctx,
        "match.complete",
        brand_id=match.requester_brand_id,
        target=match.id,
        details={"suppressed": released.suppressed, "noised": released.noised, "epsilon": released.epsilon},
    )
    return match


def _milli(value: int) -> Fraction:
    return Fraction(value, 1000)


async def submit_membership_report(
    session: AsyncSession, ctx: AuditContext, brand_id: str, task_id: str, signed: SignedMembershipReport
) -> MatchJob:
    """The membership recipient's signed count: checked against the match and verified with the brand's
    current Ed25519 key (registered for contracts) before the exchange passes it on."""
    task, match = await get_task(session, brand_id, task_id)
    if task.kind != "intersect":
        raise Problem(409, "not-an-intersect-task", "a re-blind task uploads its re-blinded points (PUT .../result)")
    match = await _match_for(session, brand_id, match.id, lock=True)
    await session.refresh(task)
    _require_open(task, match)
    report = signed.report
    _, counterparty, _ = _sides(match, brand_id)
    own_size = await session.scalar(select(Segment.size).where(Segment.id == task.own_segment_id))
    problems = []
    if report.match_id != match.id:
        problems.append("match_id")
    if report.reporting_brand != brand_id:
        problems.append("reporting_brand")
    if report.counterparty_brand != counterparty:
        problems.append("counterparty_brand")
    if report.key_epoch != match.key_epoch:
        problems.append("key_epoch")
    if report.overlap_count > min(int(own_size or 0), task.declared_item_count):
        problems.append("overlap_count")
    if problems:
        raise Problem(422, "report-mismatch", f"the report does not fit this match: {', '.join(problems)}")
    key = await current_signing_key(session, brand_id)
    if key is None:
        raise Problem(409, "no-signing-key", "register the agent's signing key first (PUT /v1/signing-key)")
    try:
        verify_membership_report(signed, key.public_key)
    except (ReportSignatureError, ValueError):
        raise Problem(
            422, "report-signature-invalid", "the report's signature does not verify under your current key"
        ) from None
    task.state = "done"
    task.completed_at = utcnow()
    match.result = msgspec.to_builtins(MembershipResult(match_id=match.id, to_brand=brand_id, report=signed))
    await _end_match(session, match, "done", None)
    record_audit(
        session,
        ctx,
        "match.complete",
        brand_id=brand_id,
        target=match.id,
        details={"task_id": task.id, "signing_key": key.id},
    )
    return match


async def refuse_task(session: AsyncSession, ctx: AuditContext, brand_id: str, task_id: str, reason: str) -> MatchJob:
    """The agent refuses the task (not approved, over its budget, wrong size...): the match fails with
    the reason, which both parties see."""
    task, match = await get_task(session, brand_id, task_id)
    match = await _match_for(session, brand_id, match.id, lock=True)
    await session.refresh(task)
    if task.state not in ("open", "pending") or match.state not in ACTIVE_STATES:
        raise Problem(409, "task-not-open", f"the task is {task.state}", extra={"state": task.state})
    task.state = "failed"
    task.failure_reason = reason[:500]
    task.completed_at = utcnow()
    await _end_match(session, match, "failed", f"the agent of {brand_id} refused: {reason}")
    record_audit(
        session,
        ctx,
        "match.task_refuse",
        brand_id=brand_id,
        target=task.id,
        details={"match_id": match.id, "reason": reason[:200]},
    )
    return match


async def expire_due(session: AsyncSession, ctx: AuditContext, brand_id: str) -> int:
    """Expire the brand's overdue matches (those not done by ``expires_at``); returns how many."""
    now = utcnow()
    due = (
        await session.scalars(
            select(MatchJob)
            .where(
                or_(MatchJob.requester_brand_id == brand_id, MatchJob.responder_brand_id == brand_id),
                MatchJob.state.in_(("requested", "waiting_for_reblinds")),
                MatchJob.expires_at <= now,
            )
            .with_for_update()
        )
    ).all()
    for match in due:
        await _end_match(session, match, "expired", "not finished before it expired")
        record_audit(session, ctx, "match.expire", brand_id=match.requester_brand_id, target=match.id)
    if due:
        await session.flush()
    return len(due)
