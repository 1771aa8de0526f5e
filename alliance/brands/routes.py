"""Partner API: who am I, and my own API keys. A brand only ever sees and changes its own keys."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody

from alliance.brands import service
from alliance.brands.schemas import ApiKeyOut, IssuedApiKey, KeyCreate, MeOut
from alliance.core.deps import Audit, Caller, Db
from alliance.db.models import ApiKey

__all__ = ["BrandSelfController"]


class BrandSelfController(Controller):
    tags = ["brand"]

    @get("/me", operation_id="getMe", summary="The calling brand and the key it used")
    async def me(self, db: Db, caller: Caller) -> MeOut:
        brand = await service.get_brand(db, caller.brand_id)
        key = await db.get(ApiKey, caller.key_id)
        assert key is not None
        return MeOut(brand=service.brand_out(brand), key=service.key_out(key))

    @get("/api-keys", operation_id="listApiKeys", summary="The calling brand's API keys (prefixes only)")
    async def list_keys(self, db: Db, caller: Caller) -> list[ApiKeyOut]:
        return [service.key_out(k) for k in await service.list_keys(db, caller.brand_id)]

    @post("/api-keys", operation_id="createApiKey", summary="Issue an additional API key (shown once)")
    async def create_key(self, db: Db, caller: Caller, audit: Audit, data: JSONBody[KeyCreate]) -> IssuedApiKey:
        return await service.issue_key(db, audit, caller.brand_id, data.label)

    @post(
        "/api-keys/{key_id:str}/rotation",
        operation_id="rotateApiKey",
        summary="Replace a key: a new secret is returned once, the old key stops working",
    )
    async def rotate_key(self, db: Db, caller: Caller, audit: Audit, key_id: FromPath[str]) -> IssuedApiKey:
        return await service.rotate_key(db, audit, caller.brand_id, key_id)

    @delete("/api-keys/{key_id:str}", operation_id="revokeApiKey", status_code=200, summary="Revoke a key")
    async def revoke_key(self, db: Db, caller: Caller, audit: Audit, key_id: FromPath[str]) -> ApiKeyOut:
        return service.key_out(await service.revoke_key(db, audit, caller.brand_id, key_id))
