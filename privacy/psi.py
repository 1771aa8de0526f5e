"""ECDH-PSI protocol messages and the pure intersection computations (DESIGN.md §3).

Flow: brand A publishes ``E_A = shuffle{a*P(x)}`` (a :class:`SegmentManifest` plus 32-byte records).
For a match job the exchange hands each agent a :class:`MatchTask` to re-blind the other side:

- ``cardinality``: both agents return re-blinded *shuffled* records; the exchange calls
  :func:`count_common` on ``b*(a*P)`` and ``a*(b*P)`` and reports a :class:`CardinalityResult`
  (suppressed / noised / rounded by :mod:`privacy.noise`). Nobody learns which rows overlap.
- ``membership_to:A``: B re-blinds ``E_A`` *in order* (task kind ``reblind_ordered``), the exchange passes
  it to A; A's agent re-blinds ``E_B`` itself and calls :func:`membership` locally. A learns its own
  overlapping rows; B learns the count A reports in a signed :class:`MembershipReport`.

Doubly blinded values are compared on their first 16 bytes (:data:`TRUNCATED_SIZE`): 128 bits make an
accidental collision among a million-by-million comparison about 2^-88 likely, and halve memory.
"""

from __future__ import annotations

import random
import secrets
from typing import Annotated, Final, Literal

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from privacy.blind import POINT_SIZE, BytesLike, RecordLengthError
from privacy.disclosure import (
    CardinalityPolicy,
    DisclosurePolicy,
    MembershipPolicy,
    format_disclosure_policy,
    parse_disclosure_policy,
)
from privacy.normalize import IdType

__all__ = [
    "MIN_MEMBER_CHANGE",
    "MIN_SEGMENT_SIZE",
    "PROTOCOL_VERSION",
    "TRUNCATED_SIZE",
    "CardinalityPolicy",
    "CardinalityResult",
    "DeclaredCountMismatch",
    "DisclosurePolicy",
    "InsufficientChange",
    "MatchKind",
    "MatchResult",
    "MatchTask",
    "MembershipPolicy",
    "MembershipReport",
    "MembershipResult",
    "PsiError",
    "ReblindAllowance",
    "ReblindBudgetExceeded",
    "ReportSignatureError",
    "SegmentManifest",
    "SegmentTooSmall",
    "SignedMembershipReport",
    "check_declared_count",
    "check_minimum_change",
    "check_segment_size",
    "count_common",
    "format_disclosure_policy",
    "members_changed",
    "membership",
    "parse_disclosure_policy",
    "record_count",
    "require_minimum_change",
    "shuffle_records",
    "sign_membership_report",
    "truncate",
    "verify_membership_report",
]

PROTOCOL_VERSION: Final = 1
TRUNCATED_SIZE: Final = 16
MIN_SEGMENT_SIZE: Final = 1000
MIN_MEMBER_CHANGE: Final = 50

MatchKind = Literal["reblind_shuffled", "reblind_ordered"]
_Count = Annotated[int, msgspec.Meta(ge=0)]
_Epoch = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]


class PsiError(ValueError):
    """Base class of the protocol-rule violations raised here."""


class SegmentTooSmall(PsiError):
    """A segment below the minimum size may not be matched (small sets are re-identifiable)."""


class InsufficientChange(PsiError):
    """A re-match with the same counterparty differs too little from the last one (differencing)."""


class DeclaredCountMismatch(PsiError):
    """A task's items do not match the count the counterparty's published segment declared."""


class ReblindBudgetExceeded(PsiError):
    """The agent's per-counterparty re-blinding allowance would be exceeded (dictionary-oracle guard)."""


class ReportSignatureError(PsiError):
    """A membership report's signature does not verify."""


# --- messages ---------------------------------------------------------------------------------------


class SegmentManifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Metadata published with a blinded segment; the records themselves travel as binary."""

    segment_id: str
    alliance_id: str
    brand_id: str
    id_type: IdType
    size: _Count
    key_epoch: _Epoch
    name: str = ""
    tags: tuple[str, ...] = ()
    protocol_version: int = PROTOCOL_VERSION


class MatchTask(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Work the exchange asks an agent to do: re-blind the counterparty's published records.

    ``declared_item_count`` is the size the counterparty's manifest declared; the agent refuses a
    task whose items differ from it (:func:`check_declared_count`).
    """

    task_id: str
    match_id: str
    kind: MatchKind
    counterparty_brand: str
    counterparty_segment_id: str
    declared_item_count: _Count
    key_epoch: _Epoch
    policy: DisclosurePolicy


class CardinalityResult(msgspec.Struct, frozen=True, tag="cardinality"):
    """What both brands see under ``cardinality``. ``count`` is None when suppressed."""

    match_id: str
    count: _Count | None
    suppressed: bool
    noised: bool
    rounded_to: Annotated[int, msgspec.Meta(ge=1)] = 1


class MembershipReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The overlap count A's agent reports to B under ``membership_to=A``, to be signed by A."""

    match_id: str
    reporting_brand: str
    counterparty_brand: str
    overlap_count: _Count
    key_epoch: _Epoch
    protocol_version: int = PROTOCOL_VERSION


class SignedMembershipReport(msgspec.Struct, frozen=True):
    """A :class:`MembershipReport` with an Ed25519 signature over its canonical JSON encoding."""

    report: MembershipReport
    signature: bytes


class MembershipResult(msgspec.Struct, frozen=True, tag="membership"):
    """What the exchange records under ``membership_to``: the signed count the receiving agent reported."""

    match_id: str
    to_brand: str
    report: SignedMembershipReport


MatchResult = CardinalityResult | MembershipResult


def _report_bytes(report: MembershipReport) -> bytes:
    # msgspec encodes Struct fields in declaration order with no whitespace: a canonical form.
    return b"BAX-PSI-membership-report-v1\x00" + msgspec.json.encode(report)


def sign_membership_report(report: MembershipReport, signing_key: Ed25519PrivateKey) -> SignedMembershipReport:
    """Sign a report with the reporting brand's Ed25519 key (from :mod:`privacy.keys`)."""
    return SignedMembershipReport(report, signing_key.sign(_report_bytes(report)))


