"""Console test helpers: users made through the public service, and signing a test client in the way a
browser does (GET the login page for the CSRF cookie and token, then POST the form)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.console import service
from tests.helpers import TEST_AUDIT

ADMIN_PASSWORD = "correct horse battery staple"
AUDITOR_PASSWORD = "auditor reads everything"
_TOKEN = re.compile(r'name="_csrf_token" value="([0-9a-f]+)"')


@dataclass(frozen=True)
class ConsoleUser:
    username: str
    password: str
    role: str


def csrf_token(html: str) -> str:
    """The CSRF token a page embeds in its forms."""
    match = _TOKEN.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


async def sign_in(client: AsyncTestClient[Litestar], user: ConsoleUser) -> str:
    """Sign ``client`` in as ``user``; returns the CSRF token to send with later forms."""
    token = csrf_token((await client.get("/console/login")).text)
    response = await client.post(
        "/console/login",
        data={"_csrf_token": token, "username": user.username, "password": user.password, "next": "/console/"},
    )
    assert response.status_code == 303, response.text
    return token


async def add_user(sessions: async_sessionmaker[AsyncSession], username: str, password: str, role: str) -> ConsoleUser:
    async with sessions() as db, db.begin():
        await service.create_user(db, TEST_AUDIT, username, password, role)
    return ConsoleUser(username, password, role)
