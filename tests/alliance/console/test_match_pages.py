"""Matching pages: match jobs with the released overlap, segments, and the overlap heat map - counts
only as the disclosure policy released them (below k: suppressed, never zero), never an identifier or a
blinded point. Data comes from real matches run through the partner API (agents played by the test)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.console import alliance_queries
from tests.alliance.console.console_helpers import ConsoleUser, sign_in
from tests.alliance.matches.psi_setup import Party, do_reblind, phones, publish, sign_contract
from tests.helpers import BrandHandle, make_brand

Client = AsyncTestClient[Litestar]
_CELL = re.compile(r'<td class="heat [^"]*" data-kind="(\w+)"[^>]*>([^<]*)')


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLIANCE_PSI_MIN_SEGMENT_SIZE", "50")
    monkeypatch.setenv("ALLIANCE_PSI_MIN_MEMBER_CHANGE", "20")


@dataclass
class Seeded:
    a: Party
    b: Party
    c: Party
    points: list[bytes]  # blinded points that were uploaded: none may appear on a page


async def _match(client: Client, requester: Party, other: Party, seg: str, other_seg: str) -> str:
    created = await client.post(
        "/v1/matches", json={"segment_id": seg, "counterparty_segment_id": other_seg}, headers=requester.headers
    )
    assert created.status_code == 201, created.text
    match_id = str(created.json()["id"])
    await do_reblind(client, other, match_id)
    await do_reblind(client, requester, match_id)
    return match_id


async def _seed(client: Client, brand_a: BrandHandle, brand_b: BrandHandle, brand_c: BrandHandle) -> Seeded:
    """A-B: 120 in common, released (k=10). A-C: 20 in common, below k=100: suppressed. B-C: never."""
    a, b, c = Party(brand_a), Party(brand_b), Party(brand_c)
    await sign_contract(client, a, b, {"segment_tags": ["psi"], "disclosure": "cardinality", "min_k": 10})
    await sign_contract(client, a, c, {"segment_tags": ["psi"], "disclosure": "cardinality", "min_k": 100})
    seg_a = await publish(client, a, phones(0, 300))
    seg_b = await publish(client, b, phones(180, 200))
    seg_c = await publish(client, c, phones(280, 150))
    await _match(client, a, b, seg_a, seg_b)
    await _match(client, c, a, seg_c, seg_a)
    points = [a.blind(phones(0, 3)), c.blind(phones(280, 3))]
    return Seeded(a, b, c, [p[i : i + 32] for p in points for i in range(0, len(p), 32)])


def _no_secrets(html: str, seeded: Seeded) -> None:
    for point in seeded.points:
        assert point.hex() not in html
        assert base64.b64encode(point).decode() not in html
        assert base64.urlsafe_b64encode(point).decode().rstrip("=") not in html
    assert "phone:" not in html and "+86138" not in html


async def test_jobs_segments_and_overlap_show_only_what_was_released(
    web: Client,
    auditor: ConsoleUser,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    brand_c = await make_brand(sessions, "Lingo School 语言学校", "education")
    seeded = await _seed(web, brand_a, brand_b, brand_c)
    await sign_in(web, auditor)  # read-only pages: the auditor sees them all

    jobs = await web.get("/console/matches")
    assert jobs.status_code == 200
    assert jobs.text.count("<tr>") - 1 == 2  # header row + two jobs
    assert ">120<" in jobs.text
    assert "suppressed (below k=100)" in jobs.text
    assert "300 / 200" in jobs.text and "150 / 300" in jobs.text
    assert "count only" in jobs.text and "done" in jobs.text
    _no_secrets(jobs.text, seeded)

    segments = await web.get("/console/matches/segments")
    assert segments.status_code == 200
    assert segments.text.count("published") >= 3
    for size in ("300", "200", "150"):
        assert f'<td class="num">{size}</td>' in segments.text
    _no_secrets(segments.text, seeded)
    only_c = await web.get(f"/console/matches/segments?brand={brand_c.id}")
    assert '<td class="num">150</td>' in only_c.text and '<td class="num">300</td>' not in only_c.text

    overlap = await web.get("/console/matches/overlap")
    assert overlap.status_code == 200
    cells = _CELL.findall(overlap.text)
    # 3 brands: 6 off-diagonal cells, each pair twice (symmetric)
    kinds = sorted(kind for kind, _ in cells)
    assert kinds == ["count", "count", "never", "never", "suppressed", "suppressed"]
    assert {text for kind, text in cells if kind == "count"} == {"120"}
    assert {text for kind, text in cells if kind == "suppressed"} == {"&lt; k"}
    assert "0" not in {text for kind, text in cells if kind == "suppressed"}
    _no_secrets(overlap.text, seeded)


async def test_matrix_cells_in_the_query(
    client: Client, brand_a: BrandHandle, brand_b: BrandHandle, sessions: async_sessionmaker[AsyncSession]
) -> None:
    brand_c = await make_brand(sessions, "Lingo School 语言学校", "education")
    await _seed(client, brand_a, brand_b, brand_c)
    async with sessions() as session:
        matrix = await alliance_queries.overlap_matrix(session)
        small = await alliance_queries.overlap_matrix(session, limit=2)
        jobs = await alliance_queries.match_page(session, limit=1)
        rest = await alliance_queries.match_page(session, before=jobs.next_before, limit=1)
    assert matrix.cell(brand_a.id, brand_b.id).count == 120
    assert matrix.cell(brand_b.id, brand_a.id).kind == "count"
    assert matrix.cell(brand_a.id, brand_c.id).kind == "suppressed"
    assert matrix.cell(brand_a.id, brand_c.id).count is None
    assert matrix.cell(brand_b.id, brand_c.id).kind == "never"
    assert matrix.cell(brand_a.id, brand_a.id).kind == "self"
    assert matrix.cell(brand_a.id, brand_b.id).level == 5
    assert (len(small.brands), small.more_brands) == (2, 1)
    assert len(jobs.rows) == len(rest.rows) == 1 and rest.next_before is None
    assert jobs.rows[0].match.id != rest.rows[0].match.id


async def test_empty_states_say_what_to_do_next(web: Client, admin: ConsoleUser) -> None:
    await sign_in(web, admin)
    expected: dict[str, Any] = {
        "/console/matches": "alliance-partner match",
        "/console/matches/segments": "alliance-partner publish",
        "/console/matches/overlap": "onboard at least two active brands",
    }
    for path, hint in expected.items():
        page = await web.get(path)
        assert page.status_code == 200, path
        assert hint in page.text, path
