"""The demo's closing summary: overlap matrix, activity per brand and the month's net positions."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from rich.console import Console
from rich.table import Table

from alliance.demo.scenario import DemoResult

__all__ = ["print_summary", "summary_document"]


def _money(minor: int) -> str:
    return f"{minor / 100:,.2f}"


def summary_document(result: DemoResult) -> dict[str, Any]:
    """The summary as JSON-ready data (``alliance demo --json``): what the tables show, in minor units."""
    names = {b.id: b.name for b in result.brands}
    return {
        "month": result.month,
        "console_url": f"{result.base_url}/console",
        "logins": {"admin": result.admin_password, "auditor": result.auditor_password},
        "brands": [{"id": b.id, "key": b.key, "name": b.name, "published": b.published} for b in result.brands],
        "overlaps": [
            {"brands": sorted(names_of(result, pair)), **(match.get("result") or {})}
            for pair, match in sorted(result.matches.items(), key=lambda item: sorted(item[0]))
        ],
        "activity": {names[brand_id]: counts for brand_id, counts in result.activity.items() if brand_id in names},
        "net_positions": [
            {"brand_id": p.brand_id, "brand": names.get(p.brand_id, p.brand_id), "net": p.net, "currency": p.currency}
            for p in sorted(result.run.net_positions, key=lambda p: p.net)
        ],
        "ledger_transactions": result.run.transactions,
        "statements": result.run.statements,
        "digest": result.run.digest,
        "seconds": {name: round(value, 3) for name, value in result.seconds.items()},
    }


def names_of(result: DemoResult, pair: frozenset[str]) -> list[str]:
    return [b.name for b in result.brands if b.key in pair]


def print_summary(result: DemoResult, console: Console) -> None:
    brands = result.brands
    short = {b.key: b.name.split(" ", 1)[1] if " " in b.name else b.name for b in brands}

    overlap = Table(title="Audience overlap (released PSI counts; members published per brand on the diagonal)")
    overlap.add_column("")
    for b in brands:
        overlap.add_column(short[b.key], justify="right")
    cells: dict[tuple[str, str], str] = {}
    for a, b in combinations(brands, 2):
        match = result.matches[frozenset((a.key, b.key))]
        released = match.get("result") or {}
        text = "< min-k" if released.get("suppressed") else f"{released.get('count', 0):,}"
        cells[(a.key, b.key)] = cells[(b.key, a.key)] = text
    for a in brands:
        overlap.add_row(
            short[a.key], *[f"[bold]{a.published:,}[/]" if a is b else cells[(a.key, b.key)] for b in brands]
        )
    console.print(overlap)

    activity = Table(title=f"Activity in {result.month} (CNY)")
    for name in (
        "brand",
        "coupons distributed",
        "redeemed at it",
        "refunds",
        "referrals sent",
        "conversions at it",
        "GMV",
    ):
        activity.add_column(name, justify="left" if name == "brand" else "right")
    for b in brands:
        s = result.activity[b.id]
        activity.add_row(
            b.name,
            f"{s['issued']:,}",
            f"{s['redemptions']:,}",
            f"{s['refunds']:,}",
            f"{s['referrals']:,}",
            f"{s['conversions']:,}",
            _money(s["gmv"]),
        )
    console.print(activity)

    names = {b.id: b.name for b in brands}
    received: dict[str, int] = {}
    paid: dict[str, int] = {}
    for flow in result.run.pair_flows:
        received[flow.payee] = received.get(flow.payee, 0) + flow.amount
        paid[flow.payer] = paid.get(flow.payer, 0) + flow.amount
    positions = Table(title=f"Net positions {result.month} (closed; statements signed by the exchange)")
    positions.add_column("brand")
    positions.add_column("owed to it", justify="right")
    positions.add_column("owed by it", justify="right")
    positions.add_column("net position", justify="right")
    total = 0
    for position in sorted(result.run.net_positions, key=lambda p: p.net):
        total += position.net
        positions.add_row(
            names.get(position.brand_id, position.brand_id),
            _money(received.get(position.brand_id, 0)),
            _money(paid.get(position.brand_id, 0)),
            f"{_money(position.net)} {position.currency}",
        )
    positions.add_row("[bold]sum[/]", "", "", f"[bold]{_money(total)}[/]")
    console.print(positions)
    console.print(
        f"{result.run.transactions:,} ledger transactions in {result.month}, {result.run.statements} statements, "
        f"digest {result.run.digest[:16]}..."
    )
