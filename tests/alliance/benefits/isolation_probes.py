"""Isolation probes for the benefits, redemptions, referrals and webhooks routes (brand B aims at
brand A's objects; see tests/alliance/test_isolation.py).

A probe's setup only has brand A, so objects that need a second brand (coupons, redemptions, referrals,
conversions: all under a contract) are probed with ids and codes that do not exist for B, which must
answer exactly as for A's real ones (404); the real cross-brand cases are tested in the domain tests
(``test_redemption.py``, ``test_referrals.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import AsyncTestClient

from alliance.benefits import codes
from alliance.referrals import tokens
from tests.helpers import BrandHandle
from tests.isolation import Probe


def _benefit_body() -> dict[str, object]:
    return {
        "name": "B's own benefit",
        "value_kind": "fixed",
        "value": 500,
        "currency": "CNY",
        "valid_to": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
        "budget_amount": 100_000,
        "budget_count": 100,
        "channels": ["online"],
    }


async def a_benefit(client: AsyncTestClient[Litestar], a: BrandHandle) -> dict[str, str]:
    response = await client.post("/v1/benefits", json=_benefit_body(), headers=a.headers)
    assert response.status_code == 201, response.text
    return {"benefit_id": response.json()["id"]}


async def benefit_unchanged(client: AsyncTestClient[Litestar], a: BrandHandle, params: dict[str, str]) -> None:
    benefit = (await client.get(f"/v1/benefits/{params['benefit_id']}", headers=a.headers)).json()
    assert benefit["status"] == "active"
    assert benefit["issued_count"] == 0
    assert benefit["distributors"] == []


async def a_webhook(client: AsyncTestClient[Litestar], a: BrandHandle) -> dict[str, str]:
    response = await client.post("/v1/webhooks", json={"url": "https://hooks.example.com/bax"}, headers=a.headers)
    assert response.status_code == 201, response.text
    return {"webhook_id": response.json()["webhook"]["id"]}


async def webhook_unchanged(client: AsyncTestClient[Litestar], a: BrandHandle, params: dict[str, str]) -> None:
    webhook = (await client.get(f"/v1/webhooks/{params['webhook_id']}", headers=a.headers)).json()
    assert webhook["status"] == "active"
    deliveries = (await client.get(f"/v1/webhooks/{params['webhook_id']}/deliveries", headers=a.headers)).json()
    assert deliveries == []


def _missing(**ids: str):  # type: ignore[no-untyped-def]
    async def setup(client: AsyncTestClient[Litestar], a: BrandHandle) -> dict[str, str]:
        await a_benefit(client, a)
        return dict(ids)

    return setup


def _foreign_token() -> str:
    now = int(datetime.now(UTC).timestamp())
    payload = tokens.TokenPayload(
        rid="ref_notyours", frm="brd_a", to="brd_someoneelse", iat=now, exp=now + 60, kid="xk"
    )
    return tokens.sign_token(Ed25519PrivateKey.generate(), payload)


PROBES: dict[tuple[str, str], Probe] = {
    ("GET", "/v1/benefits"): Probe(),
    ("POST", "/v1/benefits"): Probe(body=_benefit_body()),
    ("GET", "/v1/benefits/{benefit_id}"): Probe(setup=a_benefit, verify=benefit_unchanged),
    ("POST", "/v1/benefits/{benefit_id}/pause"): Probe(setup=a_benefit, verify=benefit_unchanged),
    ("POST", "/v1/benefits/{benefit_id}/resume"): Probe(setup=a_benefit, verify=benefit_unchanged),
    ("POST", "/v1/benefits/{benefit_id}/end"): Probe(setup=a_benefit, verify=benefit_unchanged),
    ("PUT", "/v1/benefits/{benefit_id}/distributors"): Probe(
        setup=a_benefit, verify=benefit_unchanged, body={"distributors": []}
    ),
    ("POST", "/v1/benefits/{benefit_id}/coupons"): Probe(setup=a_benefit, verify=benefit_unchanged, body={"count": 1}),
    ("GET", "/v1/redemptions"): Probe(),
    ("POST", "/v1/redemptions"): Probe(
        setup=_missing(code="not-yours"),
        body={
            "code": codes.display(codes.generate_code()),
            "order_reference": "o-1",
            "order_amount": 10_000,
            "channel": "store",
        },
    ),
    ("GET", "/v1/redemptions/{redemption_id}"): Probe(setup=_missing(redemption_id="rdm_0000000000000000")),
    ("POST", "/v1/redemptions/{redemption_id}/reversal"): Probe(
        setup=_missing(redemption_id="rdm_0000000000000000"), body={}
    ),
    ("POST", "/v1/referrals"): Probe(
        setup=_missing(receiver="not-a-brand"), body={"receiver_brand_id": "brd_0000000000000000"}
    ),
    ("GET", "/v1/referrals/signing-key"): Probe(),
    ("GET", "/v1/referrals/{referral_id}"): Probe(setup=_missing(referral_id="ref_0000000000000000")),
    ("POST", "/v1/conversions"): Probe(
        setup=_missing(token="foreign"),
        body={"token": _foreign_token(), "order_reference": "o-1", "order_amount": 100, "currency": "CNY"},
    ),
    ("GET", "/v1/conversions/{conversion_id}"): Probe(setup=_missing(conversion_id="cnv_0000000000000000")),
    ("POST", "/v1/webhooks"): Probe(body={"url": "https://b.example.com/hook"}),
    ("GET", "/v1/webhooks"): Probe(),
    ("GET", "/v1/webhooks/{webhook_id}"): Probe(setup=a_webhook, verify=webhook_unchanged),
    ("DELETE", "/v1/webhooks/{webhook_id}"): Probe(setup=a_webhook, verify=webhook_unchanged),
    ("POST", "/v1/webhooks/{webhook_id}/ping"): Probe(setup=a_webhook, verify=webhook_unchanged),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): Probe(setup=a_webhook, verify=webhook_unchanged),
}
