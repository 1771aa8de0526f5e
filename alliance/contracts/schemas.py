"""Wire schemas for signing keys and contracts.

Contract terms carry money and are signed, so their routes decode bodies strictly
(`alliance.core.bodies.StrictBody`): a string or float where an integer belongs is refused with 400.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Literal, TypeVar

import msgspec

from contracts import (
    DEFAULT_ATTRIBUTION_WINDOW_SECONDS,
    CommissionRule,
    ContractTerms,
    FundingSplit,
    PsiTerms,
    UtcDateTime,
)

__all__ = [
    "ContractListOut",
    "ContractOut",
    "ContractProposal",
    "ReviewIn",
    "ReviewOut",
    "SignatureIn",
    "SignatureOut",
    "SigningKeyIn",
    "SigningKeyOut",
    "SigningKeysOut",
    "VersionOut",
    "decode_binary",
]

T = TypeVar("T")

_HEX = re.compile(r"[0-9a-fA-F]*")

BrandId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
BinaryText = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


def decode_binary(text: str, length: int, what: str) -> bytes:
    """Raw bytes from hex (exactly ``2 * length`` hex digits) or base64 (standard or URL-safe alphabet,
    padding optional). Raises ``ValueError`` naming ``what`` when the text is neither or has the
    wrong length. The two forms never collide for 32- and 64-byte values."""
    text = text.strip()
    if len(text) == 2 * length and _HEX.fullmatch(text):
        return bytes.fromhex(text)
    normalized = text.replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    try:
        raw = base64.b64decode(normalized, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} must be {length} bytes as base64 or {2 * length} hex digits") from None
    if len(raw) != length:
        raise ValueError(f"{what} must be {length} bytes, got {len(raw)}")
    return raw


# --- signing keys -----------------------------------------------------------------------------------


class SigningKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    """A brand's raw 32-byte Ed25519 public key, base64 or hex."""

    public_key: BinaryText


class SigningKeyOut(msgspec.Struct):
    key_id: str
    public_key: str  # base64
    created_at: datetime
    retired_at: datetime | None
    current: bool


class SigningKeysOut(msgspec.Struct):
    """The current key (``None`` before the first registration) and every key ever registered."""

    current: SigningKeyOut | None
    history: list[SigningKeyOut]


# --- contracts --------------------------------------------------------------------------------------


class ContractProposal(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A contract version as proposed: `contracts.ContractTerms` without the id and number, which the
    exchange assigns (``POST /v1/contracts`` starts a contract at version 1; ``POST
    /v1/contracts/{id}/versions`` appends the next version). ``parties`` may come in any order and
    must include the caller; it may be left out for a new version (the contract's parties are kept).
    """

    settlement_currency: str
    effective_from: UtcDateTime
    coupon_commission: CommissionRule
    referral: CommissionRule
    parties: tuple[BrandId, BrandId] | None = None
    version: int | None = None
    effective_to: UtcDateTime | None = None
    funding: tuple[FundingSplit, ...] = ()
    attribution_window_seconds: int = DEFAULT_ATTRIBUTION_WINDOW_SECONDS
    psi: PsiTerms | None = None
    note: str | None = None


class SignatureIn(msgspec.Struct, forbid_unknown_fields=True):
    """The caller's Ed25519 signature (64 bytes, base64 or hex) over the version's ``canonical`` bytes."""

    version: Annotated[int, msgspec.Meta(ge=1)]
    signature: BinaryText


class SignatureOut(msgspec.Struct):
    brand_id: str
    key_id: str
    signed_at: datetime


class ReviewIn(msgspec.Struct, forbid_unknown_fields=True):
    """The alliance's review of a version: ``approve``, or ``reject`` with a reason (1-500 characters)
    the parties will read. A rejected version never governs anything; a rejection is final."""

    decision: Literal["approve", "reject"]
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class ReviewOut(msgspec.Struct):
    """What the alliance decided about a version. The parties see it; ``reviewed_at`` is UTC."""

    decision: Literal["approved", "rejected"]
    reason: str | None
    reviewed_at: datetime


class VersionOut(msgspec.Struct):
    """One version. ``canonical`` (base64) is exactly what each party signs; ``fingerprint`` is its
    SHA-256. ``signed`` is true once both parties have signed.

    ``status``: ``proposed`` (no signature), ``partially_signed``, ``scheduled`` (signed, starts later),
    ``in_force``, ``superseded`` (a later version took over), ``ended`` (its ``effective_to`` passed) or
    ``rejected`` (vetoed by the alliance, see ``review``). ``review`` is ``None`` until the alliance has
    reviewed the version; an unreviewed signed version is in force all the same.
    """

    version: int
    terms: ContractTerms
    canonical: str
    fingerprint: str
    proposed_by: str
    proposed_at: datetime
    signatures: list[SignatureOut]
    missing_signers: list[str]
    signed: bool
    status: str = "proposed"
    review: ReviewOut | None = None


class ContractOut(msgspec.Struct):
    contract_id: str
    parties: tuple[str, str]
    counterparty: str | None
    created_at: datetime
    in_force_version: int | None
    versions: list[VersionOut]


class ContractListOut(msgspec.Struct):
    items: list[ContractOut]
