"""The redemption hot path on PostgreSQL: the common case in two statements on a plain asyncpg connection
of the direct pool (`alliance.db.direct`), or a hand-over to the general path
(:func:`alliance.benefits.service.redeem`).

The general path runs about a dozen statements through the SQLAlchemy session inside BEGIN/COMMIT.
Here the same work is:

1. one read (coupon, benefit, distributor still allowed, webhook listeners, the contract between the two
   brands with its fully signed and rejected versions, the month-to-date commission total);
2. one write: a single statement of data-modifying CTEs, hence one atomic transaction of its own, that
   claims the coupon (``WHERE status = 'issued'``) and counts the member's use (``ON CONFLICT ... WHERE
   count < limit``); if both held, inserts the ledger transaction and its postings
   (`alliance.ledger.service.PG_POST_CTE`, validated by `prepare_priced_event`), the redemption, the
   webhook outbox rows (`alliance.webhooks.service.delivery_rows`), the idempotency record and the audit
   row; and last - the hot rows every redemption of the benefit updates, locked until the commit -
   spends the budget (``WHERE spent + this <= budget``) and adds the commission to the month-to-date
   total under the guard of `booking.settle`. That is the lock order of :mod:`alliance.benefits.booking`
   (coupon -> member -> benefit -> total) and the general path's order of writes. If any guard failed
   the statement ends in a deliberate division by zero, which aborts it: none of its writes stay.

The checks the read makes (state, window, distributor, channel, currency, minimum spend, new-customer
rule, contract in force) are the general path's; the conditions that can change under a concurrent
request are re-checked by the write itself, as in the general path. Anything other than a clean
success - an unknown or used coupon, a benefit that cannot be used, a lost race, a reached limit, a
moved total, a reused idempotency key, a deadlock - leaves nothing written and returns ``None``: the
caller then runs the general path, which gives the precise problem, the stored answer of a replay, or
the redemption.
"""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]
import msgspec

import contracts
from alliance.benefits import booking, codes, service
from alliance.benefits.schemas import RedemptionCreate, RedemptionOut
from alliance.contracts import service as contract_service
from alliance.core import idempotency
from alliance.core.audit import AuditContext
from alliance.core.database import database_unavailable
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.ledger import service as ledger_service
from alliance.webhooks import service as webhooks

__all__ = ["redeem_direct", "try_redeem"]

_READ = """
SELECT c.id, c.status, c.distributor_brand_id,
       b.id, b.status, b.valid_from, b.valid_to, CAST(b.channels AS text), b.currency, b.min_spend,
       b.new_customers_only, b.per_member_limit, b.value_kind, b.value, b.max_discount,
       EXISTS (SELECT 1 FROM benefit_distributors d
               WHERE d.benefit_id = c.benefit_id AND d.brand_id = c.distributor_brand_id),
       (SELECT CAST(json_agg(json_build_array(w.id, w.brand_id, w.events)) AS text) FROM webhook_endpoints w
        WHERE w.brand_id IN ($2, c.distributor_brand_id) AND w.status = 'active'),
       k.id,
       ARRAY(SELECT v.version FROM contract_versions v
             WHERE v.contract_id = k.id
               AND (SELECT count(*) FROM contract_signatures s
                    WHERE s.contract_id = v.contract_id AND s.version = v.version) = 2),
       ARRAY(SELECT r.version FROM contract_reviews r WHERE r.contract_id = k.id AND r.decision = 'rejected'),
       (SELECT t.total FROM commission_month_totals t
        WHERE t.contract_id = k.id AND t.kind = 'coupon' AND t.payer_brand_id = $2 AND t.month = $3)
FROM coupons c
JOIN benefits b ON b.id = c.benefit_id
LEFT JOIN contracts k ON (k.party_a = $2 AND k.party_b = c.distributor_brand_id)
                      OR (k.party_a = c.distributor_brand_id AND k.party_b = $2)
WHERE c.code_hash = $1 AND c.funding_brand_id = $2
"""