def verify_membership_report(signed: SignedMembershipReport, public_key: bytes) -> MembershipReport:
    """Return the report if its signature verifies under the 32-byte Ed25519 public key."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signed.signature, _report_bytes(signed.report))
    except InvalidSignature:
        raise ReportSignatureError("membership report signature does not verify") from None
    return signed.report


# --- computations -------------------------------------------------------------------------------------


def record_count(buf: BytesLike) -> int:
    """Number of 32-byte records in ``buf``; ``RecordLengthError`` if it is not a whole number."""
    if not isinstance(buf, BytesLike):
        raise TypeError(f"buf must be bytes, got {type(buf).__name__}")
    size = len(buf) if not isinstance(buf, memoryview) else buf.nbytes
    if size % POINT_SIZE:
        raise RecordLengthError(f"buffer length {size} is not a multiple of {POINT_SIZE}")
    return size // POINT_SIZE


def truncate(buf: BytesLike) -> list[bytes]:
    """The 16-byte prefixes of the 32-byte records of ``buf``, in record order."""
    record_count(buf)
    data = bytes(buf)
    return [data[i : i + TRUNCATED_SIZE] for i in range(0, len(data), POINT_SIZE)]


def count_common(doubly_blinded_a: BytesLike, doubly_blinded_b: BytesLike) -> int:
    """Size of the intersection of two doubly blinded sets (distinct values, compared on 16 bytes)."""
    return len(set(truncate(doubly_blinded_a)).intersection(truncate(doubly_blinded_b)))


def membership(own_rows_doubly_blinded_in_order: BytesLike, counterparty_doubly_blinded: BytesLike) -> list[int]:
    """Indices (ascending) of one's own rows whose doubly blinded value the counterparty also has.

    The first argument must be in the order of one's own rows (``reblind_ordered``), so index i maps
    back to member i through the agent's local row map.
    """
    theirs = set(truncate(counterparty_doubly_blinded))
    return [i for i, value in enumerate(truncate(own_rows_doubly_blinded_in_order)) if value in theirs]


def shuffle_records(buf: BytesLike, rng: random.Random | None = None) -> bytes:
    """A uniformly random permutation of the 32-byte records of ``buf``.

    The default generator is ``secrets.SystemRandom`` (the OS CSPRNG) so the published order reveals
    nothing about the brand's row order. Pass a seeded ``random.Random`` only in tests.
    """
    record_count(buf)
    data = bytes(buf)
    records = [data[i : i + POINT_SIZE] for i in range(0, len(data), POINT_SIZE)]
    (rng if rng is not None else secrets.SystemRandom()).shuffle(records)
    return b"".join(records)


# --- protocol rules -------------------------------------------------------------------------------------


def check_segment_size(size: int, minimum: int = MIN_SEGMENT_SIZE) -> None:
    """Refuse to match a segment smaller than ``minimum`` (default 1,000)."""
    if size < minimum:
        raise SegmentTooSmall(f"segment has {size} members; at least {minimum} are required")


def check_declared_count(buf: BytesLike, declared_item_count: int) -> None:
    """Refuse a task whose item count differs from what the counterparty's segment declared."""
    count = record_count(buf)
    if count != declared_item_count:
        raise DeclaredCountMismatch(f"task carries {count} items, the segment declared {declared_item_count}")


def members_changed(previous: BytesLike, current: BytesLike) -> int:
    """Size of the symmetric difference of two singly blinded versions of a segment (same key epoch)."""
    before = set(truncate(previous))
    after = set(truncate(current))
    return len(before.symmetric_difference(after))


def check_minimum_change(previous: BytesLike, current: BytesLike, minimum: int = MIN_MEMBER_CHANGE) -> None:
    """Refuse a re-match with the same counterparty unless the segment changed by ``minimum`` members.

    Two overlap counts of segments that differ in one member reveal whether that member is in the
    other brand's set; requiring a larger change blunts this differencing attack.
    """
    require_minimum_change(members_changed(previous, current), minimum)


def require_minimum_change(changed: int, minimum: int = MIN_MEMBER_CHANGE) -> None:
    """The rule of :func:`check_minimum_change` for a change counted elsewhere (the exchange counts the
    symmetric difference of stored segments in SQL above its memory limit): ``changed`` members (the
    size of the symmetric difference) must be at least ``minimum``."""
    if changed < minimum:
        raise InsufficientChange(f"segment changed by {changed} members; at least {minimum} are required")


class ReblindAllowance(msgspec.Struct):
    """The agent's per-counterparty, per-epoch cap on items it re-blinds.

    Without a cap an agent is an oracle: a curious exchange could submit hashed guesses as "items"
    and learn ``b*P(guess)`` for any guess. The agent therefore re-blinds only for approved jobs,
    only the declared count, and at most ``limit`` items per counterparty per key epoch.
    """

    counterparty_brand: str
    key_epoch: str
    limit: _Count
    used: _Count = 0

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def consume(self, items: int) -> None:
        """Record ``items`` re-blinded items, or raise ``ReblindBudgetExceeded`` and record nothing."""
        if items < 0:
            raise ValueError("items must be non-negative")
        if items > self.remaining:
            raise ReblindBudgetExceeded(
                f"re-blinding {items} items for {self.counterparty_brand} exceeds the remaining "
                f"{self.remaining} of {self.limit} in epoch {self.key_epoch}"
            )
        self.used += items
