"""Operator keys: listed (prefix, label, created, last used, revoked) and revoked from the command line
and the operator API; a revoked key stops at once in this process; the last active one cannot be
revoked; every revocation leaves an audit row."""

from __future__ import annotations

import asyncio
import json

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.brands import service
from alliance.cli import main as cli_main
from alliance.db.models import AuditEntry
from tests.conftest import Database
from tests.helpers import TEST_AUDIT, BrandHandle, assert_problem, bearer


async def add_operator_key(sessions: async_sessionmaker[AsyncSession], label: str) -> tuple[str, str, str]:
    """(id, prefix, secret) of a new operator key."""
    async with sessions() as session, session.begin():
        issued = await service.create_admin_key(session, TEST_AUDIT, label)
    return issued.key.id, issued.key.prefix, issued.secret


async def revocations(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str | None]]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "admin_key.revoke").order_by(AuditEntry.id)
        )
        return [(row.actor, row.target) for row in rows]


async def test_operator_api_lists_and_revokes_operator_keys(
    client: AsyncTestClient[Litestar], sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle
) -> None:
    first_id, _, first = await add_operator_key(sessions, "ops-2026-11")
    second_id, _, second = await add_operator_key(sessions, "ops-2026-12")
    assert (await client.get("/admin/v1/brands", headers=bearer(second))).status_code == 200  # cached now

    listed = await client.get("/admin/v1/admin-keys", headers=bearer(first))
    assert listed.status_code == 200, listed.text
    keys = {k["id"]: k for k in listed.json()}
    assert set(keys) == {first_id, second_id}
    assert keys[first_id]["label"] == "ops-2026-11" and keys[first_id]["role"] == "admin"
    assert keys[second_id]["last_used_at"] is not None and keys[second_id]["revoked_at"] is None
    assert first not in listed.text and second not in listed.text

    revoked = await client.delete(f"/admin/v1/admin-keys/{second_id}", headers=bearer(first))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    # This process forgets the key at once (other workers within the authentication cache's TTL).
    assert_problem(await client.get("/admin/v1/brands", headers=bearer(second)), 401, "unauthenticated")
    # Again: nothing changes, no second audit row.
    assert (await client.delete(f"/admin/v1/admin-keys/{second_id}", headers=bearer(first))).status_code == 200
    assert await revocations(sessions) == [(f"admin:key:{first_id}", second_id)]

    assert_problem(
        await client.delete(f"/admin/v1/admin-keys/{first_id}", headers=bearer(first)), 409, "last-active-key"
    )
    assert_problem(
        await client.delete("/admin/v1/admin-keys/key_nope", headers=bearer(first)), 404, "api-key-not-found"
    )
    # A brand's key is not an operator key, neither as caller nor as target.
    assert_problem(await client.get("/admin/v1/admin-keys", headers=brand_a.headers), 403, "forbidden")
    [brand_key] = (await client.get("/v1/api-keys", headers=brand_a.headers)).json()
    assert_problem(
        await client.delete(f"/admin/v1/admin-keys/{brand_key['id']}", headers=bearer(first)), 404, "api-key-not-found"
    )
    assert (await client.get("/v1/me", headers=brand_a.headers)).status_code == 200


async def test_cli_lists_and_revokes_operator_keys_by_prefix(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ALLIANCE_DATABASE_URL", database.url)
    monkeypatch.setenv("ALLIANCE_AUTO_MIGRATE", "false")
    leaked_id, leaked_prefix, leaked = await add_operator_key(sessions, "leaked")
    kept_id, _, kept = await add_operator_key(sessions, "kept")

    assert await asyncio.to_thread(cli_main, ["admin-key", "list"]) == 0
    text = capsys.readouterr().out
    assert leaked_prefix in text and "leaked" in text and "active" in text and leaked not in text

    # The prefix as listed (bax_1a2b3c4d_…); the 8 hex characters or the id work too.
    assert await asyncio.to_thread(cli_main, ["admin-key", "revoke", leaked_prefix]) == 0
    assert "revoked" in capsys.readouterr().out
    assert_problem(await client.get("/admin/v1/brands", headers=bearer(leaked)), 401, "unauthenticated")
    assert (await client.get("/admin/v1/brands", headers=bearer(kept))).status_code == 200

    assert await asyncio.to_thread(cli_main, ["admin-key", "list", "--json"]) == 0
    listed = {k["id"]: k for k in json.loads(capsys.readouterr().out)}
    assert listed[leaked_id]["revoked_at"] is not None and listed[kept_id]["revoked_at"] is None
    assert listed[kept_id]["last_used_at"] is not None

    hex_prefix = listed[kept_id]["prefix"].split("_")[1]
    assert await asyncio.to_thread(cli_main, ["admin-key", "revoke", hex_prefix]) == 1
    assert "only active operator key" in capsys.readouterr().err
    assert await asyncio.to_thread(cli_main, ["admin-key", "revoke", "bax_00000000_…"]) == 1
    assert "no operator key" in capsys.readouterr().err
    [(actor, target)] = await revocations(sessions)
    assert actor.startswith("cli:") and target == leaked_id
