"""Helpers for contract tests and probes: keys, proposals and signatures made the way a partner agent
makes them (through the public API or the public services), never by writing rows."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.brands import service as brands
from alliance.contracts import service as contract_service
from alliance.contracts.schemas import ContractProposal
from alliance.db.session import create_engine, create_session_factory
from tests.helpers import TEST_AUDIT, BrandHandle

START = datetime(2026, 1, 1, tzinfo=UTC)


def proposal_body(parties: list[str], **overrides: Any) -> dict[str, Any]:
    """A valid proposal: CNY, 2% coupon commission capped at 500 per event, 10.00 per referral."""
    first, second = parties
    body: dict[str, Any] = {
        "parties": parties,
        "settlement_currency": "CNY",
        "effective_from": START.isoformat().replace("+00:00", "Z"),
        "funding": [
            {
                "benefit": "*",
                "funding_brand": first,
                "distributor_brand": second,
                "funding_brand_bp": 7000,
                "distributor_bp": 3000,
            }
        ],
        "coupon_commission": {"kind": "rate", "rate_bp": 200, "per_event_cap": 500},
        "referral": {"kind": "fixed", "amount": 1000},
        "psi": {"segment_tags": ["vip"], "disclosure": "cardinality", "min_k": 100},
    }
    body.update(overrides)
    return body


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def public_key_of(key: Ed25519PrivateKey) -> bytes:
    return contracts.public_key_bytes(key)


async def register_key(client: AsyncTestClient[Litestar], brand: BrandHandle) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    response = await client.put("/v1/signing-key", json={"public_key": b64(public_key_of(key))}, headers=brand.headers)
    assert response.status_code == 200, response.text
    return key


def terms_from(version: dict[str, Any]) -> contracts.ContractTerms:
    """What an agent does before signing: decode the served terms and check the canonical bytes match."""
    terms = msgspec.convert(version["terms"], contracts.ContractTerms, strict=False)
    assert contracts.canonical_bytes(terms) == base64.b64decode(version["canonical"])
    return terms


def signature_for(key: Ed25519PrivateKey, version: dict[str, Any]) -> str:
    return b64(contracts.sign_terms(key, terms_from(version)))


async def contract_in_force(
    client: AsyncTestClient[Litestar],
    a: BrandHandle,
    b: BrandHandle,
    **overrides: Any,
) -> dict[str, Any]:
    """Propose as ``a``, sign as both; returns the contract as ``a`` sees it afterwards."""
    key_a, key_b = await register_key(client, a), await register_key(client, b)
    proposed = await client.post("/v1/contracts", json=proposal_body([a.id, b.id], **overrides), headers=a.headers)
    assert proposed.status_code == 201, proposed.text
    contract = proposed.json()
    version = contract["versions"][0]
    for brand, key in ((a, key_a), (b, key_b)):
        signed = await client.post(
            f"/v1/contracts/{contract['contract_id']}/signatures",
            json={"version": 1, "signature": signature_for(key, version)},
            headers=brand.headers,
        )
        assert signed.status_code == 201, signed.text
    final: dict[str, Any] = signed.json()
    return final


async def signed_contract_via_services(
    sessions: async_sessionmaker[AsyncSession], brand_x: str, brand_y: str, **overrides: Any
) -> contracts.ContractTerms:
    """The same flow through the public services (for tests that do not run the HTTP app)."""
    keys = {brand: Ed25519PrivateKey.generate() for brand in (brand_x, brand_y)}
    body = proposal_body([brand_x, brand_y], **overrides)
    async with sessions() as session, session.begin():
        for brand, key in keys.items():
            await contract_service.register_signing_key(session, TEST_AUDIT, brand, public_key_of(key))
        proposal = msgspec.json.decode(msgspec.json.encode(body), type=ContractProposal)
        view = await contract_service.propose_contract(session, TEST_AUDIT, brand_x, proposal)
        terms = view.versions[0].terms
        for brand, key in keys.items():
            await contract_service.sign_version(
                session, TEST_AUDIT, brand, view.contract_id, 1, contracts.sign_terms(key, terms)
            )
    return terms


async def app_sessions(client: AsyncTestClient[Litestar]) -> tuple[Any, async_sessionmaker[AsyncSession]]:
    """An engine of our own on the app's database (the app's engine lives on the client's loop)."""
    url = client.app.state.engine.url.render_as_string(hide_password=False)
    engine = create_engine(url)
    return engine, create_session_factory(engine)


async def third_brand(client: AsyncTestClient[Litestar], name: str = "Third Party 第三方") -> BrandHandle:
    engine, factory = await app_sessions(client)
    try:
        async with factory() as session, session.begin():
            brand, key = await brands.create_brand(session, TEST_AUDIT, name, "other")
    finally:
        await engine.dispose()
    return BrandHandle(id=brand.id, name=brand.name, key=key.secret)


def later(days: int = 0, seconds: int = 0) -> datetime:
    return datetime.now(UTC) + timedelta(days=days, seconds=seconds)
