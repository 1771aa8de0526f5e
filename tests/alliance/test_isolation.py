"""Tenant isolation sweep: every ``/v1`` route is called by brand B on brand A's objects.

Each route of the partner API must be listed in ``ROUTES`` with a probe; a new route that is not listed
fails ``test_every_partner_route_is_covered``, so isolation is considered for every route added later.
- Routes addressing an object by id: brand B gets 404 (or 403) for brand A's object and A's object
  is unchanged.
- Routes without an object id: what B gets back never mentions A's ids or secrets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.helpers import BrandHandle

SetUp = Callable[[AsyncTestClient[Litestar], BrandHandle], Awaitable[dict[str, str]]]


@dataclass(frozen=True)
class Probe:
    """How to aim a route at brand A's object: ``setup`` creates it (as A) and returns path values."""

    setup: SetUp | None = None
    body: Any = None
    extra_ids: list[str] = field(default_factory=list)


async def a_second_key(client: AsyncTestClient[Litestar], a: BrandHandle) -> dict[str, str]:
    issued = await client.post("/v1/api-keys", json={"label": "second"}, headers=a.headers)
    return {"key_id": issued.json()["key"]["id"]}


ROUTES: dict[tuple[str, str], Probe] = {
    ("GET", "/v1/me"): Probe(),
    ("GET", "/v1/api-keys"): Probe(),
    ("POST", "/v1/api-keys"): Probe(body={"label": "b's own"}),
    ("POST", "/v1/api-keys/{key_id}/rotation"): Probe(setup=a_second_key),
    ("DELETE", "/v1/api-keys/{key_id}"): Probe(setup=a_second_key),
}


def partner_routes(app: Litestar) -> set[tuple[str, str]]:
    schema = app.openapi_schema.to_schema()
    return {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        if path.startswith("/v1/")
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


async def test_every_partner_route_is_covered(app: Litestar) -> None:
    missing = partner_routes(app) - set(ROUTES)
    assert not missing, f"add an isolation probe for: {sorted(missing)}"


@pytest.mark.parametrize(("method", "path"), sorted(ROUTES))
async def test_brand_b_cannot_reach_brand_a(
    client: AsyncTestClient[Litestar],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    method: str,
    path: str,
) -> None:
    probe = ROUTES[(method, path)]
    params = await probe.setup(client, brand_a) if probe.setup else {}
    url = path.format(**params)
    kwargs: dict[str, Any] = {"headers": brand_b.headers}
    if probe.body is not None:
        kwargs["json"] = probe.body
    response = await client.request(method, url, **kwargs)
    assert response.status_code < 500, response.text
    if params:
        assert response.status_code in (403, 404), f"{method} {url} as brand B -> {response.status_code}"
        still_there = await client.get("/v1/api-keys", headers=brand_a.headers)
        assert still_there.status_code == 200
        if "key_id" in params:
            [key] = [k for k in still_there.json() if k["id"] == params["key_id"]]
            assert key["revoked_at"] is None, "brand B's call changed brand A's key"
    else:
        assert response.status_code < 400, response.text
    # The ids B itself put in the URL may be echoed back; nothing else of A may appear.
    for secret in (brand_a.id, brand_a.key, brand_a.name, *probe.extra_ids):
        assert secret not in response.text
