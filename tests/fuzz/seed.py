"""Real objects for the fuzzer to aim at: made through the public services and the partner API of a
running server, so that generated path parameters sometimes name something that exists."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from alliance.db.session import create_engine, create_session_factory
from tests.alliance.benefits.support import benefit_body, make_contract
from tests.alliance.ledger.support import owes
from tests.alliance.matches.psi_setup import Party, phones, publish, sign_contract
from tests.alliance.settlement.support import post
from tests.helpers import bearer, make_admin_key, make_brand

__all__ = ["Seeded", "seed"]


@dataclass
class Seeded:
    brand_key: str  # brand A's key: every /v1 call
    admin_key: str
    secrets: list[str] = field(default_factory=list)
    path_values: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, value: str) -> None:
        self.path_values.setdefault(name, []).append(value)


def _ok(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    body: dict[str, object] = response.json()
    return body


def _in_previous_month(day: int) -> datetime:
    first = datetime.now(UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    return (first - timedelta(days=1)).replace(day=day)


async def seed(database_url: str, base: str) -> Seeded:
    """Brands A (the fuzzer's partner key), B (its contract partner), C (PSI partner and the operator
    routes' target brand) and every kind of object a path parameter can name."""
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    try:
        a = await make_brand(sessions, "Fuzz A 模糊", "home")
        b = await make_brand(sessions, "Fuzz B", "fruit")
        c = await make_brand(sessions, "Fuzz C", "misc")
        admin = (await make_admin_key(sessions))["Authorization"].removeprefix("Bearer ")
        seeded = Seeded(brand_key=a.key, admin_key=admin)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            # PSI: a contract A-C with PSI terms, published segments and a match with open tasks.
            party_a, party_c = Party(a), Party(c)
            psi_contract = await sign_contract(
                client,  # type: ignore[arg-type]
                party_a,
                party_c,
                {"segment_tags": ["psi"], "disclosure": "cardinality"},
            )
            seg_a = await publish(client, party_a, phones(0, 1000))  # type: ignore[arg-type]
            seg_c = await publish(client, party_c, phones(500, 1000))  # type: ignore[arg-type]
            match = _ok(
                await client.post(
                    "/v1/matches", json={"segment_id": seg_a, "counterparty_segment_id": seg_c}, headers=a.headers
                ),
                201,
            )
            tasks = (await client.get("/v1/tasks", headers=a.headers)).json()
            # Benefits: a funded contract A-B, a benefit of A that B distributes, coupons, a redemption.
            contract = await make_contract(sessions, a, b)
            benefit = _ok(await client.post("/v1/benefits", json=benefit_body([b.id]), headers=a.headers), 201)
            issued = _ok(
                await client.post(f"/v1/benefits/{benefit['id']}/coupons", json={"count": 3}, headers=b.headers),
                201,
            )
            codes = [str(coupon["code"]) for coupon in issued["coupons"]]  # type: ignore[attr-defined]
            redemption = _ok(
                await client.post(
                    "/v1/redemptions",
                    json={"code": codes[0], "order_reference": "fuzz-1", "order_amount": 10_000, "channel": "store"},
                    headers={**a.headers, "Idempotency-Key": str(uuid.uuid4())},
                ),
                201,
            )
            # Referrals: A refers a member to B, B reports the purchase.
            referral = _ok(await client.post("/v1/referrals", json={"receiver_brand_id": b.id}, headers=a.headers), 201)
            conversion = _ok(
                await client.post(
                    "/v1/conversions",
                    json={
                        "token": referral["token"],
                        "order_reference": "fuzz-conv-1",
                        "order_amount": 20_000,
                        "currency": "CNY",
                    },
                    headers={**b.headers, "Idempotency-Key": str(uuid.uuid4())},
                ),
                201,
            )
            webhook = _ok(
                await client.post("/v1/webhooks", json={"url": "https://hooks.example.com/fuzz"}, headers=a.headers),
                201,
            )
            # Settlement: last month's ledger activity of A with B and C (two currencies), then close it, so
            # A's statement (JSON, CSV, PDF: Chinese names), the run and the report exist; A disputes a line.
            closed = _in_previous_month(1).strftime("%Y-%m")
            for n, (payer, payee, amount, currency) in enumerate(
                [(b, a, 10_000, "CNY"), (a, c, 2_500, "CNY"), (c, a, 700, "CNY"), (a, b, 999, "USD")]
            ):
                await post(
                    sessions,
                    f"fuzz-m{n}",
                    owes(payer.id, payee.id, amount, currency),
                    kind="coupon",
                    occurred_at=_in_previous_month(2 + n),
                    brand_id=payee.id,
                )
            _ok(await client.post(f"/admin/v1/settlements/{closed}/close", headers=bearer(admin)), 200)
            statement = _ok(await client.get(f"/v1/statements/{closed}", headers=a.headers), 200)
            for kind in ("csv", "pdf"):
                got = await client.get(f"/v1/statements/{closed}?format={kind}", headers=a.headers)
                assert got.status_code == 200, got.text
            lines: list[dict[str, object]] = statement["statement"]["lines"]  # type: ignore[index]
            dispute = _ok(
                await client.post(
                    f"/v1/statements/{closed}/disputes",
                    json={"line_id": lines[0]["line_id"], "reason": "fuzz: amount looks wrong 金额不对"},
                    headers=a.headers,
                ),
                201,
            )
            second = _ok(await client.post("/v1/api-keys", json={"label": "fuzz target"}, headers=a.headers), 201)
    finally:
        await engine.dispose()
    seeded.add("key_id", str(second["key"]["id"]))  # type: ignore[index]
    seeded.add("segment_id", seg_a)
    seeded.add("match_id", str(match["id"]))
    for task in tasks:
        seeded.add("task_id", str(task["id"]))
    seeded.add("contract_id", psi_contract)
    seeded.add("contract_id", contract.contract_id)
    seeded.add("benefit_id", str(benefit["id"]))
    seeded.add("redemption_id", str(redemption["id"]))
    seeded.add("referral_id", str(referral["id"]))
    seeded.add("conversion_id", str(conversion["id"]))
    seeded.add("webhook_id", str(webhook["webhook"]["id"]))  # type: ignore[index]
    seeded.add("brand_id", c.id)
    seeded.add("month", closed)
    seeded.add("dispute_id", str(dispute["id"]))
    seeded.add("month", datetime.now(UTC).strftime("%Y-%m"))
    seeded.secrets.extend([a.key, b.key, c.key, admin, *codes])
    return seeded
