"""One transaction the sealer cannot seal is held in the quarantine; every other brand's keeps sealing,
verification reports it without failing, and an operator releases or excludes it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.cli import main as alliance_cli
from alliance.core.audit import AuditContext
from alliance.core.problems import Problem
from alliance.db.models import AuditEntry, LedgerAccount, LedgerQuarantine, LedgerTransaction
from alliance.ledger import quarantine
from alliance.ledger import service as ledger
from alliance.ledger.chain import ChainPosting
from alliance.ledger.sealer import run_sealer
from alliance.settlement.close import close_month
from contracts.bounds import MAX_AMOUNT, MAX_TOTAL
from tests.alliance.console.console_helpers import ADMIN_PASSWORD, add_user, sign_in
from tests.alliance.ledger.support import WHEN, post, seal, verify
from tests.conftest import Database
from tests.helpers import BrandHandle

OPERATOR = AuditContext(actor="admin:key:test", source_ip="127.0.0.1")


def _leg(line: int, account: str, amount: int, currency: str = "CNY") -> ChainPosting:
    return ChainPosting(line, account, None, amount, currency)


def test_seal_refusal_checks_amounts_balance_and_resulting_totals() -> None:
    fine = [_leg(0, "alliance:fees", 500), _leg(1, "alliance:clearing", -500)]
    assert quarantine.seal_refusal(fine, {}) is None
    huge = [_leg(0, "alliance:fees", MAX_AMOUNT + 1), _leg(1, "alliance:clearing", -MAX_AMOUNT - 1)]
    assert "outside the bound" in (quarantine.seal_refusal(huge, {}) or "")
    unbalanced = [_leg(0, "alliance:fees", 5), _leg(1, "alliance:clearing", -4)]
    assert "do not balance in CNY" in (quarantine.seal_refusal(unbalanced, {}) or "")
    near = {("alliance:fees", "CNY"): MAX_TOTAL - 499}
    assert "past the bound" in (quarantine.seal_refusal(fine, near) or "")
    assert quarantine.seal_refusal(fine, {("alliance:fees", "CNY"): MAX_TOTAL - 500}) is None
    # Another currency's balance does not count against this one.
    assert quarantine.seal_refusal(fine, {("alliance:fees", "USD"): MAX_TOTAL}) is None


async def _write_legacy_transaction(session: AsyncSession, tx_id: str, brand_id: str, amount: int) -> None:
    """A transaction as a writer without money bounds stored it (2**62 fits a bigint; two of them on one
    account do not): raw rows, as an older version of the exchange or a restored backup would hold."""
    await session.execute(
        text(
            "INSERT INTO ledger_transactions (id, idempotency_scope, idempotency_key, brand_id, kind, occurred_at, "
            "posted_at, period, reference) VALUES (:id, :brand, :id, :brand, 'referral', :at, :at, '2026-03', '{}')"
        ),
        {"id": tx_id, "brand": brand_id, "at": WHEN},
    )
    await session.execute(
        text(
            "INSERT INTO ledger_postings (transaction_id, line, account, brand_id, amount, currency) VALUES "
            "(:id, 0, :payable, :brand, :amount, 'CNY'), (:id, 1, 'alliance:clearing', NULL, :minus, 'CNY')"
        ),
        {"id": tx_id, "brand": brand_id, "payable": f"brand:{brand_id}:payable", "amount": amount, "minus": -amount},
    )


async def test_an_overflowing_transaction_is_held_and_everyone_else_keeps_sealing(
    app: Litestar,
    sessions: async_sessionmaker[AsyncSession],
    database: Database,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with sessions() as session, session.begin():
        await _write_legacy_transaction(session, "ltx_legacy1", brand_a.id, 2**62)
        await _write_legacy_transaction(session, "ltx_legacy2", brand_a.id, 2**62)
    await post(sessions, brand_b.id, brand_a.id, 1_234, "after-the-bad-ones")
    assert await seal(sessions) == 1  # the other brand's transaction sealed; the two giants held

    async with sessions() as session:
        held = {r.transaction_id: r for r in await quarantine.list_quarantine(session, "held")}
        assert set(held) == {"ltx_legacy1", "ltx_legacy2"}
        assert "outside the bound" in held["ltx_legacy1"].reason and held["ltx_legacy1"].period == "2026-03"
        balances = {(a.account, a.currency): a.balance for a in (await session.scalars(select(LedgerAccount))).all()}
        assert all(isinstance(v, int) and abs(v) <= MAX_TOTAL for v in balances.values())  # never a float
        if database.backend == "sqlite":  # SQLite turns an overflowing integer into a REAL: never here
            typed = await session.execute(text("SELECT typeof(balance) FROM ledger_accounts"))
            assert {row[0] for row in typed} == {"integer"}
        assert await quarantine.held_count(session) == 2 and quarantine.HELD_GAUGE._value.get() == 2

    await post(sessions, brand_a.id, brand_b.id, 99, "later-still")  # the held ones block nobody
    async with sessions() as session:  # and count in no live balance
        live = {(b.account, b.currency): b.balance for b in await ledger.live_balances(session, brand_a.id)}
        assert live[(f"brand:{brand_a.id}:payable", "CNY")] == 99
    report = await verify(sessions)
    assert report.ok and report.problem is None, report.problem
    assert report.transactions == 2 and report.quarantined == 2
    assert sorted(report.quarantined_ids) == ["ltx_legacy1", "ltx_legacy2"]

    # The console shows the operator a banner on the dashboard and the ledger page. (The client starts the
    # app, and with it a sealer of its own: only now, so that the counts above are this test's.)
    async with AsyncTestClient(app=app) as client:
        client.follow_redirects = False
        await sign_in(client, await add_user(sessions, "ops", ADMIN_PASSWORD, "admin"))
        for page in ("/console/", "/console/ledger"):
            html = (await client.get(page)).text
            assert 'data-testid="quarantine-banner"' in html and "2 ledger transaction(s) could not be sealed" in html

    monkeypatch.setenv("ALLIANCE_DATABASE_URL", database.url)
    assert await asyncio.to_thread(alliance_cli, ["ledger", "verify"]) == 0
    out = capsys.readouterr().out
    assert "ledger OK" in out and "2 transaction(s) held in quarantine" in out and "ltx_legacy1" in out

    assert await asyncio.to_thread(alliance_cli, ["ledger", "quarantine", "exclude", "ltx_legacy1"]) == 0
    assert (
        await asyncio.to_thread(alliance_cli, ["ledger", "quarantine", "exclude", "ltx_legacy1"]) == 1
    )  # resolved already
    assert "already excluded" in capsys.readouterr().err
    assert await asyncio.to_thread(alliance_cli, ["ledger", "quarantine", "release", "ltx_legacy2"]) == 0
    assert "ltx_legacy2  2026-03  released" in capsys.readouterr().out
    assert await asyncio.to_thread(alliance_cli, ["ledger", "quarantine", "list", "--status", "excluded"]) == 0
    listed = capsys.readouterr().out
    assert "ltx_legacy1" in listed and "ltx_legacy2" not in listed

    # Released: the sealer tries it again and, still out of bounds, holds it again; excluded stays out.
    assert await seal(sessions) == 0
    async with sessions() as session:
        rows = {r.transaction_id: r.status for r in await quarantine.list_quarantine(session)}
        assert rows == {"ltx_legacy1": "excluded", "ltx_legacy2": "held"}
        actions = set((await session.scalars(select(AuditEntry.action))).all())
        assert {"ledger.quarantine.exclude", "ledger.quarantine.release"} <= actions
        with pytest.raises(Problem) as unknown:
            await quarantine.resolve(session, OPERATOR, "ltx_nope", "release")
        assert unknown.value.slug == "not-quarantined"

    # The month cannot close while one of its transactions is held; once excluded, it counts in nothing.
    with pytest.raises(Problem) as held_back:
        async with sessions() as session, session.begin():
            await close_month(session, OPERATOR, "2026-03", key_file="", alliance_id="test")
    assert (held_back.value.status, held_back.value.slug, held_back.value.extra) == (
        409,
        "ledger-quarantine",
        {"held": 1},
    )
    async with sessions() as session, session.begin():
        await quarantine.resolve(session, OPERATOR, "ltx_legacy2", "exclude")
    async with sessions() as session, session.begin():
        run = await close_month(session, OPERATOR, "2026-03", key_file="", alliance_id="test")
    assert run.transactions == 2  # the two sealed ones; the excluded giants are in no total
    assert all(abs(p.net) < 10**6 for p in run.net_positions) and sum(p.net for p in run.net_positions) == 0


async def test_a_transaction_the_database_refuses_to_seal_is_found_and_held(
    sessions: async_sessionmaker[AsyncSession], database: Database, brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    """A failure the rules do not foresee (here a database trigger refusing one account): the sealer
    retries one transaction at a time, holds the one that fails alone, and seals the rest."""
    async with sessions() as session, session.begin():
        if database.backend == "postgresql":
            await session.execute(
                text(
                    "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"IF NEW.account = 'brand:{brand_b.id}:payable' THEN "
                    "RAISE EXCEPTION 'poisoned account'; END IF; RETURN NEW; END $$"
                )
            )
            await session.execute(
                text("CREATE TRIGGER poison BEFORE INSERT ON ledger_accounts FOR EACH ROW EXECUTE FUNCTION poison()")
            )
        else:
            await session.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON ledger_accounts "
                    f"WHEN NEW.account = 'brand:{brand_b.id}:payable' "
                    "BEGIN SELECT RAISE(ABORT, 'poisoned account'); END"
                )
            )
    try:
        await post(sessions, brand_a.id, brand_b.id, 10, "fine-1")
        await post(sessions, brand_b.id, brand_a.id, 20, "poisoned", occurred_at=WHEN + timedelta(seconds=1))
        await post(sessions, brand_a.id, brand_b.id, 30, "fine-2", occurred_at=WHEN + timedelta(seconds=2))
        sealer = asyncio.create_task(run_sealer(sessions, interval=0.05))
        try:
            for _ in range(200):
                await asyncio.sleep(0.05)
                async with sessions() as session:
                    if await quarantine.held_count(session) == 1 and not await _unsealed_fine(session):
                        break
        finally:
            sealer.cancel()
            await asyncio.gather(sealer, return_exceptions=True)
        async with sessions() as session:
            (held,) = await quarantine.list_quarantine(session, "held")
            poisoned = await session.scalar(
                select(LedgerTransaction.id).where(LedgerTransaction.idempotency_key == "poisoned")
            )
            assert held.transaction_id == poisoned
            assert "sealing failed in the database" in held.reason and "poisoned account" in held.reason
            assert not await _unsealed_fine(session)
        report = await verify(sessions)
        assert report.ok and report.transactions == 2 and report.quarantined == 1
    finally:
        async with sessions() as session, session.begin():
            if database.backend == "postgresql":
                await session.execute(text("DROP TRIGGER IF EXISTS poison ON ledger_accounts"))
                await session.execute(text("DROP FUNCTION IF EXISTS poison()"))
            else:
                await session.execute(text("DROP TRIGGER IF EXISTS poison"))


async def _unsealed_fine(session: AsyncSession) -> bool:
    found = await session.scalar(
        select(LedgerTransaction.id).where(
            LedgerTransaction.seq.is_(None),
            LedgerTransaction.idempotency_key.in_(["fine-1", "fine-2"]),
            ~LedgerTransaction.id.in_(select(LedgerQuarantine.transaction_id)),
        )
    )
    return found is not None
