"""``alliance-partner signing-key rotate`` against a real ``alliance serve`` on SQLite and PostgreSQL: the
new key is registered, the old key file is archived (still decryptable), a contract signed with the old
key stays valid at the exchange (which keeps the key history), the new key signs the next contract, and
a refused or interrupted rotation leaves the agent with a working key."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.contracts.service import verify_stored_signatures
from alliance.db.session import create_engine, create_session_factory
from alliance.partner.client import PartnerClient
from alliance.partner.keystore import AgentStore
from alliance.partner.psi_client import PsiApi
from privacy.keys import SigningKey, load_key_file
from tests import commands
from tests.conftest import Database, LiveServer
from tests.e2e.test_two_agents import Brand, contract
from tests.helpers import BrandHandle, make_brand

PSI = {"segment_tags": ["psi"], "disclosure": "cardinality", "min_k": 100}


@pytest.fixture
def server(live_server: LiveServer) -> str:
    return live_server.base


@pytest.fixture
async def handles(sessions: async_sessionmaker[AsyncSession]) -> list[BrandHandle]:
    return [await make_brand(sessions, name, "retail") for name in ("Tea House 茶馆", "Book Store 书店", "Gym 健身")]


def public_key(path: Path, passphrase: str) -> bytes:
    record = load_key_file(path, passphrase)
    assert isinstance(record, SigningKey)
    return record.public_bytes()


def keys_at_exchange(server: str, brand: Brand) -> dict[str, object]:
    with PartnerClient(server, brand.handle.key) as client:
        return PsiApi(client).signing_keys()


def stored_signatures_verify(database: Database, *contract_ids: str) -> None:
    """The exchange's own re-verification of every stored signature, under the key each one names."""

    async def check() -> None:
        engine = create_engine(database.url)
        try:
            async with create_session_factory(engine)() as session:
                for contract_id in contract_ids:
                    await verify_stored_signatures(session, contract_id)
        finally:
            await engine.dispose()

    asyncio.run(check())


def test_rotate_registers_the_new_key_and_old_signatures_stay_valid(
    server: str, handles: list[BrandHandle], database: Database, tmp_path: Path
) -> None:
    a, b, c = (Brand(h, server, tmp_path / f"agent-{i}") for i, h in enumerate(handles))
    for brand in (a, b, c):
        brand.cli("keygen", "--register")
    passphrase = a.env["ALLIANCE_AGENT_PASSPHRASE"]
    old = public_key(a.home / "signing.key", passphrase)
    signed_with_old = contract(server, a, b, PSI)

    rotated = a.json("signing-key", "rotate")
    new = bytes.fromhex(rotated["new_public_key"])
    assert bytes.fromhex(rotated["old_public_key"]) == old and new != old and rotated["resumed"] is False
    # The new key is the agent's key; the old file is archived, still encrypted, and still opens.
    assert public_key(a.home / "signing.key", passphrase) == new
    archived = Path(rotated["archived"])
    assert archived.parent == a.home / "archive" and public_key(archived, passphrase) == old
    assert archived.stat().st_mode & 0o777 == 0o600
    assert not (a.home / "signing.key.new").exists()

    # The exchange: the new key is current, the old one retired but kept.
    keys = keys_at_exchange(server, a)
    current = keys["current"]
    assert isinstance(current, dict) and base64.b64decode(current["public_key"]) == new
    history = {base64.b64decode(k["public_key"]): k for k in keys["history"]}  # type: ignore[attr-defined]
    assert history[old]["retired_at"] is not None and history[old]["current"] is False

    # The contract A signed with the old key is still in force and its stored signatures verify
    # (each under the key it names); the next contract is signed with the new key.
    stored_signatures_verify(database, signed_with_old)
    signed_with_new = contract(server, a, c, PSI)
    stored_signatures_verify(database, signed_with_old, signed_with_new)
    for contract_id, key_id in ((signed_with_old, history[old]["key_id"]), (signed_with_new, current["key_id"])):
        shown = httpx.get(f"{server}/v1/contracts/{contract_id}", headers=a.handle.headers).json()
        version = shown["versions"][0]
        assert version["status"] == "in_force", version
        assert {s["brand_id"]: s["key_id"] for s in version["signatures"]}[a.id] == key_id


def test_a_refused_rotation_changes_nothing_and_an_interrupted_one_is_finished(
    server: str, handles: list[BrandHandle], tmp_path: Path
) -> None:
    a = Brand(handles[0], server, tmp_path / "agent")
    a.cli("keygen", "--register")
    passphrase = a.env["ALLIANCE_AGENT_PASSPHRASE"]
    before = public_key(a.home / "signing.key", passphrase)

    refused = commands.run(
        commands.PARTNER, ["signing-key", "rotate"], {**a.env, "ALLIANCE_API_KEY": "bax_00000000_" + "x" * 43}
    )
    assert refused.returncode == 1 and "unauthenticated" in refused.stderr
    assert public_key(a.home / "signing.key", passphrase) == before
    assert not (a.home / "signing.key.new").exists() and not (a.home / "archive").exists()

    # A rotation interrupted after the exchange took the new key (the process died before the swap):
    # the next run sees the staged key is the exchange's current one and finishes the swap.
    store = AgentStore(a.home, passphrase)
    staged = store.stage_signing_key(scrypt_n=2**14)
    with PartnerClient(server, a.handle.key) as client:
        PsiApi(client).register_signing_key(staged.public_bytes())
    finished = a.json("signing-key", "rotate")
    assert finished["resumed"] is True
    assert bytes.fromhex(finished["new_public_key"]) == staged.public_bytes()
    assert public_key(a.home / "signing.key", passphrase) == staged.public_bytes()
    assert public_key(Path(finished["archived"]), passphrase) == before
