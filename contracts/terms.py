"""Partner agreements: one contract version as frozen msgspec Structs, and the rules that make it valid.

A contract binds exactly two brands. Each version is immutable once proposed and is signed by both
parties (see `contracts.signing`); a later version supersedes the earlier one from its own
`effective_from`. Every event is priced by the version in force at the event's time (`version_in_force`).

What the caller may rely on:

* Money is an ``int`` of minor units of the contract's `settlement_currency`; percentages are ``int``
  basis points (1 bp = 0.01 %, 10_000 bp = 100 %). There is no float anywhere in signed data: msgspec
  refuses a JSON number with a fraction for an ``int`` field, and `validate_terms` refuses a float (or a
  bool) that code put there.
* Timestamps are timezone-aware UTC datetimes; msgspec encodes them as RFC 3339 with a ``Z`` suffix.
* The structs are wire schemas: unknown fields are refused when decoding, so a party cannot slip a
  clause past the other party's (older) software.
* `validate_terms` reports every problem it finds at once, as (field path, message) pairs.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, TypeAlias, TypeGuard

import msgspec

from contracts.currencies import ISO_4217_MINOR_UNITS
from contracts.errors import InvalidTerms, InvalidVersion, NoContractInForce, NotAParty, VersionRejected

__all__ = [
    "ANY_BENEFIT",
    "BASIS_POINTS_PER_UNIT",
    "CARDINALITY",
    "DEFAULT_ATTRIBUTION_WINDOW_SECONDS",
    "DEFAULT_MIN_K",
    "MAX_MINOR_UNITS",
    "MEMBERSHIP_TO_PREFIX",
    "CommissionRule",
    "ContractTerms",
    "FixedCommission",
    "FundingSplit",
    "PsiTerms",
    "RateCommission",
    "UtcDateTime",
    "decode_terms",
    "is_valid_id",
    "party_pair",
    "require_utc",
    "validate_new_version",
    "validate_terms",
    "version_in_force",
]

BASIS_POINTS_PER_UNIT = 10_000
"""10_000 bp = 100 %: a funding split's two shares must add up to exactly this."""

MAX_MINOR_UNITS = 2**63 - 1
"""Largest single amount accepted anywhere (fits a signed 64-bit BIGINT column)."""

ANY_BENEFIT = "*"
"""Funding-split selector that applies to every benefit of the funding brand without its own split."""

CARDINALITY = "cardinality"
MEMBERSHIP_TO_PREFIX = "membership_to:"

DEFAULT_MIN_K = 100
DEFAULT_ATTRIBUTION_WINDOW_SECONDS = 30 * 86_400

_MAX_NOTE_CHARS = 4_000
_MAX_TAG_CHARS = 64
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

UtcDateTime: TypeAlias = Annotated[datetime, msgspec.Meta(tz=True)]
"""A datetime that msgspec refuses to decode without an offset; `validate_terms` also requires UTC."""


def is_valid_id(value: object) -> bool:
    """Whether `value` is a usable brand, contract, benefit or segment id.

    1-64 characters of ``[A-Za-z0-9._-]`` starting with a letter or digit (UUIDs and slugs fit). No
    colon, because ids are embedded in ledger account names such as ``brand:<id>:payable``; no spaces or
    case folding, so one id has one spelling in signed data.
    """
    return isinstance(value, str) and _ID_PATTERN.fullmatch(value) is not None


def party_pair(brand_a: str, brand_b: str) -> tuple[str, str]:
    """The canonical (ascending) order of two distinct brand ids, as `ContractTerms.parties` requires.

    One order means one encoding, hence one signature, whoever proposed the contract.
    """
    if brand_a == brand_b:
        raise ValueError(f"a contract needs two different brands, got {brand_a!r} twice")
    return (brand_a, brand_b) if brand_a < brand_b else (brand_b, brand_a)


def require_utc(value: datetime, name: str) -> datetime:
    """Return `value` if it is a timezone-aware datetime at UTC offset zero, else raise ValueError."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    if value.utcoffset() != timedelta(0):
        raise ValueError(f"{name} must be in UTC, got offset {value.utcoffset()}")
    return value


class FundingSplit(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Who bears a coupon's face value: the brand that published the benefit and the brand that handed
    the coupon to its members, in basis points that add up to exactly 10_000.

    `benefit` is a benefit id or ``"*"`` (every other benefit funded by `funding_brand`). A contract may
    hold one split per (benefit, funding brand); both directions of an alliance can have their own.
    """

    benefit: str
    funding_brand: str
    distributor_brand: str
    funding_brand_bp: int
    distributor_bp: int


