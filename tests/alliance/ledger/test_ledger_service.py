"""The ledger service: validation, idempotency, sealing, verification, append-only guards, periods."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.core.problems import Problem
from alliance.db.models import LedgerAccount, LedgerChainHead, LedgerPeriod, LedgerPosting, LedgerTransaction
from alliance.ledger import service as ledger
from alliance.ledger.chain import GENESIS_HASH
from tests.alliance.contracts.support import signed_contract_via_services
from tests.alliance.ledger.support import WHEN, guards_lifted, owes, post, seal, tamper, verify
from tests.helpers import BrandHandle


async def _counts(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions() as session:
        txs = await session.scalar(select(func.count()).select_from(LedgerTransaction))
        legs = await session.scalar(select(func.count()).select_from(LedgerPosting))
    return int(txs or 0), int(legs or 0)


async def _balances(sessions: async_sessionmaker[AsyncSession], brand_id: str | None) -> dict[str, int]:
    async with sessions() as session:
        return {f"{b.account} {b.currency}": b.balance for b in await ledger.live_balances(session, brand_id)}


async def test_replaying_an_idempotency_key_returns_the_first_result_and_posts_nothing(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    first = await post(sessions, brand_a.id, brand_b.id, 1234, "evt-1")
    assert not first.replayed
    assert first.period == "2026-03"
    assert first.postings == owes(brand_a.id, brand_b.id, 1234)
    before = await _counts(sessions)
    balances = await _balances(sessions, None)

    again = await post(sessions, brand_a.id, brand_b.id, 1234, "evt-1")
    assert again.replayed
    assert (again.id, again.posted_at, again.postings) == (first.id, first.posted_at, first.postings)
    assert await _counts(sessions) == before
    assert await _balances(sessions, None) == balances

    # Same key, different brand scope: a different transaction.
    other = await post(sessions, brand_b.id, brand_a.id, 1234, "evt-1")
    assert other.id != first.id and not other.replayed


CONFLICTING_CHANGES: list[dict[str, Any]] = [
    {"amount": 1235},
    {"kind": "coupon"},
    {"occurred_at": WHEN + timedelta(seconds=1)},
    {"reference": {"event_id": "something else"}},
]


async def test_a_key_reused_for_different_content_is_a_conflict(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    first = await post(sessions, brand_a.id, brand_b.id, 1234, "evt-2")
    before = await _counts(sessions)
    for original in CONFLICTING_CHANGES:
        change = dict(original)
        with pytest.raises(Problem) as conflict:
            await post(sessions, brand_a.id, brand_b.id, change.pop("amount", 1234), "evt-2", **change)
        assert (conflict.value.status, conflict.value.slug) == (409, "idempotency-key-reused"), original
        assert conflict.value.extra == {"transaction_id": first.id}
    assert await _counts(sessions) == before


def _p(account: str, amount: Any, currency: str = "CNY") -> contracts.Posting:
    return contracts.Posting(account, amount, currency)


A, B = "brand:{a}:payable", "brand:{b}:receivable"


BAD_POSTINGS: list[tuple[list[tuple[Any, ...]], str | None]] = [
    ([(A, 100), (B, -99)], "unbalanced-transaction"),
    ([(A, 100), (B, -100, "CNY"), ("alliance:fees", 1, "USD")], "unbalanced-transaction"),
    ([(A, 100, "XYZ"), (B, -100, "XYZ")], "unknown-currency"),
    ([(A, 100, "cny"), (B, -100, "cny")], "unknown-currency"),
    ([(A, 1.5), (B, -1.5)], "invalid-amount"),
    ([(A, 100.0), (B, -100.0)], "invalid-amount"),
    ([(A, "100"), (B, "-100")], "invalid-amount"),
    ([(A, True), (B, -1)], "invalid-amount"),
    ([(A, 2**63), (B, -(2**63))], "amount-out-of-range"),
    ([(A, 2**63 - 1), (A, 1), (B, -(2**63 - 1)), (B, -1)], "amount-out-of-range"),  # fits a bigint, not the bound
    ([(A, 10**12 + 1), (B, -(10**12) - 1)], "amount-out-of-range"),  # contracts.bounds.MAX_AMOUNT + 1
    ([(A, 10**12), (A, 1), (B, -(10**12)), (B, -1)], None),  # every leg within the bound: fine
    ([(A, 0), (B, 0)], "invalid-amount"),
    ([("brand:x:y:payable", 1), (B, -1)], "invalid-account"),
    ([("cash", 1), (B, -1)], "invalid-account"),
    ([("brand:has space:payable", 1), ("brand:has space:receivable", -1)], "invalid-account"),
    ([], "invalid-postings"),
]


async def test_bad_postings_are_refused_and_write_nothing(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    for number, (postings, slug) in enumerate(BAD_POSTINGS):
        legs = [_p(p[0].format(a=brand_a.id, b=brand_b.id), *p[1:]) for p in postings]
        async with sessions() as session:
            call = ledger.post_transaction(
                session,
                brand_id=brand_a.id,
                idempotency_key=f"k{number}",
                kind="adjustment",
                postings=legs,
                occurred_at=WHEN,
            )
            if slug is None:  # every leg in range: accepted (and rolled back here)
                assert len((await call).postings) == 4
                await session.rollback()
                continue
            with pytest.raises(Problem) as refused:
                await call
        assert (refused.value.status, refused.value.slug) == (422, slug), postings
    assert await _counts(sessions) == (0, 0)


BAD_HEADERS: list[tuple[str, Any, str]] = [
    ("kind", "Not A Kind", "invalid-kind"),
    ("idempotency_key", "", "invalid-idempotency-key"),
    ("idempotency_key", "x" * 256, "invalid-idempotency-key"),
    ("idempotency_key", "line\nbreak", "invalid-idempotency-key"),
    ("occurred_at", datetime(2026, 3, 1), "invalid-occurred-at"),
    ("reference", {"ratio": 0.5}, "invalid-reference"),
    ("reference", {"nested": {"a": 1}}, "invalid-reference"),
    ("reference", {"big": 2**64}, "invalid-reference"),
    ("brand_id", "not a brand", "invalid-brand"),
    ("brand_id", "brd_notamember", "unknown-brand"),
]


async def test_bad_headers_are_refused(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    for field, value, slug in BAD_HEADERS:
        kwargs: dict[str, Any] = {
            "brand_id": brand_a.id,
            "idempotency_key": "k",
            "kind": "referral",
            "postings": owes(brand_a.id, brand_b.id, 5),
            "occurred_at": WHEN,
            "reference": None,
        }
        kwargs[field] = value
        async with sessions() as session:
            with pytest.raises(Problem) as refused:
                await ledger.post_transaction(session, **kwargs)
        assert (refused.value.status, refused.value.slug) == (422, slug), (field, value)
    assert await _counts(sessions) == (0, 0)


async def test_sealing_chains_transactions_and_keeps_balances_exact(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    for i in range(7):
        await post(sessions, brand_a.id, brand_b.id, 100 + i, f"evt-{i}")
    await post(sessions, brand_b.id, brand_a.id, 50, "back-1")
    live_before = await _balances(sessions, brand_a.id)
    assert live_before == {
        f"brand:{brand_a.id}:payable CNY": sum(100 + i for i in range(7)),
        f"brand:{brand_a.id}:receivable CNY": -50,
    }
    assert await seal(sessions) == 8
    assert await seal(sessions) == 0
    assert await _balances(sessions, brand_a.id) == live_before

    async with sessions() as session:
        rows = (await session.scalars(select(LedgerTransaction).order_by(LedgerTransaction.seq))).all()
        head = await session.get(LedgerChainHead, 1)
        stored = {(a.account, a.currency): a.balance for a in (await session.scalars(select(LedgerAccount))).all()}
    assert [r.seq for r in rows] == list(range(1, 9))
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(rows))
    assert head is not None and (head.seq, head.hash) == (8, rows[-1].hash)
    assert stored[(f"brand:{brand_b.id}:receivable", "CNY")] == -sum(100 + i for i in range(7))
    assert ("alliance:clearing", "CNY") not in stored  # nets to zero in every transaction

    report = await verify(sessions)
    assert report.ok, report.problem
    assert (report.transactions, report.pending, report.head_seq) == (8, 0, 8)

    # More postings after sealing: live balances include them at once, the chain picks them up later.
    await post(sessions, brand_a.id, brand_b.id, 1, "evt-late")
    assert (await _balances(sessions, brand_a.id))[f"brand:{brand_a.id}:payable CNY"] == sum(
        100 + i for i in range(7)
    ) + 1
    unsealed = await verify(sessions, seal_first=False)
    assert unsealed.ok and unsealed.pending == 1
    assert (await verify(sessions)).transactions == 9


TAMPERING = {
    "posting amount": (
        "UPDATE ledger_postings SET amount = amount + 1 WHERE transaction_id = '{tx}' AND line = 0",
        "hash mismatch",
    ),
    "posting amount, balanced": (
        "UPDATE ledger_postings SET amount = amount * 2 WHERE transaction_id = '{tx}'",
        "hash mismatch",
    ),
    "posting account": (
        "UPDATE ledger_postings SET account = 'alliance:fees', brand_id = NULL "
        "WHERE transaction_id = '{tx}' AND line = 3",
        "hash mismatch",
    ),
    "posting currency": ("UPDATE ledger_postings SET currency = 'USD' WHERE transaction_id = '{tx}'", "hash mismatch"),
    "posting brand column": (
        "UPDATE ledger_postings SET brand_id = NULL WHERE transaction_id = '{tx}' AND line = 0",
        "hash mismatch",
    ),
    "posting removed": ("DELETE FROM ledger_postings WHERE transaction_id = '{tx}' AND line = 1", "hash mismatch"),
    "posting added": (
        "INSERT INTO ledger_postings (transaction_id, line, account, brand_id, amount, currency) "
        "VALUES ('{tx}', 9, 'alliance:fees', NULL, 5, 'CNY')",
        "hash mismatch",
    ),
    "kind": ("UPDATE ledger_transactions SET kind = 'coupon' WHERE id = '{tx}'", "hash mismatch"),
    "period": ("UPDATE ledger_transactions SET period = '2026-04' WHERE id = '{tx}'", "hash mismatch"),
    "idempotency key": ("UPDATE ledger_transactions SET idempotency_key = 'x' WHERE id = '{tx}'", "hash mismatch"),
    "brand": ("UPDATE ledger_transactions SET brand_id = NULL WHERE id = '{tx}'", "hash mismatch"),
    "reference": (
        "UPDATE ledger_transactions SET reference = '{{\"event_id\": \"forged\"}}' WHERE id = '{tx}'",
        "hash mismatch",
    ),
    "hash": ("UPDATE ledger_transactions SET hash = '{zeros}' WHERE id = '{tx}'", "hash mismatch"),
    "prev hash": ("UPDATE ledger_transactions SET prev_hash = '{zeros}' WHERE id = '{tx}'", "prev_hash"),
    "transaction removed": (
        "DELETE FROM ledger_postings WHERE transaction_id = '{tx}'; DELETE FROM ledger_transactions WHERE id = '{tx}'",
        "chain gap",
    ),
    "seq moved": ("UPDATE ledger_transactions SET seq = 100 WHERE id = '{tx}'", "chain gap"),
}


async def _empty_ledger(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Start a case from an empty ledger (test scaffolding: the guards are lifted to clear it)."""
    await tamper(
        sessions,
        "DELETE FROM ledger_postings",
        "DELETE FROM ledger_transactions",
        "DELETE FROM ledger_accounts",
        "DELETE FROM ledger_chain_head",
    )


