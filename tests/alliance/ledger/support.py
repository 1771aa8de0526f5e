"""Helpers for ledger tests: postings made the way pricing makes them, and a way for a test to play the
attacker who edits stored rows with raw SQL (lifting the append-only triggers for one transaction, as
the owner of the tables or a superuser could)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.ledger import service as ledger
from alliance.ledger.schemas import VerifyReport
from alliance.ledger.sealer import seal_pending
from alliance.ledger.verify import verify_ledger

LEDGER_TABLES = ("ledger_transactions", "ledger_postings", "ledger_accounts", "ledger_chain_head")
WHEN = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def owes(payer: str, payee: str, amount: int, currency: str = "CNY") -> tuple[contracts.Posting, ...]:
    """The four clearing postings of "payer owes payee amount" (as `contracts.postings_for` books them)."""
    return contracts.postings_for(
        [contracts.Obligation(payer=payer, payee=payee, amount=amount, currency=currency, reason="referral_commission")]
    )


async def post(
    sessions: async_sessionmaker[AsyncSession],
    payer: str,
    payee: str,
    amount: int,
    key: str,
    *,
    brand_id: str | None = None,
    kind: str = "referral",
    occurred_at: datetime = WHEN,
    reference: dict[str, object] | None = None,
) -> ledger.PostedTransaction:
    async with sessions() as session, session.begin():
        return await ledger.post_transaction(
            session,
            brand_id=brand_id if brand_id is not None else payer,
            idempotency_key=key,
            kind=kind,
            postings=owes(payer, payee, amount),
            occurred_at=occurred_at,
            reference=reference if reference is not None else {"event_id": key},
        )


async def seal(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session, session.begin():
        return await seal_pending(session)


async def verify(sessions: async_sessionmaker[AsyncSession], *, seal_first: bool = True) -> VerifyReport:
    async with sessions() as session, session.begin():
        return await verify_ledger(session, seal=seal_first)


@asynccontextmanager
async def guards_lifted(session: AsyncSession) -> AsyncIterator[None]:
    """Inside the session's transaction: the append-only triggers are off until the block ends."""
    if session.get_bind().dialect.name == "postgresql":
        for table in LEDGER_TABLES:
            await session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        try:
            yield
        finally:
            for table in LEDGER_TABLES:
                await session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        return
    triggers = (
        await session.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'ledger_%'")
        )
    ).all()
    for name, _ in triggers:
        await session.execute(text(f"DROP TRIGGER {name}"))
    try:
        yield
    finally:
        for _, sql in triggers:
            await session.execute(text(sql))


async def tamper(sessions: async_sessionmaker[AsyncSession], *statements: str) -> None:
    async with sessions() as session, session.begin(), guards_lifted(session):
        for statement in statements:
            await session.execute(text(statement))
