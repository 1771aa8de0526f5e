"""Match jobs through the API: both disclosure policies end to end (agents played by the test with the
privacy library), the protocol rules, and bad input that must change nothing."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from privacy.psi import MembershipReport, membership, sign_membership_report
from tests.alliance.matches.psi_setup import (
    EPOCH,
    OCTET,
    Party,
    do_reblind,
    open_task,
    phones,
    publish,
    sign_contract,
)
from tests.helpers import BrandHandle, assert_problem

Client = AsyncTestClient[Litestar]
CARDINALITY: dict[str, Any] = {"segment_tags": ["psi"], "disclosure": "cardinality", "min_k": 10}


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLIANCE_PSI_MIN_SEGMENT_SIZE", "50")
    monkeypatch.setenv("ALLIANCE_PSI_MIN_MEMBER_CHANGE", "20")


@pytest.fixture
def a(brand_a: BrandHandle) -> Party:
    return Party(brand_a)


@pytest.fixture
def b(brand_b: BrandHandle) -> Party:
    return Party(brand_b)


async def match(client: Client, requester: Party, segment: str, other_segment: str, **extra: Any) -> Any:
    return await client.post(
        "/v1/matches",
        json={"segment_id": segment, "counterparty_segment_id": other_segment, **extra},
        headers=requester.headers,
    )


@pytest.mark.parametrize("memory_limit", ["5000000", "0"], ids=["memory-join", "sql-join"])
async def test_cardinality_counts_the_overlap_and_tells_both(
    client: Client, a: Party, b: Party, memory_limit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLIANCE_PSI_MEMORY_JOIN_LIMIT", memory_limit)
    await sign_contract(client, a, b, CARDINALITY)
    seg_a = await publish(client, a, phones(0, 300))
    seg_b = await publish(client, b, phones(180, 200))  # 120 in common
    created = await match(client, a, seg_a, seg_b)
    assert created.status_code == 201, created.text
    m = created.json()
    assert m["state"] == "waiting_for_reblinds"
    assert m["role"] == "requester"
    assert m["counterparty_segment_size"] == 200

    first = await do_reblind(client, b, m["id"])
    assert first["state"] == "done"
    assert (await client.get(f"/v1/matches/{m['id']}", headers=a.headers)).json()["state"] == "waiting_for_reblinds"
    await do_reblind(client, a, m["id"])

    for party in (a, b):
        result = await client.get(f"/v1/matches/{m['id']}/result", headers=party.headers)
        assert result.status_code == 200, result.text
        body = result.json()
        assert body == {
            "type": "cardinality",
            "match_id": m["id"],
            "count": 120,
            "suppressed": False,
            "noised": False,
            "rounded_to": 1,
        }
    seen_by_b = (await client.get(f"/v1/matches/{m['id']}", headers=b.headers)).json()
    assert seen_by_b["role"] == "responder"
    assert seen_by_b["state"] == "done"
    assert seen_by_b["segment_id"] == seg_b


async def test_small_overlap_is_suppressed_and_counts_are_rounded(client: Client, a: Party, b: Party) -> None:
    await sign_contract(client, a, b, {**CARDINALITY, "min_k": 30, "round_cardinality_to": 10})
    seg_a = await publish(client, a, phones(0, 100))
    seg_b = await publish(client, b, phones(80, 100))  # 20 in common < k
    m = (await match(client, a, seg_a, seg_b)).json()
    await do_reblind(client, a, m["id"])
    await do_reblind(client, b, m["id"])
    result = (await client.get(f"/v1/matches/{m['id']}/result", headers=b.headers)).json()
    assert result["suppressed"] is True
    assert result["count"] is None

    seg_b2 = await publish(client, b, phones(43, 100))  # 57 in common -> 50
    m2 = (await match(client, a, seg_a, seg_b2)).json()
    await do_reblind(client, a, m2["id"])
    await do_reblind(client, b, m2["id"])
    result = (await client.get(f"/v1/matches/{m2['id']}/result", headers=a.headers)).json()
    assert (result["count"], result["rounded_to"], result["suppressed"]) == (50, 10, False)


async def test_membership_goes_to_the_recipient_and_the_signed_count_to_the_other(
    client: Client, a: Party, b: Party
) -> None:
    await sign_contract(client, a, b, {"segment_tags": ["psi"], "disclosure": f"membership_to:{a.id}"})
    mine = phones(0, 120)
    seg_a = await publish(client, a, mine)
    seg_b = await publish(client, b, phones(70, 100))  # rows 70..119 of A in common
    # B requests; A (the recipient) still learns the rows.
    m = (await match(client, b, seg_b, seg_a)).json()
    assert m["disclosure"] == f"membership_to:{a.id}"
    assert [t["kind"] for t in (await client.get("/v1/tasks", headers=a.headers)).json()] == []
    await do_reblind(client, b, m["id"], shuffle=False)

    task = await open_task(client, a, m["id"])
    assert task["kind"] == "intersect"
    theirs = a.reblind((await client.get(f"/v1/tasks/{task['id']}/items", headers=a.headers)).content)
    ordered = await client.get(f"/v1/tasks/{task['id']}/reblinded", headers=a.headers)
    assert ordered.status_code == 200
    # A's published order is A's own upload order here, so rows map straight back to identifiers.
    rows = membership(ordered.content, theirs)
    assert rows == list(range(70, 120))

    # B never gets A's ordered re-blinding, not even through its own finished task.
    [b_task] = (await client.get("/v1/tasks?state=done", headers=b.headers)).json()
    assert_problem(await client.get(f"/v1/tasks/{task['id']}/reblinded", headers=b.headers), 404, "task-not-found")
    assert_problem(await client.get(f"/v1/tasks/{b_task['id']}/items", headers=b.headers), 409, "task-not-open")

    report = MembershipReport(
        match_id=m["id"], reporting_brand=a.id, counterparty_brand=b.id, overlap_count=len(rows), key_epoch=EPOCH
    )
    forged = sign_membership_report(report, b.signing)  # not A's key
    bad = await client.put(f"/v1/tasks/{task['id']}/report", content=_json(forged), headers=_json_headers(a))
    assert_problem(bad, 422, "report-signature-invalid")
    wrong = sign_membership_report(MembershipReport(m["id"], a.id, b.id, overlap_count=999, key_epoch=EPOCH), a.signing)
    assert_problem(
        await client.put(f"/v1/tasks/{task['id']}/report", content=_json(wrong), headers=_json_headers(a)),
        422,
        "report-mismatch",
    )
    signed = sign_membership_report(report, a.signing)
    ok = await client.put(f"/v1/tasks/{task['id']}/report", content=_json(signed), headers=_json_headers(a))
    assert ok.status_code == 200, ok.text
    result = (await client.get(f"/v1/matches/{m['id']}/result", headers=b.headers)).json()
    assert result["type"] == "membership"
    assert result["to_brand"] == a.id
    assert result["report"]["report"]["overlap_count"] == 50
    # The re-blinded set is gone once the match is done.
    assert_problem(await client.get(f"/v1/tasks/{task['id']}/reblinded", headers=a.headers), 409, "match-not-active")


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


def _json_headers(party: Party) -> dict[str, str]:
    return {**party.headers, "Content-Type": "application/json"}


async def test_a_task_result_of_the_wrong_size_or_with_bad_points_changes_nothing(
    client: Client, a: Party, b: Party
) -> None:
    await sign_contract(client, a, b, CARDINALITY)
    seg_a = await publish(client, a, phones(0, 60))
    seg_b = await publish(client, b, phones(30, 60))
    m = (await match(client, a, seg_a, seg_b)).json()
    task = await open_task(client, b, m["id"])
    good = b.reblind((await client.get(f"/v1/tasks/{task['id']}/items", headers=b.headers)).content)
    url = f"/v1/tasks/{task['id']}/result"
    headers = {**b.headers, **OCTET}
    assert_problem(await client.put(url, content=good[:-32], headers=headers), 422, "wrong-item-count")
    assert_problem(await client.put(url, content=good + good[:32], headers=headers), 413, "wrong-item-count")
    assert_problem(await client.put(url, content=good[:-1], headers=headers), 422, "wrong-item-count")

    not_canonical = good[:-32] + b"\xff" * 32
    assert_problem(await client.put(url, content=not_canonical, headers=headers), 422, "invalid-point")
    assert_problem(
        await client.put(url, content=good, headers={**b.headers, "Content-Type": "application/json"}),
        415,
        "unsupported-media-type",
    )
    # Nothing changed: the task is still open and a correct upload is accepted.
    assert (await client.get(f"/v1/tasks/{task['id']}", headers=b.headers)).json()["state"] == "open"
    assert (await client.put(url, content=good, headers=headers)).status_code == 200
    assert_problem(await client.put(url, content=good, headers=headers), 409, "task-not-open")


async def test_matches_on_foreign_unpublished_or_unfit_segments_are_refused(
    client: Client, a: Party, b: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    seg_a = await publish(client, a, phones(0, 60))
    seg_b = await publish(client, b, phones(0, 60))
    assert_problem(await match(client, a, seg_a, seg_b), 409, "no-contract-in-force")
    await sign_contract(client, a, b, CARDINALITY)
    # The counterparty's segment as one's own: 404, like a missing one.
    assert_problem(await match(client, a, seg_b, seg_a), 404, "segment-not-found")
    assert_problem(await match(client, a, "seg_missing", seg_b), 404, "segment-not-found")
    assert_problem(await match(client, a, seg_a, "seg_missing"), 404, "segment-not-found")
    assert_problem(await match(client, a, seg_a, seg_a), 422, "same-brand")
    draft_b = (
        await client.post(
            "/v1/segments",
            json={"name": "d", "id_type": "phone", "size": 60, "key_epoch": EPOCH, "tags": ["psi"]},
            headers=b.headers,
        )
    ).json()["id"]
    assert_problem(await match(client, a, seg_a, draft_b), 404, "segment-not-found")
    draft_a = (
        await client.post(
            "/v1/segments",
            json={"name": "d", "id_type": "phone", "size": 60, "key_epoch": EPOCH, "tags": ["psi"]},
            headers=a.headers,
        )
    ).json()["id"]
    assert_problem(await match(client, a, draft_a, seg_b), 409, "segment-not-published")
    untagged = await publish(client, b, phones(0, 60), tags=["other"])
    assert_problem(await match(client, a, seg_a, untagged), 403, "segment-not-covered")
    other_epoch = await publish(client, b, phones(0, 60), epoch="2026-12")
    assert_problem(await match(client, a, seg_a, other_epoch), 409, "key-epoch-mismatch")
    assert_problem(await match(client, a, seg_a, seg_b, disclosure=f"membership_to:{a.id}"), 409, "disclosure-mismatch")
    monkeypatch.setenv("ALLIANCE_PSI_MIN_SEGMENT_SIZE", "61")
    assert_problem(await match(client, a, seg_a, seg_b), 422, "segment-too-small")
    # None of this created a match or a task.
    assert (await client.get("/v1/matches", headers=a.headers)).json() == []
    assert (await client.get("/v1/tasks?state=all", headers=b.headers)).json() == []


async def test_a_rematch_must_change_enough_members(client: Client, a: Party, b: Party) -> None:
    await sign_contract(client, a, b, CARDINALITY)
    seg_a = await publish(client, a, phones(0, 100))
    seg_b = await publish(client, b, phones(50, 100))
    first = await match(client, a, seg_a, seg_b)
    assert first.status_code == 201
    # The same pair again, or one member different: refused (either brand may ask).
    assert_problem(await match(client, b, seg_b, seg_a), 409, "insufficient-change")
    seg_a_plus_one = await publish(client, a, phones(0, 101))
    body = assert_problem(await match(client, a, seg_a_plus_one, seg_b), 409, "insufficient-change")
    assert body["extra"]["members_changed"] == 1
    seg_a_changed = await publish(client, a, phones(0, 120))  # 20 more members: enough
    assert (await match(client, a, seg_a_changed, seg_b)).status_code == 201


async def test_a_refusing_agent_fails_the_match_for_both(client: Client, a: Party, b: Party) -> None:
    await sign_contract(client, a, b, CARDINALITY)
    seg_a = await publish(client, a, phones(0, 60))
    seg_b = await publish(client, b, phones(0, 60))
    m = (await match(client, a, seg_a, seg_b)).json()
    task = await open_task(client, b, m["id"])
    refused = await client.post(f"/v1/tasks/{task['id']}/refusal", json={"reason": "over budget"}, headers=b.headers)
    assert refused.status_code == 200, refused.text
    assert refused.json()["state"] == "failed"
    for party in (a, b):
        seen = (await client.get(f"/v1/matches/{m['id']}", headers=party.headers)).json()
        assert seen["state"] == "failed"
        assert "over budget" in seen["failure_reason"]
        assert_problem(await client.get(f"/v1/matches/{m['id']}/result", headers=party.headers), 409, "match-not-done")
    assert (await client.get("/v1/tasks", headers=a.headers)).json() == []


async def test_differential_privacy_noises_counts_and_stops_at_the_monthly_budget(
    client: Client, a: Party, b: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLIANCE_PSI_MIN_MEMBER_CHANGE", "0")
    monkeypatch.setenv("ALLIANCE_PSI_RELEASE_EPSILON_MILLI", "1000")
    await sign_contract(client, a, b, {**CARDINALITY, "dp_epsilon_milli_per_month": 2000})
    seg_a = await publish(client, a, phones(0, 200))
    seg_b = await publish(client, b, phones(0, 200))
    counts = []
    for _ in range(2):
        m = (await match(client, a, seg_a, seg_b)).json()
        await do_reblind(client, a, m["id"])
        await do_reblind(client, b, m["id"])
        result = (await client.get(f"/v1/matches/{m['id']}/result", headers=a.headers)).json()
        assert result["noised"] is True
        counts.append(result["count"])
    assert all(abs(c - 200) < 40 for c in counts), counts  # epsilon 1: the noise is a few units
    assert_problem(await match(client, a, seg_a, seg_b), 409, "privacy-budget-exhausted")


async def test_an_unfinished_match_expires(client: Client, a: Party, b: Party, sessions: Any) -> None:
    from sqlalchemy import update

    from alliance.db.base import utcnow
    from alliance.db.models import MatchJob

    await sign_contract(client, a, b, CARDINALITY)
    seg_a = await publish(client, a, phones(0, 60))
    seg_b = await publish(client, b, phones(0, 60))
    m = (await match(client, a, seg_a, seg_b)).json()
    task = await open_task(client, b, m["id"])
    # Time passes: the one thing the API cannot do for us.
    async with sessions() as session, session.begin():
        await session.execute(update(MatchJob).where(MatchJob.id == m["id"]).values(expires_at=utcnow()))
    assert (await client.get("/v1/tasks", headers=b.headers)).json() == []
    assert (await client.get(f"/v1/matches/{m['id']}", headers=a.headers)).json()["state"] == "expired"
    assert_problem(await client.get(f"/v1/tasks/{task['id']}/items", headers=b.headers), 409, "match-not-active")
