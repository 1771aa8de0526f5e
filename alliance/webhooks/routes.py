"""Partner API for webhooks: register an endpoint (secret shown once), list, disable, ping, and read
the delivery log. A brand only ever sees its own endpoints and deliveries."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from alliance.core.deps import Audit, Caller, Db
from alliance.webhooks import service
from alliance.webhooks.schemas import CreatedWebhook, DeliveryOut, WebhookCreate, WebhookOut

__all__ = ["WebhookController"]


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]

    @post("/", operation_id="createWebhook", summary="Register an endpoint; the signing secret is shown once")
    async def create(self, db: Db, caller: Caller, audit: Audit, data: JSONBody[WebhookCreate]) -> CreatedWebhook:
        return await service.register_endpoint(db, audit, caller.brand_id, data)

    @get("/", operation_id="listWebhooks", summary="The calling brand's endpoints")
    async def index(self, db: Db, caller: Caller) -> list[WebhookOut]:
        return [service.webhook_out(e) for e in await service.list_endpoints(db, caller.brand_id)]

    @get("/{webhook_id:str}", operation_id="getWebhook", summary="One endpoint")
    async def show(self, db: Db, caller: Caller, webhook_id: FromPath[str]) -> WebhookOut:
        return service.webhook_out(await service.get_endpoint(db, caller.brand_id, webhook_id))

    @delete("/{webhook_id:str}", operation_id="disableWebhook", status_code=200, summary="Stop delivering")
    async def disable(self, db: Db, caller: Caller, audit: Audit, webhook_id: FromPath[str]) -> WebhookOut:
        return service.webhook_out(await service.disable_endpoint(db, audit, caller.brand_id, webhook_id))

    @post("/{webhook_id:str}/ping", operation_id="pingWebhook", status_code=202, summary="Queue a test event")
    async def ping(self, db: Db, caller: Caller, audit: Audit, webhook_id: FromPath[str]) -> DeliveryOut:
        return service.delivery_out(await service.ping(db, audit, caller.brand_id, webhook_id))

    @get("/{webhook_id:str}/deliveries", operation_id="listWebhookDeliveries", summary="Delivery log, newest first")
    async def deliveries(
        self,
        db: Db,
        caller: Caller,
        webhook_id: FromPath[str],
        status: Annotated[Literal["pending", "delivered", "failed"] | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> list[DeliveryOut]:
        rows = await service.list_deliveries(db, caller.brand_id, webhook_id, status=status, limit=limit)
        return [service.delivery_out(d) for d in rows]
