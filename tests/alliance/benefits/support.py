"""Shared setup for the benefits, referrals and webhooks tests: contracts signed with real Ed25519 keys
through the contracts service, benefits, coupons and redemptions through the partner API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.contracts import service as contract_service
from alliance.contracts.schemas import ContractProposal
from tests.helpers import TEST_AUDIT, BrandHandle

__all__ = [
    "Contract",
    "benefit_body",
    "idem",
    "issue",
    "make_contract",
    "publish",
    "redeem",
]


@dataclass
class Contract:
    contract_id: str
    version: int
    terms: contracts.ContractTerms


def idem() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def _signing_key(session: AsyncSession, brand: BrandHandle) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    await contract_service.register_signing_key(session, TEST_AUDIT, brand.id, contracts.public_key_bytes(key))
    return key


async def make_contract(
    sessions: async_sessionmaker[AsyncSession],
    funder: BrandHandle,
    distributor: BrandHandle,
    *,
    benefit: str = contracts.ANY_BENEFIT,
    distributor_bp: int = 3_000,
    coupon_commission: contracts.CommissionRule | None = None,
    referral: contracts.CommissionRule | None = None,
    attribution_window_seconds: int = 30 * 86_400,
    currency: str = "CNY",
) -> Contract:
    """A contract between two brands, proposed by ``funder`` and signed by both with real Ed25519 keys,
    in force from a minute ago; ``funder`` funds ``benefit`` (default: all its benefits) and
    ``distributor`` hands it out, bearing ``distributor_bp`` of each discount."""
    async with sessions() as session, session.begin():
        funder_key = await _signing_key(session, funder)
        distributor_key = await _signing_key(session, distributor)
        proposal = ContractProposal(
            parties=(funder.id, distributor.id),
            settlement_currency=currency,
            effective_from=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1),
            coupon_commission=coupon_commission or contracts.RateCommission(rate_bp=200),
            referral=referral or contracts.FixedCommission(amount=500),
            attribution_window_seconds=attribution_window_seconds,
            funding=(
                contracts.FundingSplit(
                    benefit=benefit,
                    funding_brand=funder.id,
                    distributor_brand=distributor.id,
                    funding_brand_bp=10_000 - distributor_bp,
                    distributor_bp=distributor_bp,
                ),
            ),
        )
        proposed = await contract_service.propose_contract(session, TEST_AUDIT, funder.id, proposal)
        terms = proposed.versions[0].terms
        for brand, key in ((funder, funder_key), (distributor, distributor_key)):
            await contract_service.sign_version(
                session, TEST_AUDIT, brand.id, terms.contract_id, 1, contracts.sign_terms(key, terms)
            )
    return Contract(terms.contract_id, 1, terms)


def benefit_body(distributor_ids: list[str], **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "10 yuan off bedding 床品立减",
        "tags": ["home", "spring"],
        "value_kind": "fixed",
        "value": 1_000,
        "min_spend": 5_000,
        "currency": "CNY",
        "valid_to": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        "budget_amount": 1_000_000,
        "budget_count": 1_000,
        "channels": ["store", "online"],
        "distributors": distributor_ids,
    }
    body.update(changes)
    return body


async def publish(
    client: AsyncTestClient[Litestar], funder: BrandHandle, distributors: list[BrandHandle], **changes: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/benefits", json=benefit_body([d.id for d in distributors], **changes), headers=funder.headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def issue(
    client: AsyncTestClient[Litestar], distributor: BrandHandle, benefit_id: str, count: int = 1
) -> list[str]:
    response = await client.post(
        f"/v1/benefits/{benefit_id}/coupons", json={"count": count}, headers=distributor.headers
    )
    assert response.status_code == 201, response.text
    return [c["code"] for c in response.json()["coupons"]]


async def redeem(
    client: AsyncTestClient[Litestar], funder: BrandHandle, code: str, amount: int = 10_000, **changes: Any
) -> Any:
    body: dict[str, Any] = {"code": code, "order_reference": f"ord-{uuid.uuid4().hex[:12]}", "order_amount": amount}
    body["channel"] = "store"
    body.update(changes)
    return await client.post("/v1/redemptions", json=body, headers={**funder.headers, **idem()})
