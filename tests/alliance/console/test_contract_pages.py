"""Contract pages: the list, a contract's versions with the terms diff and signature fingerprints, and
the alliance's review (approve / reject) through the same service as the operator API; auditors see
everything and can review nothing."""

from __future__ import annotations

import hashlib
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.console import alliance_queries
from alliance.db.models import AuditEntry, ContractReview, SigningKey
from tests.alliance.console.console_helpers import ConsoleUser, sign_in
from tests.alliance.contracts.support import contract_in_force, later, proposal_body, register_key, signature_for
from tests.helpers import BrandHandle, make_brand

Client = AsyncTestClient[Litestar]


async def _with_second_version(client: Client, a: BrandHandle, b: BrandHandle) -> dict[str, Any]:
    """Version 1 signed by both; version 2 (referral 10.00 -> 25.00, 30-day window) signed by ``a`` only."""
    contract = await contract_in_force(client, a, b)
    body = {k: v for k, v in proposal_body([a.id, b.id]).items() if k != "parties"}
    body["effective_from"] = later(days=2).isoformat()
    body["referral"] = {"kind": "fixed", "amount": 2500}
    body["attribution_window_seconds"] = 30 * 86_400
    proposed = await client.post(f"/v1/contracts/{contract['contract_id']}/versions", json=body, headers=a.headers)
    assert proposed.status_code == 201, proposed.text
    key_a = await register_key(client, a)  # a fresh key: the signature names it
    version = proposed.json()["versions"][1]
    signed = await client.post(
        f"/v1/contracts/{contract['contract_id']}/signatures",
        json={"version": 2, "signature": signature_for(key_a, version)},
        headers=a.headers,
    )
    assert signed.status_code == 201, signed.text
    result: dict[str, Any] = signed.json()
    return result


async def test_list_and_detail_show_versions_signatures_and_a_readable_diff(
    web: Client,
    admin: ConsoleUser,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    contract = await _with_second_version(web, brand_a, brand_b)
    contract_id = contract["contract_id"]
    await sign_in(web, admin)

    listing = await web.get("/console/contracts")
    assert listing.status_code == 200
    assert f"{brand_a.name} ⇄ {brand_b.name}" in listing.text or f"{brand_b.name} ⇄ {brand_a.name}" in listing.text
    assert "partially signed" in listing.text  # the latest version
    assert "v1" in listing.text  # the version in force
    assert "not reviewed" in listing.text

    detail = await web.get(f"/console/contracts/{contract_id}")
    assert detail.status_code == 200
    page = detail.text
    assert "Version 2" in page and "Version 1" in page
    assert "Changes from version 1" in page
    assert "CN¥10.00" in page and "CN¥25.00" in page  # referral amount, as money
    assert "30 days" in page
    assert "in force" in page and "partially signed" in page and "not signed yet" in page
    async with sessions() as session:
        keys = (await session.scalars(select(SigningKey))).all()
    for key in keys:  # every signing key shows by its SHA-256 fingerprint, grouped
        digest = hashlib.sha256(key.public_key).hexdigest()
        assert " ".join(digest[i : i + 4] for i in range(0, 32, 4)) in page
    assert 'action="/console/contracts/' in page and "/versions/2/approve" in page


async def test_an_admin_approves_and_rejects_through_the_contracts_service(
    web: Client,
    admin: ConsoleUser,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    contract = await contract_in_force(web, brand_a, brand_b)
    contract_id = contract["contract_id"]
    token = await sign_in(web, admin)

    approved = await web.post(f"/console/contracts/{contract_id}/versions/1/approve", data={"_csrf_token": token})
    assert approved.status_code == 303
    assert approved.headers["location"].startswith(f"/console/contracts/{contract_id}?done=approved")
    page = (await web.get(f"/console/contracts/{contract_id}?done=approved")).text
    assert "The version is approved" in page
    assert "Approved by console:ada" in page

    no_reason = await web.post(
        f"/console/contracts/{contract_id}/versions/1/reject", data={"_csrf_token": token, "reason": "  "}
    )
    assert no_reason.status_code == 422
    assert "A rejection needs a reason" in no_reason.text
    assert (await web.get(f"/v1/contracts/{contract_id}", headers=brand_a.headers)).json()["in_force_version"] == 1

    rejected = await web.post(
        f"/console/contracts/{contract_id}/versions/1/reject",
        data={"_csrf_token": token, "reason": "commission above the alliance cap"},
    )
    assert rejected.status_code == 303
    seen = (await web.get(f"/v1/contracts/{contract_id}", headers=brand_b.headers)).json()
    assert seen["in_force_version"] is None
    assert seen["versions"][0]["review"]["reason"] == "commission above the alliance cap"
    page = (await web.get(f"/console/contracts/{contract_id}")).text
    assert "Rejected by console:ada" in page
    assert "/versions/1/reject" not in page  # a rejection is final: no more review buttons
    again = await web.post(f"/console/contracts/{contract_id}/versions/1/approve", data={"_csrf_token": token})
    assert again.status_code == 409
    assert "a rejection is final" in again.text
    async with sessions() as session:
        actions = (
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.actor == "console:ada", AuditEntry.target == contract_id)
            )
        ).all()
    assert sorted(actions) == ["contract.approve", "contract.reject"]


