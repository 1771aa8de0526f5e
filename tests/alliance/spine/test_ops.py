"""Operational endpoints and the OpenAPI document."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient


async def test_health_and_ready(client: AsyncTestClient[Litestar], backend: str) -> None:
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["database"] == backend


async def test_openapi_lists_partner_routes_with_operation_ids(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert "/v1/me" in schema["paths"]
    operation_ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert "getMe" in operation_ids
    assert len(operation_ids) == len(set(operation_ids))


async def test_metrics_are_prometheus_text(client: AsyncTestClient[Litestar]) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'litestar_requests_total{app_name="alliance"' in response.text


async def test_request_id_is_echoed_and_generated(client: AsyncTestClient[Litestar]) -> None:
    mine = await client.get("/health", headers={"X-Request-ID": "req-abcdef123"})
    assert mine.headers["x-request-id"] == "req-abcdef123"
    generated = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert len(generated.headers["x-request-id"]) == 16
