"""Idempotency keys for calls that move money (redemptions, reversals, conversions).

The first successful response to a brand's ``Idempotency-Key`` is stored in the same transaction as
the change it describes; a retry with the same key and the same request gets that response back byte
for byte (and nothing is written again). The same key with a different request is refused with 422
``idempotency-key-reused``. Failed calls (4xx) store nothing: the change they describe did not happen,
so a retry is evaluated afresh.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Generic, TypeAlias, TypeVar

import msgspec
from litestar.params import HeaderParameter
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.problems import Problem
from alliance.db.base import utcnow
from alliance.db.models import IdempotencyRecord

__all__ = [
    "IdempotencyKey",
    "IdempotentResult",
    "fingerprint",
    "lookup",
    "remember",
    "replayed_headers",
    "require_key",
    "store",
]

T = TypeVar("T")
_MAX_KEY = 255

IdempotencyKey: TypeAlias = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="Required: a unique value per logical call (e.g. a UUID); a retry with it is applied once",
    ),
]


def replayed_headers(replayed: bool) -> dict[str, str]:
    """``Idempotent-Replayed: true`` on a stored answer given back for a retried call."""
    return {"Idempotent-Replayed": "true"} if replayed else {}


@dataclass(frozen=True, slots=True)
class IdempotentResult(Generic[T]):
    """A service's answer to an idempotent call: ``replayed`` when it is the stored first answer."""

    status_code: int
    body: T
    replayed: bool = False
    encoded: bytes | None = None  # ``body`` as JSON, when the service has already encoded it (to store it)


def require_key(key: str | None) -> str:
    """The ``Idempotency-Key`` header value, or a 400 problem if it is missing or unusable."""
    if key is None or not key.strip():
        raise Problem(
            400,
            "idempotency-key-required",
            "send an 'Idempotency-Key' header (for example a UUID) so a retried call is applied only once",
        )
    key = key.strip()
    if len(key) > _MAX_KEY or not key.isprintable() or not key.isascii():
        raise Problem(400, "invalid-idempotency-key", f"the Idempotency-Key must be 1-{_MAX_KEY} printable ASCII chars")
    return key


def fingerprint(operation: str, request: msgspec.Struct) -> str:
    """SHA-256 of the operation and the request's canonical JSON (field order and spacing do not matter)."""
    return hashlib.sha256(operation.encode() + b"\n" + msgspec.json.encode(request, order="sorted")).hexdigest()


async def lookup(
    session: AsyncSession, brand_id: str, key: str, operation: str, print_: str, body_type: type[T]
) -> IdempotentResult[T] | None:
    """The stored answer for (brand, key), if any; 422 if the key was used for a different request."""
    record = (
        await session.execute(
            select(
                IdempotencyRecord.operation,
                IdempotencyRecord.fingerprint,
                IdempotencyRecord.status_code,
                IdempotencyRecord.response_body,
            ).where(IdempotencyRecord.brand_id == brand_id, IdempotencyRecord.key == key)
        )
    ).first()
    if record is None:
        return None
    stored_operation, stored_print, status_code, body = record
    if stored_operation != operation or stored_print != print_:
        raise Problem(
            422,
            "idempotency-key-reused",
            "this Idempotency-Key was already used for a different request; use a new key for a new request",
        )
    return IdempotentResult(status_code, msgspec.json.decode(body, type=body_type), replayed=True)


def remember(
    session: AsyncSession,
    brand_id: str,
    key: str,
    operation: str,
    print_: str,
    status_code: int,
    body: msgspec.Struct,
    resource_id: str,
) -> None:
    """Store the first answer; the caller's transaction commits it together with the change."""
    session.add(
        IdempotencyRecord(
            brand_id=brand_id,
            key=key,
            operation=operation,
            fingerprint=print_,
            status_code=status_code,
            response_body=msgspec.json.encode(body),
            resource_id=resource_id,
        )
    )


_INSERT = insert(IdempotencyRecord)


async def store(
    session: AsyncSession,
    brand_id: str,
    key: str,
    operation: str,
    print_: str,
    status_code: int,
    body: msgspec.Struct,
    resource_id: str,
) -> None:
    """:func:`remember`, written at once (a unique violation surfaces here, not at flush)."""
    await session.execute(
        _INSERT,
        {
            "brand_id": brand_id,
            "key": key,
            "operation": operation,
            "fingerprint": print_,
            "status_code": status_code,
            "response_body": msgspec.json.encode(body),
            "resource_id": resource_id,
            "created_at": utcnow(),
        },
    )
