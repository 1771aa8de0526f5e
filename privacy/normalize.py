"""Identifier -> canonical bytes, the input of hash-to-point (DESIGN.md §3).

Two brands match only if they encode the same person to the same bytes, so the rules here are part
of the protocol (a partner re-implementing the agent must follow them exactly; see the vectors in
tests/privacy/vectors/psi_known_answers.json). Every canonical value is ``<prefix><body>`` in UTF-8:

- ``phone``: ``phone:`` + E.164 (``phone:+8613800138000``), parsed by ``phonenumbers`` with a default
  region (``CN`` unless configured) and required to be a valid number for its region.
- ``email``: ``email:`` + the address trimmed and lower-cased; ASCII only, one ``@``, a non-empty local
  part of at most 64 characters and a dotted domain, at most 254 characters in all.
- ``unionid`` (WeChat union id), ``openid``, ``custom``: ``wx:`` / ``openid:`` / ``custom:`` + the value
  trimmed with its case kept; no whitespace or control characters inside, at most 256 characters.

Normalisation is idempotent: normalising the body of a canonical value gives the same bytes again.
The batch function never drops a row silently: each row is either accepted (with its row index) or
rejected with a reason code.
"""

from __future__ import annotations

import enum
import string
from collections import Counter
from collections.abc import Iterable
from typing import Final

import msgspec
import phonenumbers

__all__ = [
    "DEFAULT_REGION",
    "PREFIXES",
    "Accepted",
    "IdType",
    "InvalidIdentifier",
    "NormalizationResult",
    "RejectReason",
    "Rejected",
    "normalize",
    "normalize_batch",
]

DEFAULT_REGION: Final = "CN"
_MAX_OPAQUE: Final = 256
_MAX_EMAIL: Final = 254
_MAX_LOCAL: Final = 64
_MAX_PHONE_INPUT: Final = 64  # longer input is not a phone number; spares phonenumbers the work
_EMAIL_LOCAL_CHARS: Final = frozenset(string.ascii_lowercase + string.digits + "!#$%&'*+-/=?^_`{|}~.")
_EMAIL_DOMAIN_CHARS: Final = frozenset(string.ascii_lowercase + string.digits + "-")


class IdType(enum.StrEnum):
    """The kind of identifier a segment holds; a segment never mixes kinds."""

    PHONE = "phone"
    EMAIL = "email"
    UNIONID = "unionid"
    OPENID = "openid"
    CUSTOM = "custom"


PREFIXES: Final[dict[IdType, str]] = {
    IdType.PHONE: "phone:",
    IdType.EMAIL: "email:",
    IdType.UNIONID: "wx:",
    IdType.OPENID: "openid:",
    IdType.CUSTOM: "custom:",
}


class RejectReason(enum.StrEnum):
    """Why a row was not accepted; reported per row and counted, never silently dropped."""

    EMPTY = "empty"
    INVALID_PHONE = "invalid_phone"
    INVALID_EMAIL = "invalid_email"
    INVALID_CHARACTER = "invalid_character"
    TOO_LONG = "too_long"
    DUPLICATE = "duplicate"


