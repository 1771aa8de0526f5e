"""The partner agent's benefit commands against the real server: list, issue, redeem (and retry),
reverse, refer, convert."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.alliance.benefits.support import make_contract, publish, running_server
from tests.conftest import Database, selected_backends
from tests.helpers import BrandHandle

PARTNER = [sys.executable, "-m", "alliance.partner.cli"]


@pytest.fixture(autouse=True)
def one_backend(request: pytest.FixtureRequest, database: Database) -> None:
    """The command line behaves the same on either backend: run these subprocess-heavy tests once."""
    if database.backend != selected_backends(request.config)[0]:
        pytest.skip("backend-independent: runs on the first selected backend only")


def _run(base: str, brand: BrandHandle, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"ALLIANCE_URL": base, "ALLIANCE_API_KEY": brand.key, "PATH": "/usr/bin:/bin"}
    return subprocess.run([*PARTNER, *args], env=env, capture_output=True, text=True, timeout=60)


async def test_issue_redeem_reverse_refer_convert_from_the_command_line(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    database: Database,
    tmp_path: Path,
) -> None:
    await make_contract(sessions, brand_a, brand_b)
    benefit = await publish(client, brand_a, [brand_b])
    with running_server(database.url, tmp_path / "server.log") as base:
        listed = _run(base, brand_b, "benefits")
        assert listed.returncode == 0, listed.stderr
        assert benefit["id"] in listed.stdout and "10.00 CNY off" in listed.stdout

        out = tmp_path / "codes.txt"
        issued = _run(base, brand_b, "coupons", "issue", benefit["id"], "--count", "3", "--out", str(out))
        assert issued.returncode == 0, issued.stderr
        assert "issued 3 coupon(s)" in issued.stdout
        codes = out.read_text().split()
        assert len(codes) == 3

        redeemed = _run(
            base, brand_a, "redeem", codes[0], "--order", "till-9", "--amount", "12000", "--idempotency-key", "k-9"
        )
        assert redeemed.returncode == 0, redeemed.stderr
        assert "redeemed: 10.00 CNY off order till-9 (120.00 CNY)" in redeemed.stdout
        again = _run(
            base,
            brand_a,
            "redeem",
            codes[0],
            "--order",
            "till-9",
            "--amount",
            "12000",
            "--idempotency-key",
            "k-9",
            "--json",
        )
        first = json.loads(
            _run(base, brand_a, "redeem", codes[1], "--order", "t-2", "--amount", "6000", "--json").stdout
        )
        assert json.loads(again.stdout)["order_reference"] == "till-9"
        refused = _run(base, brand_a, "redeem", codes[0], "--order", "till-10", "--amount", "12000")
        assert refused.returncode == 1
        assert "urn:bax:problem:coupon-already-redeemed" in refused.stderr
        assert "Traceback" not in refused.stderr
        typo = _run(
            base,
            brand_a,
            "redeem",
            codes[2][:-1] + ("0" if codes[2][-1] != "0" else "1"),
            "--order",
            "x",
            "--amount",
            "9000",
        )
        assert "urn:bax:problem:malformed-coupon-code" in typo.stderr

        reversed_ = _run(base, brand_a, "reverse", first["id"], "--amount", "3000")
        assert reversed_.returncode == 0, reversed_.stderr
        assert "partly reversed" in reversed_.stdout and "30.00 CNY" in reversed_.stdout

        referred = _run(base, brand_a, "refer", brand_b.id, "--member", "m-1", "--json")
        assert referred.returncode == 0, referred.stderr
        token = json.loads(referred.stdout)["token"]
        converted = _run(base, brand_b, "convert", token, "--order", "po-1", "--amount", "20000", "--currency", "CNY")
        assert converted.returncode == 0, converted.stderr
        assert "commission 5.00 CNY to " + brand_a.id in converted.stdout


async def test_operator_cli_lists_benefits_and_delivers_webhooks(
    client: AsyncTestClient[Litestar],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    database: Database,
) -> None:
    benefit = await publish(client, brand_a, [brand_b])
    env = {"ALLIANCE_DATABASE_URL": database.url, "PATH": "/usr/bin:/bin"}
    alliance = [sys.executable, "-m", "alliance.cli"]
    listed = subprocess.run(  # noqa: ASYNC221 - a short CLI call is the thing under test
        [*alliance, "benefit", "list", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["distributors"]) == (benefit["id"], [brand_b.id])
    delivered = subprocess.run(  # noqa: ASYNC221
        [*alliance, "webhooks", "deliver", "--once"], env=env, capture_output=True, text=True, timeout=60
    )
    assert delivered.returncode == 0, delivered.stderr
    assert "0 webhook delivery attempt(s) made" in delivered.stdout
