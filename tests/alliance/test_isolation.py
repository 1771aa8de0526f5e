"""Tenant isolation sweep: every ``/v1`` route is called by brand B on brand A's objects.

Each route of the partner API must be listed in ``ROUTES`` with a probe; a new route that is not listed
fails ``test_every_partner_route_is_covered``, so isolation is considered for every route added later.
- Routes addressing an object by id: brand B gets 404 (or 403) for brand A's object and A's object
  is unchanged.
- Routes without an object id: what B gets back never mentions A's ids or secrets.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from litestar import Controller, Litestar, delete, get, post
from litestar.params import FromPath
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from tests.helpers import BrandHandle
from tests.isolation import Probe


async def a_second_key(client: AsyncTestClient[Litestar], a: BrandHandle) -> dict[str, str]:
    issued = await client.post("/v1/api-keys", json={"label": "second"}, headers=a.headers)
    return {"key_id": issued.json()["key"]["id"]}


async def key_still_active(client: AsyncTestClient[Litestar], a: BrandHandle, params: dict[str, str]) -> None:
    keys = (await client.get("/v1/api-keys", headers=a.headers)).json()
    [key] = [k for k in keys if k["id"] == params["key_id"]]
    assert key["revoked_at"] is None, "brand B's call changed brand A's key"


SPINE_ROUTES: dict[tuple[str, str], Probe] = {
    ("GET", "/v1/me"): Probe(),
    ("GET", "/v1/api-keys"): Probe(),
    ("POST", "/v1/api-keys"): Probe(body={"label": "b's own"}),
    ("POST", "/v1/api-keys/{key_id}/rotation"): Probe(setup=a_second_key, verify=key_still_active),
    ("DELETE", "/v1/api-keys/{key_id}"): Probe(setup=a_second_key, verify=key_still_active),
}


def _collect_probes() -> dict[tuple[str, str], Probe]:
    """The spine's probes plus ``PROBES`` from every ``tests/alliance/<domain>/isolation_probes.py``.

    Each domain declares probes for its own routes next to its tests, so adding a domain never means
    editing this file; ``a_setup`` there receives the client and brand A and returns the path values.
    """
    probes = dict(SPINE_ROUTES)
    for path in sorted(Path(__file__).parent.glob("*/isolation_probes.py")):
        spec = importlib.util.spec_from_file_location(f"isolation_probes_{path.parent.name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for route, probe in module.PROBES.items():
            assert route not in probes, f"two probes for {route}"
            probes[route] = probe
    return probes


ROUTES = _collect_probes()


def partner_routes(app: Litestar) -> set[tuple[str, str]]:
    """Every ``/v1`` operation: those of the OpenAPI schema and those of the app's routes (a handler left
    out of the schema is still reachable, so it still needs a probe)."""
    schema = app.openapi_schema.to_schema()
    documented = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        if path.startswith("/v1/")
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    served = {
        (method, route.path_format)
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path_format.startswith("/v1/")
        for handler in route.route_handlers
        for method in handler.http_methods
        if method not in {"HEAD", "OPTIONS"}
    }
    return documented | served


async def test_every_partner_route_is_covered(app: Litestar) -> None:
    missing = partner_routes(app) - set(ROUTES)
    assert not missing, f"add an isolation probe for: {sorted(missing)}"
    # A probe for a route that does not exist (a typo, a removed route) would pass on the router's 404.
    stale = set(ROUTES) - partner_routes(app)
    assert not stale, f"isolation probes for routes the app does not serve: {sorted(stale)}"


def test_a_route_without_a_probe_is_noticed() -> None:
    """The coverage check sees a new route, by method, even one left out of the OpenAPI schema."""

    class Extra(Controller):
        path = "/v1/extra"

        @get("/{thing_id:str}")
        async def read(self, thing_id: FromPath[str]) -> None:
            return None

        @delete("/{thing_id:str}", include_in_schema=False)
        async def remove(self, thing_id: FromPath[str]) -> None:
            return None

    @get("/v1/me", include_in_schema=False)
    async def me() -> None:
        return None

    @post("/v1/me")  # a new method on a covered path
    async def post_me() -> None:
        return None

    app = Litestar(route_handlers=[Extra, me, post_me])
    assert partner_routes(app) - set(ROUTES) == {
        ("GET", "/v1/extra/{thing_id}"),
        ("DELETE", "/v1/extra/{thing_id}"),
        ("POST", "/v1/me"),
    }


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
        if probe.verify is not None:
            await probe.verify(client, brand_a, params)
    else:
        assert response.status_code < 400, response.text
    # The ids B itself put in the URL may be echoed back; nothing else of A may appear.
    for secret in (brand_a.id, brand_a.key, brand_a.name, *probe.extra_ids):
        assert secret not in response.text
