"""End to end: two (three) partner agents, run as the ``alliance-partner`` command line (in-process, see
``tests/commands.py``; the background agents as processes of their own), against a real ``alliance serve``
(shared by the module's tests) on SQLite and PostgreSQL. They generate keys, sign contracts, publish segments of a
few thousand phone numbers with a known overlap, match them under both disclosure policies, and one of
them refuses to re-blind beyond the allowance it gave its counterparty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from privacy.blind import hash_and_blind_batch
from privacy.keys import clamp_scalar
from tests import commands
from tests.conftest import LiveServer
from tests.helpers import BrandHandle, make_brand

PARTNER_PROCESS = [sys.executable, "-m", "alliance.partner.cli"]
EPOCH = "2026-11"


def phone(i: int) -> str:
    return f"138{i:08d}"  # a valid CN mobile number; canonical form +86138...


@pytest.fixture
def server(live_server: LiveServer) -> str:
    return live_server.base


class Brand:
    """One brand's agent home and the environment its command line runs with."""

    def __init__(self, handle: BrandHandle, base: str, home: Path) -> None:
        self.handle = handle
        self.id = handle.id
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
        self.env.update(
            ALLIANCE_URL=base,
            ALLIANCE_API_KEY=handle.key,
            ALLIANCE_AGENT_HOME=str(home),
            ALLIANCE_AGENT_PASSPHRASE=f"passphrase of {handle.id}",
        )
        self.home = home

    def cli(self, *args: str, ok: bool = True) -> commands.CommandResult:
        done = commands.run(commands.PARTNER, args, self.env)
        if ok:
            assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def background_agent(self) -> subprocess.Popen[str]:
        """The agent as brands run it: a long-lived process of its own, beside the command line."""
        return subprocess.Popen(
            [*PARTNER_PROCESS, "agent", "--poll", "0.2", "--quiet"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )


def contract(base: str, proposer: Brand, other: Brand, psi: dict[str, Any]) -> str:
    proposal = {
        "parties": [proposer.id, other.id],
        "settlement_currency": "CNY",
        "effective_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "coupon_commission": {"kind": "fixed", "amount": 0},
        "referral": {"kind": "fixed", "amount": 0},
        "psi": psi,
    }
    response = httpx.post(f"{base}/v1/contracts", json=proposal, headers=proposer.handle.headers)
    assert response.status_code == 201, response.text
    contract_id = str(response.json()["contract_id"])
    for brand in (proposer, other):
        brand.cli("sign-contract", contract_id)
    return contract_id


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        _, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err


@pytest.fixture
async def handles(sessions: async_sessionmaker[AsyncSession]) -> list[BrandHandle]:
    names = ("Tea House 茶馆", "Book Store 书店", "Gym 健身")
    return [await make_brand(sessions, name, "retail") for name in names]


def test_two_agents_match_in_both_modes_and_keep_to_their_budget(
    server: str, handles: list[BrandHandle], tmp_path: Path
) -> None:
    a, b, c = (Brand(h, server, tmp_path / f"agent-{i}") for i, h in enumerate(handles))
    for brand in (a, b, c):
        assert "registered" in brand.cli("keygen", "--epoch", EPOCH, "--register").stdout
    contract(server, a, b, {"segment_tags": ["psi"], "disclosure": "cardinality", "min_k": 100})
    contract(server, a, c, {"segment_tags": ["psi"], "disclosure": f"membership_to:{a.id}", "min_k": 100})
    a.cli("allow", b.id, "--limit", "100000")
    a.cli("allow", c.id, "--limit", "100000")
    b.cli("allow", a.id, "--limit", "5000")  # enough for one match with A's 3,000, not two
    c.cli("allow", a.id, "--limit", "100000")

    # A: a CSV with a header, 3,000 valid numbers and three rows that do not normalise.
    a_file = tmp_path / "a.csv"
    rows = ["id,mobile"] + [f"{i},{phone(i)}" for i in range(3000)] + ["x,not a phone", "y,", "z,12"]
    a_file.write_text("\n".join(rows) + "\n")
    published_a = a.json(
        "publish",
        str(a_file),
        "--column",
        "mobile",
        "--id-type",
        "phone",
        "--name",
        "members",
        "--tag",
        "psi",
        "--epoch",
        EPOCH,
    )
    assert published_a["size"] == 3000
    assert published_a["rejected"] == {"invalid_phone": 2, "empty": 1}
    # B: one number per line, 1,200 of them in A's set (with +86 and spaces: normalisation makes them equal).
    b_file = tmp_path / "b.txt"
    b_file.write_text("\n".join(f"+86 {phone(i)}" for i in range(1800, 4800)) + "\n")
    seg_b = b.json("publish", str(b_file), "--id-type", "phone", "--name", "readers", "--tag", "psi", "--epoch", EPOCH)[
        "segment_id"
    ]
    c_file = tmp_path / "c.txt"
    c_file.write_text("\n".join(phone(i) for i in range(2500, 4500)) + "\n")  # 500 in common with A
    seg_c = c.json("publish", str(c_file), "--id-type", "phone", "--name", "gym", "--tag", "psi", "--epoch", EPOCH)[
        "segment_id"
    ]

    agents = [b.background_agent(), c.background_agent()]
    try:
        # Cardinality: both learn the count, nobody learns rows.
        m1 = a.json("match", "--segment", published_a["segment_id"], "--counterparty-segment", seg_b)
        assert m1["state"] == "done"
        assert m1["result"]["count"] == 1200
        assert not m1["result"]["suppressed"]
        seen_by_b = httpx.get(f"{server}/v1/matches/{m1['id']}/result", headers=b.handle.headers).json()
        assert seen_by_b["count"] == 1200

        # Membership to A: A gets exactly its rows in common with C, as its own member ids.
        out = tmp_path / "common.txt"
        m2 = a.json(
            "match", "--segment", published_a["segment_id"], "--counterparty-segment", seg_c, "--output", str(out)
        )
        assert m2["result"]["report"]["report"]["overlap_count"] == 500
        assert sorted(out.read_text().split()) == sorted(phone(i) for i in range(2500, 3000))
        seen_by_c = httpx.get(f"{server}/v1/matches/{m2['id']}/result", headers=c.handle.headers).json()
        assert seen_by_c["type"] == "membership"
        assert seen_by_c["report"]["report"]["overlap_count"] == 500
        assert seen_by_c["report"]["report"]["reporting_brand"] == a.id

        # A second segment of A, changed enough to be matched again: B's agent has 2,000 of its 5,000
        # items left for A this epoch, refuses, logs it and the match fails for both.
        a2_file = tmp_path / "a2.txt"
        a2_file.write_text("\n".join(phone(i) for i in range(100, 3100)) + "\n")
        seg_a2 = a.json(
            "publish", str(a2_file), "--id-type", "phone", "--name", "members v2", "--tag", "psi", "--epoch", EPOCH
        )["segment_id"]
        refused = a.cli("match", "--segment", seg_a2, "--counterparty-segment", seg_b, ok=False)
        assert refused.returncode == 1
        assert "failed" in refused.stderr
        assert "budget" in refused.stderr
    finally:
        errors = [stop(p) for p in agents]
    assert "refused task" in errors[0]
    log = [json.loads(line) for line in (b.home / "agent.log").read_text().splitlines()]
    assert log[-1]["event"] == "refuse"
    assert "exceeds the remaining 2000" in log[-1]["reason"]
    # Nothing was re-blinded for the refused match: B's allowance still shows 3,000 used.
    assert json.loads((b.home / "allowances.json").read_text())["used"][0]["used"] == 3000


def test_chunked_uploads_are_counted_as_they_stream(server: str, handles: list[BrandHandle]) -> None:
    brand = handles[0]
    created = httpx.post(
        f"{server}/v1/segments",
        json={"name": "s", "id_type": "phone", "size": 1000, "key_epoch": EPOCH},
        headers=brand.headers,
    ).json()
    ids = [b"phone:+86137%08d" % i for i in range(1001)]
    data = hash_and_blind_batch(b"demo-alliance", clamp_scalar(os.urandom(32)), ids)
    url = f"{server}/v1/segments/{created['id']}/items"
    headers = {**brand.headers, "Content-Type": "application/octet-stream"}

    def chunked(body: bytes) -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
        for i in range(0, len(body), 7000):
            yield body[i : i + 7000]

    too_many = httpx.put(url, content=chunked(data), headers=headers)
    assert too_many.status_code == 413, too_many.text
    assert too_many.json()["type"] == "urn:bax:problem:too-many-items"
    ragged = httpx.put(url, content=chunked(data[: 1000 * 32 - 5]), headers=headers)
    assert ragged.status_code == 400
    assert httpx.get(f"{server}/v1/segments/{created['id']}", headers=brand.headers).json()["item_count"] == 0
    good = httpx.put(url, content=chunked(data[: 1000 * 32]), headers=headers)
    assert good.status_code == 200, good.text
    assert good.json()["item_count"] == 1000