# $1 now, $2 coupon, $3 benefit, $4 member hash, $5 per-member limit, $6 discount, $7 smallest discount,
# $8-$11 month-to-date key, $12 commission, $13 guard kind, $14 cap, $15.. the rows.
_WRITE = """
WITH claim AS (
    UPDATE coupons SET status = 'redeemed', redeemed_at = $1::timestamptz
    WHERE id = $2::varchar AND status = 'issued'
    RETURNING id
), usage AS (
    INSERT INTO benefit_member_usage AS u (benefit_id, member_hash, count)
    SELECT $3::varchar, $4::varchar, 1 FROM claim WHERE $5::integer IS NOT NULL AND $4::varchar IS NOT NULL
    ON CONFLICT (benefit_id, member_hash) DO UPDATE SET count = u.count + 1
    WHERE u.count < $5::integer
    RETURNING 1
), won AS (
    SELECT 1 AS one FROM claim WHERE $5::integer IS NULL OR EXISTS (SELECT 1 FROM usage)
), {ledger}, redemption AS (
    INSERT INTO redemptions (id, coupon_id, benefit_id, funding_brand_id, distributor_brand_id,
        order_reference, order_amount, discount, currency, channel, store_id, member_hash, redeemed_at,
        contract_id, contract_version, commission, ledger_transaction_id, refunded_amount,
        restored_discount, status)
    SELECT $15::varchar, $2::varchar, $3::varchar, $16::varchar, $17::varchar, $18::varchar, $19::bigint,
           $6::bigint, $20::varchar, $21::varchar, $22::varchar, $4::varchar, $1::timestamptz, $8::varchar,
           $23::integer, $12::bigint, $24::varchar, 0, 0, 'redeemed'
    FROM won
    RETURNING 1
), idem AS (
    INSERT INTO idempotency_records (brand_id, key, operation, fingerprint, status_code, response_body,
        resource_id, created_at)
    SELECT $16::varchar, $25::varchar, $26::varchar, $27::varchar, 201, $28::bytea, $15::varchar,
           $1::timestamptz FROM won
    RETURNING 1
), hooks AS (
    INSERT INTO webhook_deliveries (id, endpoint_id, brand_id, event_id, event_type, payload, status, attempts,
        next_attempt_at, created_at)
    SELECT u.id, u.endpoint_id, u.brand_id, u.event_id, u.event_type, u.payload, 'pending', 0,
           $1::timestamptz, $1::timestamptz
    FROM won CROSS JOIN json_to_recordset($40::json)
        AS u(id varchar, endpoint_id varchar, brand_id varchar, event_id varchar, event_type varchar, payload text)
    RETURNING 1
), audit AS (
    INSERT INTO audit_log (at, actor, brand_id, action, target, source_ip, request_id, details)
    SELECT $1::timestamptz, $29::varchar, $16::varchar, 'redemption.create', $15::varchar, $30::varchar,
           $31::varchar, $32::json FROM won
    RETURNING 1
), written AS (  -- every insert has run (the counts make each CTE run in full) before the hot rows below
    SELECT 1 AS one FROM won
    WHERE (SELECT count(*) FROM ledger_tx) = 1 AND (SELECT count(*) FROM ledger_postings) >= 0
      AND (SELECT count(*) FROM redemption) = 1 AND (SELECT count(*) FROM idem) = 1
      AND (SELECT count(*) FROM hooks) >= 0 AND (SELECT count(*) FROM audit) = 1
), spend AS (  -- the hot rows last: their locks are held from here to the commit at the statement's end
    UPDATE benefits AS b
    SET spent_count = b.spent_count + 1,
        spent_amount = b.spent_amount + $6::bigint,
        status = CASE WHEN b.budget_count <= b.spent_count + 1
                        OR b.budget_amount - (b.spent_amount + $6::bigint) < $7::bigint
                      THEN 'exhausted' ELSE b.status END,
        updated_at = $1::timestamptz
    WHERE b.id = $3::varchar AND b.status = 'active'
      AND b.budget_count >= b.spent_count + 1 AND b.budget_amount >= b.spent_amount + $6::bigint
      AND EXISTS (SELECT 1 FROM written)
    RETURNING 1
), total AS (
    INSERT INTO commission_month_totals AS t (contract_id, kind, payer_brand_id, month, total)
    SELECT $8::varchar, $9::varchar, $10::varchar, $11::varchar, $12::bigint FROM spend
    WHERE NOT ($13::text IS NULL AND $12::bigint = 0)
    ON CONFLICT (contract_id, kind, payer_brand_id, month) DO UPDATE SET total = t.total + $12::bigint
    WHERE $13::text IS NULL
       OR ($13::text = 'fits' AND t.total + $12::bigint <= $14::bigint)
       OR ($13::text = 'reaches' AND t.total + $12::bigint = $14::bigint)
       OR ($13::text = 'at-cap' AND t.total >= $14::bigint)
    RETURNING 1
), ok AS (
    SELECT 1 AS one FROM spend
    WHERE ($13::text IS NULL AND $12::bigint = 0) OR EXISTS (SELECT 1 FROM total)
)
SELECT 1 / (SELECT count(*) FROM ok)
""".replace(
    "{ledger}",
    ledger_service.PG_POST_CTE.strip().format(
        id="$24::varchar",
        scope="$33::varchar",
        key="$34::varchar",
        brand="$16::varchar",
        kind="$35::varchar",
        occurred="$1::timestamptz",
        posted="$36::timestamptz",
        month="$37::varchar",
        reference="$38::text",
        postings="$39::text",
        guard="won",
    ),
)

