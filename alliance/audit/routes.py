"""Operator API: the audit log, newest first, with keyset pagination."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.params import FromQuery, QueryParameter
from sqlalchemy import select

from alliance.core.deps import Db
from alliance.db.models import AuditEntry

__all__ = ["AuditAdminController", "AuditEntryOut", "AuditPage"]


class AuditEntryOut(msgspec.Struct):
    id: int
    at: datetime
    actor: str
    action: str
    brand_id: str | None
    target: str | None
    source_ip: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditPage(msgspec.Struct):
    items: list[AuditEntryOut]
    next_before_id: int | None


class AuditAdminController(Controller):
    path = "/audit"
    tags = ["admin"]

    @get("/", operation_id="adminListAudit", summary="Audit log entries, newest first")
    async def list(
        self,
        db: Db,
        brand_id: FromQuery[str | None] = None,
        action: FromQuery[str | None] = None,
        before_id: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1)] = None,  # a BIGINT id
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> AuditPage:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
        if brand_id:
            query = query.where(AuditEntry.brand_id == brand_id)
        if action:
            query = query.where(AuditEntry.action == action)
        if before_id:
            query = query.where(AuditEntry.id < before_id)
        rows = list((await db.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return AuditPage(
            items=[
                AuditEntryOut(
                    id=r.id,
                    at=r.at,
                    actor=r.actor,
                    action=r.action,
                    brand_id=r.brand_id,
                    target=r.target,
                    source_ip=r.source_ip,
                    request_id=r.request_id,
                    details=r.details,
                )
                for r in rows
            ],
            next_before_id=rows[-1].id if more and rows else None,
        )
