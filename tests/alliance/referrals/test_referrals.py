"""Referral tokens (signed, expiring, checkable offline) and conversions that post the commission once."""

from __future__ import annotations

import asyncio
import base64
import uuid

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.contracts import service as contract_service
from alliance.db.models import (
    CommissionMonthTotal,
    Conversion,
    ExchangeSigningKey,
    LedgerPosting,
    LedgerTransaction,
    Referral,
)
from alliance.referrals import tokens
from tests.alliance.benefits.support import idem, make_contract
from tests.helpers import TEST_AUDIT, BrandHandle, assert_problem, make_brand


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def _refer(
    client: AsyncTestClient[Litestar], referrer: BrandHandle, receiver: BrandHandle, **extra: object
) -> dict:  # type: ignore[type-arg]
    response = await client.post(
        "/v1/referrals", json={"receiver_brand_id": receiver.id, **extra}, headers=referrer.headers
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _conversion(token: str, order: str = "po-1", amount: int = 30_000) -> dict[str, object]:
    return {"token": token, "order_reference": order, "order_amount": amount, "currency": "CNY"}


async def test_token_is_signed_expiring_and_verifiable_offline(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    await make_contract(sessions, brand_b, brand_a, attribution_window_seconds=7 * 86_400)
    referral = await _refer(client, brand_a, brand_b, member_token="wx-member-42", campaign="spring", ttl_seconds=3_600)
    token = referral["token"]
    assert token.startswith("rft1.")
    payload, body, signature = tokens.decode_unverified(token)
    assert (payload.rid, payload.frm, payload.to) == (referral["id"], brand_a.id, brand_b.id)
    assert payload.exp - payload.iat == 3_600
    assert "wx-member-42" not in token

    key = (await client.get("/v1/referrals/signing-key", headers=brand_b.headers)).json()
    assert key["key_id"] == payload.kid
    tokens.verify_token(Ed25519PublicKey.from_public_bytes(_unb64(key["public_key"])), body, signature)

    stored = (await session.execute(select(Referral.member_hash))).scalar_one()
    assert stored is not None and "wx-member-42" not in stored
    shown = (await client.get(f"/v1/referrals/{referral['id']}", headers=brand_a.headers)).json()
    assert shown["token"] is None
    assert_problem(
        await client.get(f"/v1/referrals/{referral['id']}", headers=brand_b.headers), 404, "referral-not-found"
    )

    # The attribution window caps the lifetime.
    long = await _refer(client, brand_a, brand_b, ttl_seconds=30 * 86_400)
    long_payload, _, _ = tokens.decode_unverified(long["token"])
    assert long_payload.exp - long_payload.iat == 7 * 86_400


async def test_referrals_need_a_contract_and_another_brand(
    client: AsyncTestClient[Litestar], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    refused = await client.post("/v1/referrals", json={"receiver_brand_id": brand_b.id}, headers=brand_a.headers)
    assert_problem(refused, 409, "no-contract-in-force")
    itself = await client.post("/v1/referrals", json={"receiver_brand_id": brand_a.id}, headers=brand_a.headers)
    assert_problem(itself, 422, "invalid-referral")
    short = await client.post(
        "/v1/referrals", json={"receiver_brand_id": brand_b.id, "ttl_seconds": 1}, headers=brand_a.headers
    )
    assert_problem(short, 400, "invalid-request")


async def test_conversion_posts_commission_once(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    await make_contract(sessions, brand_b, brand_a, referral=contracts.RateCommission(rate_bp=500, per_event_cap=1_200))
    token = (await _refer(client, brand_a, brand_b))["token"]
    key = {**brand_b.headers, "Idempotency-Key": f"conv-{uuid.uuid4()}"}

    assert_problem(
        await client.post("/v1/conversions", json=_conversion(token), headers=brand_a.headers),
        404,
        "referral-not-found",
    )
    assert_problem(
        await client.post("/v1/conversions", json=_conversion(token), headers=brand_b.headers),
        400,
        "idempotency-key-required",
    )
    first = await client.post("/v1/conversions", json=_conversion(token), headers=key)
    assert first.status_code == 201, first.text
    conversion = first.json()
    assert conversion["commission"] == 1_200  # 5 % of 300.00 = 15.00, capped at 12.00
    rows = (
        await session.execute(
            select(LedgerPosting.account, LedgerPosting.amount).where(
                LedgerPosting.transaction_id == conversion["ledger_transaction_id"]
            )
        )
    ).all()
    assert sum(amount for _, amount in rows) == 0
    assert (f"brand:{brand_b.id}:payable", 1_200) in rows
    assert (f"brand:{brand_a.id}:receivable", -1_200) in rows

    replay = await client.post("/v1/conversions", json=_conversion(token), headers=key)
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    same_again = await client.post("/v1/conversions", json=_conversion(token), headers={**brand_b.headers, **idem()})
    assert same_again.json()["id"] == conversion["id"]
    different = await client.post(
        "/v1/conversions", json=_conversion(token, "po-2"), headers={**brand_b.headers, **idem()}
    )
    body = assert_problem(different, 409, "referral-already-converted")
    assert body["extra"]["conversion_id"] == conversion["id"]
    assert await session.scalar(select(func.count()).select_from(Conversion)) == 1
    assert await session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1
    for viewer in (brand_a, brand_b):
        assert (await client.get(f"/v1/conversions/{conversion['id']}", headers=viewer.headers)).status_code == 200
    outsider = await make_brand(sessions, "Tea House 茶馆", "food")
    assert_problem(
        await client.get(f"/v1/conversions/{conversion['id']}", headers=outsider.headers), 404, "conversion-not-found"
    )


async def test_concurrent_conversions_of_one_referral_post_once(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    await make_contract(sessions, brand_b, brand_a)
    token = (await _refer(client, brand_a, brand_b))["token"]
    responses = await asyncio.gather(
        *(
            client.post("/v1/conversions", json=_conversion(token, f"po-{i}"), headers={**brand_b.headers, **idem()})
            for i in range(8)
        )
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7
    assert await session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1


async def test_tampered_expired_and_late_tokens_are_refused(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    await make_contract(sessions, brand_b, brand_a, attribution_window_seconds=1)
    token = (await _refer(client, brand_a, brand_b))["token"]
    prefix, payload, signature = token.split(".")
    forged = f"{prefix}.{payload}.{signature[:-4]}AAAA"
    assert_problem(
        await client.post("/v1/conversions", json=_conversion(forged), headers={**brand_b.headers, **idem()}),
        400,
        "invalid-referral-token",
    )
    assert_problem(
        await client.post("/v1/conversions", json=_conversion("nonsense"), headers={**brand_b.headers, **idem()}),
        400,
        "malformed-referral-token",
    )
    await asyncio.sleep(1.1)
    expired = await client.post("/v1/conversions", json=_conversion(token), headers={**brand_b.headers, **idem()})
    assert_problem(expired, 409, "referral-expired")
    assert await session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0


async def test_monthly_referral_cap_is_exact(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    await make_contract(sessions, brand_b, brand_a, referral=contracts.FixedCommission(amount=400, monthly_cap=1_000))
    earned = []
    for i in range(4):
        token = (await _refer(client, brand_a, brand_b))["token"]
        response = await client.post(
            "/v1/conversions", json=_conversion(token, f"po-{i}"), headers={**brand_b.headers, **idem()}
        )
        assert response.status_code == 201, response.text
        earned.append(response.json()["commission"])
    assert earned == [400, 400, 200, 0]
    assert await session.scalar(select(CommissionMonthTotal.total)) == 1_000


async def test_conversion_in_another_currency_is_refused(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    await make_contract(sessions, brand_b, brand_a)
    token = (await _refer(client, brand_a, brand_b))["token"]
    in_dollars = {**_conversion(token), "currency": "USD"}
    refused = await client.post("/v1/conversions", json=in_dollars, headers={**brand_b.headers, **idem()})
    assert_problem(refused, 422, "currency-mismatch")
    assert await session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
    # Nothing was converted: the referral still converts in the contract's currency.
    accepted = await client.post("/v1/conversions", json=_conversion(token), headers={**brand_b.headers, **idem()})
    assert accepted.status_code == 201, accepted.text


async def test_conversion_under_a_rejected_version_is_refused(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    contract = await make_contract(sessions, brand_b, brand_a)
    token = (await _refer(client, brand_a, brand_b))["token"]
    async with sessions() as review_session, review_session.begin():
        await contract_service.review_version(
            review_session, TEST_AUDIT, contract.contract_id, 1, "reject", "not allowed"
        )
    refused = await client.post("/v1/conversions", json=_conversion(token), headers={**brand_b.headers, **idem()})
    body = assert_problem(refused, 409, "no-contract-in-force")
    assert body["extra"] == {"contract_id": contract.contract_id, "rejected_version": 1}
    assert "rejected by the alliance: not allowed" in body["detail"]
    assert await session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0


async def test_a_token_naming_an_unknown_key_or_referral_is_not_found(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
) -> None:
    await make_contract(sessions, brand_b, brand_a)
    token = (await _refer(client, brand_a, brand_b))["token"]
    payload, _, _ = tokens.decode_unverified(token)
    async with sessions() as key_session, key_session.begin():
        key = await key_session.get(ExchangeSigningKey, payload.kid)
        assert key is not None
        private = Ed25519PrivateKey.from_private_bytes(key.private_key)
    for changed in ({"kid": "xkey-unknown"}, {"rid": "ref-unknown"}):
        forged = tokens.sign_token(private, msgspec.structs.replace(payload, **changed))
        response = await client.post("/v1/conversions", json=_conversion(forged), headers={**brand_b.headers, **idem()})
        assert_problem(response, 404, "referral-not-found")
