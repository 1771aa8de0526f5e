"""Agent work on a match: the tasks a brand's agent lists, downloads, answers or refuses.

- ``cardinality``: each agent re-blinds the other's published segment and returns it shuffled; when
  both are in, the match is ready for :func:`alliance.matches.lifecycle.compute_match`.
- ``membership_to:X``: the other brand's agent re-blinds X's segment in order; only X's agent may
  download that (its ``intersect`` task), intersects locally and reports the count signed with its
  Ed25519 key, which the exchange verifies and passes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.contracts.service import current_signing_key
from alliance.core.audit import AuditContext, record_audit
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import MatchJob, MatchTaskRow, Segment
from alliance.matches.lifecycle import ACTIVE_STATES, end_match, expire_due
from alliance.matches.views import get_task, match_for, require_open, sides
from alliance.segments import storage
from privacy.psi import (
    MembershipResult,
    ReportSignatureError,
    SignedMembershipReport,
    verify_membership_report,
)

__all__ = [
    "list_tasks",
    "refuse_task",
    "submit_membership_report",
    "submit_task_result",
    "task_input_set",
    "task_reblinded_set",
]

_REBLIND_KINDS = ("reblind_shuffled", "reblind_ordered")


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


async def task_input_set(session: AsyncSession, brand_id: str, task_id: str) -> tuple[str, int]:
    """The set an open task's agent downloads as its items: the counterparty's published segment.

    Returns (set id, item count). This is the only way a brand receives another brand's points, and
    only for an open task of a match under the contract.
    """
    task, match = await get_task(session, brand_id, task_id)
    require_open(task, match)
    return task.input_segment_id, task.declared_item_count


async def task_reblinded_set(session: AsyncSession, brand_id: str, task_id: str) -> tuple[str, int]:
    """For the membership recipient's ``intersect`` task only: the counterparty's ordered re-blinding
    of the recipient's own segment (never given to anyone else)."""
    task, match = await get_task(session, brand_id, task_id)
    if task.kind != "intersect":
        raise Problem(409, "not-an-intersect-task", "only the membership recipient's intersect task has this")
    require_open(task, match)
    source = await session.scalar(
        select(MatchTaskRow).where(MatchTaskRow.match_id == match.id, MatchTaskRow.kind == "reblind_ordered")
    )
    assert source is not None
    assert source.state == "done"
    return source.id, int(source.result_items or 0)


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
    require_open(task, match)
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
    match = await match_for(session, brand_id, match.id, lock=True)
    await session.refresh(task)
    require_open(task, match)
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
    ready = await _advance(session, task, match)
    await session.flush()
    return task, match, ready


async def _advance(session: AsyncSession, task: MatchTaskRow, match: MatchJob) -> bool:
    """After a re-blind task is done: open the recipient's intersect task (membership), or, once both
    re-blinds are in, move the match to ``computing`` (returns True: ready to compute)."""
    siblings = (
        await session.scalars(select(MatchTaskRow).where(MatchTaskRow.match_id == match.id, MatchTaskRow.id != task.id))
    ).all()
    if task.kind == "reblind_ordered":
        for sibling in siblings:
            if sibling.kind == "intersect" and sibling.state == "pending":
                sibling.state = "open"
    elif all(s.state == "done" for s in siblings):
        match.state = "computing"
        match.computing_since = utcnow()
        return True
    return False


async def submit_membership_report(
    session: AsyncSession, ctx: AuditContext, brand_id: str, task_id: str, signed: SignedMembershipReport
) -> MatchJob:
    """The membership recipient's signed count: checked against the match and verified with the brand's
    current Ed25519 key (registered for contracts) before the exchange passes it on."""
    task, match = await get_task(session, brand_id, task_id)
    if task.kind != "intersect":
        raise Problem(409, "not-an-intersect-task", "a re-blind task uploads its re-blinded points (PUT .../result)")
    match = await match_for(session, brand_id, match.id, lock=True)
    await session.refresh(task)
    require_open(task, match)
    report = signed.report
    _, counterparty, _ = sides(match, brand_id)
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
    await end_match(session, match, "done", None)
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
    match = await match_for(session, brand_id, match.id, lock=True)
    await session.refresh(task)
    if task.state not in ("open", "pending") or match.state not in ACTIVE_STATES:
        raise Problem(409, "task-not-open", f"the task is {task.state}", extra={"state": task.state})
    task.state = "failed"
    task.failure_reason = reason[:500]
    task.completed_at = utcnow()
    await end_match(session, match, "failed", f"the agent of {brand_id} refused: {reason}")
    record_audit(
        session,
        ctx,
        "match.task_refuse",
        brand_id=brand_id,
        target=task.id,
        details={"match_id": match.id, "reason": reason[:200]},
    )
    return match
