"""Hostile input against every operation of the OpenAPI document, on both backends: no request may get a
5xx, every refusal is a problem+json 4xx, SQLite and PostgreSQL give the same answer (status and problem
type) to the same request, and the exchange still answers /health afterwards.

Schemathesis generates valid-looking requests; these are the ones it did not: nesting a thousand levels
deep, bodies over the size limit, integers at and past the int64 edges and the money bound, floats where
integers belong, NUL and invalid UTF-8 in text, wrong content types, and path or query values that are
NUL, huge, traversals or not UTF-8. (Another brand's ids in every route are the isolation sweep's job:
tests/alliance/test_isolation.py.) Each operation gets the same fixed list, so the run is bounded.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from alliance.app import create_app
from alliance.core.settings import Settings
from alliance.db.migrate import migrate
from alliance.db.session import create_engine, create_session_factory
from tests.conftest import Database, drop_pg_database, fresh_database, selected_backends
from tests.fuzz.test_openapi_fuzz import DOCUMENT
from tests.helpers import make_admin_key, make_brand

SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]
INTEGER_EDGES: list[Any] = [2**63, 2**63 - 1, -(2**63) - 1, 10**12 + 1, 10**30, 1.5, 1e308, "1", True]
TEXT_EDGES: list[Any] = ["nul\u0000inside", "x" * 100_000, ""]
PARAM_EDGES = ["%00", "a" * 5_000, "%ff%fe", "-1", "9" * 30, "..%2F..%2Fetc%2Fpasswd", "'%20OR%201=1--", "%F0%9F%92%A9"]
WRONG_TYPES = ["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    if "oneOf" in schema or "anyOf" in schema:
        options = [_resolve(s) for s in schema.get("oneOf", schema.get("anyOf", []))]
        return next((s for s in options if s.get("type") != "null"), options[0])
    return schema


def _sample(schema: dict[str, Any], depth: int = 0) -> Any:
    """A plausible value: enough for a body to get past the first checks to the interesting ones."""
    schema = _resolve(schema)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        props = schema.get("properties", {})
        return {name: _sample(props[name], depth + 1) for name in schema.get("required", list(props))}
    if kind == "array":
        return [_sample(schema.get("items", {}), depth + 1)] if depth <= 4 else []
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "number":
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "x" * max(int(schema.get("minLength", 1)), 1)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _leaves(child, (*path, index))
    else:
        yield path, value


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


def _hostile_bodies(base: Any) -> Iterator[tuple[str, bytes, str]]:
    """(what, raw body, content type) for one JSON operation."""
    json_type = "application/json"
    yield "deep nesting", b'{"a":' * 1_000 + b"1" + b"}" * 1_000, json_type
    yield "over the size limit", b'{"a": "' + b"x" * 2_000_000 + b'"}', json_type
    for raw in (b"null", b"[]", b'"x"', b"1e400", b"{", b'{"a": 1} trailing', b"\xef\xbb\xbf{}", b"NaN"):
        yield f"top-level {raw[:12]!r}", raw, json_type
    encoded = msgspec.json.encode(base)
    yield "invalid UTF-8", encoded.replace(b'"x', b'"\xff\xfex', 1) if b'"x' in encoded else b'{"\xff": 1}', json_type
    for content_type in WRONG_TYPES:
        yield f"content type {content_type}", encoded, content_type
    for path, leaf in _leaves(base):
        if isinstance(leaf, int) and not isinstance(leaf, bool):
            for edge in INTEGER_EDGES:
                yield f"{path} = {edge!r:.20}", msgspec.json.encode(_replace(base, path, edge)), json_type
        elif isinstance(leaf, str):
            for edge in TEXT_EDGES:
                yield f"{path} = {edge!r:.20}", msgspec.json.encode(_replace(base, path, edge)), json_type


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), path, operation


@dataclass
class Target:
    """One backend's exchange, with a brand key and an operator key of its own."""

    backend: str
    client: AsyncTestClient[Litestar]
    brand: dict[str, str]
    admin: dict[str, str]

    def headers(self, path: str) -> dict[str, str]:
        if path.startswith("/v1/"):
            return dict(self.brand)
        return dict(self.admin) if path.startswith("/admin/v1/") else {}