# Contract versions never change once stored (a change is a new version), so their decoded terms are
# kept per process: (contract id, version) -> terms. Which versions are signed, rejected or in force is
# read on every redemption.
_TERMS: dict[tuple[str, int], contracts.ContractTerms] = {}
_TERMS_MAX = 4_096
_VERSION = "SELECT canonical FROM contract_versions WHERE contract_id = $1 AND version = $2"


async def _terms(connection: Any, contract_id: str, versions: list[int]) -> list[contracts.ContractTerms]:
    missing = [v for v in versions if (contract_id, v) not in _TERMS]
    for version in missing:
        canonical = await connection.fetchval(_VERSION, contract_id, version)
        if canonical is None:  # pragma: no cover - the read just saw it
            continue
        if len(_TERMS) >= _TERMS_MAX:
            _TERMS.clear()
        _TERMS[(contract_id, version)] = contract_service.terms_from_canonical(contract_id, version, canonical)
    return [_TERMS[(contract_id, v)] for v in versions if (contract_id, v) in _TERMS]


async def redeem_direct(
    pool: Any, ctx: AuditContext, caller_id: str, idempotency_key: str | None, data: RedemptionCreate
) -> idempotency.IdempotentResult[RedemptionOut] | None:
    """Redeem on the fast path with a connection of the direct pool (`alliance.db.direct`), or return
    ``None`` with nothing written for the general path (:func:`alliance.benefits.service.redeem`) to
    answer - also when the database cannot be reached: the general path then answers 503."""
    if idempotency_key is None:
        return None
    try:
        code, print_ = service.redemption_fingerprint(data)
    except codes.MalformedCode:  # the general path answers it (400 malformed-coupon-code)
        return None
    try:
        async with pool.acquire() as connection:
            return await try_redeem(connection, ctx, caller_id, idempotency_key, print_, code, data)
    except Exception as exc:
        if database_unavailable(exc):
            return None
        raise


