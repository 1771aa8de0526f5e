"""Isolation probes for the segment routes: brand B aims at brand A's draft segment."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.helpers import BrandHandle
from tests.isolation import Probe

Client = AsyncTestClient[Litestar]
NEW_SEGMENT = {"name": "b's own", "id_type": "phone", "size": 1000, "key_epoch": "2026-11", "tags": []}


async def a_segment(client: Client, a: BrandHandle) -> dict[str, str]:
    created = await client.post("/v1/segments", json={**NEW_SEGMENT, "name": "a's"}, headers=a.headers)
    return {"segment_id": created.json()["id"]}


async def segment_untouched(client: Client, a: BrandHandle, params: dict[str, str]) -> None:
    segment = (await client.get(f"/v1/segments/{params['segment_id']}", headers=a.headers)).json()
    assert segment["status"] == "draft"
    assert segment["item_count"] == 0


PROBES: dict[tuple[str, str], Probe] = {
    ("GET", "/v1/segments"): Probe(),
    ("POST", "/v1/segments"): Probe(body=NEW_SEGMENT),
    ("GET", "/v1/segments/{segment_id}"): Probe(setup=a_segment, verify=segment_untouched),
    ("PUT", "/v1/segments/{segment_id}/items"): Probe(setup=a_segment, verify=segment_untouched),
    ("POST", "/v1/segments/{segment_id}/publish"): Probe(setup=a_segment, verify=segment_untouched),
}
