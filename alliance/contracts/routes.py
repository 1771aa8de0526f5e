"""Partner API for contracts: register a signing key, propose versions, sign them, read them back.

Money and signatures are decoded strictly from the raw body (see `alliance.contracts.schemas`); a
brand sees only the contracts it is a party to.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post, put
from litestar.params import FromPath, JSONBody, Parameter

from alliance.contracts import service
from alliance.contracts.schemas import (
    ContractListOut,
    ContractOut,
    ContractProposal,
    ReviewIn,
    SignatureIn,
    SigningKeyIn,
    SigningKeysOut,
    decode_binary,
)
from alliance.core.bodies import StrictBody
from alliance.core.deps import Audit, Caller, Db, Operator
from alliance.core.problems import Problem

__all__ = ["ContractAdminController", "ContractController", "SigningKeyController"]


class SigningKeyController(Controller):
    path = "/signing-key"
    tags = ["contracts"]

    @put(
        "/",
        operation_id="putSigningKey",
        status_code=200,
        summary="Register the brand's Ed25519 public key (raw 32 bytes, base64 or hex); the old one is retired",
    )
    async def put_key(self, db: Db, caller: Caller, audit: Audit, data: JSONBody[SigningKeyIn]) -> SigningKeysOut:
        try:
            raw = decode_binary(data.public_key, 32, "public_key")
        except ValueError as exc:
            raise Problem(422, "invalid-signing-key", str(exc)) from None
        return await service.register_signing_key(db, audit, caller.brand_id, raw)

    @get("/", operation_id="getSigningKey", summary="The brand's current signing key and key history")
    async def get_key(self, db: Db, caller: Caller) -> SigningKeysOut:
        return await service.signing_keys(db, caller.brand_id)


class ContractController(Controller):
    path = "/contracts"
    tags = ["contracts"]

    @post(
        "/",
        operation_id="proposeContract",
        summary="Propose a contract with another brand (its version 1)",
        dto=StrictBody[ContractProposal],
        return_dto=None,
    )
    async def propose(self, db: Db, caller: Caller, audit: Audit, data: JSONBody[ContractProposal]) -> ContractOut:
        return await service.propose_contract(db, audit, caller.brand_id, data)

    @post(
        "/{contract_id:str}/versions",
        operation_id="proposeContractVersion",
        summary="Propose the next version of one of the brand's contracts",
        dto=StrictBody[ContractProposal],
        return_dto=None,
    )
    async def propose_version(
        self, db: Db, caller: Caller, audit: Audit, contract_id: FromPath[str], data: JSONBody[ContractProposal]
    ) -> ContractOut:
        return await service.propose_version(db, audit, caller.brand_id, contract_id, data)

    @post(
        "/{contract_id:str}/signatures",
        operation_id="signContractVersion",
        summary="Sign a version: Ed25519 over its canonical bytes, verified against the brand's current key",
    )
    async def sign(
        self, db: Db, caller: Caller, audit: Audit, contract_id: FromPath[str], data: JSONBody[SignatureIn]
    ) -> ContractOut:
        try:
            signature = decode_binary(data.signature, 64, "signature")
        except ValueError as exc:
            raise Problem(422, "signature-invalid", str(exc)) from None
        return await service.sign_version(db, audit, caller.brand_id, contract_id, data.version, signature)

    @get("/", operation_id="listContracts", summary="The brand's contracts, with every version and signature")
    async def list(self, db: Db, caller: Caller) -> ContractListOut:
        return ContractListOut(items=await service.list_contracts(db, caller.brand_id))

    @get("/{contract_id:str}", operation_id="getContract", summary="One of the brand's contracts")
    async def get(self, db: Db, caller: Caller, contract_id: FromPath[str]) -> ContractOut:
        return await service.get_contract(db, contract_id, caller.brand_id)


class ContractAdminController(Controller):
    path = "/contracts"
    tags = ["admin"]

    @get("/", operation_id="adminListContracts", summary="Every contract of the alliance")
    async def list(self, db: Db, operator: Operator) -> ContractListOut:
        return ContractListOut(items=await service.list_contracts(db, None))

    @get("/{contract_id:str}", operation_id="adminGetContract", summary="One contract")
    async def get(self, db: Db, operator: Operator, contract_id: FromPath[str]) -> ContractOut:
        return await service.get_contract(db, contract_id, None)

    @post(
        "/{contract_id:str}/versions/{version:int}/review",
        operation_id="adminReviewContractVersion",
        status_code=200,
        summary="Approve a version, or reject it (with a reason): a rejected version never governs anything",
    )
    async def review(
        self,
        db: Db,
        operator: Operator,
        audit: Audit,
        contract_id: FromPath[str],
        version: Annotated[int, Parameter(ge=1, le=2**31 - 1)],  # beyond the column's range: 400, not 500
        data: JSONBody[ReviewIn],
    ) -> ContractOut:
        return await service.review_version(db, audit, contract_id, version, data.decision, data.reason)
