"""Webhook endpoints (register, list, disable, ping), the outbox, and delivery logs.

Other domains call :func:`enqueue` inside their own transaction: the delivery rows commit or roll back
with the event itself, so a brand is never told about a redemption that did not happen, and never
misses one that did. The worker in :mod:`alliance.webhooks.delivery` sends them.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import WebhookDelivery, WebhookEndpoint
from alliance.webhooks.config import WebhookSettings, load_webhook_settings
from alliance.webhooks.schemas import CreatedWebhook, DeliveryOut, WebhookCreate, WebhookOut

__all__ = [
    "MAX_ENDPOINTS_PER_BRAND",
    "delivery_out",
    "delivery_rows",
    "disable_endpoint",
    "enqueue",
    "envelope",
    "get_endpoint",
    "list_deliveries",
    "list_endpoints",
    "ping",
    "register_endpoint",
    "validate_url",
    "webhook_out",
]

MAX_ENDPOINTS_PER_BRAND = 10
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def webhook_out(endpoint: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        events=list(endpoint.events),
        status=endpoint.status,
        created_at=endpoint.created_at,
        disabled_at=endpoint.disabled_at,
    )


def delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=delivery.status,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
    )


def validate_url(url: str, settings: WebhookSettings) -> str:
    """An endpoint URL must be ``https://`` with a host name or a public address; ``http://`` is accepted
    only for 127.0.0.1/localhost when ``ALLIANCE_WEBHOOKS_ALLOW_INSECURE_LOCALHOST`` is on.

    Private, loopback and link-local address literals are refused so a brand cannot aim the exchange at
    its own internal network (names are checked again when delivering, after resolution).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise Problem(422, "invalid-webhook-url", "the URL cannot be parsed") from None
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        raise Problem(422, "invalid-webhook-url", "the URL needs a host and must not carry credentials")
    if parts.fragment:
        raise Problem(422, "invalid-webhook-url", "the URL must not have a #fragment")
    local = host in _LOCAL_NAMES
    if parts.scheme == "http":
        if not (local and settings.allow_insecure_localhost):
            raise Problem(422, "webhook-url-not-https", "webhook endpoints must use https://")
    elif parts.scheme != "https":
        raise Problem(422, "webhook-url-not-https", "webhook endpoints must use https://")
    if local and not settings.allow_insecure_localhost:
        raise Problem(422, "webhook-url-not-public", "webhook endpoints must be reachable on a public address")
    if not local:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            address = None
        if address is not None and not address.is_global:
            raise Problem(422, "webhook-url-not-public", "webhook endpoints must be reachable on a public address")
    if port is not None and not 0 < port < 65536:
        raise Problem(422, "invalid-webhook-url", "the port is out of range")
    return url.strip()


async def register_endpoint(
    session: AsyncSession,
    ctx: AuditContext,
    brand_id: str,
    data: WebhookCreate,
    settings: WebhookSettings | None = None,
) -> CreatedWebhook:
    """Register an endpoint; its signing secret is in the result and never shown again."""
    url = validate_url(data.url, settings or load_webhook_settings())
    active = (
        await session.scalars(
            select(WebhookEndpoint.id).where(WebhookEndpoint.brand_id == brand_id, WebhookEndpoint.status == "active")
        )
    ).all()
    if len(active) >= MAX_ENDPOINTS_PER_BRAND:
        raise Problem(409, "too-many-webhooks", f"a brand may have at most {MAX_ENDPOINTS_PER_BRAND} active endpoints")
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(
        id=new_id("whk"),
        brand_id=brand_id,
        url=url,
        description=data.description,
        events=sorted(set(data.events)),
        secret=secret,
        status="active",
        created_at=utcnow(),
    )
    session.add(endpoint)
    await session.flush()
    record_audit(
        session,
        ctx,
        "webhook.create",
        brand_id=brand_id,
        target=endpoint.id,
        details={"url": url, "events": endpoint.events},
    )
    return CreatedWebhook(webhook=webhook_out(endpoint), secret=secret)


async def list_endpoints(session: AsyncSession, brand_id: str) -> Sequence[WebhookEndpoint]:
    return (
        await session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.brand_id == brand_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    ).all()


async def get_endpoint(session: AsyncSession, brand_id: str, endpoint_id: str) -> WebhookEndpoint:
    """The brand's own endpoint; another brand's is reported exactly like a missing one."""
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.brand_id != brand_id:
        raise Problem(404, "webhook-not-found", f"no webhook endpoint {endpoint_id!r} for this brand")
    return endpoint