class InvalidIdentifier(ValueError):
    """A single identifier could not be normalised; ``reason`` says why."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Accepted(msgspec.Struct, frozen=True):
    """An accepted row: its 0-based index in the input and its canonical bytes."""

    row: int
    canonical: bytes


class Rejected(msgspec.Struct, frozen=True):
    """A rejected row: its 0-based index in the input and the reason code."""

    row: int
    reason: RejectReason


class NormalizationResult(msgspec.Struct, frozen=True):
    """Outcome of :func:`normalize_batch`: every input row appears in exactly one of the two lists."""

    id_type: IdType
    accepted: tuple[Accepted, ...]
    rejected: tuple[Rejected, ...]

    @property
    def canonicals(self) -> list[bytes]:
        """Accepted canonical values in input order (what gets hashed and blinded)."""
        return [item.canonical for item in self.accepted]

    @property
    def total(self) -> int:
        return len(self.accepted) + len(self.rejected)

    def reject_counts(self) -> dict[RejectReason, int]:
        """Number of rejected rows per reason, for the upload report."""
        return dict(Counter(item.reason for item in self.rejected))


def normalize(value: str, id_type: IdType | str, *, region: str = DEFAULT_REGION) -> bytes:
    """Canonical bytes of one identifier; raises ``InvalidIdentifier`` (a ``ValueError``) with a reason.

    ``region`` is the ISO 3166 region used for phone numbers written without a country code.
    Raises ``TypeError`` if ``value`` is not a ``str``.
    """
    if not isinstance(value, str):
        raise TypeError(f"identifier must be str, got {type(value).__name__}")
    kind = IdType(id_type)
    text = value.strip()
    if not text:
        raise InvalidIdentifier(RejectReason.EMPTY, "empty identifier")
    if kind is IdType.PHONE:
        body = _phone_body(text, region)
    elif kind is IdType.EMAIL:
        body = _email_body(text)
    else:
        body = _opaque_body(text)
    return (PREFIXES[kind] + body).encode("utf-8")


def normalize_batch(
    values: Iterable[str | None],
    id_type: IdType | str,
    *,
    region: str = DEFAULT_REGION,
    dedupe: bool = True,
) -> NormalizationResult:
    """Normalise many rows; ``None`` counts as empty. Row indices are 0-based input positions.

    With ``dedupe`` (the default) a repeat of an already accepted canonical value is rejected as
    ``duplicate``: a segment is a set, and duplicates would distort intersection counts.
    Raises ``TypeError`` on a row that is neither ``str`` nor ``None`` (a caller bug, not bad data).
    """
    kind = IdType(id_type)
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    seen: set[bytes] = set()
    for row, value in enumerate(values):
        if value is None:
            rejected.append(Rejected(row, RejectReason.EMPTY))
            continue
        try:
            canonical = normalize(value, kind, region=region)
        except InvalidIdentifier as exc:
            rejected.append(Rejected(row, exc.reason))
            continue
        if dedupe:
            if canonical in seen:
                rejected.append(Rejected(row, RejectReason.DUPLICATE))
                continue
            seen.add(canonical)
        accepted.append(Accepted(row, canonical))
    return NormalizationResult(kind, tuple(accepted), tuple(rejected))


def _phone_body(text: str, region: str) -> str:
    if len(text) > _MAX_PHONE_INPUT:
        raise InvalidIdentifier(RejectReason.INVALID_PHONE, "too long for a phone number")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentifier(RejectReason.INVALID_PHONE, f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentifier(RejectReason.INVALID_PHONE, "not a valid phone number for its region")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _email_body(text: str) -> str:
    if not text.isascii():
        raise InvalidIdentifier(RejectReason.INVALID_EMAIL, "only ASCII addresses are accepted")
    address = text.lower()
    if len(address) > _MAX_EMAIL:
        raise InvalidIdentifier(RejectReason.TOO_LONG, "address longer than 254 characters")
    local, at, domain = address.rpartition("@")
    if not at or not local or len(local) > _MAX_LOCAL or not set(local) <= _EMAIL_LOCAL_CHARS:
        raise InvalidIdentifier(RejectReason.INVALID_EMAIL, "bad local part")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidIdentifier(RejectReason.INVALID_EMAIL, "bad dots in local part")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_is_domain_label(label) for label in labels):
        raise InvalidIdentifier(RejectReason.INVALID_EMAIL, "bad domain")
    return address


def _is_domain_label(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and set(label) <= _EMAIL_DOMAIN_CHARS
        and not label.startswith("-")
        and not label.endswith("-")
    )


def _opaque_body(text: str) -> str:
    if len(text) > _MAX_OPAQUE:
        raise InvalidIdentifier(RejectReason.TOO_LONG, f"identifier longer than {_MAX_OPAQUE} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise InvalidIdentifier(RejectReason.INVALID_CHARACTER, "whitespace or control character inside")
    return text
