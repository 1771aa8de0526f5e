"""The statements of a redemption, each written once in SQLAlchemy Core.

The read (:func:`snapshot_read`) loads everything `redemption_rules.decide_redemption` needs in one
statement. The writes are conditional statements, each the guard of a rule a concurrent request can
break: claim the coupon (``WHERE status = 'issued'``), count the member's use (``ON CONFLICT ... WHERE
count < limit``), spend the budget (``WHERE spent + this <= budget``) and add the commission to the
month-to-date total under the pricing guard (`alliance.benefits.booking.add_to_total`); plus the plain
inserts (ledger transaction and postings from `alliance.ledger.writes`, redemption, idempotency record,
webhook outbox rows, audit row). Every statement takes a ``gate``: run alone (the portable store), it has
none; composed into :func:`composed_write`, PostgreSQL's single statement of data-modifying CTEs, each
runs only if the ones before it held.

Lock order (`alliance.benefits.booking`): coupon -> member usage -> benefit -> month-to-date total; the
two hot rows (benefit, total) last, so their locks are held only until the commit.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement

from alliance.benefits.booking import add_to_total, contract_versions
from alliance.db.base import UTCDateTime
from alliance.db.models import (
    AuditEntry,
    Benefit,
    BenefitDistributor,
    BenefitMemberUsage,
    CommissionMonthTotal,
    Contract,
    Coupon,
    IdempotencyRecord,
    Redemption,
    WebhookDelivery,
    WebhookEndpoint,
)
from alliance.db.rows import insert_row, json_list, json_rows
from alliance.ledger.writes import ledger_ctes

__all__ = [
    "claim_coupon",
    "composed_write",
    "hooks_insert",
    "member_use",
    "snapshot_read",
    "spend_budget",
]


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _where(gate: ColumnElement[bool] | None) -> ColumnElement[bool]:
    return true() if gate is None else gate


# --- the read ------------------------------------------------------------------------------------------


@functools.cache
def snapshot_read(dialect: str) -> Any:
    """Coupon, benefit, distributor still allowed, webhook listeners, the contract with its signed and
    rejected versions, month-to-date total, the member's uses and the stored answer of the request's key,
    for the code ``p_code`` of the funding brand ``p_caller`` (no row: no such coupon)."""
    c, b, k, i = Coupon, Benefit, Contract, IdempotencyRecord
    caller = bindparam("p_caller", type_=String())
    allowed = (
        select(BenefitDistributor.brand_id)
        .where(BenefitDistributor.benefit_id == c.benefit_id, BenefitDistributor.brand_id == c.distributor_brand_id)
        .exists()
    )
    w = WebhookEndpoint
    events = w.events if dialect == "postgresql" else func.json(w.events)
    endpoints = select(json_list(dialect, w.id, w.brand_id, events)).where(
        w.brand_id.in_([caller, c.distributor_brand_id]), w.status == "active"
    )
    signed, rejected = contract_versions(dialect, k.id)
    t = CommissionMonthTotal
    total = select(t.total).where(
        t.contract_id == k.id, t.kind == "coupon", t.payer_brand_id == caller, t.month == bindparam("p_month")
    )
    u = BenefitMemberUsage
    uses = select(u.count).where(u.benefit_id == b.id, u.member_hash == bindparam("p_member", type_=String()))
    parties = or_(
        and_(k.party_a == caller, k.party_b == c.distributor_brand_id),
        and_(k.party_a == c.distributor_brand_id, k.party_b == caller),
    )
    columns = [
        *(c.id, c.status, c.distributor_brand_id),
        *(b.id, b.status, b.valid_from, b.valid_to, cast(b.channels, Text), b.currency, b.min_spend),
        *(b.new_customers_only, b.per_member_limit, b.value_kind, b.value, b.max_discount),
        *(b.budget_amount, b.budget_count, b.spent_amount, b.spent_count),
        *(allowed, endpoints.scalar_subquery(), k.id, signed, rejected, total.scalar_subquery()),
        *(uses.scalar_subquery(), i.operation, i.fingerprint, i.status_code, i.response_body),
    ]
    return (
        select(*columns)
        .select_from(c)
        .join(b, b.id == c.benefit_id)
        .outerjoin(k, parties)
        .outerjoin(i, and_(i.brand_id == caller, i.key == bindparam("p_key", type_=String())))
        .where(c.code_hash == bindparam("p_code", type_=String()), c.funding_brand_id == caller)
    )


# --- the writes ------------------------------------------------------------------------------------------


def claim_coupon(gate: ColumnElement[bool] | None = None) -> Any:
    """The coupon ``p_coupon`` from issued to redeemed: exactly one request wins."""
    coupons = _table(Coupon)
    return (
        update(coupons)
        .where(coupons.c.id == bindparam("p_coupon", type_=String()), coupons.c.status == "issued", _where(gate))
        .values(status="redeemed", redeemed_at=bindparam("p_now", type_=UTCDateTime()))
        .returning(coupons.c.id)
    )


def member_use(dialect: str, gate: ColumnElement[bool] | None = None) -> Any:
    """One more use of benefit ``p_benefit`` by member ``p_member``, unless it reached ``p_limit``."""
    usage = _table(BenefitMemberUsage)
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    source = select(
        bindparam("p_benefit", type_=String()), bindparam("p_member", type_=String()), literal(1, Integer())
    ).where(_where(gate))
    return (
        insert(usage)
        .from_select(["benefit_id", "member_hash", "count"], source)
        .on_conflict_do_update(
            index_elements=["benefit_id", "member_hash"],
            set_={"count": usage.c.count + 1},
            where=usage.c.count < bindparam("p_limit", type_=Integer()),
        )
        .returning(usage.c.count)
    )


def spend_budget(gate: ColumnElement[bool] | None = None) -> Any:
    """Take ``p_discount`` and one count from the budget of ``p_benefit`` if it is active and has room;
    mark it exhausted when what is left cannot pay for another redemption (``p_smallest``)."""
    b = _table(Benefit)
    count = b.c.spent_count + 1
    amount = b.c.spent_amount + bindparam("p_discount", type_=BigInteger())
    exhausted = or_(b.c.budget_count <= count, b.c.budget_amount - amount < bindparam("p_smallest", type_=BigInteger()))
    return (
        update(b)
        .where(
            b.c.id == bindparam("p_benefit", type_=String()),
            b.c.status == "active",
            b.c.budget_count >= count,
            b.c.budget_amount >= amount,
            _where(gate),
        )
        .values(
            spent_count=count,
            spent_amount=amount,
            status=case((exhausted, "exhausted"), else_=b.c.status),
            updated_at=bindparam("p_now", type_=UTCDateTime()),
        )
        .returning(b.c.id)
    )


_HOOK_COLUMNS = (
    ("id", String()),
    ("endpoint_id", String()),
    ("brand_id", String()),
    ("event_id", String()),
    ("event_type", String()),
    ("payload", Text()),
)


def hooks_insert(dialect: str, gate: ColumnElement[bool] | None = None) -> Any:
    """The webhook outbox rows of the JSON parameter ``h_rows`` (`webhooks.service.delivery_rows`)."""
    rows = json_rows("h_rows", _HOOK_COLUMNS, dialect, "hooks")
    now = bindparam("p_now", type_=UTCDateTime())
    source = select(
        *(rows.c[key] for key, _ in _HOOK_COLUMNS), literal("pending"), literal(0, Integer()), now, now
    ).where(_where(gate))
    names = [key for key, _ in _HOOK_COLUMNS]
    return (
        _table(WebhookDelivery)
        .insert()
        .from_select([*names, "status", "attempts", "next_attempt_at", "created_at"], source.select_from(rows))
    )


def _count(cte: Any) -> Any:
    return select(func.count()).select_from(cte).scalar_subquery()


def _exists(cte: Any) -> ColumnElement[bool]:
    return select(literal(1)).select_from(cte).exists()


@functools.cache
def composed_write() -> Any:
    """PostgreSQL: the whole redemption as ONE statement of data-modifying CTEs, hence one atomic
    transaction of its own, in the lock order. If any guard did not hold it ends in a deliberate
    division by zero, which aborts the statement: none of its writes stay."""
    dialect = "postgresql"
    limit = bindparam("p_limit", type_=Integer())
    claim = claim_coupon().cte("claim")
    usage = member_use(dialect, and_(_exists(claim), limit.is_not(None))).cte("usage")
    won = select(claim.c.id).where(or_(limit.is_(None), _exists(usage))).cte("won")
    ledger_tx, ledger_postings = ledger_ctes(dialect, _exists(won))
    redemption = insert_row(_table(Redemption), "r_", dialect, _exists(won)).returning(literal(1)).cte("redemption")
    idem = insert_row(_table(IdempotencyRecord), "i_", dialect, _exists(won)).returning(literal(1)).cte("idem")
    hooks = hooks_insert(dialect, _exists(won)).returning(literal(1)).cte("hooks")
    audit = insert_row(_table(AuditEntry), "a_", dialect, _exists(won)).returning(literal(1)).cte("audit")
    # Every insert has run in full (the counts make each CTE run to the end) before the hot rows below.
    written = (
        select(won.c.id)
        .where(
            _count(ledger_tx) == 1,
            _count(ledger_postings) >= 0,
            _count(redemption) == 1,
            _count(idem) == 1,
            _count(hooks) >= 0,
            _count(audit) == 1,
        )
        .cte("written")
    )
    spend = spend_budget(_exists(written)).cte("spend")
    no_total = and_(bindparam("t_guard", type_=String()).is_(None), bindparam("t_amount", type_=BigInteger()) == 0)
    total = add_to_total(dialect, and_(_exists(spend), not_(no_total))).cte("total")
    ok = select(spend.c.id).where(or_(no_total, _exists(total))).cte("ok")
    ctes = (claim, usage, won, ledger_tx, ledger_postings, redemption, idem, hooks, audit, written, spend, total, ok)
    statement = select(literal(1, Integer()) / _count(ok))
    for cte in ctes:
        statement = statement.add_cte(cte)
    return statement
