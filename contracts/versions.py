"""A contract's history of versions: which versions may be appended, and which one is in force.

Versions are numbered 1, 2, 3... and supersede one another from their own `effective_from`; a version
ends at its `effective_to` or at the next version's start. :func:`version_in_force` is the one rule
for "which version governs instant t" - pricing, matching, referrals and the contract views all call
it (the exchange passes the versions the alliance rejected, which govern nothing).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from contracts.errors import InvalidVersion, NoContractInForce, VersionRejected
from contracts.terms import ContractTerms, require_utc
from contracts.validation import validate_terms

__all__ = ["validate_new_version", "version_in_force"]


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
    history = _checked_history(existing_versions)
    problems = _successor_problems(history[-1], history, new) if history else []
    if not history and new.version != 1:
        problems.append(("version", f"the first version of a contract must be 1, got {new.version}"))
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


def _checked_history(existing_versions: Sequence[ContractTerms]) -> list[ContractTerms]:
    """The existing versions in order; `InvalidVersion` if they are not numbered 1..n starting in order."""
    history = sorted(existing_versions, key=lambda terms: terms.version)
    numbers = [terms.version for terms in history]
    if numbers != list(range(1, len(history) + 1)):
        raise InvalidVersion([("version", f"existing versions are not numbered 1..{len(history)}: {numbers}")])
    for older, newer in itertools.pairwise(history):
        if newer.effective_from <= older.effective_from:
            raise InvalidVersion(
                [("effective_from", f"existing version {newer.version} does not start after {older.version}")]
            )
    return history


def _successor_problems(
    last: ContractTerms, history: Sequence[ContractTerms], new: ContractTerms
) -> list[tuple[str, str]]:
    """Why ``new`` cannot follow ``last`` (the latest of ``history``): id, number, parties, currency, start."""
    problems: list[tuple[str, str]] = []
    expected = last.version + 1
    mismatched_ids = sorted({terms.contract_id for terms in history if terms.contract_id != new.contract_id})
    if mismatched_ids:
        problems.append(("contract_id", f"{new.contract_id!r} does not match existing versions {mismatched_ids}"))
    if new.version <= last.version:
        problems.append(
            ("version", f"version {new.version} already exists and versions are immutable: propose version {expected}")
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
    return problems


def version_in_force(
    versions: Sequence[ContractTerms], at: datetime, *, rejected: Collection[int] | Mapping[int, str] = ()
) -> ContractTerms:
    """The version governing `at`: the latest `effective_from` at or before `at`, unless it has ended
    or the alliance rejected it.

    This is the one rule for "which version is in force at t"; every caller (pricing, matching,
    referrals, the contract views) goes through it. Pass only fully signed versions, rejected ones
    included with their numbers in `rejected`: a rejected version still ends its predecessor's period
    (the parties agreed to replace it), so its period has no contract and `VersionRejected` is raised.
    A version that has reached its `effective_to` is not replaced by an earlier one either: a gap
    between versions is a gap in the contract, and `NoContractInForce` is raised.
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
    if best.version in rejected:
        reason = rejected[best.version] if isinstance(rejected, Mapping) else ""
        raise VersionRejected(at, best.version, reason)
    return best
