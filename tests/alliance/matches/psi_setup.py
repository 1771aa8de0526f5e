"""Building blocks for the matching tests: signing keys, signed contracts with PSI terms, and published
segments, all made through the public API (the same calls an agent makes)."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import AsyncTestClient

import contracts
from privacy.blind import blind_batch, hash_and_blind_batch
from privacy.keys import clamp_scalar
from tests.helpers import BrandHandle

Client = AsyncTestClient[Litestar]
EPOCH = "2026-11"
ALLIANCE = b"demo-alliance"
OCTET = {"Content-Type": "application/octet-stream"}


def phones(start: int, count: int) -> list[bytes]:
    return [b"phone:+86138%08d" % i for i in range(start, start + count)]


class Party:
    """A brand with what its agent would hold: a PSI scalar and a signing key."""

    def __init__(self, handle: BrandHandle) -> None:
        self.handle = handle
        self.id = handle.id
        self.headers = handle.headers
        self.scalar = clamp_scalar(os.urandom(32))
        self.signing = Ed25519PrivateKey.generate()

    def blind(self, canonicals: list[bytes]) -> bytes:
        return hash_and_blind_batch(ALLIANCE, self.scalar, canonicals)

    def reblind(self, points: bytes) -> bytes:
        return blind_batch(self.scalar, points)


async def register_key(client: Client, party: Party) -> None:
    public = party.signing.public_key().public_bytes_raw()
    response = await client.put(
        "/v1/signing-key", json={"public_key": base64.b64encode(public).decode()}, headers=party.headers
    )
    assert response.status_code == 200, response.text


async def sign_contract(client: Client, a: Party, b: Party, psi: dict[str, Any] | None) -> str:
    """A contract between ``a`` and ``b`` with these PSI terms, proposed by ``a`` and signed by both."""
    for party in (a, b):
        await register_key(client, party)
    proposal: dict[str, Any] = {
        "parties": [a.id, b.id],
        "settlement_currency": "CNY",
        "effective_from": (datetime.now(UTC) - timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        "coupon_commission": {"kind": "fixed", "amount": 0},
        "referral": {"kind": "fixed", "amount": 0},
    }
    if psi is not None:
        proposal["psi"] = psi
    response = await client.post("/v1/contracts", json=proposal, headers=a.headers)
    assert response.status_code == 201, response.text
    contract = response.json()
    version = contract["versions"][-1]
    terms = msgspec_terms(version["terms"])
    for party in (a, b):
        signature = contracts.sign_terms(party.signing, terms)
        signed = await client.post(
            f"/v1/contracts/{contract['contract_id']}/signatures",
            json={"version": version["version"], "signature": base64.b64encode(signature).decode()},
            headers=party.headers,
        )
        assert signed.status_code == 201, signed.text
    return str(contract["contract_id"])


def msgspec_terms(raw: dict[str, Any]) -> contracts.ContractTerms:
    return msgspec.convert(raw, contracts.ContractTerms)


async def publish(
    client: Client, party: Party, canonicals: list[bytes], *, tags: list[str] | None = None, epoch: str = EPOCH
) -> str:
    """Create, upload (blinded with the party's scalar, sorted) and publish a segment; returns its id."""
    created = await client.post(
        "/v1/segments",
        json={"name": "s", "id_type": "phone", "size": len(canonicals), "key_epoch": epoch, "tags": tags or ["psi"]},
        headers=party.headers,
    )
    assert created.status_code == 201, created.text
    segment_id = str(created.json()["id"])
    points = party.blind(canonicals)
    uploaded = await client.put(f"/v1/segments/{segment_id}/items", content=points, headers={**party.headers, **OCTET})
    assert uploaded.status_code == 200, uploaded.text
    published = await client.post(f"/v1/segments/{segment_id}/publish", headers=party.headers)
    assert published.status_code == 200, published.text
    return segment_id


async def open_task(client: Client, party: Party, match_id: str) -> dict[str, Any]:
    tasks = (await client.get("/v1/tasks", headers=party.headers)).json()
    [task] = [t for t in tasks if t["match_id"] == match_id]
    return dict(task)


async def do_reblind(client: Client, party: Party, match_id: str, *, shuffle: bool = True) -> dict[str, Any]:
    """What an honest agent does for a re-blind task (without the agent's local checks)."""
    task = await open_task(client, party, match_id)
    items = await client.get(f"/v1/tasks/{task['id']}/items", headers=party.headers)
    assert items.status_code == 200, items.text
    result = party.reblind(items.content)
    if shuffle:
        records = sorted(result[i : i + 32] for i in range(0, len(result), 32))
        result = b"".join(records)
    put = await client.put(f"/v1/tasks/{task['id']}/result", content=result, headers={**party.headers, **OCTET})
    assert put.status_code == 200, put.text
    return dict(put.json())
