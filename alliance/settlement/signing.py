"""The exchange's Ed25519 statement key, and the canonical bytes it signs.

The key lives in the file named by ``ALLIANCE_EXCHANGE_SIGNING_KEY_FILE`` (32 raw bytes, hex; created
with mode 0600 on first use) or, when that setting is empty, in the ``exchange_signing_keys`` table under
the purpose ``statement`` (created on first use, race-free through the unique purpose).

Every key that signs is registered by its key id in ``statement_keys`` (public half only) the first time
it is loaded, and stays there after a rotation (:func:`rotate_statement_key` for the database key; a file
key is rotated by replacing the file). A statement records the key id it was signed with and is served
with that key's public half (:func:`statement_public_key`), so it verifies forever.

Signed bytes: ``b"BAX-STATEMENT-V1\\n" + canonical_json(statement)`` where canonical JSON is msgspec's
encoding with keys sorted at every level and no whitespace. Ed25519 (RFC 8032) is deterministic, so a
re-run of a close produces the same signature byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.ids import new_id
from alliance.db.base import utcnow
from alliance.db.models import ExchangeSigningKey, StatementKey

__all__ = [
    "PURPOSE",
    "SIGNED_PREFIX",
    "StatementKeyInFile",
    "StatementVerificationError",
    "canonical_json",
    "key_id_of",
    "list_statement_keys",
    "load_statement_key",
    "rotate_statement_key",
    "sign_statement",
    "statement_public_key",
    "verify_statement_file",
]

PURPOSE = "statement"
SIGNED_PREFIX = b"BAX-STATEMENT-V1\n"


class StatementVerificationError(ValueError):
    """A statement file is malformed, or its signature does not verify."""


def canonical_json(value: Any) -> bytes:
    return msgspec.json.encode(value, order="sorted")


def key_id_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _from_file(path: Path) -> Ed25519PrivateKey:
    if not path.exists():
        # Several server processes may start on a missing file at once: each writes a complete key to a
        # file of its own, and the first hard link wins; the others read the winner's key.
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{new_id('tmp')}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(key.private_bytes_raw().hex() + "\n")
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink(missing_ok=True)
    raw = bytes.fromhex(path.read_text().strip())
    if len(raw) != 32:
        raise ValueError(f"{path}: an exchange signing key file holds 32 bytes as hex")
    return Ed25519PrivateKey.from_private_bytes(raw)


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def _register(session: AsyncSession, public_raw: bytes, source: str) -> str:
    """Record ``public_raw`` as the current statement key (once; a PK lookup on later calls). A key seen
    for the first time - or seen again after another key replaced it - retires the others."""
    key_id = key_id_of(public_raw)
    row = await session.scalar(select(StatementKey).where(StatementKey.key_id == key_id))
    if row is not None and row.retired_at is None:
        return key_id
    now = utcnow()
    if row is None:
        inserted = await session.scalar(
            _insert(session)(StatementKey)
            .values(key_id=key_id, public_key=public_raw, source=source, created_at=now, retired_at=None)
            .on_conflict_do_nothing(index_elements=["key_id"])
            .returning(StatementKey.key_id)
        )
        if inserted is None:  # another process registered it a moment ago
            return key_id
    else:
        row.retired_at = None  # an earlier key is back in use (a key file restored)
    await session.execute(
        update(StatementKey)
        .where(StatementKey.key_id != key_id, StatementKey.retired_at.is_(None))
        .values(retired_at=now)
        .execution_options(synchronize_session=False)
    )
    return key_id


async def _database_key(session: AsyncSession, *, for_update: bool = False) -> ExchangeSigningKey:
    query = select(ExchangeSigningKey).where(ExchangeSigningKey.purpose == PURPOSE)
    row = await session.scalar(query.with_for_update() if for_update else query)
    if row is None:
        private = Ed25519PrivateKey.generate()
        await session.execute(
            _insert(session)(ExchangeSigningKey)
            .values(
                id=new_id("xkey"),
                purpose=PURPOSE,
                private_key=private.private_bytes_raw(),
                public_key=private.public_key().public_bytes_raw(),
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["purpose"])
        )
        row = await session.scalar(query.with_for_update() if for_update else query)
        assert row is not None
    return row


async def load_statement_key(session: AsyncSession, key_file: str) -> Ed25519PrivateKey:
    """The exchange's current statement key (see the module docstring for where it lives), registered
    in ``statement_keys`` by its key id."""
    if key_file:
        private = _from_file(Path(key_file))
        await _register(session, private.public_key().public_bytes_raw(), "file")
        return private
    row = await _database_key(session)
    private = Ed25519PrivateKey.from_private_bytes(bytes(row.private_key))
    await _register(session, private.public_key().public_bytes_raw(), "database")
    return private


async def statement_public_key(session: AsyncSession, key_id: str, key_file: str) -> bytes | None:
    """The raw public key with ``key_id`` (current or retired), or ``None`` if no such key ever signed
    here. The current key is registered first, so a key file in use is always found."""
    found = await session.scalar(select(StatementKey.public_key).where(StatementKey.key_id == key_id))
    if found is None:
        await load_statement_key(session, key_file)
        found = await session.scalar(select(StatementKey.public_key).where(StatementKey.key_id == key_id))
    return bytes(found) if found is not None else None


async def list_statement_keys(session: AsyncSession, key_file: str) -> list[StatementKey]:
    """Every statement key, oldest first (the current one registered first)."""
    await load_statement_key(session, key_file)
    return list(
        (await session.scalars(select(StatementKey).order_by(StatementKey.created_at, StatementKey.key_id))).all()
    )


class StatementKeyInFile(ValueError):
    """The statement key is a file: it is rotated by replacing the file, not in the database."""


async def rotate_statement_key(session: AsyncSession, key_file: str) -> tuple[str, str]:
    """Replace the database-stored statement key by a new one: ``(old key id, new key id)``. The old
    key's public half stays registered (statements signed with it verify as before); its private half
    is discarded. Raises :class:`StatementKeyInFile` when a key file is configured."""
    if key_file:
        raise StatementKeyInFile(
            f"the statement key is the file {key_file} (ALLIANCE_EXCHANGE_SIGNING_KEY_FILE): rotate it by "
            "replacing that file; the new key is registered by its key id on first use"
        )
    row = await _database_key(session, for_update=True)  # one rotation at a time
    old_public = bytes(row.public_key)
    old_id = await _register(session, old_public, "database")
    private = Ed25519PrivateKey.generate()
    row.private_key = private.private_bytes_raw()
    row.public_key = private.public_key().public_bytes_raw()
    row.created_at = utcnow()
    await session.flush()
    new_id_ = await _register(session, bytes(row.public_key), "database")
    return old_id, new_id_


def sign_statement(key: Ed25519PrivateKey, document: bytes) -> tuple[str, str]:
    """(signature base64, key id) over the canonical statement bytes."""
    public = key.public_key().public_bytes_raw()
    return base64.b64encode(key.sign(SIGNED_PREFIX + document)).decode("ascii"), key_id_of(public)


def verify_statement_file(content: bytes, public_key: bytes | None = None) -> dict[str, Any]:
    """Check a downloaded JSON statement; returns the statement. ``public_key`` (32 raw bytes) pins the
    exchange key; without it the key embedded in the file is used (which proves integrity, not origin -
    compare it with ``GET /v1/exchange-key?key_id=`` the statement's ``key_id``: after a rotation an
    older statement names an older key, which the exchange keeps serving)."""
    try:
        envelope = msgspec.json.decode(content)
        statement = envelope["statement"]
        signature = envelope["signature"]
        value = base64.b64decode(signature["value"], validate=True)
        embedded = base64.b64decode(signature["public_key"], validate=True)
    except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
        raise StatementVerificationError(f"not a signed statement: {exc}") from None
    if not isinstance(statement, dict):
        raise StatementVerificationError("not a signed statement: 'statement' is not an object")
    key_bytes = public_key if public_key is not None else embedded
    if public_key is not None and embedded != public_key:
        raise StatementVerificationError(
            f"the statement was signed with key {signature.get('key_id')}, not with the key given "
            f"({key_id_of(public_key)}): fetch that key with GET /v1/exchange-key?key_id={signature.get('key_id')}"
        )
    if "key_id" in signature and signature["key_id"] != key_id_of(embedded):
        raise StatementVerificationError("not a signed statement: its key_id is not the id of its public key")
    try:
        Ed25519PublicKey.from_public_bytes(key_bytes).verify(value, SIGNED_PREFIX + canonical_json(statement))
    except (InvalidSignature, ValueError):
        raise StatementVerificationError(
            "signature INVALID: the statement was changed after the exchange signed it"
        ) from None
    return statement
