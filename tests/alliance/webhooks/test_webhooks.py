"""Webhooks end to end: a real HTTP receiver on 127.0.0.1, deliveries from the app's worker, HMAC
signatures, retries with backoff, delivery logs, and the https-only rule."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.core.problems import Problem
from alliance.db.models import WebhookDelivery
from alliance.webhooks import signing
from alliance.webhooks.config import WebhookSettings
from alliance.webhooks.delivery import backoff_seconds
from alliance.webhooks.service import validate_url
from tests.alliance.benefits.support import idem, issue, make_contract, publish, redeem
from tests.helpers import BrandHandle, assert_problem


class Receiver:
    """A local endpoint that records what it receives and answers ``fail_first`` 500s first."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_first = 0
        self.always_fail = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                failing = receiver.always_fail or len(receiver.received) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def webhook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast polling and retries, and http:// on 127.0.0.1 allowed (set before the app starts)."""
    monkeypatch.setenv("ALLIANCE_WEBHOOKS_ALLOW_INSECURE_LOCALHOST", "true")
    monkeypatch.setenv("ALLIANCE_WEBHOOKS_POLL_SECONDS", "0.05")
    monkeypatch.setenv("ALLIANCE_WEBHOOKS_RETRY_BASE_SECONDS", "0.1")
    monkeypatch.setenv("ALLIANCE_WEBHOOKS_MAX_DELAY_SECONDS", "0.2")
    monkeypatch.setenv("ALLIANCE_WEBHOOKS_MAX_ATTEMPTS", "3")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


async def _register(client: AsyncTestClient[Litestar], brand: BrandHandle, url: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/v1/webhooks", json={"url": url, **extra}, headers=brand.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _deliveries(
    client: AsyncTestClient[Litestar], brand: BrandHandle, webhook_id: str, until: str, count: int = 1
) -> list[dict[str, Any]]:
    """The endpoint's delivery log once ``count`` deliveries reached status ``until`` (10 s at most)."""
    for _ in range(200):
        log = (await client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=brand.headers)).json()
        if sum(d["status"] == until for d in log) >= count:
            return log  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries never reached {until}: {log}")


def test_urls_must_be_https_and_public() -> None:
    strict = WebhookSettings()
    assert validate_url("https://hooks.example.com/bax", strict) == "https://hooks.example.com/bax"
    for url, slug in [
        ("http://hooks.example.com/x", "webhook-url-not-https"),
        ("http://127.0.0.1:9000/x", "webhook-url-not-https"),
        ("ftp://hooks.example.com/x", "webhook-url-not-https"),
        ("https://10.1.2.3/x", "webhook-url-not-public"),
        ("https://169.254.169.254/latest", "webhook-url-not-public"),
        ("https://[::1]/x", "webhook-url-not-public"),
        ("https://localhost/x", "webhook-url-not-public"),
        ("https://user:pw@hooks.example.com/x", "invalid-webhook-url"),
        ("https:///nohost", "invalid-webhook-url"),
    ]:
        with pytest.raises(Problem) as caught:
            validate_url(url, strict)
        assert caught.value.slug == slug, url
    relaxed = WebhookSettings(allow_insecure_localhost=True)
    assert validate_url("http://127.0.0.1:9000/x", relaxed)
    with pytest.raises(Problem):
        validate_url("http://10.0.0.1/x", relaxed)


