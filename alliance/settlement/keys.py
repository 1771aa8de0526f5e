"""The exchange's statement signing keys as the API shows them: the current key, every key that ever
signed statements here, and rotation (the key material itself is `alliance.settlement.signing`'s)."""

from __future__ import annotations

import base64

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.audit import AuditContext, record_audit
from alliance.core.problems import Problem
from alliance.db.models import StatementKey
from alliance.settlement import signing
from alliance.settlement.schemas import STATEMENT_FORMAT, ExchangeKeyOut

__all__ = ["exchange_key", "list_exchange_keys", "rotate_exchange_key"]


async def exchange_key(session: AsyncSession, key_file: str, key_id: str | None = None) -> ExchangeKeyOut:
    """The exchange's current statement key, or with ``key_id`` any key that ever signed statements
    here (404 ``exchange-key-not-found``)."""
    current = signing.key_id_of((await signing.load_statement_key(session, key_file)).public_key().public_bytes_raw())
    wanted = current if key_id is None else key_id
    row = await session.scalar(select(StatementKey).where(StatementKey.key_id == wanted))
    if row is None:
        raise Problem(404, "exchange-key-not-found", f"no statement key {key_id!r} has signed here")
    return _key_out(row, current=row.key_id == current)


def _key_out(row: StatementKey, *, current: bool) -> ExchangeKeyOut:
    return ExchangeKeyOut(
        algorithm="Ed25519",
        key_id=row.key_id,
        public_key=base64.b64encode(bytes(row.public_key)).decode("ascii"),
        statement_format=STATEMENT_FORMAT,
        current=current,
        created_at=row.created_at,
        retired_at=None if current else row.retired_at,
    )


async def list_exchange_keys(session: AsyncSession, key_file: str) -> list[ExchangeKeyOut]:
    """Every statement key, oldest first; the current one has ``current: true``."""
    rows = await signing.list_statement_keys(session, key_file)
    current = signing.key_id_of((await signing.load_statement_key(session, key_file)).public_key().public_bytes_raw())
    return [_key_out(row, current=row.key_id == current) for row in rows]


async def rotate_exchange_key(session: AsyncSession, ctx: AuditContext, key_file: str) -> ExchangeKeyOut:
    """Replace the database-stored statement key (409 ``statement-key-in-file`` when the key is a file:
    replace the file instead). Statements already issued keep their key id and verify as before."""
    try:
        old_id, new_id_ = await signing.rotate_statement_key(session, key_file)
    except signing.StatementKeyInFile as exc:
        raise Problem(409, "statement-key-in-file", str(exc)) from None
    record_audit(session, ctx, "statement_key.rotate", target=new_id_, details={"previous_key_id": old_id})
    return await exchange_key(session, key_file)
