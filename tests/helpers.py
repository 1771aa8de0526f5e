"""Helpers shared by the tests: brands and keys made through the public service, problem assertions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.brands import service as brands
from alliance.core.audit import AuditContext

PROBLEM = "application/problem+json"
TEST_AUDIT = AuditContext(actor="test:fixture", source_ip="local")


@dataclass
class BrandHandle:
    """A brand created through the public service, with the API key it calls with."""

    id: str
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def make_brand(sessions: async_sessionmaker[AsyncSession], name: str, category: str | None = None) -> BrandHandle:
    async with sessions() as db_session, db_session.begin():
        brand, key = await brands.create_brand(db_session, TEST_AUDIT, name, category)
    return BrandHandle(id=brand.id, name=brand.name, key=key.secret)


async def make_admin_key(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    async with sessions() as db_session, db_session.begin():
        issued = await brands.create_admin_key(db_session, TEST_AUDIT, "tests")
    return {"Authorization": f"Bearer {issued.secret}"}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with the given status and stable type; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:bax:problem:{slug}", body
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body
