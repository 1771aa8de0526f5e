"""Segments through the API: declare, stream the blinded points in, publish; bad uploads change nothing."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.segments import storage
from privacy.blind import hash_and_blind_batch
from privacy.keys import clamp_scalar
from tests.helpers import BrandHandle, assert_problem

Client = AsyncTestClient[Litestar]
OCTET = {"Content-Type": "application/octet-stream"}
# A u-coordinate on the twist of Curve25519 (2 is a non-square mod p, and 2^3 + A*2^2 + 2 is not a square).
TWIST = (2).to_bytes(32, "little")


def points(count: int, start: int = 0) -> bytes:
    ids = [b"phone:+86139%08d" % i for i in range(start, start + count)]
    return hash_and_blind_batch(b"demo-alliance", clamp_scalar(os.urandom(32)), ids)


async def new_segment(client: Client, brand: BrandHandle, size: int, **extra: Any) -> dict[str, Any]:
    body = {"name": "Loyal buyers 忠实客户", "id_type": "phone", "size": size, "key_epoch": "2026-11", **extra}
    response = await client.post("/v1/segments", json=body, headers=brand.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_declare_upload_publish(client: Client, brand_a: BrandHandle) -> None:
    segment = await new_segment(client, brand_a, 5000, tags=["vip", "vip", "2026"])
    assert segment["status"] == "draft"
    assert segment["tags"] == ["2026", "vip"]
    assert segment["alliance_id"] == "demo-alliance"
    data = points(5000)  # more than one 4,096-point chunk
    url = f"/v1/segments/{segment['id']}/items"
    uploaded = await client.put(url, content=data, headers={**brand_a.headers, **OCTET})
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["item_count"] == 5000
    assert uploaded.json()["items_sha256"] == hashlib.sha256(data).hexdigest()
    published = await client.post(f"/v1/segments/{segment['id']}/publish", headers=brand_a.headers)
    assert published.json()["status"] == "published"
    assert published.json()["published_at"]
    assert_problem(await client.put(url, content=data, headers={**brand_a.headers, **OCTET}), 409, "segment-published")
    listed = (await client.get("/v1/segments", headers=brand_a.headers)).json()
    assert [s["id"] for s in listed] == [segment["id"]]


async def test_bad_uploads_are_refused_and_change_nothing(client: Client, brand_a: BrandHandle) -> None:
    segment = await new_segment(client, brand_a, 100)
    url = f"/v1/segments/{segment['id']}/items"
    headers = {**brand_a.headers, **OCTET}
    good = points(100)
    assert (await client.put(url, content=good[: 3200 - 320], headers=headers)).status_code == 200  # 90 so far
    low_order = bytes(32)
    cases = [
        (good[:-1], 400, "bad-record-length"),
        (good + good[:32], 413, "too-many-items"),
        (good[:-32] + TWIST, 422, "invalid-point"),
        (good[:-32] + (2**255 - 1).to_bytes(32, "little"), 422, "invalid-point"),
        (low_order + good[32:], 422, "invalid-point"),
    ]
    for body, status, slug in cases:
        assert_problem(await client.put(url, content=body, headers=headers), status, slug)
    body = assert_problem(await client.put(url, content=good[:-32] + TWIST, headers=headers), 422, "invalid-point")
    assert body["extra"]["record"] == 99
    assert_problem(
        await client.put(url, content=good, headers={**brand_a.headers, "Content-Type": "text/plain"}),
        415,
        "unsupported-media-type",
    )
    # The earlier 90-point upload is still what the segment holds, so it cannot be published yet.
    segment = (await client.get(f"/v1/segments/{segment['id']}", headers=brand_a.headers)).json()
    assert segment["item_count"] == 90
    assert_problem(
        await client.post(f"/v1/segments/{segment['id']}/publish", headers=brand_a.headers), 409, "segment-incomplete"
    )


async def test_declared_size_is_bounded(client: Client, brand_a: BrandHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLIANCE_PSI_MAX_SEGMENT_ITEMS", "1000")
    body = {"name": "too big", "id_type": "phone", "size": 1001, "key_epoch": "2026-11"}
    assert_problem(await client.post("/v1/segments", json=body, headers=brand_a.headers), 422, "segment-too-large")
    body = {"name": "bad", "id_type": "fax", "size": 10, "key_epoch": "2026-13"}
    assert_problem(await client.post("/v1/segments", json=body, headers=brand_a.headers), 400, "invalid-request")


async def test_memory_and_sql_joins_count_the_same(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle
) -> None:
    x, y = points(9000), points(5000, start=0)

    async def body(data: bytes) -> Any:
        for i in range(0, len(data), 10_000):
            yield data[i : i + 10_000]

    async with sessions() as session, session.begin():
        await storage.ingest_points(session, "set_x", body(x), max_items=9000)
        await storage.ingest_points(session, "set_y", body(y + y[:320]), max_items=5010)  # 10 duplicates
    async with sessions() as session:
        assert await storage.set_size(session, "set_x") == 9000
        assert await storage.read_set(session, "set_y") == y + y[:320]
        in_memory = await storage.count_common(session, "set_x", "set_y", memory_limit=10_000)
        in_sql = await storage.count_common(session, "set_x", "set_y", memory_limit=0)
    # Different scalars: nothing in common; then the same set against itself.
    assert in_memory == in_sql == 0
    async with sessions() as session:
        assert await storage.count_common(session, "set_y", "set_y", memory_limit=10_000) == 5000
        assert await storage.count_common(session, "set_y", "set_y", memory_limit=0) == 5000
