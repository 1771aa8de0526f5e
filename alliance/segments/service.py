"""Segments: create the metadata, stream the blinded points in, publish. No HTTP objects here.

A brand only ever reaches its own segments through these functions; another brand's segment is
reported exactly like a missing one. Points are validated on the way in and the exchange never
returns a segment's points to its owner's competitors except as the input of an approved match task
(alliance.matches).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import Segment
from alliance.segments import storage
from alliance.segments.config import PsiSettings
from alliance.segments.schemas import SegmentCreate, SegmentOut

__all__ = [
    "create_segment",
    "get_own_segment",
    "get_published_segment",
    "list_segments",
    "publish_segment",
    "segment_out",
    "upload_items",
]


def segment_out(segment: Segment, alliance_id: str) -> SegmentOut:
    return SegmentOut(
        id=segment.id,
        name=segment.name,
        id_type=segment.id_type,
        size=segment.size,
        key_epoch=segment.key_epoch,
        tags=list(segment.tags),
        status=segment.status,
        item_count=segment.item_count,
        items_sha256=segment.items_sha256,
        alliance_id=alliance_id,
        created_at=segment.created_at,
        published_at=segment.published_at,
    )


async def create_segment(
    session: AsyncSession, ctx: AuditContext, brand_id: str, data: SegmentCreate, settings: PsiSettings
) -> Segment:
    """A new draft segment. ``data.size`` may not exceed ``settings.max_segment_items`` (422)."""
    if data.size > settings.max_segment_items:
        raise Problem(
            422,
            "segment-too-large",
            f"a segment may hold at most {settings.max_segment_items} items",
            extra={"max_items": settings.max_segment_items},
        )
    segment = Segment(
        id=new_id("seg"),
        brand_id=brand_id,
        name=data.name.strip(),
        tags=sorted(set(data.tags)),
        id_type=str(data.id_type),
        size=data.size,
        key_epoch=data.key_epoch,
        status="draft",
        item_count=0,
        created_at=utcnow(),
    )
    session.add(segment)
    await session.flush()
    record_audit(session, ctx, "segment.create", brand_id=brand_id, target=segment.id, details=segment.describe())
    return segment


async def list_segments(session: AsyncSession, brand_id: str) -> Sequence[Segment]:
    query = select(Segment).where(Segment.brand_id == brand_id).order_by(Segment.created_at, Segment.id)
    return (await session.scalars(query)).all()


async def get_own_segment(session: AsyncSession, brand_id: str, segment_id: str, *, lock: bool = False) -> Segment:
    query = select(Segment).where(Segment.id == segment_id, Segment.brand_id == brand_id)
    if lock:
        query = query.with_for_update()
    segment = await session.scalar(query)
    if segment is None:
        raise Problem(404, "segment-not-found", f"no segment {segment_id!r} for this brand")
    return segment


async def get_published_segment(session: AsyncSession, segment_id: str) -> Segment:
    """Any brand's *published* segment; a draft is reported like a missing one."""
    segment = await session.get(Segment, segment_id)
    if segment is None or segment.status != "published":
        raise Problem(404, "segment-not-found", f"no published segment {segment_id!r}")
    return segment


async def upload_items(
    session: AsyncSession,
    ctx: AuditContext,
    brand_id: str,
    segment_id: str,
    body: AsyncIterator[bytes],
    *,
    content_length: int | None = None,
) -> Segment:
    """Replace a draft segment's points with the streamed ``body`` (concatenated 32-byte records).

    At most ``segment.size`` records (413 before reading anything when ``content_length`` says more);
    every record must be a canonical, non-small-order point on Curve25519 (422). On any error the
    caller's transaction rolls back and the previous upload, if any, is kept.
    """
    segment = await get_own_segment(session, brand_id, segment_id, lock=True)
    if segment.status != "draft":
        raise Problem(409, "segment-published", "a published segment cannot be changed; create a new one")
    limit = segment.size * 32
    if content_length is not None and content_length > limit:
        raise Problem(
            413,
            "too-many-items",
            f"the upload is {content_length} bytes; the segment declared {segment.size} items ({limit} bytes)",
            extra={"declared_items": segment.size},
        )
    await storage.delete_set(session, segment.id)
    ingested = await storage.ingest_points(session, segment.id, body, max_items=segment.size)
    segment.item_count = ingested.items
    segment.items_sha256 = ingested.sha256
    record_audit(
        session, ctx, "segment.upload", brand_id=brand_id, target=segment.id, details={"items": ingested.items}
    )
    return segment


async def publish_segment(session: AsyncSession, ctx: AuditContext, brand_id: str, segment_id: str) -> Segment:
    """Freeze a segment so it can be matched. It must hold exactly the declared number of points (409)."""
    segment = await get_own_segment(session, brand_id, segment_id, lock=True)
    if segment.status == "published":
        return segment
    if segment.item_count != segment.size:
        raise Problem(
            409,
            "segment-incomplete",
            f"the segment holds {segment.item_count} of the {segment.size} items it declared",
            extra={"item_count": segment.item_count, "size": segment.size},
        )
    segment.status = "published"
    segment.published_at = utcnow()
    record_audit(session, ctx, "segment.publish", brand_id=brand_id, target=segment.id, details=segment.describe())
    return segment
