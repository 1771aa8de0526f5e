"""Read-only, bounded queries behind the contracts and matching pages of the console.

Pages are keyset-paginated on indexes: contracts on ``(created_at, id)``, segments on ``(created_at,
id)`` (or ``(brand_id, created_at)`` for one brand), match jobs on ``(requested_at, id)`` (or the
requester / responder indexes for one brand). The overlap matrix reads one row per brand pair.

Nothing here returns a member identifier, a blinded point, a digest of points or a signature: segments
are described by name, size and state; a match by its state and what its disclosure policy released.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

import contracts
from alliance.contracts import service as contract_service
from alliance.contracts.schemas import ContractOut
from alliance.db.models import Brand, Contract, ContractReview, MatchJob, Segment, SigningKey

__all__ = [
    "CONTRACT_PAGE_SIZE",
    "MATRIX_MAX_BRANDS",
    "ContractPage",
    "MatchRow",
    "Matrix",
    "MatrixCell",
    "Released",
    "TermChange",
    "contract_page",
    "key_fingerprints",
    "match_page",
    "overlap_matrix",
    "released",
    "review_rows",
    "segment_page",
    "terms_changes",
    "terms_fields",
]

CONTRACT_PAGE_SIZE = 25
SEGMENT_PAGE_SIZE = 25
MATCH_PAGE_SIZE = 25
MATRIX_MAX_BRANDS = 30


def _keyset(query: Select[Any], at_column: Any, id_column: Any, anchor: tuple[datetime, str] | None) -> Select[Any]:
    """Rows strictly after ``anchor`` in ``(at desc, id desc)`` order."""
    if anchor is None:
        return query
    at, anchor_id = anchor
    return query.where(at_column <= at, or_(at_column < at, id_column < anchor_id))


# --- contracts --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractPage:
    contracts: list[ContractOut]
    next_before: str | None  # the cursor of the following (older) page: the last contract's id


async def contract_page(
    session: AsyncSession, *, brand_id: str | None = None, before: str | None = None, limit: int = CONTRACT_PAGE_SIZE
) -> ContractPage:
    """Contracts newest first with every version, signature and review, computed by the contracts
    service exactly as the API shows them."""
    query = select(Contract)
    if brand_id:
        query = query.where(or_(Contract.party_a == brand_id, Contract.party_b == brand_id))
    anchor = None
    if before:
        row = (await session.execute(select(Contract.created_at, Contract.id).where(Contract.id == before))).first()
        anchor = (row[0], row[1]) if row else None
    query = _keyset(query, Contract.created_at, Contract.id, anchor)
    rows = list(
        (await session.scalars(query.order_by(Contract.created_at.desc(), Contract.id.desc()).limit(limit + 1))).all()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    views = await contract_service.contract_views(session, rows)
    return ContractPage(contracts=views, next_before=rows[-1].id if more and rows else None)


async def review_rows(session: AsyncSession, contract_id: str) -> dict[int, ContractReview]:
    """The alliance's reviews of a contract's versions, with who reviewed (the console shows it)."""
    rows = (await session.scalars(select(ContractReview).where(ContractReview.contract_id == contract_id))).all()
    return {row.version: row for row in rows}


async def key_fingerprints(session: AsyncSession, key_ids: Sequence[str]) -> dict[str, str]:
    """Signing key id -> the SHA-256 fingerprint of its public key, in groups of four hex digits."""
    if not key_ids:
        return {}
    rows = (await session.execute(select(SigningKey.id, SigningKey.public_key).where(SigningKey.id.in_(key_ids)))).all()
    result = {}
    for key_id, public_key in rows:
        digest = hashlib.sha256(public_key).hexdigest()[:32]
        result[key_id] = " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))
    return result


@dataclass(frozen=True, slots=True)
class TermChange:
    path: str
    before: Any  # None when the field was added
    after: Any  # None when the field was removed


def terms_fields(terms: contracts.ContractTerms) -> dict[str, Any]:
    """The terms as flat ``dotted.path -> value`` pairs (money in minor units, times as datetimes),
    without the contract id and the version number (they differ between versions by design)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
            for i, inner in enumerate(value):
                walk(f"{prefix}[{i + 1}]", inner)
        elif isinstance(value, list | tuple):
            flat[prefix] = ", ".join(str(v) for v in value) if value else None
        else:
            flat[prefix] = value

    raw = {
        "settlement_currency": terms.settlement_currency,
        "effective_from": terms.effective_from,
        "effective_to": terms.effective_to,
        "coupon_commission": _builtins(terms.coupon_commission),
        "referral": _builtins(terms.referral),
        "funding": [_builtins(f) for f in terms.funding],
        "attribution_window_seconds": terms.attribution_window_seconds,
        "psi": _builtins(terms.psi) if terms.psi is not None else None,
        "note": terms.note,
    }
    walk("", raw)
    return {key: value for key, value in flat.items() if value is not None}


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


