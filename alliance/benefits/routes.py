"""Partner API for benefits, coupons, redemptions and reversals.

Bodies carrying money are decoded strictly, once (`alliance.core.bodies.StrictBody`): ``120.0`` or
``"12000"`` for an amount is refused, not converted. Money-moving calls (redemption, reversal) need an
``Idempotency-Key`` header; a replay answers with the stored first response and the header
``Idempotent-Replayed: true``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, MediaType, Request, Response, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter

from alliance.benefits import catalogue, coupons, redemption, reversal
from alliance.benefits.schemas import (
    BenefitCreate,
    BenefitOut,
    CouponBatchOut,
    CouponIssue,
    DistributorsUpdate,
    LifecycleRequest,
    RedemptionCreate,
    RedemptionOut,
    ReversalCreate,
    ReversalOut,
)
from alliance.core.audit import provide_audit
from alliance.core.auth import provide_caller
from alliance.core.bodies import StrictBody
from alliance.core.database import database_unavailable, session_factory
from alliance.core.deps import Audit, Caller, Db
from alliance.core.idempotency import IdempotencyKey, IdempotentResult, replayed_headers

__all__ = ["BenefitController", "RedemptionController"]


class BenefitController(Controller):
    path = "/benefits"
    tags = ["benefits"]

    @post(
        "/",
        operation_id="createBenefit",
        summary="Publish a benefit funded by the calling brand",
        dto=StrictBody[BenefitCreate],
        return_dto=None,
    )
    async def create(self, db: Db, caller: Caller, audit: Audit, data: JSONBody[BenefitCreate]) -> BenefitOut:
        return await catalogue.create_benefit(db, audit, caller.brand_id, data)

    @get("/", operation_id="listBenefits", summary="The catalogue: benefits the caller funds or may distribute")
    async def list(
        self,
        db: Db,
        caller: Caller,
        brand: Annotated[str | None, QueryParameter(max_length=32, description="funding brand id")] = None,
        tag: Annotated[str | None, QueryParameter(max_length=64)] = None,
        status: Annotated[Literal["active", "paused", "exhausted", "ended", "expired"] | None, QueryParameter()] = None,
        role: Annotated[Literal["funded", "distributable"] | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=100_000)] = 0,
    ) -> list[BenefitOut]:
        return await catalogue.list_benefits(
            db, caller.brand_id, brand=brand, tag=tag, status=status, role=role, limit=limit, offset=offset
        )

    @get("/{benefit_id:str}", operation_id="getBenefit", summary="One benefit")
    async def get(self, db: Db, caller: Caller, benefit_id: FromPath[str]) -> BenefitOut:
        return await catalogue.get_benefit(db, caller.brand_id, benefit_id)

    @post("/{benefit_id:str}/pause", operation_id="pauseBenefit", status_code=200, summary="Pause (funder)")
    async def pause(
        self,
        db: Db,
        caller: Caller,
        audit: Audit,
        benefit_id: FromPath[str],
        data: JSONBody[LifecycleRequest | None] = None,
    ) -> BenefitOut:
        return await catalogue.pause_benefit(db, audit, caller.brand_id, benefit_id, data.reason if data else "")

    @post("/{benefit_id:str}/resume", operation_id="resumeBenefit", status_code=200, summary="Resume (funder)")
    async def resume(
        self,
        db: Db,
        caller: Caller,
        audit: Audit,
        benefit_id: FromPath[str],
        data: JSONBody[LifecycleRequest | None] = None,
    ) -> BenefitOut:
        return await catalogue.resume_benefit(db, audit, caller.brand_id, benefit_id, data.reason if data else "")

    @post("/{benefit_id:str}/end", operation_id="endBenefit", status_code=200, summary="End for good (funder)")
    async def end(
        self,
        db: Db,
        caller: Caller,
        audit: Audit,
        benefit_id: FromPath[str],
        data: JSONBody[LifecycleRequest | None] = None,
    ) -> BenefitOut:
        return await catalogue.end_benefit(db, audit, caller.brand_id, benefit_id, data.reason if data else "")

    @put(
        "/{benefit_id:str}/distributors",
        operation_id="setBenefitDistributors",
        summary="Replace the brands allowed to distribute the benefit (funder)",
    )
    async def distributors(
        self, db: Db, caller: Caller, audit: Audit, benefit_id: FromPath[str], data: JSONBody[DistributorsUpdate]
    ) -> BenefitOut:
        return await catalogue.set_distributors(db, audit, caller.brand_id, benefit_id, data.distributors)

    @post(
        "/{benefit_id:str}/coupons",
        operation_id="issueCoupons",
        summary="Issue a batch of coupon codes to the calling brand as distributor (codes shown once)",
        dto=StrictBody[CouponIssue],
        return_dto=None,
    )
    async def issue(
        self, db: Db, caller: Caller, audit: Audit, benefit_id: FromPath[str], data: JSONBody[CouponIssue]
    ) -> CouponBatchOut:
        return await coupons.issue_coupons(db, audit, caller.brand_id, benefit_id, data.count)


def _encoded(result: IdempotentResult[RedemptionOut]) -> Response[Any]:
    """The answer as the JSON stored for replays (encoded once, sent as it is)."""
    body: Any = result.encoded if result.encoded is not None else result.body
    headers = replayed_headers(result.replayed)
    return Response(body, status_code=result.status_code, media_type=MediaType.JSON, headers=headers)


class RedemptionController(Controller):
    path = "/redemptions"
    tags = ["redemptions"]

    @post(
        "/",
        operation_id="redeemCoupon",
        summary="Redeem a coupon at its funding brand (exactly once)",
        dto=StrictBody[RedemptionCreate],
        return_dto=None,
    )
    async def redeem(
        self, request: Request[Any, Any, Any], data: JSONBody[RedemptionCreate], idempotency_key: IdempotencyKey = None
    ) -> Response[RedemptionOut]:
        # The hot path asks for no dependencies: resolving ``db``, ``caller`` and ``audit`` together costs
        # Litestar a task group per request. The same values, and the same ending as ``provide_db``.
        caller, audit = provide_caller(request), provide_audit(request)
        pool = request.app.state.direct_pool  # PostgreSQL: the fast path first (None on SQLite)
        if pool is not None:
            fast = await redemption.redeem_direct(pool, audit, caller.brand_id, idempotency_key, data)
            if fast is not None:
                return _encoded(fast)
        async with session_factory(request.app.state)() as db:
            try:
                result = await redemption.redeem(db, audit, caller.brand_id, idempotency_key, data)
            except Exception as exc:
                if database_unavailable(exc):
                    await db.invalidate()  # as provide_db: never pool a connection an outage broke
                else:
                    await db.rollback()
                raise
            await db.commit()
        return _encoded(result)

    @get("/", operation_id="listRedemptions", summary="The calling brand's redemptions (as funding brand)")
    async def list(
        self,
        db: Db,
        caller: Caller,
        benefit_id: Annotated[str | None, QueryParameter(max_length=32)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=100_000)] = 0,
    ) -> list[RedemptionOut]:
        return await redemption.list_redemptions(db, caller.brand_id, benefit_id=benefit_id, limit=limit, offset=offset)

    @get("/{redemption_id:str}", operation_id="getRedemption", summary="One redemption")
    async def get(self, db: Db, caller: Caller, redemption_id: FromPath[str]) -> RedemptionOut:
        return await redemption.get_redemption(db, caller.brand_id, redemption_id)

    @post(
        "/{redemption_id:str}/reversal",
        operation_id="reverseRedemption",
        summary="Refund all or part of a redeemed order: reversing ledger entries, budget given back",
    )
    async def reverse(
        self,
        db: Db,
        caller: Caller,
        audit: Audit,
        redemption_id: FromPath[str],
        idempotency_key: IdempotencyKey = None,
        data: JSONBody[ReversalCreate | None] = None,
    ) -> Response[ReversalOut]:
        strict = data if data is not None else ReversalCreate()
        result = await reversal.reverse_redemption(db, audit, caller.brand_id, redemption_id, idempotency_key, strict)
        return Response(result.body, status_code=result.status_code, headers=replayed_headers(result.replayed))
