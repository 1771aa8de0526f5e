"""Isolation probes for the contracts routes: brand B against a contract between brand A and a third
brand C (B is not a party)."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.alliance.contracts.support import b64, proposal_body, register_key, third_brand
from tests.helpers import BrandHandle
from tests.isolation import Probe


async def a_contract_with_c(client: AsyncTestClient[Litestar], a: BrandHandle) -> dict[str, str]:
    c = await third_brand(client)
    await register_key(client, a)
    created = await client.post("/v1/contracts", json=proposal_body([a.id, c.id]), headers=a.headers)
    assert created.status_code == 201, created.text
    return {"contract_id": created.json()["contract_id"]}


async def contract_untouched(client: AsyncTestClient[Litestar], a: BrandHandle, params: dict[str, str]) -> None:
    contract = (await client.get(f"/v1/contracts/{params['contract_id']}", headers=a.headers)).json()
    assert len(contract["versions"]) == 1, "brand B's call added a version to A's contract"
    assert contract["versions"][0]["signatures"] == [], "brand B's call signed A's contract"


_STRANGERS = proposal_body(["brd_stranger1", "brd_stranger2"])
_NEXT_VERSION = {k: v for k, v in proposal_body(["brd_stranger1", "brd_stranger2"]).items() if k != "parties"}

PROBES: dict[tuple[str, str], Probe] = {
    ("PUT", "/v1/signing-key"): Probe(body={"public_key": b64(bytes(range(32)))}),
    ("GET", "/v1/signing-key"): Probe(),
    ("GET", "/v1/contracts"): Probe(setup=None),
    # B cannot create a contract between other brands (403); A's contract stays as it was.
    ("POST", "/v1/contracts"): Probe(setup=a_contract_with_c, verify=contract_untouched, body=_STRANGERS),
    ("GET", "/v1/contracts/{contract_id}"): Probe(setup=a_contract_with_c, verify=contract_untouched),
    ("POST", "/v1/contracts/{contract_id}/versions"): Probe(
        setup=a_contract_with_c, verify=contract_untouched, body=_NEXT_VERSION
    ),
    ("POST", "/v1/contracts/{contract_id}/signatures"): Probe(
        setup=a_contract_with_c, verify=contract_untouched, body={"version": 1, "signature": b64(bytes(64))}
    ),
}
