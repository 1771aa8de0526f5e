"""Audit log writes. Every state-changing call records who, what, when and from where, in the same
transaction as the change itself, so there is never a change without its audit row (or the reverse).

Never put secrets in ``details``: callers pass identifiers and counts, not keys or payloads.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.auth import Principal
from alliance.db.models import AuditEntry

__all__ = ["AuditContext", "cli_audit_context", "provide_audit", "record_audit"]


@dataclass(frozen=True, slots=True)
class AuditContext:
    actor: str
    source_ip: str | None = None
    request_id: str | None = None


def provide_audit(request: Request[Any, Any, Any]) -> AuditContext:
    principal: Principal | None = getattr(request.state, "principal", None)
    actor = principal.actor if principal else "anonymous"
    client = request.client
    forwarded = request.headers.get("x-forwarded-for")
    # The proxy-supplied address is recorded beside the peer, never instead of it.
    source = client.host if client else None
    if forwarded:
        source = f"{source} (xff {forwarded.split(',')[0].strip()[:40]})"
    return AuditContext(actor=actor, source_ip=source, request_id=getattr(request.state, "request_id", None))


def cli_audit_context() -> AuditContext:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    return AuditContext(actor=f"cli:{user}", source_ip="local")


def record_audit(
    session: AsyncSession,
    ctx: AuditContext,
    action: str,
    *,
    brand_id: str | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        actor=ctx.actor,
        brand_id=brand_id,
        action=action,
        target=target,
        source_ip=ctx.source_ip,
        request_id=ctx.request_id,
        details=details or {},
    )
    session.add(entry)
    return entry
