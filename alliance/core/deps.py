"""Typed names for the dependencies every handler may ask for (declared once, used everywhere).

Litestar resolves a dependency by parameter name; these aliases make the intent explicit, so a typo in
a parameter name fails loudly at start-up instead of being read as a query parameter.
"""

from __future__ import annotations

from typing import TypeAlias

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.audit import AuditContext
from alliance.core.auth import BrandCaller, Principal

__all__ = ["Audit", "Caller", "Db", "Operator"]

Db: TypeAlias = NamedDependency[AsyncSession]
"""``db``: the request's session; committed when the handler returns, rolled back on error."""
Caller: TypeAlias = NamedDependency[BrandCaller]
"""``caller``: the authenticated brand on a ``/v1`` route."""
Operator: TypeAlias = NamedDependency[Principal]
"""``operator``: the authenticated operator on an ``/admin/v1`` route."""
Audit: TypeAlias = NamedDependency[AuditContext]
"""``audit``: who/where for audit rows written by the handler's service calls."""
