"""Validation of what is posted to the ledger: accounts, amounts, balance per currency, references and
transaction headers. Bad input is a 422 `Problem`; nothing here touches the database."""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import contracts
from alliance.core.problems import Problem
from alliance.ledger.schemas import ReferenceValue
from contracts.bounds import MAX_AMOUNT

__all__ = [
    "MAX_AMOUNT",
    "MAX_POSTINGS",
    "account_brand",
    "bad",
    "priced_reference",
    "validate_header",
    "validate_postings",
    "validate_reference",
]

MAX_POSTINGS = 1000
_MAX_REFERENCE_KEYS = 32
_MAX_REFERENCE_TEXT = 256
_KIND = re.compile(r"[a-z][a-z0-9_.]{0,31}")
_ALLIANCE_ACCOUNT = re.compile(r"alliance:[a-z][a-z0-9_]{0,31}")


def bad(slug: str, detail: str) -> Problem:
    return Problem(422, slug, detail)


def account_brand(account: object) -> str | None:
    """The brand an account belongs to (``brand:<id>:payable|receivable``), ``None`` for the
    exchange's own ``alliance:<name>`` accounts; 422 ``invalid-account`` for anything else."""
    if not isinstance(account, str) or len(account) > 100:
        raise bad("invalid-account", f"{account!r} is not a ledger account")
    return _account_brand(account)


@functools.lru_cache(maxsize=4096)
def _account_brand(account: str) -> str | None:  # a handful of accounts recur on every post: parse once
    parsed = contracts.parse_brand_account(account)
    if parsed is not None:
        if not contracts.is_valid_id(parsed[0]):
            raise bad("invalid-account", f"{account!r} does not name a valid brand id")
        return parsed[0]
    if _ALLIANCE_ACCOUNT.fullmatch(account):
        return None
    raise bad(
        "invalid-account",
        f"{account!r} is not a ledger account: use brand:<id>:receivable, brand:<id>:payable or alliance:<name>",
    )


def _check_amount(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad("invalid-amount", f"{where}: amounts are integers of minor units, got {type(value).__name__}")
    if not -MAX_AMOUNT <= value <= MAX_AMOUNT:
        raise bad("amount-out-of-range", f"{where}: {value} is outside the signed 64-bit range")
    if value == 0:
        raise bad("invalid-amount", f"{where}: a posting of zero moves nothing; leave it out")
    return value


def validate_postings(postings: Sequence[contracts.Posting], allow_empty: bool) -> list[str | None]:
    """Check every posting and that they balance per currency; returns each posting's brand."""
    if not isinstance(postings, tuple | list):  # (cheaper than an ABC check on the hot path)
        raise bad("invalid-postings", "postings must be a list or tuple of Posting")
    if not postings and not allow_empty:
        raise bad("invalid-postings", "a transaction needs at least one posting")
    if len(postings) > MAX_POSTINGS:
        raise bad("invalid-postings", f"at most {MAX_POSTINGS} postings per transaction")
    brands: list[str | None] = []
    totals: dict[str, int] = defaultdict(int)
    for index, posting in enumerate(postings):
        where = f"postings[{index}]"
        if not isinstance(posting, contracts.Posting):
            raise bad("invalid-postings", f"{where}: expected a Posting, got {type(posting).__name__}")
        brands.append(account_brand(posting.account))
        amount = _check_amount(posting.amount, where)
        try:
            contracts.validate_currency(posting.currency)
        except contracts.UnknownCurrency as exc:
            raise bad("unknown-currency", f"{where}: {exc}") from None
        totals[posting.currency] += amount
    unbalanced = {currency: total for currency, total in totals.items() if total}
    if unbalanced:
        detail = ", ".join(f"{currency} {total:+d}" for currency, total in sorted(unbalanced.items()))
        raise Problem(
            422,
            "unbalanced-transaction",
            f"postings must sum to zero in every currency; off by {detail}",
            extra={"imbalance": unbalanced},
        )
    return brands


def validate_reference(reference: Mapping[str, object] | None) -> dict[str, ReferenceValue]:
    if reference is None:
        return {}
    if not isinstance(reference, dict) and isinstance(reference, Mapping):  # dict first: no ABC check
        reference = dict(reference)
    if not isinstance(reference, dict) or len(reference) > _MAX_REFERENCE_KEYS:
        raise bad("invalid-reference", f"reference must be a mapping of at most {_MAX_REFERENCE_KEYS} entries")
    clean: dict[str, ReferenceValue] = {}
    for key, value in reference.items():
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            raise bad("invalid-reference", f"reference key {key!r} must be a string of 1-64 characters")
        if isinstance(value, bool) or value is None:
            clean[key] = value
        elif isinstance(value, int):
            if not -MAX_AMOUNT <= value <= MAX_AMOUNT:
                raise bad("invalid-reference", f"reference[{key!r}] is outside the signed 64-bit range")
            clean[key] = value
        elif isinstance(value, str) and len(value) <= _MAX_REFERENCE_TEXT:
            clean[key] = value
        else:
            raise bad(
                "invalid-reference",
                f"reference[{key!r}] must be a string (<= {_MAX_REFERENCE_TEXT} chars), an integer, a bool or "
                f"null, got {type(value).__name__}",
            )
    return clean


def validate_header(kind: object, idempotency_key: object, occurred_at: object, brand_id: object) -> datetime:
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise bad("invalid-kind", f"kind must match {_KIND.pattern}, got {kind!r}")
    if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 255 or not idempotency_key.isprintable():
        raise bad("invalid-idempotency-key", "the idempotency key must be 1-255 printable characters")
    if brand_id is not None and not contracts.is_valid_id(brand_id):
        raise bad("invalid-brand", f"{brand_id!r} is not a brand id")
    if not isinstance(occurred_at, datetime) or occurred_at.utcoffset() is None:
        raise bad("invalid-occurred-at", "occurred_at must be a timezone-aware datetime")
    return occurred_at.astimezone(UTC)


def priced_reference(priced: contracts.PricedEvent) -> dict[str, object]:
    """What the ledger records of a priced event: its id, the contract version that priced it and the
    commission (callers add their own ids)."""
    return {
        "event_id": priced.event_id,
        "contract_id": priced.contract_id,
        "contract_version": priced.contract_version,
        "commission": priced.commission,
        "commission_kind": priced.commission_kind,
        "commission_payer": priced.commission_payer,
        "commission_payee": priced.commission_payee,
        "commission_month": priced.commission_month,
    }