def test_signatures_verify_and_expire() -> None:
    body = b'{"id":"evt_1"}'
    header = signing.sign("whsec_test", body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert signing.verify("whsec_test", header, body, now=1_700_000_100)
    assert not signing.verify("whsec_other", header, body, now=1_700_000_100)
    assert not signing.verify("whsec_test", header, body + b" ", now=1_700_000_100)
    assert not signing.verify("whsec_test", header, body, now=1_700_000_000 + 301)
    assert not signing.verify("whsec_test", "garbage", body)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    settings = WebhookSettings(retry_base_seconds=10, max_delay_seconds=100)
    delays = [backoff_seconds(n, settings) for n in (1, 2, 3, 4, 5)]
    assert 10 <= delays[0] <= 11
    assert 20 <= delays[1] <= 22
    assert 40 <= delays[2] <= 44
    assert 100 <= delays[4] <= 110


async def test_register_list_ping_and_verify(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, receiver: Receiver
) -> None:
    created = await _register(client, brand_a, f"{receiver.url}/bax", description="ops")
    secret = created["secret"]
    webhook = created["webhook"]
    assert secret.startswith("whsec_")
    listed = (await client.get("/v1/webhooks", headers=brand_a.headers)).json()
    assert [w["id"] for w in listed] == [webhook["id"]]
    assert secret not in json.dumps(listed)

    ping = await client.post(f"/v1/webhooks/{webhook['id']}/ping", headers=brand_a.headers)
    assert ping.status_code == 202
    log = await _deliveries(client, brand_a, webhook["id"], "delivered")
    assert log[0]["last_status_code"] == 204
    [request] = receiver.received
    assert request["path"] == "/bax"
    assert request["headers"]["X-Alliance-Event"] == "webhook.ping"
    assert signing.verify(secret, request["headers"]["X-Alliance-Signature"], request["body"])
    event = json.loads(request["body"])
    assert (event["type"], event["brand_id"], event["data"]) == (
        "webhook.ping",
        brand_a.id,
        {"webhook_id": webhook["id"]},
    )


async def test_redemption_and_reversal_events_reach_both_brands(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    receiver: Receiver,
) -> None:
    await make_contract(sessions, brand_a, brand_b)
    funder_hook = await _register(client, brand_a, f"{receiver.url}/a")
    distributor_hook = await _register(client, brand_b, f"{receiver.url}/b", events=["redemption.created"])
    benefit = await publish(client, brand_a, [brand_b])
    first, second = await issue(client, brand_b, benefit["id"], 2)

    redeemed = (await redeem(client, brand_a, first, store_id="sh-01")).json()
    # A refused redemption announces nothing: the outbox rolls back with it.
    assert_problem(await redeem(client, brand_a, first), 409, "coupon-already-redeemed")
    reversal = await client.post(
        f"/v1/redemptions/{redeemed['id']}/reversal", json={}, headers={**brand_a.headers, **idem()}
    )
    assert reversal.status_code == 201
    await _deliveries(client, brand_a, funder_hook["webhook"]["id"], "delivered", 2)
    await _deliveries(client, brand_b, distributor_hook["webhook"]["id"], "delivered", 1)
    assert second  # unused coupon: no event

    by_path: dict[str, list[dict[str, Any]]] = {}
    for request in receiver.received:
        by_path.setdefault(request["path"], []).append(json.loads(request["body"]))
    assert sorted(e["type"] for e in by_path["/a"]) == ["redemption.created", "redemption.reversed"]
    assert [e["type"] for e in by_path["/b"]] == ["redemption.created"]
    funder_view = next(e for e in by_path["/a"] if e["type"] == "redemption.created")["data"]
    distributor_view = by_path["/b"][0]["data"]
    assert funder_view["store_id"] == "sh-01"
    assert distributor_view["id"] == funder_view["id"] == redeemed["id"]
    assert "order_reference" not in distributor_view and "store_id" not in distributor_view
    events = {e["id"] for e in by_path["/a"] + by_path["/b"] if e["type"] == "redemption.created"}
    assert len(events) == 1  # one event id, two recipients
    assert await session.scalar(select(func.count()).select_from(WebhookDelivery)) == 3


async def test_failed_deliveries_are_retried_with_backoff_then_given_up(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, receiver: Receiver
) -> None:
    webhook = (await _register(client, brand_a, f"{receiver.url}/flaky"))["webhook"]
    receiver.fail_first = 2
    await client.post(f"/v1/webhooks/{webhook['id']}/ping", headers=brand_a.headers)
    [delivery] = await _deliveries(client, brand_a, webhook["id"], "delivered")
    assert delivery["attempts"] == 3
    assert len(receiver.received) == 3
    assert len({r["headers"]["X-Alliance-Delivery"] for r in receiver.received}) == 1

    receiver.always_fail = True
    await client.post(f"/v1/webhooks/{webhook['id']}/ping", headers=brand_a.headers)
    log = await _deliveries(client, brand_a, webhook["id"], "failed")
    failed = next(d for d in log if d["status"] == "failed")
    assert (failed["attempts"], failed["last_status_code"]) == (3, 500)
    assert failed["last_error"] == "endpoint answered 500"
    only_failed = (
        await client.get(f"/v1/webhooks/{webhook['id']}/deliveries?status=failed", headers=brand_a.headers)
    ).json()
    assert [d["id"] for d in only_failed] == [failed["id"]]


async def test_disabled_endpoint_gets_nothing_more(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, receiver: Receiver
) -> None:
    webhook = (await _register(client, brand_a, f"{receiver.url}/x"))["webhook"]
    disabled = await client.delete(f"/v1/webhooks/{webhook['id']}", headers=brand_a.headers)
    assert disabled.json()["status"] == "disabled"
    assert_problem(
        await client.post(f"/v1/webhooks/{webhook['id']}/ping", headers=brand_a.headers), 409, "webhook-disabled"
    )
    await asyncio.sleep(0.2)
    assert receiver.received == []
