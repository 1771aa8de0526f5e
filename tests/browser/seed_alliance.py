"""Seeding a live exchange for the contracts and matching browser tests through its real interfaces:
brands by ``alliance brand add``, then signing keys, contracts, signatures, segments and matches over
the partner API exactly as agents make them (blinding with the privacy library, signing with Ed25519)."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import contracts
from privacy.blind import blind_batch, hash_and_blind_batch
from privacy.keys import clamp_scalar
from tests import commands
from tests.browser.conftest import LiveConsole

ALLIANCE_ID = b"browser-alliance"
EPOCH = "2026-11"


@dataclass
class Agent:
    """A brand as its agent sees it: API key, Ed25519 signing key, PSI scalar."""

    id: str
    name: str
    key: str
    signing: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    scalar: bytes = field(default_factory=lambda: clamp_scalar(os.urandom(32)))

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def phones(start: int, count: int) -> list[bytes]:
    return [b"phone:+86139%08d" % i for i in range(start, start + count)]


def add_brand(live: LiveConsole, name: str, category: str) -> Agent:
    done = commands.run(commands.ALLIANCE, ["brand", "add", name, "--category", category, "--json"], live.env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    agent = Agent(id=out["brand"]["id"], name=name, key=out["api_key"]["secret"])
    public = contracts.public_key_bytes(agent.signing)
    response = httpx.put(
        f"{live.base}/v1/signing-key", json={"public_key": base64.b64encode(public).decode()}, headers=agent.headers
    )
    assert response.status_code == 200, response.text
    return agent


def propose(live: LiveConsole, a: Agent, b: Agent, psi: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "parties": [a.id, b.id],
        "settlement_currency": "CNY",
        "effective_from": (datetime.now(UTC) - timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        "coupon_commission": {"kind": "rate", "rate_bp": 250, "per_event_cap": 800},
        "referral": {"kind": "fixed", "amount": 1200},
        "funding": [
            {
                "benefit": "*",
                "funding_brand": a.id,
                "distributor_brand": b.id,
                "funding_brand_bp": 8000,
                "distributor_bp": 2000,
            }
        ],
        **extra,
    }
    if psi is not None:
        body["psi"] = psi
    response = httpx.post(f"{live.base}/v1/contracts", json=body, headers=a.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def sign(live: LiveConsole, contract: dict[str, Any], version: int, *agents: Agent) -> dict[str, Any]:
    [view] = [v for v in contract["versions"] if v["version"] == version]
    terms = msgspec.convert(view["terms"], contracts.ContractTerms)
    assert contracts.canonical_bytes(terms) == base64.b64decode(view["canonical"])
    result: dict[str, Any] = contract
    for agent in agents:
        signature = base64.b64encode(contracts.sign_terms(agent.signing, terms)).decode()
        response = httpx.post(
            f"{live.base}/v1/contracts/{contract['contract_id']}/signatures",
            json={"version": version, "signature": signature},
            headers=agent.headers,
        )
        assert response.status_code == 201, response.text
        result = response.json()
    return result


def publish(live: LiveConsole, agent: Agent, members: list[bytes], name: str) -> str:
    created = httpx.post(
        f"{live.base}/v1/segments",
        json={"name": name, "id_type": "phone", "size": len(members), "key_epoch": EPOCH, "tags": ["psi"]},
        headers=agent.headers,
    )
    assert created.status_code == 201, created.text
    segment_id = str(created.json()["id"])
    points = hash_and_blind_batch(ALLIANCE_ID, agent.scalar, members)
    octet = {**agent.headers, "Content-Type": "application/octet-stream"}
    uploaded = httpx.put(f"{live.base}/v1/segments/{segment_id}/items", content=points, headers=octet, timeout=60)
    assert uploaded.status_code == 200, uploaded.text
    published = httpx.post(f"{live.base}/v1/segments/{segment_id}/publish", headers=agent.headers)
    assert published.status_code == 200, published.text
    return segment_id


def _reblind(live: LiveConsole, agent: Agent, match_id: str) -> None:
    tasks = httpx.get(f"{live.base}/v1/tasks", headers=agent.headers).json()
    [task] = [t for t in tasks if t["match_id"] == match_id]
    items = httpx.get(f"{live.base}/v1/tasks/{task['id']}/items", headers=agent.headers, timeout=60)
    assert items.status_code == 200, items.text
    result = blind_batch(agent.scalar, items.content)
    shuffled = b"".join(sorted(result[i : i + 32] for i in range(0, len(result), 32)))
    octet = {**agent.headers, "Content-Type": "application/octet-stream"}
    put = httpx.put(f"{live.base}/v1/tasks/{task['id']}/result", content=shuffled, headers=octet, timeout=60)
    assert put.status_code == 200, put.text


def run_match(live: LiveConsole, requester: Agent, responder: Agent, seg: str, other_seg: str) -> dict[str, Any]:
    """Request a match and play both agents' re-blind tasks; returns the released result."""
    created = httpx.post(
        f"{live.base}/v1/matches",
        json={"segment_id": seg, "counterparty_segment_id": other_seg},
        headers=requester.headers,
    )
    assert created.status_code == 201, created.text
    match_id = created.json()["id"]
    _reblind(live, responder, match_id)
    _reblind(live, requester, match_id)
    result = httpx.get(f"{live.base}/v1/matches/{match_id}/result", headers=requester.headers)
    assert result.status_code == 200, result.text
    released: dict[str, Any] = result.json()
    return released