async def test_editing_a_stored_ledger_row_makes_verify_fail_and_name_it(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    for case, (statements, reason) in sorted(TAMPERING.items()):
        await _empty_ledger(sessions)
        posted = [await post(sessions, brand_a.id, brand_b.id, 100 + i, f"{case}-{i}") for i in range(5)]
        await seal(sessions)
        assert (await verify(sessions)).ok, case
        victim = posted[2]
        await tamper(sessions, *statements.format(tx=victim.id, zeros="f" * 64).split("; "))

        report = await verify(sessions)
        assert not report.ok, case
        assert report.problem is not None
        assert reason in report.problem.reason, (case, report.problem)
        if reason == "chain gap":  # the row is gone (or moved): the first transaction after the hole is named
            assert report.problem.transaction_id == posted[3].id, (case, report.problem)
        else:
            assert (report.problem.transaction_id, report.problem.seq) == (victim.id, 3), (case, report.problem)


async def test_tampered_balances_and_a_cut_off_tail_are_detected(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    posted = [await post(sessions, brand_a.id, brand_b.id, 100 + i, f"evt-{i}") for i in range(3)]
    await seal(sessions)
    account = f"brand:{brand_a.id}:payable"
    await tamper(sessions, f"UPDATE ledger_accounts SET balance = balance - 1 WHERE account = '{account}'")
    report = await verify(sessions)
    assert report.problem is not None
    assert (report.problem.account, report.problem.currency) == (account, "CNY")
    await tamper(sessions, f"UPDATE ledger_accounts SET balance = balance + 1 WHERE account = '{account}'")
    assert (await verify(sessions)).ok

    await tamper(
        sessions,
        "INSERT INTO ledger_postings (transaction_id, line, account, brand_id, amount, currency) "
        "VALUES ('ltx_ghost', 0, 'alliance:fees', NULL, 5, 'CNY')",
    )
    report = await verify(sessions)
    assert report.problem is not None
    assert report.problem.transaction_id == "ltx_ghost"
    assert "belongs to no transaction" in report.problem.reason
    await tamper(sessions, "DELETE FROM ledger_postings WHERE transaction_id = 'ltx_ghost'")
    assert (await verify(sessions)).ok

    last = posted[-1].id
    await tamper(
        sessions,
        f"DELETE FROM ledger_postings WHERE transaction_id = '{last}'",
        f"DELETE FROM ledger_transactions WHERE id = '{last}'",
    )
    report = await verify(sessions)
    assert report.problem is not None
    assert "chain head" in report.problem.reason
    assert report.problem.transaction_id == posted[1].id


async def test_the_database_refuses_updates_and_deletes_of_ledger_rows(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    sealed = await post(sessions, brand_a.id, brand_b.id, 100, "evt-sealed")
    await seal(sessions)
    unsealed = await post(sessions, brand_a.id, brand_b.id, 100, "evt-unsealed")
    postgres = sessions.kw["bind"].dialect.name == "postgresql"
    refused = [
        f"UPDATE ledger_transactions SET kind = 'x' WHERE id = '{sealed.id}'",
        f"UPDATE ledger_transactions SET seq = 99, prev_hash = 'a', hash = 'b', sealed_at = posted_at "
        f"WHERE id = '{sealed.id}'",
        f"UPDATE ledger_transactions SET kind = 'x' WHERE id = '{unsealed.id}'",
        f"UPDATE ledger_transactions SET seq = 99 WHERE id = '{unsealed.id}'",  # sealing is all four columns
        f"UPDATE ledger_transactions SET seq = 99, prev_hash = 'a', hash = 'b', sealed_at = posted_at, "
        f"period = '2030-01' WHERE id = '{unsealed.id}'",
        f"UPDATE ledger_postings SET amount = 1 WHERE transaction_id = '{unsealed.id}'",
        "UPDATE ledger_accounts SET account = 'alliance:x'",
        "UPDATE ledger_chain_head SET seq = 0",
    ]
    if postgres:  # SQLite's DELETE is not guarded (see the migration); PostgreSQL refuses it
        refused += [
            f"DELETE FROM ledger_postings WHERE transaction_id = '{unsealed.id}'",
            f"DELETE FROM ledger_transactions WHERE id = '{unsealed.id}'",
            "DELETE FROM ledger_accounts",
            "DELETE FROM ledger_chain_head",
        ]
    for statement in refused:
        async with sessions() as session:
            with pytest.raises((IntegrityError, DBAPIError)) as error:
                await session.execute(text(statement))
            assert "ledger" in str(error.value), statement
            await session.rollback()
    assert (await verify(sessions)).ok
    # The triggers really are what stops them: lifted, the same statement goes through.
    async with sessions() as session, session.begin(), guards_lifted(session):
        await session.execute(text(f"UPDATE ledger_transactions SET kind = 'x' WHERE id = '{sealed.id}'"))
    assert not (await verify(sessions)).ok


async def test_a_closed_month_posts_into_the_next_open_period(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    march = datetime(2026, 3, 31, 23, 59, tzinfo=UTC)
    async with sessions() as session:
        assert await ledger.open_period_for(session, march) == "2026-03"
    # The monthly close (issue 6) will insert these rows; here the hook is exercised directly.
    async with sessions() as session, session.begin():
        session.add(LedgerPeriod(period="2026-03", status="closed", next_period="2026-04", closed_by="test"))
    late = await post(sessions, brand_a.id, brand_b.id, 100, "late-march", occurred_at=march)
    assert late.period == "2026-04"
    async with sessions() as session, session.begin():
        session.add(LedgerPeriod(period="2026-04", status="closed", next_period="2026-05", closed_by="test"))
    later = await post(sessions, brand_a.id, brand_b.id, 100, "later-march", occurred_at=march)
    may = await post(sessions, brand_a.id, brand_b.id, 100, "may", occurred_at=datetime(2026, 5, 2, tzinfo=UTC))
    assert (later.period, may.period) == ("2026-05", "2026-05")
    async with sessions() as session:
        assert await ledger.open_period_for(session, march) == "2026-05"
        assert await ledger.open_period_for(session, datetime(2026, 7, 1, tzinfo=UTC)) == "2026-07"
    assert (await verify(sessions)).ok


async def test_a_priced_event_is_booked_under_the_terms_in_force(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    from alliance.contracts import service as contract_service

    await signed_contract_via_services(sessions, brand_a.id, brand_b.id)
    at = datetime(2026, 2, 10, 12, 0, tzinfo=UTC)
    event = contracts.ReferralConversion(
        event_id="conv-1",
        occurred_at=at,
        referrer_brand=brand_a.id,
        receiver_brand=brand_b.id,
        referred_at=at - timedelta(days=1),
        order_amount=25_000,
        currency="CNY",
    )
    async with sessions() as session, session.begin():
        terms = await contract_service.terms_in_force(session, brand_a.id, brand_b.id, at)
        priced = contracts.price_event(event, terms)
        posted = await ledger.post_priced_event(
            session, priced, brand_id=brand_b.id, idempotency_key="conv-1", occurred_at=at, kind="referral"
        )
    assert posted.postings == priced.postings
    assert posted.reference["contract_version"] == 1 and posted.reference["commission"] == 1000
    balances = await _balances(sessions, brand_a.id)
    assert balances == {f"brand:{brand_a.id}:receivable CNY": -1000}

    # An event priced to nothing is still recorded (its key is spent), with no postings.
    zero = msgspec_replace(priced)
    async with sessions() as session, session.begin():
        empty = await ledger.post_priced_event(
            session, zero, brand_id=brand_b.id, idempotency_key="conv-0", occurred_at=at
        )
    assert empty.postings == () and empty.kind == "referral"
    assert (await verify(sessions)).ok


def msgspec_replace(priced: contracts.PricedEvent) -> contracts.PricedEvent:
    import msgspec

    return msgspec.structs.replace(priced, event_id="conv-0", obligations=(), postings=(), commission=0)


async def test_several_posts_inside_one_callers_transaction(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    """As benefits do: other statements first, then the ledger posts, all committed together (on
    PostgreSQL the posts after the first go straight through asyncpg on the open transaction)."""
    async with sessions() as session, session.begin():
        await session.execute(select(func.count()).select_from(LedgerTransaction))
        first = await ledger.post_transaction(
            session,
            brand_id=brand_a.id,
            idempotency_key="in-tx-1",
            kind="coupon",
            postings=owes(brand_a.id, brand_b.id, 10),
            occurred_at=WHEN,
        )
        replay = await ledger.post_transaction(
            session,
            brand_id=brand_a.id,
            idempotency_key="in-tx-1",
            kind="coupon",
            postings=owes(brand_a.id, brand_b.id, 10),
            occurred_at=WHEN,
        )
        second = await ledger.post_transaction(
            session,
            brand_id=brand_a.id,
            idempotency_key="in-tx-2",
            kind="coupon",
            postings=owes(brand_b.id, brand_a.id, 3),
            occurred_at=WHEN,
        )
    assert replay.replayed and replay.id == first.id and not second.replayed
    assert await _counts(sessions) == (2, 8)
    assert (await _balances(sessions, brand_a.id)) == {
        f"brand:{brand_a.id}:payable CNY": 10,
        f"brand:{brand_a.id}:receivable CNY": -3,
    }

    # A brand that does not exist, mid-transaction: a 422 problem, and the caller's transaction rolls back.
    async def post_two() -> None:
        async with sessions() as session, session.begin():
            for key, payee in (("in-tx-3", brand_b.id), ("in-tx-4", "brd_notamember")):
                await ledger.post_transaction(
                    session,
                    brand_id=brand_a.id,
                    idempotency_key=key,
                    kind="coupon",
                    postings=owes(brand_a.id, payee, 10),
                    occurred_at=WHEN,
                )

    with pytest.raises(Problem) as refused:
        await post_two()
    assert (refused.value.status, refused.value.slug) == (422, "unknown-brand")
    assert await _counts(sessions) == (2, 8)


async def test_a_post_commits_or_rolls_back_with_its_callers_transaction(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    class CallerFailed(Exception):
        pass

    async def post_then_fail(first_statement: bool) -> None:
        async with sessions() as session, session.begin():
            if not first_statement:
                await session.execute(select(func.count()).select_from(LedgerPosting))
            await ledger.post_transaction(
                session,
                brand_id=brand_a.id,
                idempotency_key=f"doomed-{first_statement}",
                kind="coupon",
                postings=owes(brand_a.id, brand_b.id, 10),
                occurred_at=WHEN,
            )
            raise CallerFailed

    for first_statement in (True, False):
        with pytest.raises(CallerFailed):
            await post_then_fail(first_statement)
    assert await _counts(sessions) == (0, 0)
