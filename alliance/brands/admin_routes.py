"""Operator API for brands (onboard, list, suspend, reactivate, issue keys) and for the operator keys
themselves (list, revoke; new ones are made on the exchange host with ``alliance admin-key add``). Needs
an operator key."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody

from alliance.brands import service
from alliance.brands.schemas import ApiKeyOut, BrandCreate, BrandOut, CreatedBrand, IssuedApiKey, KeyCreate
from alliance.core.deps import Audit, Db

__all__ = ["AdminKeyController", "BrandAdminController"]


class SuspendRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class BrandAdminController(Controller):
    path = "/brands"
    tags = ["admin"]

    @post("/", operation_id="adminCreateBrand", summary="Onboard a brand; its first API key is shown once")
    async def create(self, db: Db, audit: Audit, data: JSONBody[BrandCreate]) -> CreatedBrand:
        brand, key = await service.create_brand(db, audit, data.name, data.category)
        return CreatedBrand(brand=service.brand_out(brand), api_key=key)

    @get("/", operation_id="adminListBrands", summary="All brands of the alliance")
    async def list(self, db: Db) -> list[BrandOut]:
        return [service.brand_out(b) for b in await service.list_brands(db)]

    @get("/{brand_id:str}", operation_id="adminGetBrand", summary="One brand")
    async def get(self, db: Db, brand_id: FromPath[str]) -> BrandOut:
        return service.brand_out(await service.get_brand(db, brand_id))

    @post("/{brand_id:str}/suspend", operation_id="adminSuspendBrand", status_code=200, summary="Suspend")
    async def suspend(
        self,
        db: Db,
        audit: Audit,
        brand_id: FromPath[str],
        data: JSONBody[SuspendRequest | None] = None,
    ) -> BrandOut:
        reason = data.reason if data else ""
        return service.brand_out(await service.suspend_brand(db, audit, brand_id, reason))

    @post(
        "/{brand_id:str}/reactivate",
        operation_id="adminReactivateBrand",
        status_code=200,
        summary="Reactivate",
    )
    async def reactivate(self, db: Db, audit: Audit, brand_id: FromPath[str]) -> BrandOut:
        return service.brand_out(await service.reactivate_brand(db, audit, brand_id))

    @post("/{brand_id:str}/api-keys", operation_id="adminIssueBrandKey", summary="Issue a brand an API key")
    async def issue_key(self, db: Db, audit: Audit, brand_id: FromPath[str], data: JSONBody[KeyCreate]) -> IssuedApiKey:
        return await service.issue_key(db, audit, brand_id, data.label)


class AdminKeyController(Controller):
    path = "/admin-keys"
    tags = ["admin"]

    @get("/", operation_id="adminListOperatorKeys", summary="Every operator key (prefixes only), oldest first")
    async def list(self, db: Db) -> list[ApiKeyOut]:
        return [service.key_out(k) for k in await service.list_admin_keys(db)]

    @delete(
        "/{key_id:str}",
        operation_id="adminRevokeOperatorKey",
        status_code=200,
        summary="Revoke an operator key (not the last active one)",
    )
    async def revoke(self, db: Db, audit: Audit, key_id: FromPath[str]) -> ApiKeyOut:
        return service.key_out(await service.revoke_admin_key(db, audit, key_id))
