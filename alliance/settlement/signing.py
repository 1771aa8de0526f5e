"""The exchange's Ed25519 statement key, and the canonical bytes it signs.

The key lives in the file named by ``ALLIANCE_EXCHANGE_SIGNING_KEY_FILE`` (32 raw bytes, hex; created
with mode 0600 on first use) or, when that setting is empty, in the ``exchange_signing_keys`` table under
the purpose ``statement`` (created on first use, race-free through the unique purpose).

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
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.ids import new_id
from alliance.db.base import utcnow
from alliance.db.models import ExchangeSigningKey

__all__ = [
    "PURPOSE",
    "SIGNED_PREFIX",
    "StatementVerificationError",
    "canonical_json",
    "key_id_of",
    "load_statement_key",
    "sign_statement",
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
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key.private_bytes_raw().hex() + "\n")
    raw = bytes.fromhex(path.read_text().strip())
    if len(raw) != 32:
        raise ValueError(f"{path}: an exchange signing key file holds 32 bytes as hex")
    return Ed25519PrivateKey.from_private_bytes(raw)


async def load_statement_key(session: AsyncSession, key_file: str) -> Ed25519PrivateKey:
    """The exchange's statement key (see the module docstring for where it lives)."""
    if key_file:
        return _from_file(Path(key_file))
    query = select(ExchangeSigningKey).where(ExchangeSigningKey.purpose == PURPOSE)
    row = await session.scalar(query)
    if row is None:
        private = Ed25519PrivateKey.generate()
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        await session.execute(
            insert(ExchangeSigningKey)
            .values(
                id=new_id("xkey"),
                purpose=PURPOSE,
                private_key=private.private_bytes_raw(),
                public_key=private.public_key().public_bytes_raw(),
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["purpose"])
        )
        row = await session.scalar(query)
        assert row is not None
    return Ed25519PrivateKey.from_private_bytes(bytes(row.private_key))


def sign_statement(key: Ed25519PrivateKey, document: bytes) -> tuple[str, str]:
    """(signature base64, key id) over the canonical statement bytes."""
    public = key.public_key().public_bytes_raw()
    return base64.b64encode(key.sign(SIGNED_PREFIX + document)).decode("ascii"), key_id_of(public)


def verify_statement_file(content: bytes, public_key: bytes | None = None) -> dict[str, Any]:
    """Check a downloaded JSON statement; returns the statement. ``public_key`` (32 raw bytes) pins the
    exchange key; without it the key embedded in the file is used (which proves integrity, not origin -
    compare its ``key_id`` with ``GET /v1/exchange-key``)."""
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
        raise StatementVerificationError("the statement was signed with a different key than the one given")
    try:
        Ed25519PublicKey.from_public_bytes(key_bytes).verify(value, SIGNED_PREFIX + canonical_json(statement))
    except (InvalidSignature, ValueError):
        raise StatementVerificationError(
            "signature INVALID: the statement was changed after the exchange signed it"
        ) from None
    return statement