class _CommissionBase(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="kind"):
    """Caps shared by both commission kinds, in minor units; ``None`` means uncapped.

    The monthly cap is per contract, per commission kind and per paying brand, over a UTC calendar month.
    """

    per_event_cap: int | None = None
    monthly_cap: int | None = None


class FixedCommission(_CommissionBase, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="fixed"):
    """A fixed amount (minor units) per redemption or conversion, before caps."""

    amount: int


class RateCommission(_CommissionBase, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="rate"):
    """A share of the order value in basis points (at most 10_000), rounded down, before caps."""

    rate_bp: int


CommissionRule: TypeAlias = FixedCommission | RateCommission
"""Tagged on the wire by ``"kind": "fixed" | "rate"``."""


class PsiTerms(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What private set intersection the contract allows between the two parties' segments.

    * `segment_tags` / `segment_ids`: a segment may be matched if its id is listed or it carries a
      listed tag; at least one entry is required (omit `psi` altogether to allow no matching).
    * `disclosure`: ``"cardinality"`` (both learn only a count) or ``"membership_to:<brand>"`` (that
      party learns which of its own rows overlap; the other learns the count).
    * `min_k`: counts below this are suppressed.
    * `dp_epsilon_milli_per_month`: differential-privacy budget per brand pair per month, in
      thousandths of epsilon (1500 = epsilon 1.5) so no float is signed; ``None`` = exact counts.
    * `round_cardinality_to`: disclosed counts are rounded down to a multiple of this.
    """

    segment_tags: tuple[str, ...] = ()
    segment_ids: tuple[str, ...] = ()
    disclosure: str = CARDINALITY
    min_k: int = DEFAULT_MIN_K
    dp_epsilon_milli_per_month: int | None = None
    round_cardinality_to: int = 1

    def membership_recipient(self) -> str | None:
        """The brand that learns row membership under ``membership_to:<brand>``, else ``None``."""
        if self.disclosure.startswith(MEMBERSHIP_TO_PREFIX):
            return self.disclosure[len(MEMBERSHIP_TO_PREFIX) :]
        return None

    def allows_segment(self, segment_id: str, tags: Iterable[str]) -> bool:
        """Whether a segment with this id and these tags may be matched under the contract."""
        return segment_id in self.segment_ids or not set(self.segment_tags).isdisjoint(tags)


class ContractTerms(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One immutable version of a two-party contract, as both parties sign it.

    `parties` is the ascending pair of brand ids (`party_pair`). Amounts (commission amounts and caps)
    are minor units of `settlement_currency`. The version governs events from `effective_from`
    (inclusive) until `effective_to` (exclusive) or until a later version's `effective_from`.
    """

    contract_id: str
    version: int
    parties: tuple[str, str]
    settlement_currency: str
    effective_from: UtcDateTime
    effective_to: UtcDateTime | None = None
    funding: tuple[FundingSplit, ...] = ()
    coupon_commission: CommissionRule
    referral: CommissionRule
    attribution_window_seconds: int = DEFAULT_ATTRIBUTION_WINDOW_SECONDS
    psi: PsiTerms | None = None
    note: str | None = None

    def is_party(self, brand_id: str) -> bool:
        return brand_id in self.parties

    def counterparty(self, brand_id: str) -> str:
        """The other party; `NotAParty` if `brand_id` is not one of the two."""
        first, second = self.parties
        if brand_id == first:
            return second
        if brand_id == second:
            return first
        raise NotAParty(f"{brand_id!r} is not a party to contract {self.contract_id!r} {self.parties}")

    def covers(self, at: datetime) -> bool:
        """Whether `at` falls in this version's own [effective_from, effective_to) period.

        Says nothing about later versions that may supersede it; use `version_in_force` for that.
        """
        require_utc(at, "at")
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)

    def funding_split_for(self, benefit_id: str, funding_brand: str) -> FundingSplit | None:
        """The split for this benefit, else the funding brand's ``"*"`` default, else ``None``."""
        default = None
        for split in self.funding:
            if split.funding_brand != funding_brand:
                continue
            if split.benefit == benefit_id:
                return split
            if split.benefit == ANY_BENEFIT:
                default = split
        return default


# --- validation -------------------------------------------------------------------------------------


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
        _check_int(problems, f"{path}.amount", rule.amount, minimum=0, maximum=MAX_MINOR_UNITS, what="amount")
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
            _check_int(problems, f"{path}.{cap_name}", cap, minimum=0, maximum=MAX_MINOR_UNITS, what="cap")


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
        if recipient is None:
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


# --- versions ---------------------------------------------------------------------------------------