async def try_redeem(
    driver: Any,
    ctx: AuditContext,
    caller_id: str,
    idempotency_key: str,
    print_: str,
    code: str,
    data: RedemptionCreate,
) -> idempotency.IdempotentResult[RedemptionOut] | None:
    """Redeem with ``driver`` (an asyncpg connection outside any transaction: each statement commits on
    its own), or return ``None`` with nothing written for the general path to answer."""
    try:
        key = idempotency.require_key(idempotency_key)
    except Problem:  # the general path refuses it, after its own 404 for an unknown code
        return None
    now = utcnow()
    month = contracts.month_of(now)
    row = await driver.fetchrow(_READ, codes.code_digest(code), caller_id, month)
    if row is None:
        return None
    (
        coupon_id,
        coupon_status,
        distributor_id,
        benefit_id,
        benefit_status,
        valid_from,
        valid_to,
        channels,
        currency,
        min_spend,
        new_customers_only,
        per_member_limit,
        value_kind,
        value,
        max_discount,
        still_allowed,
        endpoints,
        contract_id,
        signed_versions,
        rejected_versions,
        month_to_date,
    ) = row
    if (
        coupon_status != "issued"
        or benefit_status != "active"
        or not valid_from <= now < valid_to
        or not still_allowed
        or data.channel not in msgspec.json.decode(channels)
        or (data.currency is not None and data.currency != currency)
        or data.order_amount < min_spend
        or (new_customers_only and data.new_customer is not True)
        or (per_member_limit is not None and data.member_token is None)
        or contract_id is None
        or distributor_id == caller_id
    ):
        return None
    discount = service.discount_amount(value_kind, value, max_discount, data.order_amount)
    if discount <= 0:
        return None
    try:
        terms = contracts.version_in_force(await _terms(driver, contract_id, list(signed_versions)), now)
    except contracts.ContractError:
        return None
    if terms.version in rejected_versions:
        return None
    redemption_id = new_id("rdm")
    event = contracts.CouponRedemption(
        event_id=redemption_id,
        occurred_at=now,
        benefit_id=benefit_id,
        funding_brand=caller_id,
        distributor_brand=distributor_id,
        redeemer_brand=caller_id,
        face_value=discount,
        order_amount=data.order_amount,
        currency=currency,
    )
    try:
        priced, guard = booking.price(event, terms, int(month_to_date or 0), guarded=True)
    except contracts.ContractError:
        return None
    rule, commission_kind, payer = booking.commission_rule(event, terms)
    if rule.monthly_cap is not None and (
        commission_kind != "coupon" or payer != caller_id or contracts.month_of(event.occurred_at) != month
    ):  # pragma: no cover - the read took the total of exactly this key
        return None
    member_hash = service.member_digest(caller_id, data.member_token) if data.member_token is not None else None
    try:
        posting = ledger_service.prepare_priced_event(
            priced,
            brand_id=caller_id,
            idempotency_key=f"coupon_redemption:{redemption_id}",
            occurred_at=now,
            kind="coupon_redemption",
            reference={"redemption_id": redemption_id, "benefit_id": benefit_id, "coupon_id": coupon_id},
        )
    except Problem:
        return None
    body = RedemptionOut(
        id=redemption_id,
        coupon_id=coupon_id,
        benefit_id=benefit_id,
        funding_brand_id=caller_id,
        distributor_brand_id=distributor_id,
        order_reference=data.order_reference,
        order_amount=data.order_amount,
        discount=discount,
        currency=currency,
        channel=data.channel,
        store_id=data.store_id,
        redeemed_at=now,
        contract_id=terms.contract_id,
        contract_version=terms.version,
        commission=priced.commission,
        ledger_transaction_id=posting.id,
        refunded_amount=0,
        restored_discount=0,
        status="redeemed",
    )
    deliveries = (
        webhooks.delivery_rows(
            msgspec.json.decode(endpoints),
            "redemption.created",
            {caller_id: body, distributor_id: service.distributor_view(body)},
            now,
        )
        if endpoints is not None
        else []
    )
    guard_kind, cap = guard if guard is not None else (None, 0)
    encoded = msgspec.json.encode(body)  # stored for replays and sent as this answer: encoded once
    details = {"coupon_id": coupon_id, "benefit_id": benefit_id, "discount": discount, "currency": currency}
    try:
        await driver.fetchval(
            _WRITE,
            now,
            coupon_id,
            benefit_id,
            member_hash,
            per_member_limit,
            discount,
            service.smallest_discount(value_kind, value, min_spend),
            priced.contract_id,
            priced.commission_kind,
            priced.commission_payer,
            priced.commission_month,
            priced.commission,
            guard_kind,
            cap,
            redemption_id,
            caller_id,
            distributor_id,
            data.order_reference,
            data.order_amount,
            currency,
            data.channel,
            data.store_id,
            terms.version,
            posting.id,
            key,
            service.REDEEM_OPERATION,
            print_,
            encoded,
            ctx.actor,
            ctx.source_ip,
            ctx.request_id,
            msgspec.json.encode(details).decode(),
            posting.scope,
            posting.idempotency_key,
            posting.kind,
            posting.posted_at,
            posting.month,
            posting.reference_json,
            posting.postings_json,
            msgspec.json.encode(deliveries).decode(),
        )
    except (
        asyncpg.DivisionByZeroError,  # a guard did not hold: the statement (and all its writes) aborted
        asyncpg.IntegrityConstraintViolationError,  # e.g. the Idempotency-Key of another request
        asyncpg.TransactionRollbackError,  # a deadlock or serialization failure
    ):
        return None
    return idempotency.IdempotentResult(201, body, encoded=encoded)