def terms_changes(before: contracts.ContractTerms, after: contracts.ContractTerms) -> list[TermChange]:
    """What changed from one version to the next, field by field, in a stable order."""
    old, new = terms_fields(before), terms_fields(after)
    changes = []
    for path in [*old, *(p for p in new if p not in old)]:
        if old.get(path) != new.get(path):
            changes.append(TermChange(path=path, before=old.get(path), after=new.get(path)))
    return changes


# --- segments ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentPage:
    segments: list[Segment]
    next_before: str | None


async def segment_page(
    session: AsyncSession, *, brand_id: str | None = None, before: str | None = None, limit: int = SEGMENT_PAGE_SIZE
) -> SegmentPage:
    """Segments newest first (names, sizes and states; never their points or digests)."""
    query = select(Segment)
    if brand_id:
        query = query.where(Segment.brand_id == brand_id)
    anchor = None
    if before:
        row = (await session.execute(select(Segment.created_at, Segment.id).where(Segment.id == before))).first()
        anchor = (row[0], row[1]) if row else None
    query = _keyset(query, Segment.created_at, Segment.id, anchor)
    rows = list(
        (await session.scalars(query.order_by(Segment.created_at.desc(), Segment.id.desc()).limit(limit + 1))).all()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return SegmentPage(segments=rows, next_before=rows[-1].id if more and rows else None)


# --- match jobs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Released:
    """What a finished match released, as the console may show it: ``count`` (None when suppressed),
    ``suppressed`` (below the terms' minimum k), ``noised`` (differential privacy added noise)."""

    count: int | None
    suppressed: bool
    noised: bool
    kind: str  # cardinality | membership


def released(match: MatchJob) -> Released | None:
    """The released overlap of a ``done`` match, or None. A membership count below the terms' minimum
    k is shown as suppressed too: the console never shows a count the policy would not release."""
    if match.state != "done" or not match.result:
        return None
    result = match.result
    if result.get("type") == "membership":
        count = int(result.get("report", {}).get("report", {}).get("overlap_count", 0))
        if count < match.min_k:
            return Released(count=None, suppressed=True, noised=False, kind="membership")
        return Released(count=count, suppressed=False, noised=False, kind="membership")
    count_value = result.get("count")
    if bool(result.get("suppressed")) or count_value is None:
        return Released(count=None, suppressed=True, noised=bool(result.get("noised")), kind="cardinality")
    return Released(
        count=int(count_value),
        suppressed=False,
        noised=bool(result.get("noised")),
        kind="cardinality",
    )


@dataclass(frozen=True, slots=True)
class MatchRow:
    match: MatchJob
    requester_size: int | None
    responder_size: int | None
    released: Released | None


@dataclass(frozen=True, slots=True)
class MatchPage:
    rows: list[MatchRow]
    next_before: str | None


async def match_page(
    session: AsyncSession, *, brand_id: str | None = None, before: str | None = None, limit: int = MATCH_PAGE_SIZE
) -> MatchPage:
    """Match jobs newest first with both segments' sizes and the released overlap."""
    query = select(MatchJob)
    if brand_id:
        query = query.where(or_(MatchJob.requester_brand_id == brand_id, MatchJob.responder_brand_id == brand_id))
    anchor = None
    if before:
        row = (await session.execute(select(MatchJob.requested_at, MatchJob.id).where(MatchJob.id == before))).first()
        anchor = (row[0], row[1]) if row else None
    query = _keyset(query, MatchJob.requested_at, MatchJob.id, anchor)
    jobs = list(
        (await session.scalars(query.order_by(MatchJob.requested_at.desc(), MatchJob.id.desc()).limit(limit + 1))).all()
    )
    more = len(jobs) > limit
    jobs = jobs[:limit]
    segment_ids = {j.requester_segment_id for j in jobs} | {j.responder_segment_id for j in jobs}
    sizes: dict[str, int] = {}
    if segment_ids:
        sizes = {
            sid: int(size)
            for sid, size in (
                await session.execute(select(Segment.id, Segment.size).where(Segment.id.in_(segment_ids)))
            )
        }
    rows = [
        MatchRow(
            match=j,
            requester_size=sizes.get(j.requester_segment_id),
            responder_size=sizes.get(j.responder_segment_id),
            released=released(j),
        )
        for j in jobs
    ]
    return MatchPage(rows=rows, next_before=jobs[-1].id if more and jobs else None)


# --- the overlap matrix -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MatrixCell:
    """``kind``: ``self`` (the diagonal), ``never`` (the pair was never matched), ``pending`` (matched,
    nothing released yet or the matches failed), ``suppressed`` (below minimum k) or ``count``.
    ``level`` 1-5 grades a count against the largest one shown (the heat map's colour)."""

    kind: str
    count: int | None = None
    noised: bool = False
    level: int = 0
    completed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Matrix:
    brands: list[Brand]
    cells: dict[tuple[str, str], MatrixCell] = field(default_factory=dict)
    more_brands: int = 0  # active brands left out (only the first MATRIX_MAX_BRANDS by name are shown)
    max_count: int = 0

    def cell(self, row: str, col: str) -> MatrixCell:
        if row == col:
            return MatrixCell(kind="self")
        return self.cells.get((min(row, col), max(row, col)), MatrixCell(kind="never"))


async def overlap_matrix(session: AsyncSession, *, limit: int = MATRIX_MAX_BRANDS) -> Matrix:
    """The latest released overlap of every pair among the first ``limit`` active brands by name: one
    window query over finished matches (one row per pair) and one over the pairs ever matched."""
    total = int(await session.scalar(select(func.count()).select_from(Brand).where(Brand.status == "active")) or 0)
    brands = list(
        (
            await session.scalars(
                select(Brand).where(Brand.status == "active").order_by(Brand.name, Brand.id).limit(limit)
            )
        ).all()
    )
    ids = [b.id for b in brands]
    if len(ids) < 2:
        return Matrix(brands=brands, more_brands=max(0, total - len(brands)))
    low = case(
        (MatchJob.requester_brand_id < MatchJob.responder_brand_id, MatchJob.requester_brand_id),
        else_=MatchJob.responder_brand_id,
    )
    high = case(
        (MatchJob.requester_brand_id < MatchJob.responder_brand_id, MatchJob.responder_brand_id),
        else_=MatchJob.requester_brand_id,
    )
    among = and_(MatchJob.requester_brand_id.in_(ids), MatchJob.responder_brand_id.in_(ids))
    ranked = (
        select(
            MatchJob.id.label("id"),
            func.row_number()
            .over(partition_by=(low, high), order_by=(MatchJob.completed_at.desc(), MatchJob.id.desc()))
            .label("rank"),
        )
        .where(MatchJob.state == "done", among)
        .subquery()
    )
    latest = (
        await session.scalars(select(MatchJob).join(ranked, ranked.c.id == MatchJob.id).where(ranked.c.rank == 1))
    ).all()
    matched_pairs = (await session.execute(select(low, high).where(among).group_by(low, high))).all()
    cells: dict[tuple[str, str], MatrixCell] = {(str(a), str(b)): MatrixCell(kind="pending") for a, b in matched_pairs}
    found: dict[tuple[str, str], tuple[Released, datetime | None]] = {}
    for job in latest:
        result = released(job)
        if result is None:
            continue
        pair = (
            min(job.requester_brand_id, job.responder_brand_id),
            max(job.requester_brand_id, job.responder_brand_id),
        )
        found[pair] = (result, job.completed_at)
    max_count = max((r.count for r, _ in found.values() if r.count is not None), default=0)
    for pair, (result, at) in found.items():
        if result.count is None:
            cells[pair] = MatrixCell(kind="suppressed", completed_at=at)
        else:
            level = max(1, -(-5 * result.count // max_count)) if max_count else 1
            cells[pair] = MatrixCell(
                kind="count", count=result.count, noised=result.noised, level=level, completed_at=at
            )
    return Matrix(brands=brands, cells=cells, more_brands=max(0, total - len(brands)), max_count=max_count)
