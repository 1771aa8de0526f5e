"""Webhooks: endpoints brands register, and the outbox of deliveries written in the same transaction
as the event they announce (so an event is never lost and never announced without having happened)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from alliance.db.base import Base, UTCDateTime, utcnow

__all__ = ["WebhookDelivery", "WebhookEndpoint"]


class WebhookEndpoint(Base):
    """An HTTPS endpoint of a brand. ``secret`` signs deliveries (HMAC-SHA256); it is shown to the brand
    once and kept here because signing needs it (unlike API keys, it cannot be stored as a digest)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_brand_id", "brand_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(12), default="active")  # active | disabled
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One event for one endpoint: ``pending`` until a 2xx answer (``delivered``) or the last retry
    (``failed``). ``next_attempt_at`` doubles as a lease while a worker is delivering it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    brand_id: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
