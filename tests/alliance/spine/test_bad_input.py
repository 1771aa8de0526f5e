"""Malformed, mistyped, oversized and over-specified requests get 4xx problem responses, never a 500."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.limits import json_too_deep
from alliance.db.models import ApiKey, Brand
from tests.helpers import BrandHandle, assert_problem


async def _counts(session: AsyncSession) -> tuple[int, int]:
    brands = await session.scalar(select(func.count()).select_from(Brand))
    keys = await session.scalar(select(func.count()).select_from(ApiKey))
    return int(brands or 0), int(keys or 0)


@pytest.mark.parametrize(
    ("body", "slug"),
    [
        (b'{"name": ', "malformed-request"),
        (b"not json at all", "malformed-request"),
        (b'{"name": 42}', "invalid-request"),
        (b'{"name": ""}', "invalid-request"),
        (b'{"name": "   "}', "invalid-request"),
        (b'{"name": "Ok", "unexpected": true}', "invalid-request"),
        (b'{"name": "' + b"x" * 201 + b'"}', "invalid-request"),
        (b"[]", "invalid-request"),
    ],
)
async def test_bad_bodies_are_refused_and_write_nothing(
    client: AsyncTestClient[Litestar],
    admin_headers: dict[str, str],
    session: AsyncSession,
    body: bytes,
    slug: str,
) -> None:
    before = await _counts(session)
    response = await client.post(
        "/admin/v1/brands", content=body, headers={**admin_headers, "Content-Type": "application/json"}
    )
    problem = assert_problem(response, 400, slug)
    assert problem["request_id"] == response.headers["x-request-id"]
    assert await _counts(session) == before


async def test_unknown_field_is_named(client: AsyncTestClient[Litestar], brand_a: BrandHandle) -> None:
    response = await client.post("/v1/api-keys", json={"label": "x", "scope": "all"}, headers=brand_a.headers)
    problem = assert_problem(response, 400, "invalid-request")
    assert "scope" in problem["errors"][0]["message"]


async def test_oversized_body_gets_413(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, session: AsyncSession
) -> None:
    before = await _counts(session)
    huge = b'{"label": "' + b"a" * 2_000_000 + b'"}'
    response = await client.post(
        "/v1/api-keys", content=huge, headers={**brand_a.headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 413, "request-too-large")
    assert await _counts(session) == before


async def test_bad_query_and_path_values(client: AsyncTestClient[Litestar], admin_headers: dict[str, str]) -> None:
    assert_problem(await client.get("/admin/v1/audit?limit=abc", headers=admin_headers), 400, "invalid-request")
    assert_problem(await client.get("/admin/v1/audit?limit=100000", headers=admin_headers), 400, "invalid-request")
    assert_problem(await client.get("/admin/v1/brands/brd_missing", headers=admin_headers), 404, "brand-not-found")
    unrouted = assert_problem(await client.get("/v1/nothing-here"), 404, "not-found")
    assert unrouted["request_id"]
    assert_problem(await client.put("/health"), 405, "method-not-allowed")


@pytest.mark.parametrize("depth", [33, 1_000, 20_000])
@pytest.mark.parametrize("content_type", ["application/json", None])
async def test_deeply_nested_json_is_refused_before_decoding(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, depth: int, content_type: str | None
) -> None:
    """msgspec recurses per level: ~1,000 levels used to end in a RecursionError (500) on every JSON route."""
    body = b'{"a": ' * depth + b"1" + b"}" * depth
    headers = {**brand_a.headers, **({"Content-Type": content_type} if content_type else {})}
    for path in ("/v1/benefits", "/v1/matches", "/v1/redemptions", "/v1/contracts"):
        problem = assert_problem(await client.post(path, content=body, headers=headers), 400, "body-too-deep")
        assert problem["extra"] == {"max_depth": 32}
    assert (await client.get("/health")).status_code == 200


@given(
    st.recursive(st.none() | st.integers() | st.text(), lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids))
)
@settings(max_examples=300, deadline=None)
def test_json_depth_is_measured_exactly(value: object) -> None:
    raw = msgspec.json.encode(value)

    def depth(node: object) -> int:
        if isinstance(node, list):
            return 1 + max((depth(child) for child in node), default=0)
        if isinstance(node, dict):
            return 1 + max((depth(child) for child in node.values()), default=0)
        return 0

    for limit in (0, 1, 2, 3, 5):
        assert json_too_deep(raw, limit) == (depth(value) > limit)


def test_brackets_inside_strings_do_not_count() -> None:
    assert not json_too_deep(b'{"a": "' + b"[{" * 100 + b'\\"' + b"]}" * 50 + b'"}', 2)
    assert json_too_deep(b"[" * 3 + b"]" * 3, 2)
    assert not json_too_deep(b"[" * 40, 2)  # unbalanced: left to the decoder's own message
