"""Wire schemas for referrals and conversions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from alliance.benefits.schemas import Amount, BrandId, Currency, MemberToken, Reference

__all__ = ["ConversionCreate", "ConversionOut", "ReferralCreate", "ReferralOut", "SigningKeyOut"]


class ReferralCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Refer a member to ``receiver_brand_id``. The token expires after ``ttl_seconds`` or at the end of
    the contract's attribution window, whichever is sooner."""

    receiver_brand_id: BrandId
    member_token: MemberToken | None = None
    campaign: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=366 * 86_400)] | None = None


class ReferralOut(msgspec.Struct, kw_only=True):
    id: str
    referrer_brand_id: str
    receiver_brand_id: str
    campaign: str | None
    contract_id: str | None
    issued_at: datetime
    expires_at: datetime
    status: str
    token: str | None = None


class ConversionCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    order_reference: Reference
    order_amount: Amount
    currency: Currency


class ConversionOut(msgspec.Struct, kw_only=True):
    id: str
    referral_id: str
    referrer_brand_id: str
    receiver_brand_id: str
    order_reference: str
    order_amount: int
    currency: str
    occurred_at: datetime
    contract_id: str | None
    contract_version: int | None
    commission: int
    ledger_transaction_id: str | None


class SigningKeyOut(msgspec.Struct):
    """The exchange's Ed25519 key for referral tokens (raw 32 bytes, base64url without padding)."""

    key_id: str
    algorithm: str
    public_key: str
    token_format: str
