"""Wire schemas for the ledger: transactions (each brand sees its own postings), balances, verification."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, TypeAlias

import msgspec

from contracts import UtcDateTime
from contracts.bounds import MAX_AMOUNT

__all__ = [
    "AccountBalance",
    "AdjustmentIn",
    "BalancesOut",
    "NetPosition",
    "PostingIn",
    "PostingOut",
    "ReferenceValue",
    "TransactionOut",
    "TransactionPage",
    "VerifyProblem",
    "VerifyReport",
]

ReferenceValue: TypeAlias = str | int | bool | None
"""Values allowed in a transaction's ``reference``: no floats, so its hash is exact."""

Amount = Annotated[int, msgspec.Meta(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]


class PostingIn(msgspec.Struct, forbid_unknown_fields=True):
    account: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    amount: Amount
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]


class AdjustmentIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An operator's manual transaction; a retry with the same ``idempotency_key`` posts nothing new."""

    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    occurred_at: UtcDateTime
    postings: Annotated[list[PostingIn], msgspec.Meta(min_length=1, max_length=1000)]
    kind: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_.]{0,31}$")] = "adjustment"
    reference: dict[str, ReferenceValue] = msgspec.field(default_factory=dict)


class PostingOut(msgspec.Struct):
    account: str
    amount: int
    currency: str


class TransactionOut(msgspec.Struct, omit_defaults=True):
    """A transaction. Brands see only their own postings and, of the chain, whether it is sealed and its
    hash; ``idempotency_key`` only when they posted it. Operators also see ``seq`` and ``prev_hash``."""

    id: str
    kind: str
    occurred_at: datetime
    posted_at: datetime
    period: str
    reference: dict[str, ReferenceValue]
    postings: list[PostingOut]
    sealed: bool
    hash: str | None = None
    idempotency_key: str | None = None
    brand_id: str | None = None
    seq: int | None = None
    prev_hash: str | None = None


class TransactionPage(msgspec.Struct):
    items: list[TransactionOut]
    next_cursor: str | None


class AccountBalance(msgspec.Struct):
    """Debit-positive: a ``payable`` balance is what the brand owes, a ``receivable`` balance (negative)
    what it is owed."""

    account: str
    currency: str
    balance: int


class NetPosition(msgspec.Struct):
    """Receivable minus payable in plain magnitudes: positive means the alliance owes the brand."""

    currency: str
    net: int


class BalancesOut(msgspec.Struct):
    brand_id: str
    accounts: list[AccountBalance]
    net: list[NetPosition]
    as_of: datetime


class VerifyProblem(msgspec.Struct, omit_defaults=True):
    """The first thing verification found wrong, and where."""

    reason: str
    transaction_id: str | None = None
    seq: int | None = None
    account: str | None = None
    currency: str | None = None


class VerifyReport(msgspec.Struct):
    ok: bool
    transactions: int  # sealed transactions checked
    pending: int  # committed but not sealed when the check ran (balance-checked only)
    sealed_now: int  # sealed by this run before checking
    head_seq: int
    head_hash: str
    checked_at: datetime
    problem: VerifyProblem | None = None
    quarantined: int = 0  # held out of the chain for an operator (`alliance ledger quarantine`)
    quarantined_ids: list[str] = msgspec.field(default_factory=list)  # the first 20 of them
