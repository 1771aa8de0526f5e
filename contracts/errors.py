"""Exceptions raised by the contracts library.

Every error the library raises on bad input derives from `ContractError`, so the service can map the
whole family to one problem type, and from the builtin that best describes it (`ValueError`,
`LookupError`), so generic callers still catch what they expect.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

__all__ = [
    "ContractError",
    "CurrencyMismatch",
    "InvalidEvent",
    "InvalidKeyLength",
    "InvalidReversal",
    "InvalidSignatureLength",
    "InvalidTerms",
    "InvalidVersion",
    "NoContractInForce",
    "NoFundingSplit",
    "NotAParty",
    "OutsideAttributionWindow",
    "OutsideContractPeriod",
    "PricingError",
    "SignatureInvalid",
    "UnknownCurrency",
    "VersionRejected",
]


class ContractError(Exception):
    """Base class of every error raised by `contracts`."""


class InvalidTerms(ContractError, ValueError):
    """Contract terms that must not be signed or priced against.

    `problems` lists every problem found, not only the first, as (field path, message) pairs such as
    ``("funding[0]", "funding_brand_bp + distributor_bp must be 10000 bp, got 9000")`` so a console or
    API can point at each offending field.
    """

    problems: list[tuple[str, str]]

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = list(problems)
        if not self.problems:
            raise ValueError("InvalidTerms needs at least one problem")
        super().__init__("; ".join(f"{path}: {message}" for path, message in self.problems))


class InvalidVersion(InvalidTerms):
    """A new contract version that does not fit the contract's history (numbering, parties, dates)."""


class NoContractInForce(ContractError, LookupError):
    """No signed contract version governs the given instant."""

    at: datetime

    def __init__(self, at: datetime, reason: str) -> None:
        self.at = at
        super().__init__(f"no contract version in force at {at.isoformat()}: {reason}")


class VersionRejected(NoContractInForce):
    """The version that would govern the instant was rejected by the alliance: nothing governs it (an
    earlier version does not come back, its period ended when the parties agreed to replace it)."""

    version: int
    reason: str

    def __init__(self, at: datetime, version: int, reason: str = "") -> None:
        self.version = version
        self.reason = reason
        why = f": {reason}" if reason else ""
        super().__init__(at, f"version {version} was rejected by the alliance{why}")


class SignatureInvalid(ContractError):
    """A signature does not verify for these exact terms under the given public key."""


class InvalidKeyLength(ContractError, ValueError):
    """A raw Ed25519 public key that is not exactly 32 bytes."""


class InvalidSignatureLength(ContractError, ValueError):
    """An Ed25519 signature that is not exactly 64 bytes."""


class UnknownCurrency(ContractError, ValueError):
    """A currency code that is not an active ISO 4217 code with minor units."""


class NotAParty(ContractError, ValueError):
    """A brand named by an event or signature is not one of the contract's two parties."""


class PricingError(ContractError, ValueError):
    """An event that cannot be priced under the given contract version."""


class InvalidEvent(PricingError):
    """An event whose own fields are inconsistent (negative amount, naive time, brand paying itself...)."""


class CurrencyMismatch(PricingError):
    """An event in a currency other than the contract's settlement currency."""


class OutsideContractPeriod(PricingError):
    """An event priced against a version that was not in force at the event's time."""


class NoFundingSplit(PricingError):
    """A coupon redemption for a benefit the contract has no funding split for (nor a "*" default)."""


class OutsideAttributionWindow(PricingError):
    """A referral conversion that happened after the contract's attribution window closed."""


class InvalidReversal(PricingError):
    """A reversal that would reverse more than remains of its original event, or precede it."""