@pytest.fixture(scope="module")
def targets(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Database]]:
    """A fresh, migrated database per selected backend (the module's own: these tests compare backends)."""
    databases = []
    for backend in selected_backends(request.config):
        database = fresh_database(backend, tmp_path_factory.mktemp(f"hostile-{backend}"))
        migrate(database.url)
        databases.append(database)
    yield databases
    for database in databases:
        if database.backend == "postgresql":
            drop_pg_database(database.url)


@asynccontextmanager
async def _exchanges(databases: list[Database]) -> AsyncIterator[list[Target]]:
    async with AsyncExitStack() as stack:
        found = []
        for database in databases:
            engine = create_engine(database.url)
            stack.push_async_callback(engine.dispose)
            sessions = create_session_factory(engine)
            brand = await make_brand(sessions, f"Hostile {secrets.token_hex(3)}", "misc")
            admin = await make_admin_key(sessions)
            app = create_app(Settings(database_url=database.url, auto_migrate=False), configure_logs=False)
            client = await stack.enter_async_context(AsyncTestClient(app=app))
            found.append(Target(database.backend, client, dict(brand.headers), admin))
        yield found


def _url(path: str, value: str = "hostile") -> str:
    return re.sub(r"\{[^}]+\}", value, path)


async def _send_everywhere(targets: list[Target], method: str, path: str, url: str, what: str, **kw: Any) -> None:
    """Send one request to every backend: each answer is a clean refusal or a success, and all agree."""
    answers = []
    extra = kw.pop("headers", {})
    for target in targets:
        response = await target.client.request(method, url, headers={**target.headers(path), **extra}, **kw)
        assert response.status_code < 500, f"{target.backend}: {what}: {response.status_code} {response.text[:300]}"
        kind = None
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json"), what
            kind = msgspec.json.decode(response.content)["type"]
            assert kind.startswith("urn:bax:problem:"), what
        answers.append((response.status_code, kind))
    assert len(set(answers)) == 1, (
        f"{what}: the backends answer differently: {dict(zip([t.backend for t in targets], answers, strict=True))}"
    )


async def test_hostile_bodies_get_the_same_4xx_problems_on_every_backend(targets: list[Database]) -> None:
    sent = 0
    async with _exchanges(targets) as exchanges:
        for method, path, operation in _operations():
            body = operation.get("requestBody")
            if body is None or "application/json" not in body["content"]:
                continue
            base = _sample(body["content"]["application/json"]["schema"])
            for what, raw, content_type in _hostile_bodies(base):
                headers = {"content-type": content_type, "Idempotency-Key": f"hostile-{sent}"}
                await _send_everywhere(
                    exchanges, method, path, _url(path), f"{method} {path} with {what}", content=raw, headers=headers
                )
                sent += 1
        for target in exchanges:
            assert (await target.client.get("/health")).status_code == 200
    assert sent > 600  # every JSON operation got the whole list


@pytest.mark.parametrize("edge", PARAM_EDGES)
async def test_hostile_path_and_query_values_get_the_same_4xx_problems_on_every_backend(
    targets: list[Database], edge: str
) -> None:
    async with _exchanges(targets) as exchanges:
        for method, path, operation in _operations():
            query = "&".join(f"{p['name']}={edge}" for p in operation.get("parameters", []) if p["in"] == "query")
            url = _url(path, edge) + (f"?{query}" if query else "")
            body = b"{}" if method in ("POST", "PUT") else None
            await _send_everywhere(
                exchanges, method, path, url, f"{method} {url[:120]}", content=body, headers={"Idempotency-Key": "k"}
            )
        for target in exchanges:
            assert (await target.client.get("/health")).status_code == 200
