"""Contracts over the partner API: signing keys, proposals, signatures, versions, terms in force."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.contracts import service
from alliance.core.problems import Problem
from alliance.db.models import AuditEntry, Contract, ContractSignature, ContractVersion, SigningKey
from tests.alliance.contracts.support import (
    START,
    b64,
    contract_in_force,
    proposal_body,
    public_key_of,
    register_key,
    signature_for,
    terms_from,
)
from tests.helpers import BrandHandle, assert_problem


async def _count(session: AsyncSession, model: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int, int]:
    async with sessions() as session:
        return (
            await _count(session, Contract),
            await _count(session, ContractVersion),
            await _count(session, ContractSignature),
        )


async def test_a_contract_signed_by_both_parties_comes_into_force(
    client: AsyncTestClient[Litestar],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    key_a, key_b = await register_key(client, brand_a), await register_key(client, brand_b)
    proposed = await client.post("/v1/contracts", json=proposal_body([brand_b.id, brand_a.id]), headers=brand_a.headers)
    assert proposed.status_code == 201, proposed.text
    contract = proposed.json()
    contract_id = contract["contract_id"]
    assert contract["parties"] == sorted([brand_a.id, brand_b.id])  # canonical order whatever was sent
    assert contract["counterparty"] == brand_b.id
    assert contract["in_force_version"] is None
    version = contract["versions"][0]
    assert version["signed"] is False
    assert version["missing_signers"] == sorted([brand_a.id, brand_b.id])
    assert version["fingerprint"] == contracts.fingerprint(terms_from(version))

    async with sessions() as session:
        with pytest.raises(Problem) as before:
            await service.terms_in_force(session, brand_a.id, brand_b.id, datetime.now(UTC))
    assert before.value.slug == "no-contract-in-force"

    first = await client.post(
        f"/v1/contracts/{contract_id}/signatures",
        json={"version": 1, "signature": signature_for(key_a, version)},
        headers=brand_a.headers,
    )
    assert first.status_code == 201, first.text
    assert first.json()["versions"][0]["missing_signers"] == [brand_b.id]
    assert first.json()["in_force_version"] is None

    second = await client.post(
        f"/v1/contracts/{contract_id}/signatures",
        json={"version": 1, "signature": signature_for(key_b, version).encode().decode()},
        headers=brand_b.headers,
    )
    assert second.status_code == 201, second.text
    signed = second.json()
    assert signed["in_force_version"] == 1
    assert signed["versions"][0]["signed"] is True
    assert {s["brand_id"] for s in signed["versions"][0]["signatures"]} == {brand_a.id, brand_b.id}

    # Both parties list it; GET by id works for both.
    for brand in (brand_a, brand_b):
        listed = (await client.get("/v1/contracts", headers=brand.headers)).json()["items"]
        assert [c["contract_id"] for c in listed] == [contract_id]
        one = await client.get(f"/v1/contracts/{contract_id}", headers=brand.headers)
        assert one.json()["in_force_version"] == 1

    async with sessions() as session:
        terms = await service.terms_in_force(session, brand_b.id, brand_a.id, datetime.now(UTC))
        assert terms.version == 1 and terms.contract_id == contract_id
        with pytest.raises(Problem) as early:
            await service.terms_in_force(session, brand_a.id, brand_b.id, START - timedelta(seconds=1))
        assert early.value.status == 409
        _, psi = await service.psi_terms_in_force(session, brand_a.id, brand_b.id, datetime.now(UTC))
        assert psi.segment_tags == ("vip",)
        await service.verify_stored_signatures(session, contract_id)
        actions = (await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all()
    assert actions.count("contract.sign") == 2
    assert "contract.propose" in actions
    assert actions.count("signing_key.register") == 2

    # Signing again is a no-op, not a second row.
    again = await client.post(
        f"/v1/contracts/{contract_id}/signatures",
        json={"version": 1, "signature": signature_for(key_a, version)},
        headers=brand_a.headers,
    )
    assert again.status_code == 201
    assert (await _rows(sessions))[2] == 2


async def test_forged_and_wrong_key_signatures_are_refused(
    client: AsyncTestClient[Litestar],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    key_a = await register_key(client, brand_a)
    await register_key(client, brand_b)
    contract = (
        await client.post("/v1/contracts", json=proposal_body([brand_a.id, brand_b.id]), headers=brand_a.headers)
    ).json()
    version = contract["versions"][0]
    url = f"/v1/contracts/{contract['contract_id']}/signatures"
    terms = terms_from(version)
    other_terms = contracts.ContractTerms(**{**{f: getattr(terms, f) for f in terms.__struct_fields__}, "note": "x"})
    attempts = {
        "random bytes": b64(bytes(range(64))),
        "a stranger's key": b64(contracts.sign_terms(Ed25519PrivateKey.generate(), terms)),
        "the other party's key": signature_for(key_a, version),  # sent by B
        "other terms": b64(contracts.sign_terms(key_a, other_terms)),
        "flipped bit": b64(bytes([contracts.sign_terms(key_a, terms)[0] ^ 1]) + contracts.sign_terms(key_a, terms)[1:]),
    }
    before = await _rows(sessions)
    for label, signature in attempts.items():
        brand = brand_b if label == "the other party's key" else brand_a
        response = await client.post(url, json={"version": 1, "signature": signature}, headers=brand.headers)
        assert_problem(response, 422, "signature-invalid")
    for malformed in ("abc", b64(bytes(63)), "zz" * 64):
        response = await client.post(url, json={"version": 1, "signature": malformed}, headers=brand_a.headers)
        assert_problem(response, 422, "signature-invalid")
    assert_problem(
        await client.post(
            url, json={"version": 2, "signature": signature_for(key_a, version)}, headers=brand_a.headers
        ),
        404,
        "version-not-found",
    )
    assert await _rows(sessions) == before
    assert (await client.get(f"/v1/contracts/{contract['contract_id']}", headers=brand_a.headers)).json()[
        "in_force_version"
    ] is None


async def test_signing_needs_a_registered_key(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    contract = (
        await client.post("/v1/contracts", json=proposal_body([brand_a.id, brand_b.id]), headers=brand_a.headers)
    ).json()
    signature = b64(contracts.sign_terms(Ed25519PrivateKey.generate(), terms_from(contract["versions"][0])))
    response = await client.post(
        f"/v1/contracts/{contract['contract_id']}/signatures",
        json={"version": 1, "signature": signature},
        headers=brand_b.headers,
    )
    assert_problem(response, 409, "no-signing-key")


async def test_signing_keys_rotate_and_old_signatures_stay_verifiable(
    client: AsyncTestClient[Litestar],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    signed = await contract_in_force(client, brand_a, brand_b)
    old = (await client.get("/v1/signing-key", headers=brand_a.headers)).json()["current"]

    new_key = Ed25519PrivateKey.generate()
    as_hex = public_key_of(new_key).hex()
    rotated = await client.put("/v1/signing-key", json={"public_key": as_hex}, headers=brand_a.headers)
    assert rotated.status_code == 200
    keys = rotated.json()
    assert keys["current"]["key_id"] != old["key_id"]
    assert [k["key_id"] for k in keys["history"]][1] == old["key_id"]
    assert keys["history"][1]["retired_at"] is not None
    # The same key again changes nothing.
    same = await client.put("/v1/signing-key", json={"public_key": as_hex.upper()}, headers=brand_a.headers)
    assert len(same.json()["history"]) == 2

    async with sessions() as session:
        await service.verify_stored_signatures(session, signed["contract_id"])
        assert await _count(session, SigningKey) == 3

    for bad in ("", "AAAA", "00" * 31, b64(bytes(33)), "not base64 !!"):
        response = await client.put("/v1/signing-key", json={"public_key": bad}, headers=brand_a.headers)
        assert response.status_code in (400, 422), response.text
    assert len((await client.get("/v1/signing-key", headers=brand_a.headers)).json()["history"]) == 2


async def test_new_versions_supersede_and_cannot_be_retroactive(
    client: AsyncTestClient[Litestar],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await contract_in_force(client, brand_a, brand_b)
    contract_id = (await client.get("/v1/contracts", headers=brand_a.headers)).json()["items"][0]["contract_id"]
    keys = {brand_a.id: await register_key(client, brand_a), brand_b.id: await register_key(client, brand_b)}

    retro = proposal_body([brand_a.id, brand_b.id], effective_from="2026-02-01T00:00:00Z")
    assert_problem(
        await client.post(f"/v1/contracts/{contract_id}/versions", json=retro, headers=brand_b.headers),
        422,
        "invalid-version",
    )
    starts = datetime.now(UTC) + timedelta(days=30)
    body = proposal_body(
        [brand_a.id, brand_b.id],
        effective_from=starts.astimezone(timezone(timedelta(hours=8))).isoformat(),  # Beijing time on the wire
        referral={"kind": "fixed", "amount": 2000},
    )
    del body["parties"]
    proposed = await client.post(f"/v1/contracts/{contract_id}/versions", json=body, headers=brand_b.headers)
    assert proposed.status_code == 201, proposed.text
    v2 = proposed.json()["versions"][1]
    assert v2["version"] == 2
    assert v2["terms"]["effective_from"].endswith("Z")  # signed in UTC
    for brand in (brand_a, brand_b):
        response = await client.post(
            f"/v1/contracts/{contract_id}/signatures",
            json={"version": 2, "signature": signature_for(keys[brand.id], v2)},
            headers=brand.headers,
        )
        assert response.status_code == 201, response.text
    async with sessions() as session:
        now_terms = await service.terms_in_force(session, brand_a.id, brand_b.id, datetime.now(UTC))
        later_terms = await service.terms_in_force(session, brand_a.id, brand_b.id, starts + timedelta(seconds=1))
    assert (now_terms.version, later_terms.version) == (1, 2)
    assert later_terms.referral == contracts.FixedCommission(amount=2000)

    # Other parties cannot be swapped in; a version starting too soon is refused once its start passes.
    swapped = proposal_body([brand_a.id, "brd_someoneelse"], effective_from=(starts + timedelta(days=1)).isoformat())
    assert_problem(
        await client.post(f"/v1/contracts/{contract_id}/versions", json=swapped, headers=brand_a.headers),
        422,
        "invalid-version",
    )
    soon = proposal_body(
        [brand_a.id, brand_b.id], effective_from=(starts + timedelta(days=1)).isoformat()
    )  # after v2: fine to propose
    v3 = (await client.post(f"/v1/contracts/{contract_id}/versions", json=soon, headers=brand_a.headers)).json()
    assert v3["versions"][2]["version"] == 3


async def test_a_version_cannot_be_signed_after_it_took_effect(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    await contract_in_force(client, brand_a, brand_b)
    contract_id = (await client.get("/v1/contracts", headers=brand_a.headers)).json()["items"][0]["contract_id"]
    key_a = await register_key(client, brand_a)
    starts = datetime.now(UTC) + timedelta(seconds=1)
    body = proposal_body([brand_a.id, brand_b.id], effective_from=starts.isoformat())
    proposed = await client.post(f"/v1/contracts/{contract_id}/versions", json=body, headers=brand_a.headers)
    assert proposed.status_code == 201, proposed.text
    await asyncio.sleep(max(0.0, (starts - datetime.now(UTC)).total_seconds()) + 0.05)
    response = await client.post(
        f"/v1/contracts/{contract_id}/signatures",
        json={"version": 2, "signature": signature_for(key_a, proposed.json()["versions"][1])},
        headers=brand_a.headers,
    )
    assert_problem(response, 409, "version-start-passed")


BAD_PROPOSALS: list[tuple[Any, int, str]] = [
    (lambda b, a, c: {**b, "parties": ["brd_other1", "brd_other2"]}, 403, "not-a-party"),
    (lambda b, a, c: {**b, "parties": [a, "brd_nosuchbrand"]}, 422, "unknown-brand"),
    (lambda b, a, c: {**b, "parties": [a, a]}, 422, "invalid-terms"),
    (lambda b, a, c: {k: v for k, v in b.items() if k != "parties"}, 422, "invalid-terms"),
    (lambda b, a, c: {**b, "settlement_currency": "XYZ"}, 422, "invalid-terms"),
    (lambda b, a, c: {**b, "settlement_currency": "cny"}, 422, "invalid-terms"),
    (
        lambda b, a, c: {**b, "funding": [{**b["funding"][0], "distributor_bp": 2000}]},
        422,
        "invalid-terms",
    ),
    (lambda b, a, c: {**b, "referral": {"kind": "fixed", "amount": 10.5}}, 400, "invalid-request"),
    (lambda b, a, c: {**b, "referral": {"kind": "fixed", "amount": "1000"}}, 400, "invalid-request"),
    (lambda b, a, c: {**b, "referral": {"kind": "fixed", "amount": 1000.0}}, 400, "invalid-request"),
    (lambda b, a, c: {**b, "referral": {"kind": "fixed", "amount": 2**63}}, 422, "invalid-terms"),
    (lambda b, a, c: {**b, "referral": {"kind": "fixed", "amount": 2**63 - 1}}, 422, "invalid-terms"),
    (lambda b, a, c: {**b, "referral": {"kind": "fixed", "amount": 10**12 + 1}}, 422, "invalid-terms"),
    (
        lambda b, a, c: {**b, "referral": {"kind": "rate", "rate_bp": 100, "monthly_cap": 10**12 + 1}},
        422,
        "invalid-terms",
    ),
    (lambda b, a, c: {**b, "referral": {"kind": "fixed", "amount": -1}}, 422, "invalid-terms"),
    (lambda b, a, c: {**b, "effective_from": "2026-01-01T00:00:00"}, 400, "invalid-request"),
    (lambda b, a, c: {**b, "surprise": True}, 400, "invalid-request"),
    (lambda b, a, c: {**b, "version": 2}, 422, "invalid-version"),
]


async def test_bad_proposals_are_refused_and_write_nothing(
    client: AsyncTestClient[Litestar],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    for mutate, status, slug in BAD_PROPOSALS:
        body = mutate(proposal_body([brand_a.id, brand_b.id]), brand_a.id, brand_b.id)
        response = await client.post("/v1/contracts", json=body, headers=brand_a.headers)
        assert_problem(response, status, slug)
    assert await _rows(sessions) == (0, 0, 0)


async def test_one_contract_per_pair(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    first = await client.post("/v1/contracts", json=proposal_body([brand_a.id, brand_b.id]), headers=brand_a.headers)
    again = await client.post("/v1/contracts", json=proposal_body([brand_b.id, brand_a.id]), headers=brand_b.headers)
    body = assert_problem(again, 409, "contract-exists")
    assert body["extra"]["contract_id"] == first.json()["contract_id"]


async def test_operator_sees_every_contract(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, brand_b: BrandHandle, admin_headers: dict[str, str]
) -> None:
    signed = await contract_in_force(client, brand_a, brand_b)
    listed = (await client.get("/admin/v1/contracts", headers=admin_headers)).json()["items"]
    assert [c["contract_id"] for c in listed] == [signed["contract_id"]]
    one = (await client.get(f"/admin/v1/contracts/{signed['contract_id']}", headers=admin_headers)).json()
    assert one["counterparty"] is None and one["in_force_version"] == 1
