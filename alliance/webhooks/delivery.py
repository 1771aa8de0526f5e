"""The delivery worker: sends due outbox rows, records every attempt, retries with exponential backoff.

Several server processes may run a worker against one database. A worker *claims* a delivery with a
conditional ``UPDATE ... WHERE status = 'pending' AND next_attempt_at = <the value it read>`` that moves
``next_attempt_at`` forward by a lease; only one claimant's update matches, so each attempt is made by
one worker, and a worker that dies mid-delivery lets the lease expire and the delivery be retried.
Delivery is therefore at least once: receivers de-duplicate on the event ``id`` in the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from litestar import Litestar
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.db.base import utcnow
from alliance.db.models import WebhookDelivery, WebhookEndpoint
from alliance.webhooks.config import WebhookSettings, load_webhook_settings
from alliance.webhooks.signing import SIGNATURE_HEADER, sign

__all__ = ["DeliveryWorker", "backoff_seconds", "webhook_worker"]

log = logging.getLogger("alliance.webhooks")
_BATCH = 50
_CONCURRENCY = 10
_LEASE_EXTRA_SECONDS = 30.0


def backoff_seconds(attempts: int, settings: WebhookSettings) -> float:
    """Delay before the next try after ``attempts`` failed ones: base * 2**(attempts-1), capped, with
    up to 10 % random jitter so a recovering endpoint is not hit by every retry at once."""
    delay = min(settings.retry_base_seconds * 2 ** max(attempts - 1, 0), settings.max_delay_seconds)
    return float(delay * (1 + random.random() / 10))  # noqa: S311 - jitter, not security


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: str
    url: str
    secret: str
    event_type: str
    event_id: str
    body: bytes
    attempts: int


class DeliveryWorker:
    """Delivers pending webhook deliveries; :meth:`run_once` is one pass, :meth:`run` loops until stopped."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: WebhookSettings | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings or load_webhook_settings()
        self._client = client

    async def _claim(self) -> list[_Claimed]:
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.timeout_seconds + _LEASE_EXTRA_SECONDS)
        claimed: list[_Claimed] = []
        async with self.sessions() as session:
            due = (
                await session.execute(
                    select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
                    .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                    .order_by(WebhookDelivery.next_attempt_at)
                    .limit(_BATCH)
                )
            ).all()
            for delivery_id, seen in due:
                result = await session.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == delivery_id,
                        WebhookDelivery.status == "pending",
                        WebhookDelivery.next_attempt_at == seen,
                    )
                    .values(next_attempt_at=lease, attempts=WebhookDelivery.attempts + 1, last_attempt_at=now)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                row = (
                    await session.execute(
                        select(
                            WebhookDelivery.payload,
                            WebhookDelivery.event_type,
                            WebhookDelivery.event_id,
                            WebhookDelivery.attempts,
                            WebhookEndpoint.url,
                            WebhookEndpoint.secret,
                            WebhookEndpoint.status,
                        )
                        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                        .where(WebhookDelivery.id == delivery_id)
                    )
                ).one()
                payload, event_type, event_id, attempts, url, secret, endpoint_status = row
                if endpoint_status != "active":
                    await session.execute(
                        update(WebhookDelivery)
                        .where(WebhookDelivery.id == delivery_id)
                        .values(status="failed", last_error="endpoint disabled")
                    )
                    continue
                claimed.append(
                    _Claimed(delivery_id, url, secret, event_type, event_id, payload.encode("utf-8"), attempts)
                )
            await session.commit()
        return claimed

    async def _destination_allowed(self, url: str) -> str | None:
        """Why ``url`` must not be contacted now (its host resolves to a non-public address), or None."""
        host = urlsplit(url).hostname or ""
        local_ok = self.settings.allow_insecure_localhost
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        except OSError as exc:
            return f"cannot resolve {host}: {exc}"
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if address.is_loopback and local_ok:
                continue
            if not address.is_global:
                return f"{host} resolves to a non-public address"
        return None

    async def _send(self, client: httpx.AsyncClient, item: _Claimed) -> tuple[bool, int | None, str | None]:
        refused = await self._destination_allowed(item.url)
        if refused:
            return False, None, refused
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "alliance-webhooks/0.1",
            SIGNATURE_HEADER: sign(item.secret, item.body),
            "X-Alliance-Event": item.event_type,
            "X-Alliance-Event-Id": item.event_id,
            "X-Alliance-Delivery": item.id,
        }
        try:
            response = await client.post(item.url, content=item.body, headers=headers)
        except httpx.HTTPError as exc:
            return False, None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return True, response.status_code, None
        return False, response.status_code, f"endpoint answered {response.status_code}"

    async def _record(self, item: _Claimed, ok: bool, status_code: int | None, error: str | None) -> None:
        now = utcnow()
        values: dict[str, object] = {"last_status_code": status_code, "last_error": error}
        if ok:
            values.update(status="delivered", delivered_at=now)
        elif item.attempts >= self.settings.max_attempts:
            values.update(status="failed")
        else:
            values.update(next_attempt_at=now + timedelta(seconds=backoff_seconds(item.attempts, self.settings)))
        async with self.sessions() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == item.id, WebhookDelivery.status == "pending")
                .values(**values)
            )
            await session.commit()
        if not ok:
            log.info("webhook delivery %s attempt %s failed: %s", item.id, item.attempts, error)

    async def run_once(self) -> int:
        """Deliver what is due now; returns the number of attempts made."""
        claimed = await self._claim()
        if not claimed:
            return 0
        async with contextlib.AsyncExitStack() as stack:
            client = self._client
            if client is None:
                client = await stack.enter_async_context(
                    httpx.AsyncClient(timeout=self.settings.timeout_seconds, follow_redirects=False)
                )
            limit = asyncio.Semaphore(_CONCURRENCY)

            async def one(item: _Claimed) -> None:
                async with limit:
                    ok, status_code, error = await self._send(client, item)
                    await self._record(item, ok, status_code, error)

            await asyncio.gather(*(one(item) for item in claimed))
        return len(claimed)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; a failing pass is logged and retried at the next poll."""
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook delivery pass failed")
                busy = 0
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.poll_seconds)


@contextlib.asynccontextmanager
async def webhook_worker(app: Litestar) -> AsyncGenerator[None, None]:
    """App lifespan hook: runs a :class:`DeliveryWorker` while the app serves (unless
    ``ALLIANCE_WEBHOOKS_WORKER=false``). Needs ``app.state.session_factory`` (the database lifespan)."""
    settings = load_webhook_settings()
    if not settings.worker:
        yield
        return
    stop = asyncio.Event()
    worker = DeliveryWorker(app.state.session_factory, settings)
    task = asyncio.create_task(worker.run(stop), name="webhook-delivery")
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=5)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
