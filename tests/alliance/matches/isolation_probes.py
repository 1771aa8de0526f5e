"""Isolation probes for the match and task routes: brand B aims at a match between brand A and a third
brand C (made through the public services), and at A's tasks in it."""

from __future__ import annotations

import base64
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from alliance.db.session import create_engine, create_session_factory
from tests.alliance.matches.psi_setup import Party, phones, publish, sign_contract
from tests.helpers import BrandHandle, make_brand
from tests.isolation import Probe

Client = AsyncTestClient[Litestar]


async def a_match(client: Client, a: BrandHandle) -> dict[str, str]:
    engine = create_engine(client.app.state.settings.database_url)
    try:
        c = await make_brand(create_session_factory(engine), "Third Brand 第三", "misc")
    finally:
        await engine.dispose()
    party_a, party_c = Party(a), Party(c)
    await sign_contract(client, party_a, party_c, {"segment_tags": ["psi"], "disclosure": "cardinality"})
    seg_a = await publish(client, party_a, phones(0, 1000))
    seg_c = await publish(client, party_c, phones(500, 1000))
    created = await client.post(
        "/v1/matches", json={"segment_id": seg_a, "counterparty_segment_id": seg_c}, headers=a.headers
    )
    assert created.status_code == 201, created.text
    tasks = (await client.get("/v1/tasks", headers=a.headers)).json()
    return {"match_id": created.json()["id"], "task_id": tasks[0]["id"], "segment_id": seg_a}


async def match_untouched(client: Client, a: BrandHandle, params: dict[str, str]) -> None:
    match = (await client.get(f"/v1/matches/{params['match_id']}", headers=a.headers)).json()
    assert match["state"] == "waiting_for_reblinds"
    task = (await client.get(f"/v1/tasks/{params['task_id']}", headers=a.headers)).json()
    assert task["state"] == "open"


async def a_published_segment(client: Client, a: BrandHandle) -> dict[str, str]:
    # POST /v1/matches has no id in its path: B names A's segment as its own in the body (see BODY_A_SEGMENT).
    return await a_match(client, a)


REPORT: dict[str, Any] = {
    "report": {
        "match_id": "mat_x",
        "reporting_brand": "x",
        "counterparty_brand": "y",
        "overlap_count": 1,
        "key_epoch": "2026-11",
    },
    "signature": base64.b64encode(bytes(64)).decode(),
}

PROBES: dict[tuple[str, str], Probe] = {
    ("GET", "/v1/matches"): Probe(),
    ("POST", "/v1/matches"): Probe(
        setup=a_published_segment,
        verify=match_untouched,
        body={"segment_id": "seg_not_b_s", "counterparty_segment_id": "seg_unknown"},
    ),
    ("GET", "/v1/matches/{match_id}"): Probe(setup=a_match, verify=match_untouched),
    ("GET", "/v1/matches/{match_id}/result"): Probe(setup=a_match, verify=match_untouched),
    ("GET", "/v1/tasks"): Probe(),
    ("GET", "/v1/tasks/{task_id}"): Probe(setup=a_match, verify=match_untouched),
    ("GET", "/v1/tasks/{task_id}/items"): Probe(setup=a_match, verify=match_untouched),
    ("GET", "/v1/tasks/{task_id}/reblinded"): Probe(setup=a_match, verify=match_untouched),
    ("PUT", "/v1/tasks/{task_id}/result"): Probe(setup=a_match, verify=match_untouched),
    ("PUT", "/v1/tasks/{task_id}/report"): Probe(setup=a_match, verify=match_untouched, body=REPORT),
    ("POST", "/v1/tasks/{task_id}/refusal"): Probe(setup=a_match, verify=match_untouched, body={"reason": "no"}),
}
