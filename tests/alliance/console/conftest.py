"""Console fixtures: an admin and an auditor, created through the public service."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.alliance.console.console_helpers import ADMIN_PASSWORD, AUDITOR_PASSWORD, ConsoleUser, add_user


@pytest.fixture
async def admin(sessions: async_sessionmaker[AsyncSession]) -> ConsoleUser:
    return await add_user(sessions, "ada", ADMIN_PASSWORD, "admin")


@pytest.fixture
async def auditor(sessions: async_sessionmaker[AsyncSession]) -> ConsoleUser:
    return await add_user(sessions, "li.wei", AUDITOR_PASSWORD, "auditor")


@pytest.fixture
def web(client: AsyncTestClient[Litestar]) -> AsyncTestClient[Litestar]:
    """The test client, answering redirects the way a test wants to see them (not followed)."""
    client.follow_redirects = False
    return client