async def disable_endpoint(
    session: AsyncSession, ctx: AuditContext, brand_id: str, endpoint_id: str
) -> WebhookEndpoint:
    """Stop delivering to an endpoint; its pending deliveries are marked failed. Kept for the logs."""
    endpoint = await get_endpoint(session, brand_id, endpoint_id)
    if endpoint.status != "disabled":
        now = utcnow()
        endpoint.status = "disabled"
        endpoint.disabled_at = now
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending")
            .values(status="failed", last_error="endpoint disabled")
        )
        record_audit(session, ctx, "webhook.disable", brand_id=brand_id, target=endpoint.id)
    return endpoint


async def list_deliveries(
    session: AsyncSession,
    brand_id: str,
    endpoint_id: str,
    *,
    status: str | None = None,
    limit: int = 50,
) -> Sequence[WebhookDelivery]:
    """The endpoint's delivery log, newest first."""
    await get_endpoint(session, brand_id, endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


def _delivery(
    endpoint_id: str, brand_id: str, event_type: str, event_id: str, body: bytes, now: datetime
) -> WebhookDelivery:
    return WebhookDelivery(
        id=new_id("whd"),
        endpoint_id=endpoint_id,
        brand_id=brand_id,
        event_id=event_id,
        event_type=event_type,
        payload=body.decode("utf-8"),
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def envelope(event_type: str, event_id: str, brand_id: str, created_at: datetime, data: Any) -> bytes:
    """The JSON body every delivery carries: ``{"id", "type", "created_at", "brand_id", "data"}``."""
    return msgspec.json.encode(
        {"id": event_id, "type": event_type, "created_at": created_at, "brand_id": brand_id, "data": data}
    )


def delivery_rows(
    endpoints: Sequence[tuple[str, str, Sequence[str]]],
    event_type: str,
    data_by_brand: Mapping[str, Any],
    now: datetime,
) -> list[dict[str, Any]]:
    """The pending deliveries of one ``event_type`` event to ``endpoints`` (id, brand, subscribed event
    types; active ones of the brands in ``data_by_brand``), each brand receiving its own ``data``: the
    rows :func:`enqueue` adds, for callers that insert them in their own statement."""
    event_id = new_id("evt")
    bodies: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for endpoint_id, brand_id, events in endpoints:
        if event_type not in events:
            continue
        if brand_id not in bodies:
            bodies[brand_id] = envelope(event_type, event_id, brand_id, now, data_by_brand[brand_id]).decode("utf-8")
        rows.append(
            {
                "id": new_id("whd"),
                "endpoint_id": endpoint_id,
                "brand_id": brand_id,
                "event_id": event_id,
                "event_type": event_type,
                "payload": bodies[brand_id],
            }
        )
    return rows


async def enqueue(session: AsyncSession, event_type: str, data_by_brand: Mapping[str, Any]) -> int:
    """Queue ``event_type`` for every active endpoint of each brand in ``data_by_brand`` that subscribed
    to it, each brand receiving its own ``data``. Call inside the event's transaction. Returns the number
    of deliveries queued (0 without a query result means nobody listens)."""
    if not data_by_brand:
        return 0
    endpoints = (
        await session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.brand_id, WebhookEndpoint.events).where(
                WebhookEndpoint.brand_id.in_(list(data_by_brand)), WebhookEndpoint.status == "active"
            )
        )
    ).all()
    now = utcnow()
    rows = delivery_rows([(e[0], e[1], e[2]) for e in endpoints], event_type, data_by_brand, now)
    for row in rows:
        session.add(WebhookDelivery(**row, status="pending", attempts=0, next_attempt_at=now, created_at=now))
    return len(rows)


async def ping(session: AsyncSession, ctx: AuditContext, brand_id: str, endpoint_id: str) -> WebhookDelivery:
    """Queue a ``webhook.ping`` to one endpoint, to check reachability and signature verification."""
    endpoint = await get_endpoint(session, brand_id, endpoint_id)
    if endpoint.status != "active":
        raise Problem(409, "webhook-disabled", "this endpoint is disabled")
    now = utcnow()
    event_id = new_id("evt")
    body = envelope("webhook.ping", event_id, brand_id, now, {"webhook_id": endpoint.id})
    delivery = _delivery(endpoint.id, brand_id, "webhook.ping", event_id, body, now)
    session.add(delivery)
    await session.flush()
    record_audit(session, ctx, "webhook.ping", brand_id=brand_id, target=endpoint.id)
    return delivery
