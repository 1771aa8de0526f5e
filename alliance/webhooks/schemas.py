"""Wire schemas for webhook endpoints and their delivery logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

__all__ = [
    "EVENT_TYPES",
    "CreatedWebhook",
    "DeliveryOut",
    "EventType",
    "WebhookCreate",
    "WebhookOut",
]

EventType = Literal["redemption.created", "redemption.reversed", "conversion.created", "webhook.ping"]
EVENT_TYPES: tuple[str, ...] = ("redemption.created", "redemption.reversed", "conversion.created", "webhook.ping")


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[str, msgspec.Meta(min_length=8, max_length=2000)]
    events: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=len(EVENT_TYPES))] = msgspec.field(
        default_factory=lambda: ["redemption.created", "redemption.reversed", "conversion.created"]
    )
    description: Annotated[str, msgspec.Meta(max_length=200)] = ""


class WebhookOut(msgspec.Struct):
    id: str
    url: str
    description: str
    events: list[str]
    status: str
    created_at: datetime
    disabled_at: datetime | None = None


class CreatedWebhook(msgspec.Struct):
    """Returned once at registration: keep ``secret`` to verify ``X-Alliance-Signature``."""

    webhook: WebhookOut
    secret: str


class DeliveryOut(msgspec.Struct):
    id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
