"""The audit log: every change to the exchange, newest first, filtered by brand and action, with
keyset pagination (a page costs the same however long the log grows)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import QueryParameter
from sqlalchemy import select

from alliance.console import queries
from alliance.console.rendering import render
from alliance.core.deps import Db
from alliance.db.models import AuditEntry

__all__ = ["AuditPages"]

BrandFilter = Annotated[str | None, QueryParameter(max_length=32)]
ActionFilter = Annotated[str | None, QueryParameter(max_length=64)]
Cursor = Annotated[int | None, QueryParameter(ge=1)]


class AuditPages(Controller):
    path = "/audit"
    include_in_schema = False

    @get("/", operation_id="consoleAudit")
    async def list(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        brand: BrandFilter = None,
        action: ActionFilter = None,
        before: Cursor = None,
    ) -> Response[str]:
        brand = (brand or "").strip() or None
        action = (action or "").strip() or None
        listing = await queries.audit_page(db, brand_id=brand, action=action, before=before)
        names = await queries.brand_names(db)
        # Suggestions for the action filter: what happened lately (a bounded read, not a DISTINCT scan).
        recent_actions = (await db.scalars(select(AuditEntry.action).order_by(AuditEntry.at.desc()).limit(500))).all()
        return render(
            request,
            "audit/list.html",
            section="audit",
            listing=listing,
            brands=names,
            brand_options=sorted(names.items(), key=lambda item: item[1]),
            known_actions=sorted(set(recent_actions)),
            brand=brand or "",
            action=action or "",
            before=before,
        )
