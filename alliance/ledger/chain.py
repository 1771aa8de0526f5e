r"""The hash chain's canonical encoding: pure functions, shared by the sealer and by verification.

For the transaction at chain position ``seq`` (1, 2, 3, ...)::

    hash(seq) = lower-hex SHA-256( b"BAX-LEDGER-V1\n" || JSON(document) )

where ``document`` holds every stored column of the transaction row except ``hash`` itself - ``seq``,
``prev_hash`` (the previous transaction's hash; 64 zeros before the first), ``id``, ``idempotency_scope``,
``idempotency_key``, ``brand_id``, ``kind``, ``occurred_at``, ``posted_at``, ``period``, ``reference``,
``sealed_at`` - and ``postings``, the list of its postings in line order, each
``[line, account, brand_id, amount, currency]``. JSON is msgspec's with keys sorted at every level, no
whitespace, integers in decimal, datetimes as RFC 3339 UTC with ``Z`` (a fraction only when non-zero).
Changing any column of a transaction or of one of its postings therefore changes its hash, and changing
a hash breaks the next transaction's ``prev_hash`` link.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

__all__ = ["DOMAIN_PREFIX", "GENESIS_HASH", "ChainPosting", "transaction_hash"]

DOMAIN_PREFIX = b"BAX-LEDGER-V1\n"
GENESIS_HASH = "0" * 64


class ChainPosting(NamedTuple):
    line: int
    account: str
    brand_id: str | None
    amount: int
    currency: str


def transaction_hash(
    *,
    seq: int,
    prev_hash: str,
    id: str,
    idempotency_scope: str,
    idempotency_key: str,
    brand_id: str | None,
    kind: str,
    occurred_at: datetime,
    posted_at: datetime,
    period: str,
    reference: Mapping[str, Any],
    sealed_at: datetime,
    postings: Sequence[ChainPosting],
) -> str:
    """The chain hash of one transaction (see the module docstring for the exact bytes)."""
    document = {
        "seq": seq,
        "prev_hash": prev_hash,
        "id": id,
        "idempotency_scope": idempotency_scope,
        "idempotency_key": idempotency_key,
        "brand_id": brand_id,
        "kind": kind,
        "occurred_at": occurred_at,
        "posted_at": posted_at,
        "period": period,
        "reference": dict(reference),
        "sealed_at": sealed_at,
        "postings": [list(p) for p in sorted(postings, key=lambda p: p.line)],
    }
    return hashlib.sha256(DOMAIN_PREFIX + msgspec.json.encode(document, order="sorted")).hexdigest()
