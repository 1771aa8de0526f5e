"""The partner agent's benefit commands against the real server: list, issue, redeem (and retry),
reverse, refer, convert. The commands run in-process (``tests/commands.py``) against ``alliance serve``."""

from __future__ import annotations

import json
from pathlib import Path

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import commands
from tests.alliance.benefits.support import make_contract, publish
from tests.conftest import Database, LiveServer
from tests.helpers import BrandHandle


async def _run(base: str, brand: BrandHandle, *args: str) -> commands.CommandResult:
    env = {"ALLIANCE_URL": base, "ALLIANCE_API_KEY": brand.key, "PATH": "/usr/bin:/bin"}
    return await commands.run_async(commands.PARTNER, args, env)


async def test_issue_redeem_reverse_refer_convert_from_the_command_line(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    live_server: LiveServer,
    tmp_path: Path,
) -> None:
    await make_contract(sessions, brand_a, brand_b)
    benefit = await publish(client, brand_a, [brand_b])
    base = live_server.base
    listed = await _run(base, brand_b, "benefits")
    assert listed.returncode == 0, listed.stderr
    assert benefit["id"] in listed.stdout and "10.00 CNY off" in listed.stdout

    out = tmp_path / "codes.txt"
    issued = await _run(base, brand_b, "coupons", "issue", benefit["id"], "--count", "3", "--out", str(out))
    assert issued.returncode == 0, issued.stderr
    assert "issued 3 coupon(s)" in issued.stdout
    codes = out.read_text().split()
    assert len(codes) == 3

    redeemed = await _run(
        base, brand_a, "redeem", codes[0], "--order", "till-9", "--amount", "12000", "--idempotency-key", "k-9"
    )
    assert redeemed.returncode == 0, redeemed.stderr
    assert "redeemed: 10.00 CNY off order till-9 (120.00 CNY)" in redeemed.stdout
    again = await _run(
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
        (await _run(base, brand_a, "redeem", codes[1], "--order", "t-2", "--amount", "6000", "--json")).stdout
    )
    assert json.loads(again.stdout)["order_reference"] == "till-9"
    refused = await _run(base, brand_a, "redeem", codes[0], "--order", "till-10", "--amount", "12000")
    assert refused.returncode == 1
    assert "urn:bax:problem:coupon-already-redeemed" in refused.stderr
    assert "Traceback" not in refused.stderr
    typo = await _run(
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

    reversed_ = await _run(base, brand_a, "reverse", first["id"], "--amount", "3000")
    assert reversed_.returncode == 0, reversed_.stderr
    assert "partly reversed" in reversed_.stdout and "30.00 CNY" in reversed_.stdout

    referred = await _run(base, brand_a, "refer", brand_b.id, "--member", "m-1", "--json")
    assert referred.returncode == 0, referred.stderr
    token = json.loads(referred.stdout)["token"]
    converted = await _run(base, brand_b, "convert", token, "--order", "po-1", "--amount", "20000", "--currency", "CNY")
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
    listed = await commands.run_async(commands.ALLIANCE, ["benefit", "list", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["distributors"]) == (benefit["id"], [brand_b.id])
    delivered = await commands.run_async(commands.ALLIANCE, ["webhooks", "deliver", "--once"], env)
    assert delivered.returncode == 0, delivered.stderr
    assert "0 webhook delivery attempt(s) made" in delivered.stdout
