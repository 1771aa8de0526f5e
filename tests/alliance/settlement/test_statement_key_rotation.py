"""Rotating the statement signing key on both backends: a month closed before the rotation keeps its
key id, is served with that key and verifies forever; the next month is signed with the new key; the
re-run of the old month is still byte-identical. Database key (``alliance statement-key rotate``) and
file key (replace the file) alike."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.app import create_app
from alliance.cli import main as cli_main
from alliance.core.settings import Settings
from alliance.db.migrate import migrate
from alliance.db.models import AuditEntry, SettlementStatement, StatementKey
from alliance.db.session import create_engine
from alliance.settlement.service import build_statements
from alliance.settlement.signing import key_id_of
from tests import commands
from tests.alliance.ledger.support import owes
from tests.alliance.settlement.support import APRIL, MARCH, Alliance, close, march_activity, post
from tests.conftest import Database, drop_pg_database, fresh_database


def run_cli(args: list[str], env: dict[str, str]) -> commands.CommandResult:
    return commands.run(commands.ALLIANCE, args, env)


def cli_env(database: Database, key_file: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env["ALLIANCE_DATABASE_URL"] = database.url
    if key_file:
        env["ALLIANCE_EXCHANGE_SIGNING_KEY_FILE"] = key_file
    return env


async def april_activity(sessions: async_sessionmaker[AsyncSession], alliance: Alliance) -> None:
    await post(
        sessions,
        "april-1",
        owes(alliance.b.id, alliance.c.id, 3_300),
        kind="coupon",
        occurred_at=datetime(2026, 4, 7, 12, tzinfo=UTC),
        brand_id=alliance.c.id,
    )


async def signed(client: AsyncTestClient[Litestar], headers: dict[str, str], month: str) -> bytes:
    response = await client.get(f"/v1/statements/{month}", headers=headers)
    assert response.status_code == 200, response.text
    return response.content


def verifies(tmp_path: Path, body: bytes, public_key: str | None = None) -> bool:
    path = tmp_path / f"statement-{key_id_of(os.urandom(32))}.json"
    path.write_bytes(body)
    return cli_main(["statement", "verify", str(path), *(["--public-key", public_key] if public_key else [])]) == 0


async def exchange_key(client: AsyncTestClient[Litestar], headers: dict[str, str], key_id: str = "") -> Any:
    response = await client.get("/v1/exchange-key" + (f"?key_id={key_id}" if key_id else ""), headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def check_both_months(
    client: AsyncTestClient[Litestar],
    alliance: Alliance,
    march_before: bytes,
    old_id: str,
    new_id: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """March is served exactly as before the rotation, April is signed with the new key; each verifies
    with its own key id only."""
    march = await signed(client, alliance.a.headers, MARCH)
    april = await signed(client, alliance.b.headers, APRIL)
    assert march == march_before
    assert json.loads(march)["signature"]["key_id"] == old_id
    assert json.loads(april)["signature"]["key_id"] == new_id
    old_key = await exchange_key(client, alliance.a.headers, old_id)
    new_key = await exchange_key(client, alliance.a.headers)
    assert (old_key["current"], new_key["current"], new_key["key_id"]) == (False, True, new_id)
    assert old_key["retired_at"] is not None and new_key["retired_at"] is None
    assert verifies(tmp_path, march) and verifies(tmp_path, april)
    assert verifies(tmp_path, march, old_key["public_key"]) and verifies(tmp_path, april, new_key["public_key"])
    capsys.readouterr()
    assert not verifies(tmp_path, march, new_key["public_key"])
    assert f"signed with key {old_id}" in capsys.readouterr().err


async def rerun_is_identical(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    admin: dict[str, str],
    march_digest: str,
    key_file: str,
) -> None:
    again = await close(client, admin, MARCH)
    assert again["already_closed"] is True and again["digest"] == march_digest
    async with sessions() as session:
        rebuilt, _ = await build_statements(session, MARCH, key_file=key_file, alliance_id="demo-alliance")
        stored = {
            r.brand_id: r.document
            for r in (await session.scalars(select(SettlementStatement).where(SettlementStatement.period == MARCH)))
        }
    assert {b: d for b, (d, _, _) in rebuilt.items()} == stored


async def test_database_key_rotation_keeps_earlier_statements_verifiable(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    admin_headers: dict[str, str],
    database: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alliance = await march_activity(sessions)
    march_run = await close(client, admin_headers, MARCH)
    march_before = await signed(client, alliance.a.headers, MARCH)
    old_id = (await exchange_key(client, alliance.a.headers))["key_id"]

    rotated = await asyncio.to_thread(run_cli, ["statement-key", "rotate", "--json"], cli_env(database))
    assert rotated.returncode == 0, rotated.stderr
    new_id = json.loads(rotated.stdout)["key_id"]
    assert new_id != old_id

    await april_activity(sessions, alliance)
    await close(client, admin_headers, APRIL)
    await check_both_months(client, alliance, march_before, old_id, new_id, tmp_path, capsys)
    await rerun_is_identical(client, sessions, admin_headers, march_run["digest"], "")

    listed = await asyncio.to_thread(run_cli, ["statement-key", "list", "--json"], cli_env(database))
    assert listed.returncode == 0, listed.stderr
    assert [(k["key_id"], k["current"]) for k in json.loads(listed.stdout)] == [(old_id, False), (new_id, True)]
    async with sessions() as session:
        audit = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "statement_key.rotate"))).all()
    assert [(a.target, a.details["previous_key_id"]) for a in audit] == [(new_id, old_id)]

    unknown = await client.get("/v1/exchange-key?key_id=0123456789abcdef", headers=alliance.a.headers)
    assert unknown.status_code == 404 and unknown.json()["type"] == "urn:bax:problem:exchange-key-not-found"


@pytest.fixture
async def file_key_client(
    settings: Settings, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[AsyncTestClient[Litestar], Path]]:
    key_file = tmp_path / "keys" / "statement.key"
    app = create_app(
        Settings(database_url=settings.database_url, auto_migrate=False, exchange_signing_key_file=str(key_file)),
        configure_logs=False,
    )
    async with AsyncTestClient(app=app) as test_client:
        yield test_client, key_file


async def test_file_key_replaced_registers_the_new_key_on_first_use(
    file_key_client: tuple[AsyncTestClient[Litestar], Path],
    sessions: async_sessionmaker[AsyncSession],
    admin_headers: dict[str, str],
    database: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, key_file = file_key_client
    alliance = await march_activity(sessions)
    march_run = await close(client, admin_headers, MARCH)  # creates the key file (0600) and registers it
    assert key_file.stat().st_mode & 0o777 == 0o600
    march_before = await signed(client, alliance.a.headers, MARCH)
    old_id = (await exchange_key(client, alliance.a.headers))["key_id"]

    # The database key cannot be rotated while a file is configured: the file is the key.
    refused = await asyncio.to_thread(run_cli, ["statement-key", "rotate"], cli_env(database, str(key_file)))
    assert refused.returncode == 1 and "replacing that file" in refused.stderr

    # Rotation of a file key, as docs/operations.md says: keep the old file aside, put a new key in place.
    key_file.rename(key_file.with_name("statement.key.retired"))
    await april_activity(sessions, alliance)
    await close(client, admin_headers, APRIL)  # a fresh key file is created and registered on first use
    new_id = (await exchange_key(client, alliance.a.headers))["key_id"]
    assert new_id != old_id
    await check_both_months(client, alliance, march_before, old_id, new_id, tmp_path, capsys)
    await rerun_is_identical(client, sessions, admin_headers, march_run["digest"], str(key_file))
    async with sessions() as session:
        sources = {k.key_id: k.source for k in await session.scalars(select(StatementKey))}
    assert sources == {old_id: "file", new_id: "file"}


async def test_a_statement_older_than_its_key_registration_is_still_served(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    """Statements closed before key ids were recorded (an older version): the key in use is registered
    when it is next needed, so they are served with it as before."""
    alliance = await march_activity(sessions)
    await close(client, admin_headers, MARCH)
    async with sessions() as session, session.begin():
        await session.execute(delete(StatementKey))
    body = await signed(client, alliance.a.headers, MARCH)
    key = await exchange_key(client, alliance.a.headers)
    assert json.loads(body)["signature"]["key_id"] == key["key_id"]
    assert verifies(tmp_path, body, key["public_key"])


def test_migration_registers_the_database_key_already_in_use(backend: str, tmp_path: Path) -> None:
    """Upgrading a database whose statements were signed with the database key: the key is registered
    by the migration itself."""
    db = fresh_database(backend, tmp_path)
    try:
        migrate(db.url, "0009_console_finance")
        public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()

        async def seed_and_read(seed: bool) -> list[tuple[str, bytes, str]]:
            engine = create_engine(db.url)
            try:
                async with engine.begin() as conn:
                    if seed:
                        await conn.execute(
                            text(
                                "INSERT INTO exchange_signing_keys (id, purpose, private_key, public_key, created_at) "
                                "VALUES ('xkey_1', 'statement', :private, :public, :at)"
                            ),
                            {"private": b"\0" * 32, "public": public, "at": datetime(2026, 1, 2, tzinfo=UTC)},
                        )
                        return []
                    rows = await conn.execute(text("SELECT key_id, public_key, source FROM statement_keys"))
                    return [(r[0], bytes(r[1]), r[2]) for r in rows]
            finally:
                await engine.dispose()

        asyncio.run(seed_and_read(True))
        migrate(db.url)
        assert asyncio.run(seed_and_read(False)) == [(key_id_of(public), public, "database")]
    finally:
        if backend == "postgresql":
            drop_pg_database(db.url)
