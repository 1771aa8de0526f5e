"""The alliance's review of contract versions (operator API and service): an approval is recorded and
audited; a rejection is a veto - the version is out of force, coupons and matches are refused under it,
and the parties read the decision in ``GET /v1/contracts/{id}``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.contracts import service
from alliance.contracts.schemas import ContractProposal
from alliance.core.problems import Problem
from alliance.db.models import AuditEntry, ContractReview
from tests.alliance.benefits.support import make_contract, publish
from tests.alliance.contracts.support import contract_in_force, later, proposal_body, public_key_of
from tests.helpers import TEST_AUDIT, BrandHandle, assert_problem

Client = AsyncTestClient[Litestar]


def _review_path(contract_id: str, version: int = 1) -> str:
    return f"/admin/v1/contracts/{contract_id}/versions/{version}/review"


async def test_an_approval_is_recorded_audited_and_shown_to_the_parties(
    client: Client,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    admin_headers: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    contract = await contract_in_force(client, brand_a, brand_b)
    contract_id = contract["contract_id"]
    assert contract["versions"][0]["review"] is None
    assert contract["versions"][0]["status"] == "in_force"  # in force before any review: review is a veto

    approved = await client.post(_review_path(contract_id), json={"decision": "approve"}, headers=admin_headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["versions"][0]["review"]["decision"] == "approved"
    again = await client.post(_review_path(contract_id), json={"decision": "approve"}, headers=admin_headers)
    assert again.status_code == 200  # approving twice changes nothing

    for brand in (brand_a, brand_b):
        seen = (await client.get(f"/v1/contracts/{contract_id}", headers=brand.headers)).json()
        version = seen["versions"][0]
        assert version["review"]["decision"] == "approved"
        assert version["review"]["reason"] is None
        assert version["status"] == "in_force"
        assert seen["in_force_version"] == 1
    async with sessions() as session:
        rows = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "contract.approve"))).all()
        [review] = (await session.scalars(select(ContractReview))).all()
    assert len(rows) == 1
    assert rows[0].actor.startswith("admin:")
    assert rows[0].target == contract_id
    assert rows[0].details["version"] == 1
    assert review.reviewed_by == rows[0].actor


async def test_a_rejected_version_is_out_of_force_and_coupons_are_refused_under_it(
    client: Client,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    admin_headers: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    signed = await make_contract(sessions, brand_a, brand_b)
    benefit = await publish(client, brand_a, [brand_b])
    before = await client.post(f"/v1/benefits/{benefit['id']}/coupons", json={"count": 1}, headers=brand_b.headers)
    assert before.status_code == 201, before.text

    rejected = await client.post(
        _review_path(signed.contract_id),
        json={"decision": "reject", "reason": "funding split breaks the alliance rules"},
        headers=admin_headers,
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["in_force_version"] is None

    async with sessions() as session:
        with pytest.raises(Problem) as refused:
            await service.terms_in_force(session, brand_a.id, brand_b.id, datetime.now(UTC))
    assert refused.value.slug == "no-contract-in-force"
    assert "rejected by the alliance" in (refused.value.detail or "")

    after = await client.post(f"/v1/benefits/{benefit['id']}/coupons", json={"count": 1}, headers=brand_b.headers)
    assert_problem(after, 409, "no-contract-in-force")

    seen = (await client.get(f"/v1/contracts/{signed.contract_id}", headers=brand_b.headers)).json()
    assert seen["in_force_version"] is None
    assert seen["versions"][0]["status"] == "rejected"
    assert seen["versions"][0]["review"]["decision"] == "rejected"
    assert seen["versions"][0]["review"]["reason"] == "funding split breaks the alliance rules"
    async with sessions() as session:
        audit = await session.scalar(select(AuditEntry).where(AuditEntry.action == "contract.reject"))
    assert audit is not None
    assert audit.details["reason"] == "funding split breaks the alliance rules"

    # A rejection is final, needs a reason, and names a real version.
    approve = await client.post(_review_path(signed.contract_id), json={"decision": "approve"}, headers=admin_headers)
    assert_problem(approve, 409, "version-rejected")
    missing = await client.post(
        _review_path(signed.contract_id, 9), json={"decision": "approve"}, headers=admin_headers
    )
    assert_problem(missing, 404, "version-not-found")
    unknown = await client.post(_review_path("ctr_missing"), json={"decision": "approve"}, headers=admin_headers)
    assert_problem(unknown, 404, "contract-not-found")


async def test_a_rejection_needs_a_reason_and_only_operators_review(
    client: Client, brand_a: BrandHandle, brand_b: BrandHandle, admin_headers: dict[str, str]
) -> None:
    contract = await contract_in_force(client, brand_a, brand_b)
    path = _review_path(contract["contract_id"])
    assert_problem(
        await client.post(path, json={"decision": "reject"}, headers=admin_headers), 422, "review-reason-required"
    )
    blank = await client.post(path, json={"decision": "reject", "reason": "   "}, headers=admin_headers)
    assert_problem(blank, 422, "review-reason-required")
    bad = await client.post(path, json={"decision": "maybe"}, headers=admin_headers)
    assert bad.status_code == 400
    # A party's own key cannot review its contract: the operator API refuses brand keys.
    as_brand = await client.post(path, json={"decision": "approve"}, headers=brand_a.headers)
    assert as_brand.status_code in (401, 403)
    seen = (await client.get(f"/v1/contracts/{contract['contract_id']}", headers=brand_a.headers)).json()
    assert seen["versions"][0]["review"] is None
    assert seen["in_force_version"] == 1


async def test_an_approved_version_may_still_be_rejected(
    client: Client, brand_a: BrandHandle, brand_b: BrandHandle, admin_headers: dict[str, str]
) -> None:
    contract = await contract_in_force(client, brand_a, brand_b)
    path = _review_path(contract["contract_id"])
    assert (await client.post(path, json={"decision": "approve"}, headers=admin_headers)).status_code == 200
    rejected = await client.post(path, json={"decision": "reject", "reason": "fraud found"}, headers=admin_headers)
    assert rejected.status_code == 200
    assert rejected.json()["versions"][0]["review"]["decision"] == "rejected"
    assert rejected.json()["in_force_version"] is None


async def _two_versions(
    sessions: async_sessionmaker[AsyncSession], brand_x: str, brand_y: str, psi: dict[str, Any]
) -> tuple[str, datetime]:
    """Version 1 in force since 2026-01-01, version 2 signed and starting in an hour."""
    keys = {brand: Ed25519PrivateKey.generate() for brand in (brand_x, brand_y)}
    start_2 = later(seconds=3600).replace(microsecond=0)
    async with sessions() as session, session.begin():
        for brand, key in keys.items():
            await service.register_signing_key(session, TEST_AUDIT, brand, public_key_of(key))
        first = msgspec.convert(proposal_body([brand_x, brand_y], psi=psi), ContractProposal)
        view = await service.propose_contract(session, TEST_AUDIT, brand_x, first)
        body = {k: v for k, v in proposal_body([brand_x, brand_y], psi=psi).items() if k != "parties"}
        body["effective_from"] = start_2.isoformat()
        view = await service.propose_version(
            session, TEST_AUDIT, brand_x, view.contract_id, msgspec.convert(body, ContractProposal)
        )
        for version in view.versions:
            for brand, key in keys.items():
                await service.sign_version(
                    session,
                    TEST_AUDIT,
                    brand,
                    view.contract_id,
                    version.version,
                    contracts.sign_terms(key, version.terms),
                )
    return view.contract_id, start_2


async def test_rejecting_a_later_version_leaves_a_gap_and_refuses_matching_under_it(
    sessions: async_sessionmaker[AsyncSession], brand_a: BrandHandle, brand_b: BrandHandle
) -> None:
    psi = {"segment_tags": ["vip"], "disclosure": "cardinality", "min_k": 100}
    contract_id, start_2 = await _two_versions(sessions, brand_a.id, brand_b.id, psi)
    during_2 = start_2 + timedelta(days=1)
    async with sessions() as session:
        terms, _ = await service.psi_terms_in_force(session, brand_a.id, brand_b.id, during_2)
        assert terms.version == 2
        view = await service.get_contract(session, contract_id, brand_a.id)
        assert [v.status for v in view.versions] == ["in_force", "scheduled"]
    async with sessions() as session, session.begin():
        view = await service.review_version(session, TEST_AUDIT, contract_id, 2, "reject", "terms not allowed")
        assert [v.status for v in view.versions] == ["in_force", "rejected"]
    async with sessions() as session:
        now_terms = await service.terms_in_force(session, brand_a.id, brand_b.id, datetime.now(UTC))
        assert now_terms.version == 1  # the version in force now is untouched
        with pytest.raises(Problem) as refused:
            await service.psi_terms_in_force(session, brand_a.id, brand_b.id, during_2)
        # Version 1 does not come back for version 2's period: the veto leaves a gap.
        assert refused.value.slug == "no-contract-in-force"
        assert refused.value.extra == {"contract_id": contract_id, "rejected_version": 2}
        # Nobody can sign a rejected version any more (here: a fresh key's signature is refused first).
        with pytest.raises(Problem) as unsigned:
            await service.sign_version(session, TEST_AUDIT, brand_a.id, contract_id, 2, bytes(64))
        assert unsigned.value.slug == "version-rejected"
