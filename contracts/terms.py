"""Partner agreements: one contract version as frozen msgspec Structs, and the rules that make it valid.

A contract binds exactly two brands. Each version is immutable once proposed and is signed by both
parties (see `contracts.signing`); a later version supersedes the earlier one from its own
`effective_from`. Every event is priced by the version in force at the event's time
(`contracts.versions.version_in_force`).

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

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Annotated, TypeAlias

import msgspec

from contracts.errors import NotAParty
from privacy.disclosure import (
    CARDINALITY,
    MEMBERSHIP_TO_PREFIX,
    DisclosurePolicy,
    MembershipPolicy,
    parse_disclosure_policy,
)

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
    "is_valid_id",
    "party_pair",
    "require_utc",
]

BASIS_POINTS_PER_UNIT = 10_000
"""10_000 bp = 100 %: a funding split's two shares must add up to exactly this."""

MAX_MINOR_UNITS = 2**63 - 1
"""Largest single amount accepted anywhere (fits a signed 64-bit BIGINT column)."""

ANY_BENEFIT = "*"
"""Funding-split selector that applies to every benefit of the funding brand without its own split."""


DEFAULT_MIN_K = 100
DEFAULT_ATTRIBUTION_WINDOW_SECONDS = 30 * 86_400

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

    def policy(self) -> DisclosurePolicy:
        """The disclosure policy, parsed (`privacy.disclosure`); `ValueError` if it is not one."""
        return parse_disclosure_policy(self.disclosure)

    def membership_recipient(self) -> str | None:
        """The brand that learns row membership under ``membership_to:<brand>``, else ``None``."""
        try:
            policy = self.policy()
        except ValueError:
            return None
        return policy.to_brand if isinstance(policy, MembershipPolicy) else None

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
