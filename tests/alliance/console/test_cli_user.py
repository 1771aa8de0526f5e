"""``alliance user add|list``: console users from the exchange host, passwords never on the command line."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.console import service
from alliance.core.problems import Problem
from tests import commands
from tests.conftest import Database
from tests.helpers import TEST_AUDIT
from tests.procs import exchange_env


@pytest.fixture
def cli_env(database: Database) -> dict[str, str]:
    return exchange_env(database.url)


def _run(args: list[str], env: dict[str, str], stdin: str | None = None) -> commands.CommandResult:
    return commands.run(commands.ALLIANCE, args, env, stdin)


def test_user_add_and_list(cli_env: dict[str, str], sessions: object) -> None:
    added = _run(
        ["user", "add", "Wang.Fang", "--role", "auditor", "--password-stdin", "--json"], cli_env, "s3cret pass word\n"
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["username"] == "wang.fang"
    assert "s3cret" not in added.stdout + added.stderr

    again = _run(["user", "add", "wang.fang", "--role", "admin", "--password-stdin"], cli_env, "another password\n")
    assert again.returncode == 1
    assert "already exists" in again.stderr

    no_tty = _run(["user", "add", "bo", "--role", "admin"], cli_env, "")
    assert no_tty.returncode == 1
    assert "--password-stdin" in no_tty.stderr

    listed = _run(["user", "list"], cli_env)
    assert "auditor   wang.fang" in listed.stdout
    assert "Traceback" not in added.stderr + again.stderr + no_tty.stderr


async def test_usernames_passwords_and_roles_are_checked(session: AsyncSession) -> None:
    for username, password, role, slug in [
        ("bo", "short", "admin", "weak-password"),
        ("x", "long enough password", "admin", "invalid-username"),
        ("has space", "long enough password", "admin", "invalid-username"),
        ("bo", "long enough password", "root", "invalid-role"),
    ]:
        with pytest.raises(Problem) as caught:
            await service.create_user(session, TEST_AUDIT, username, password, role)
        assert caught.value.slug == slug
    user = await service.create_user(session, TEST_AUDIT, " Bo@Example.CN ", "long enough password", "admin")
    assert user.username == "bo@example.cn"
    assert user.password_hash.startswith("$argon2id$")
    assert "long enough password" not in user.password_hash
