"""Partner API for referrals (token for a member, the exchange's verification key) and conversions."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.params import FromPath, JSONBody

from alliance.core.bodies import StrictBody
from alliance.core.deps import Audit, Caller, Db
from alliance.core.idempotency import IdempotencyKey, replayed_headers
from alliance.referrals import service
from alliance.referrals.schemas import ConversionCreate, ConversionOut, ReferralCreate, ReferralOut, SigningKeyOut

__all__ = ["ConversionController", "ReferralController"]


class ReferralController(Controller):
    path = "/referrals"
    tags = ["referrals"]

    @post("/", operation_id="createReferral", summary="A signed, expiring referral token for a member (shown once)")
    async def create(self, db: Db, caller: Caller, audit: Audit, data: JSONBody[ReferralCreate]) -> ReferralOut:
        return await service.create_referral(db, audit, caller.brand_id, data)

    @get("/signing-key", operation_id="getReferralSigningKey", summary="The exchange's key to check tokens offline")
    async def key(self, db: Db) -> SigningKeyOut:
        return await service.signing_key(db)

    @get("/{referral_id:str}", operation_id="getReferral", summary="A referral the calling brand issued")
    async def get(self, db: Db, caller: Caller, referral_id: FromPath[str]) -> ReferralOut:
        return await service.get_referral(db, caller.brand_id, referral_id)


class ConversionController(Controller):
    path = "/conversions"
    tags = ["referrals"]

    @post(
        "/",
        operation_id="createConversion",
        summary="Report a referred member's purchase (posts the commission)",
        dto=StrictBody[ConversionCreate],
        return_dto=None,
    )
    async def create(
        self,
        db: Db,
        caller: Caller,
        audit: Audit,
        data: JSONBody[ConversionCreate],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[ConversionOut]:
        result = await service.convert(db, audit, caller.brand_id, idempotency_key, data)
        return Response(result.body, status_code=result.status_code, headers=replayed_headers(result.replayed))

    @get("/{conversion_id:str}", operation_id="getConversion", summary="A conversion the caller reported or earned")
    async def get(self, db: Db, caller: Caller, conversion_id: FromPath[str]) -> ConversionOut:
        return await service.get_conversion(db, caller.brand_id, conversion_id)