async def test_an_auditor_sees_contracts_but_cannot_review(
    web: Client,
    auditor: ConsoleUser,
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    contract = await contract_in_force(web, brand_a, brand_b)
    contract_id = contract["contract_id"]
    token = await sign_in(web, auditor)
    page = await web.get(f"/console/contracts/{contract_id}")
    assert page.status_code == 200
    assert "/approve" not in page.text and "/reject" not in page.text
    for action in ("approve", "reject"):
        refused = await web.post(
            f"/console/contracts/{contract_id}/versions/1/{action}", data={"_csrf_token": token, "reason": "x"}
        )
        assert refused.status_code == 403
    async with sessions() as session:
        assert (await session.scalars(select(ContractReview))).all() == []


async def test_empty_states_and_unknown_contract(web: Client, admin: ConsoleUser) -> None:
    await sign_in(web, admin)
    empty = await web.get("/console/contracts")
    assert empty.status_code == 200
    assert "No contracts yet" in empty.text
    assert "POST /v1/contracts" in empty.text  # says what to do next
    missing = await web.get("/console/contracts/ctr_missing")
    assert missing.status_code == 404
    assert "Not found" in missing.text


async def test_contract_pages_are_keyset_paginated(
    web: Client, brand_a: BrandHandle, sessions: async_sessionmaker[AsyncSession]
) -> None:
    others = [await make_brand(sessions, f"Partner {i}") for i in range(3)]
    for other in others:
        await contract_in_force(web, brand_a, other)
    async with sessions() as session:
        seen: list[str] = []
        before = None
        while True:
            page = await alliance_queries.contract_page(session, before=before, limit=2)
            seen += [c.contract_id for c in page.contracts]
            if page.next_before is None:
                break
            before = page.next_before
        assert len(seen) == len(set(seen)) == 3
        only_one = await alliance_queries.contract_page(session, brand_id=others[0].id)
        assert [set(c.parties) for c in only_one.contracts] == [{brand_a.id, others[0].id}]


def test_terms_changes_name_every_changed_field() -> None:
    from datetime import UTC, datetime

    base = contracts.ContractTerms(
        contract_id="ctr_x",
        version=1,
        parties=("brd_a", "brd_b"),
        settlement_currency="CNY",
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        coupon_commission=contracts.RateCommission(rate_bp=200),
        referral=contracts.FixedCommission(amount=1000),
    )
    import msgspec

    changed = msgspec.structs.replace(
        base,
        version=2,
        referral=contracts.FixedCommission(amount=2500, monthly_cap=100_000),
        note="spring",
    )
    changes = {c.path: (c.before, c.after) for c in alliance_queries.terms_changes(base, changed)}
    assert changes == {
        "referral.amount": (1000, 2500),
        "referral.monthly_cap": (None, 100_000),
        "note": (None, "spring"),
    }
