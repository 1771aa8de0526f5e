"""The rules that make a contract version valid (`validate_terms`), and decoding one from the wire
(`decode_terms`): every problem is reported at once, as (field path, message) pairs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeGuard

import msgspec

from contracts.bounds import MAX_AMOUNT
from contracts.currencies import ISO_4217_MINOR_UNITS
from contracts.errors import InvalidTerms
from contracts.terms import (
    ANY_BENEFIT,
    BASIS_POINTS_PER_UNIT,
    CARDINALITY,
    MAX_MINOR_UNITS,
    MEMBERSHIP_TO_PREFIX,
    ContractTerms,
    FixedCommission,
    FundingSplit,
    PsiTerms,
    RateCommission,
    is_valid_id,
)
from privacy.disclosure import format_disclosure_policy

__all__ = ["decode_terms", "validate_terms"]

_MAX_NOTE_CHARS = 4_000
_MAX_TAG_CHARS = 64


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass and float is what we must keep out of signed data.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(
    problems: list[tuple[str, str]], path: str, value: object, *, minimum: int, maximum: int, what: str
) -> None:
    if not _is_int(value):
        problems.append((path, f"{what} must be an integer, got {type(value).__name__} {value!r}"))
        return
    if value < minimum:
        if minimum == 0:
            problems.append((path, f"{what} must not be negative, got {value}"))
        else:
            problems.append((path, f"{what} must be at least {minimum}, got {value}"))
    elif value > maximum:
        problems.append((path, f"{what} must be at most {maximum}, got {value}"))


def _check_utc(problems: list[tuple[str, str]], path: str, value: object) -> bool:
    if not isinstance(value, datetime):
        problems.append((path, f"must be a datetime, got {type(value).__name__}"))
        return False
    offset = value.utcoffset()
    if offset is None:
        problems.append((path, "must be timezone-aware (UTC), got a naive datetime"))
        return False
    if offset != timedelta(0):
        problems.append((path, f"must be in UTC, got offset {offset}"))
        return False
    return True


def _check_party(problems: list[tuple[str, str]], path: str, brand: object, parties: Sequence[object]) -> None:
    if brand not in parties:
        problems.append((path, f"{brand!r} is not a party to this contract (parties: {tuple(parties)!r})"))


def _check_commission(problems: list[tuple[str, str]], path: str, rule: object) -> None:
    if isinstance(rule, FixedCommission):
        _check_int(problems, f"{path}.amount", rule.amount, minimum=0, maximum=MAX_AMOUNT, what="amount")
    elif isinstance(rule, RateCommission):
        _check_int(
            problems,
            f"{path}.rate_bp",
            rule.rate_bp,
            minimum=0,
            maximum=BASIS_POINTS_PER_UNIT,
            what="rate (bp)",
        )
    else:
        problems.append((path, f"must be a FixedCommission or RateCommission, got {type(rule).__name__}"))
        return
    for cap_name in ("per_event_cap", "monthly_cap"):
        cap = getattr(rule, cap_name)
        if cap is not None:
            _check_int(problems, f"{path}.{cap_name}", cap, minimum=0, maximum=MAX_AMOUNT, what="cap")


def _check_funding(problems: list[tuple[str, str]], funding: object, parties: Sequence[object]) -> None:
    if not isinstance(funding, tuple | list):
        problems.append(("funding", f"must be a sequence of FundingSplit, got {type(funding).__name__}"))
        return
    seen: dict[tuple[str, str], int] = {}
    for index, split in enumerate(funding):
        path = f"funding[{index}]"
        if not isinstance(split, FundingSplit):
            problems.append((path, f"must be a FundingSplit, got {type(split).__name__}"))
            continue
        if split.benefit != ANY_BENEFIT and not is_valid_id(split.benefit):
            problems.append((f"{path}.benefit", f"must be a benefit id or {ANY_BENEFIT!r}, got {split.benefit!r}"))
        _check_party(problems, f"{path}.funding_brand", split.funding_brand, parties)
        _check_party(problems, f"{path}.distributor_brand", split.distributor_brand, parties)
        if split.funding_brand == split.distributor_brand:
            problems.append(
                (
                    f"{path}.distributor_brand",
                    "the funding brand and the distributor must be different parties",
                )
            )
        shares_ok = True
        for name in ("funding_brand_bp", "distributor_bp"):
            before = len(problems)
            _check_int(
                problems,
                f"{path}.{name}",
                getattr(split, name),
                minimum=0,
                maximum=BASIS_POINTS_PER_UNIT,
                what="share (bp)",
            )
            shares_ok = shares_ok and len(problems) == before
        if shares_ok and split.funding_brand_bp + split.distributor_bp != BASIS_POINTS_PER_UNIT:
            problems.append(
                (
                    path,
                    f"funding_brand_bp + distributor_bp must be {BASIS_POINTS_PER_UNIT} bp, "
                    f"got {split.funding_brand_bp} + {split.distributor_bp} = "
                    f"{split.funding_brand_bp + split.distributor_bp}",
                )
            )
        key = (split.benefit, split.funding_brand)
        if key in seen:
            problems.append(
                (
                    f"{path}.benefit",
                    f"duplicate split for benefit {split.benefit!r} funded by {split.funding_brand!r} "
                    f"(already at funding[{seen[key]}])",
                )
            )
        else:
            seen[key] = index


def _check_unique_strings(problems: list[tuple[str, str]], path: str, values: object, *, ids: bool, what: str) -> None:
    if not isinstance(values, tuple | list):
        problems.append((path, f"must be a sequence of strings, got {type(values).__name__}"))
        return
    seen: set[str] = set()
    for index, value in enumerate(values):
        item_path = f"{path}[{index}]"
        if ids and not is_valid_id(value):
            problems.append((item_path, f"{value!r} is not a valid {what}"))
        elif not ids and (not isinstance(value, str) or not value.strip() or len(value) > _MAX_TAG_CHARS):
            problems.append((item_path, f"{what} must be a non-blank string of at most {_MAX_TAG_CHARS} chars"))
        elif value in seen:
            problems.append((item_path, f"duplicate {what} {value!r}"))
        else:
            seen.add(value)


def _check_psi(problems: list[tuple[str, str]], psi: object, parties: Sequence[object]) -> None:
    if not isinstance(psi, PsiTerms):
        problems.append(("psi", f"must be PsiTerms or None, got {type(psi).__name__}"))
        return
    _check_unique_strings(problems, "psi.segment_tags", psi.segment_tags, ids=False, what="segment tag")
    _check_unique_strings(problems, "psi.segment_ids", psi.segment_ids, ids=True, what="segment id")
    if not psi.segment_tags and not psi.segment_ids:
        problems.append(("psi", "allows no segment: list segment_tags or segment_ids, or omit psi"))
    if not isinstance(psi.disclosure, str):
        problems.append(("psi.disclosure", f"must be a string, got {type(psi.disclosure).__name__}"))
    elif psi.disclosure != CARDINALITY:
        recipient = psi.membership_recipient()
        if recipient is None or psi.disclosure != format_disclosure_policy(psi.policy()):
            problems.append(
                (
                    "psi.disclosure",
                    f"must be {CARDINALITY!r} or '{MEMBERSHIP_TO_PREFIX}<brand>', got {psi.disclosure!r}",
                )
            )
        elif recipient not in parties:
            problems.append(
                (
                    "psi.disclosure",
                    f"membership_to names {recipient!r}, which is not a party {tuple(parties)!r}",
                )
            )
    _check_int(problems, "psi.min_k", psi.min_k, minimum=1, maximum=MAX_MINOR_UNITS, what="min_k")
    if psi.dp_epsilon_milli_per_month is not None:
        _check_int(
            problems,
            "psi.dp_epsilon_milli_per_month",
            psi.dp_epsilon_milli_per_month,
            minimum=1,
            maximum=MAX_MINOR_UNITS,
            what="DP budget (milli-epsilon)",
        )
    _check_int(
        problems,
        "psi.round_cardinality_to",
        psi.round_cardinality_to,
        minimum=1,
        maximum=MAX_MINOR_UNITS,
        what="rounding step",
    )


def _problems_of(terms: ContractTerms) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not is_valid_id(terms.contract_id):
        problems.append(("contract_id", f"{terms.contract_id!r} is not a valid id"))
    _check_int(problems, "version", terms.version, minimum=1, maximum=MAX_MINOR_UNITS, what="version")

    parties: Sequence[object] = terms.parties if isinstance(terms.parties, tuple | list) else ()
    if len(parties) != 2:
        problems.append(("parties", f"must be exactly two brand ids, got {terms.parties!r}"))
        parties = ()
    else:
        for index, brand in enumerate(parties):
            if not is_valid_id(brand):
                problems.append((f"parties[{index}]", f"{brand!r} is not a valid brand id"))
        first, second = parties
        if first == second:
            problems.append(("parties", f"a brand cannot contract with (or pay) itself: {first!r} twice"))
        elif isinstance(first, str) and isinstance(second, str) and first > second:
            problems.append(
                (
                    "parties",
                    f"must be in ascending order so each pair has one encoding: use {(second, first)!r}",
                )
            )

    if terms.settlement_currency not in ISO_4217_MINOR_UNITS:
        problems.append(
            ("settlement_currency", f"{terms.settlement_currency!r} is not an active ISO 4217 currency code")
        )

    from_ok = _check_utc(problems, "effective_from", terms.effective_from)
    if terms.effective_to is not None:
        to_ok = _check_utc(problems, "effective_to", terms.effective_to)
        if from_ok and to_ok and terms.effective_to <= terms.effective_from:
            problems.append(
                (
                    "effective_to",
                    f"must be after effective_from ({terms.effective_from.isoformat()}), "
                    f"got {terms.effective_to.isoformat()}",
                )
            )

    _check_funding(problems, terms.funding, parties)
    _check_commission(problems, "coupon_commission", terms.coupon_commission)
    _check_commission(problems, "referral", terms.referral)
    _check_int(
        problems,
        "attribution_window_seconds",
        terms.attribution_window_seconds,
        minimum=1,
        maximum=MAX_MINOR_UNITS,
        what="attribution window (s)",
    )
    if terms.psi is not None:
        _check_psi(problems, terms.psi, parties)
    if terms.note is not None and (not isinstance(terms.note, str) or len(terms.note) > _MAX_NOTE_CHARS):
        problems.append(("note", f"must be a string of at most {_MAX_NOTE_CHARS} characters"))
    return problems


def validate_terms(terms: ContractTerms) -> None:
    """Raise `InvalidTerms` listing every problem in `terms`; return ``None`` if it may be signed.

    Checks ids, the ascending distinct party pair, the ISO 4217 code, UTC dates with
    ``effective_to > effective_from``, funding splits (parties, distinct roles, shares summing to 10_000 bp,
    one split per benefit and funding brand), non-negative commission amounts and caps, a positive
    attribution window, and PSI terms (membership_to naming a party, ``min_k >= 1``, positive budgets).
    """
    if not isinstance(terms, ContractTerms):
        raise TypeError(f"expected ContractTerms, got {type(terms).__name__}")
    if _FOUND_VALID.get(id(terms)) is terms:
        return
    problems = _problems_of(terms)
    if problems:
        raise InvalidTerms(problems)
    if len(_FOUND_VALID) >= _FOUND_VALID_MAX:
        _FOUND_VALID.clear()
    _FOUND_VALID[id(terms)] = terms


# Pricing validates the terms of every event it prices, and a service prices thousands of events under
# the same few terms objects (a tenth of a redemption's CPU went to re-validating them). Terms are
# immutable all the way down (frozen structs and tuples), so an object found valid stays valid: it is
# remembered by identity, holding a reference so that its id cannot be reused while remembered.
_FOUND_VALID: dict[int, ContractTerms] = {}
_FOUND_VALID_MAX = 1_024


_MSGSPEC_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def decode_terms(data: bytes | str) -> ContractTerms:
    """Decode JSON into validated `ContractTerms`; any problem (shape or content) is `InvalidTerms`."""
    try:
        terms = msgspec.json.decode(data, type=ContractTerms)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _MSGSPEC_PATH.search(message)
        path = match.group("path") if match else "$"
        raise InvalidTerms([(path or "$", message[: match.start()] if match else message)]) from exc
    except msgspec.DecodeError as exc:
        raise InvalidTerms([("$", f"malformed JSON: {exc}")]) from exc
    validate_terms(terms)
    return terms