def validate_new_version(
    existing_versions: Sequence[ContractTerms],
    new: ContractTerms,
    *,
    not_before: datetime | None = None,
) -> None:
    """Check that `new` may be appended to a contract whose versions so far are `existing_versions`.

    Versions are numbered 1, 2, 3... with no gap and never replaced (re-proposing an existing number
    is refused even with identical content: the caller handles idempotency by fingerprint). A new
    version keeps the parties and the settlement currency (month-to-date caps are kept in it) and must
    start strictly after the latest version's `effective_from`: it supersedes from its own date, so an
    out-of-order or same-instant version is refused rather than silently reordering history. Pass
    `not_before` (typically "now") to also refuse a retroactive version that would re-price events
    already booked.

    Raises `InvalidTerms` if `new` itself is invalid, `InvalidVersion` if it does not fit the history.
    """
    validate_terms(new)
    history = sorted(existing_versions, key=lambda terms: terms.version)
    numbers = [terms.version for terms in history]
    if numbers != list(range(1, len(history) + 1)):
        raise InvalidVersion([("version", f"existing versions are not numbered 1..{len(history)}: {numbers}")])
    for older, newer in itertools.pairwise(history):
        if newer.effective_from <= older.effective_from:
            raise InvalidVersion(
                [("effective_from", f"existing version {newer.version} does not start after {older.version}")]
            )

    problems: list[tuple[str, str]] = []
    if not history:
        if new.version != 1:
            problems.append(("version", f"the first version of a contract must be 1, got {new.version}"))
    else:
        last = history[-1]
        expected = last.version + 1
        mismatched_ids = sorted({terms.contract_id for terms in history if terms.contract_id != new.contract_id})
        if mismatched_ids:
            problems.append(("contract_id", f"{new.contract_id!r} does not match existing versions {mismatched_ids}"))
        if new.version <= last.version:
            problems.append(
                (
                    "version",
                    f"version {new.version} already exists and versions are immutable: propose version {expected}",
                )
            )
        elif new.version != expected:
            problems.append(("version", f"versions are consecutive: expected {expected}, got {new.version}"))
        if tuple(new.parties) != tuple(last.parties):
            problems.append(
                (
                    "parties",
                    f"a new version must keep the parties {tuple(last.parties)!r}, "
                    f"got {tuple(new.parties)!r}; start a new contract for other parties",
                )
            )
        if new.settlement_currency != last.settlement_currency:
            problems.append(
                (
                    "settlement_currency",
                    f"cannot change from {last.settlement_currency} to {new.settlement_currency} "
                    "within a contract; start a new contract",
                )
            )
        if new.effective_from <= last.effective_from:
            problems.append(
                (
                    "effective_from",
                    f"must be after version {last.version}'s effective_from "
                    f"({last.effective_from.isoformat()}), got {new.effective_from.isoformat()}: "
                    "versions supersede in order and never overlap",
                )
            )
    if not_before is not None:
        require_utc(not_before, "not_before")
        if new.effective_from < not_before:
            problems.append(
                (
                    "effective_from",
                    f"{new.effective_from.isoformat()} is before {not_before.isoformat()}: a version cannot "
                    "take effect retroactively",
                )
            )
    if problems:
        raise InvalidVersion(problems)


def version_in_force(
    versions: Sequence[ContractTerms], at: datetime, *, rejected: Mapping[int, str] | None = None
) -> ContractTerms:
    """The version governing `at`: the latest `effective_from` at or before `at`, unless it has ended.

    Pass only fully signed versions, rejected ones included: a rejected version still ends its
    predecessor's period. A version that has reached its `effective_to` is not replaced by an earlier
    one: a gap between versions is a gap in the contract, and `NoContractInForce` is raised. If the
    governing version is in ``rejected`` (version -> the alliance's reason), `VersionRejected` is raised:
    a rejected version governs nothing, and its predecessor does not come back.
    """
    require_utc(at, "at")
    contract_ids = {terms.contract_id for terms in versions}
    if len(contract_ids) > 1:
        raise ValueError(f"versions of different contracts were mixed: {sorted(contract_ids)}")
    best: ContractTerms | None = None
    for terms in versions:
        if terms.effective_from <= at and (
            best is None or (terms.effective_from, terms.version) > (best.effective_from, best.version)
        ):
            best = terms
    if best is None:
        if not versions:
            raise NoContractInForce(at, "the contract has no signed version")
        first = min(terms.effective_from for terms in versions)
        raise NoContractInForce(at, f"the first signed version starts at {first.isoformat()}")
    if best.effective_to is not None and at >= best.effective_to:
        raise NoContractInForce(at, f"version {best.version} ended at {best.effective_to.isoformat()}")
    if rejected is not None and best.version in rejected:
        raise VersionRejected(at, best.version, rejected[best.version])
    return best
