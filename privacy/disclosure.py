"""The PSI disclosure policy of a match: who learns what (DESIGN.md §3), parsed in one place.

A contract's `PsiTerms.disclosure`, a match's `disclosure` column, an agent's check of a task and the
console's rendering all read the policy text through :func:`parse_disclosure_policy`:

- ``cardinality``: both brands learn (only) the possibly suppressed, noised and rounded overlap size;
- ``membership_to:<brand>`` (also spelled ``membership_to=<brand>``): that brand learns which of its
  own rows overlap; the other brand learns the count it reports, signed.

Signed contracts and stored matches use the canonical spelling, :func:`format_disclosure_policy`.
Pure: msgspec only, so `contracts` can depend on it without the blinding code.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

__all__ = [
    "CARDINALITY",
    "MEMBERSHIP_TO_PREFIX",
    "CardinalityPolicy",
    "DisclosurePolicy",
    "MembershipPolicy",
    "format_disclosure_policy",
    "parse_disclosure_policy",
]

CARDINALITY: Final = "cardinality"
MEMBERSHIP_TO_PREFIX: Final = "membership_to:"
_PREFIXES: Final = (MEMBERSHIP_TO_PREFIX, "membership_to=")

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class CardinalityPolicy(msgspec.Struct, frozen=True, tag="cardinality"):
    """Both brands learn (only) the possibly suppressed/noised/rounded size of the overlap."""


class MembershipPolicy(msgspec.Struct, frozen=True, tag="membership"):
    """``to_brand`` learns which of its own rows overlap; the other brand learns the reported count."""

    to_brand: _Name


DisclosurePolicy = CardinalityPolicy | MembershipPolicy


def parse_disclosure_policy(text: str) -> DisclosurePolicy:
    """Parse a policy string: ``cardinality``, or ``membership_to:<brand>`` / ``membership_to=<brand>``
    (both spellings mean the same). Raises `ValueError` for anything else."""
    if text == CARDINALITY:
        return CardinalityPolicy()
    for prefix in _PREFIXES:
        if text.startswith(prefix) and len(text) > len(prefix):
            return MembershipPolicy(text[len(prefix) :])
    raise ValueError(f"unknown disclosure policy: {text!r}")


def format_disclosure_policy(policy: DisclosurePolicy) -> str:
    """The canonical spelling of a policy (``cardinality`` or ``membership_to:<brand>``)."""
    if isinstance(policy, MembershipPolicy):
        return f"{MEMBERSHIP_TO_PREFIX}{policy.to_brand}"
    return CARDINALITY
