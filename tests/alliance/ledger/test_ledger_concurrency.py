"""Concurrent writers (and the sealer running beside them) leave a complete, verifiable chain and exact
balances. Each writer has its own session on a pool of real connections; keys are replayed across
writers on purpose, so idempotency races too."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.db.models import LedgerAccount, LedgerTransaction
from alliance.db.session import create_engine, create_session_factory
from alliance.ledger import service as ledger
from alliance.ledger.sealer import run_sealer
from tests.alliance.ledger.support import WHEN, owes, verify
from tests.conftest import Database
from tests.helpers import make_brand

WRITERS = 20


def _content(key: str, brands: list[str]) -> tuple[str, str, int]:
    """Payer, payee and amount as a pure function of the key, so a replay carries the same content."""
    digest = hashlib.sha256(key.encode()).digest()
    payer = brands[digest[0] % len(brands)]
    payee = brands[(digest[0] % len(brands) + 1 + digest[1] % (len(brands) - 1)) % len(brands)]
    return payer, payee, 1 + int.from_bytes(digest[2:6], "big") % 1_000_000


async def test_concurrent_writers_leave_a_complete_chain_and_exact_balances(
    database: Database, sessions: async_sessionmaker[AsyncSession]
) -> None:
    per_writer = 200 if database.backend == "postgresql" else 60
    brands = [(await make_brand(sessions, f"Concurrent {i} 并发")).id for i in range(4)]
    engine = create_engine(database.url)
    factory = create_session_factory(engine)
    replays = 0

    async def writer(number: int) -> None:
        nonlocal replays
        keys = []
        for j in range(per_writer):
            keys.append(f"w{number}-{j}")
            if j % 10 == 5:  # also post a key another writer owns: one of the two gets a replay
                keys.append(f"w{(number + 1) % WRITERS}-{j}")
        for key in keys:
            payer, payee, amount = _content(key, brands)
            async with factory() as session, session.begin():
                posted = await ledger.post_transaction(
                    session,
                    brand_id=payer,
                    idempotency_key=key,
                    kind="referral",
                    postings=owes(payer, payee, amount),
                    occurred_at=WHEN,
                    reference={"key": key},
                )
            replays += posted.replayed

    sealer = asyncio.create_task(run_sealer(factory, interval=0.05))
    started = time.perf_counter()
    try:
        await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    finally:
        sealer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sealer
        elapsed = time.perf_counter() - started
        await engine.dispose()

    keys = {f"w{n}-{j}" for n in range(WRITERS) for j in range(per_writer)}
    expected: dict[tuple[str, str], int] = defaultdict(int)
    for key in keys:
        payer, payee, amount = _content(key, brands)
        for posting in owes(payer, payee, amount):
            expected[(posting.account, posting.currency)] += posting.amount
    expected = {k: v for k, v in expected.items() if v}

    assert replays == WRITERS * (per_writer // 10)  # every key posted twice came back once as a replay
    report = await verify(sessions)
    assert report.ok, report.problem
    assert report.transactions == len(keys), (report, elapsed)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(LedgerTransaction)) == len(keys)
        stored = {(a.account, a.currency): a.balance for a in (await session.scalars(select(LedgerAccount))).all()}
        live = {(b.account, b.currency): b.balance for b in await ledger.live_balances(session, None)}
        seqs = (await session.scalars(select(LedgerTransaction.seq).order_by(LedgerTransaction.seq))).all()
    assert list(seqs) == list(range(1, len(keys) + 1))
    assert {k: v for k, v in stored.items() if v} == expected
    assert {k: v for k, v in live.items() if v} == expected
    positions = contracts.net_positions(
        contracts.Posting(account, amount, currency) for (account, currency), amount in expected.items()
    )
    assert sum(positions.values()) == 0  # multilateral netting: what some are owed, others owe
