"""Wire schemas for brands and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

__all__ = [
    "ApiKeyOut",
    "BrandCreate",
    "BrandOut",
    "CreatedBrand",
    "IssuedApiKey",
    "KeyCreate",
    "MeOut",
]

BrandName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
Label = Annotated[str, msgspec.Meta(max_length=100)]


class BrandCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: BrandName
    category: Annotated[str, msgspec.Meta(max_length=100)] | None = None


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    label: Label = ""


class BrandOut(msgspec.Struct):
    id: str
    name: str
    category: str | None
    status: str
    created_at: datetime
    suspended_at: datetime | None = None


class ApiKeyOut(msgspec.Struct):
    """A key as listed: its prefix identifies it; the secret is never shown again."""

    id: str
    prefix: str
    label: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class IssuedApiKey(msgspec.Struct):
    """Returned once when a key is created or rotated: store ``secret`` now, it cannot be recovered."""

    key: ApiKeyOut
    secret: str


class CreatedBrand(msgspec.Struct):
    brand: BrandOut
    api_key: IssuedApiKey


class MeOut(msgspec.Struct):
    brand: BrandOut
    key: ApiKeyOut
