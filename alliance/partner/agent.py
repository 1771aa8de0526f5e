"""The partner agent's task loop: answer the exchange's match tasks, but only when it is safe to.

Before re-blinding anything the agent checks, and refuses (logging the refusal locally and reporting it
to the exchange, which fails the match with the reason) unless all hold:

1. the exchange shows the match as waiting for re-blinds, and the task agrees with the match (same
   counterparty, segments, declared size, and a task kind that fits the disclosure policy);
2. this agent itself signed the contract version the match runs under, and that version's PSI terms
   allow the disclosure and cover our segment (its own record, not the exchange's word);
3. the items it downloads are exactly the counterparty segment's declared size;
4. the counterparty's re-blinding allowance for the key epoch (``alliance-partner allow``) covers them.

These rules keep a curious exchange from using the agent as a dictionary oracle (docs/threat-model.md).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

import contracts
from alliance.partner.blinding import reblind, sorted_records
from alliance.partner.client import PartnerError
from alliance.partner.keystore import AgentStore, StoreError
from alliance.partner.progress import Bar
from alliance.partner.psi_client import PsiApi
from privacy.blind import POINT_SIZE, BlindingError
from privacy.disclosure import DisclosurePolicy, MembershipPolicy, parse_disclosure_policy
from privacy.psi import (
    MembershipReport,
    PsiError,
    ReblindBudgetExceeded,
    membership,
    sign_membership_report,
)

__all__ = [
    "Agent",
    "MatchOutcome",
    "SigningKeyRotation",
    "TaskOutcome",
    "TaskRefused",
    "register_signing_key",
    "rotate_signing_key",
    "sign_contract",
]

log = logging.getLogger("alliance.partner.agent")
_TERMINAL = ("done", "failed", "expired")


class TaskRefused(Exception):
    """The agent will not do this task; the message is the reason reported to the exchange."""


@dataclass
class TaskOutcome:
    task_id: str
    match_id: str
    kind: str
    status: str  # done | refused | error
    detail: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class MatchOutcome:
    """A finished match from the requester's side: the match as the exchange reports it and, for a
    membership match whose recipient is this agent, the matched member ids and the file holding them."""

    match: dict[str, Any]
    members: list[str] | None = None
    members_file: Path | None = None


def register_signing_key(api: PsiApi, store: AgentStore) -> dict[str, Any]:
    """Register this agent's Ed25519 public key with the exchange (contracts and membership reports)."""
    return api.register_signing_key(store.signing_key().public_bytes())


@dataclass
class SigningKeyRotation:
    """A finished rotation: the old and new public keys (raw), and where the old key file was archived."""

    old_public_key: bytes
    new_public_key: bytes
    archived: Path
    resumed: bool = False


def _exchange_current_key(api: PsiApi) -> bytes | None:
    current = api.signing_keys().get("current")
    return base64.b64decode(current["public_key"]) if current else None


def rotate_signing_key(api: PsiApi, store: AgentStore) -> SigningKeyRotation:
    """Replace the agent's Ed25519 signing key: stage a new key file, register its public key with the
    exchange (``PUT /v1/signing-key``, which retires the old key there - signatures made with it stay
    valid, the exchange keeps the key history), then archive the old file and put the new one in place.

    Safe to run again after a failure: a staged key the exchange already has as current is committed
    (``resumed``); one it does not have is discarded and a fresh rotation runs. Until the exchange
    accepts the new key nothing changes locally."""
    old = store.signing_key().public_bytes()
    staged = store.staged_signing_key()
    if staged is not None and _exchange_current_key(api) == staged.public_bytes():
        archived = store.commit_signing_key()
        return SigningKeyRotation(old, staged.public_bytes(), archived, resumed=True)
    new = store.stage_signing_key()
    try:
        api.register_signing_key(new.public_bytes())
    except PartnerError as exc:
        if exc.status != 0 and exc.status < 500:  # refused: the exchange kept the old key
            store.discard_staged_signing_key()
        raise  # otherwise the outcome is unknown: keep the staged key, a re-run settles it
    archived = store.commit_signing_key()
    return SigningKeyRotation(old, new.public_bytes(), archived)


def sign_contract(api: PsiApi, store: AgentStore, contract_id: str, version: int | None = None) -> int:
    """Sign a contract version (the newest by default) and keep the signed terms as the agent's own record.

    The terms are re-encoded locally and must equal the canonical bytes the exchange shows, so the agent
    signs exactly what it read. Returns the version signed.
    """
    contract = api.get_contract(contract_id)
    versions = contract["versions"]
    chosen = versions[-1] if version is None else next((v for v in versions if v["version"] == version), None)
    if chosen is None:
        raise ValueError(f"contract {contract_id} has no version {version}")
    terms = msgspec.convert(chosen["terms"], contracts.ContractTerms)
    if contracts.canonical_bytes(terms) != base64.b64decode(chosen["canonical"]):
        raise ValueError("the exchange's canonical bytes do not match the terms it shows; not signing")
    signature = contracts.sign_terms(store.signing_key().private_key(), terms)
    api.sign_contract(contract_id, terms.version, signature)
    store.record_contract(terms)
    return terms.version


def _policy(disclosure: str) -> DisclosurePolicy | None:
    """The disclosure policy the text names (`privacy.disclosure`), None if it names none."""
    try:
        return parse_disclosure_policy(disclosure)
    except ValueError:
        return None


def _task_kind(policy: DisclosurePolicy | None, brand_id: str, counterparty: str) -> str | None:
    """The task the policy gives this brand's agent in a match with ``counterparty`` (None: none)."""
    if policy is None:
        return None
    if not isinstance(policy, MembershipPolicy):
        return "reblind_shuffled"
    return {counterparty: "reblind_ordered", brand_id: "intersect"}.get(policy.to_brand)


class Agent:
    """One brand's agent. ``executor`` (a process pool from ``privacy.blind.new_process_pool``) spreads
    the X25519 work over cores; without it everything runs in this process."""

    def __init__(
        self,
        api: PsiApi,
        store: AgentStore,
        *,
        executor: Executor | None = None,
        bar: Bar | None = None,
    ) -> None:
        self.api = api
        self.store = store
        self.executor = executor
        self.bar = bar
        self._brand_id: str | None = None

    @property
    def brand_id(self) -> str:
        if self._brand_id is None:
            self._brand_id = str(self.api.client.me()["brand"]["id"])
        return self._brand_id

    # --- the loop ---------------------------------------------------------------------------------

    def run_once(self, only_match: str | None = None) -> list[TaskOutcome]:
        """Handle every open task (of ``only_match`` if given) once."""
        outcomes = []
        for task in self.api.list_tasks("open"):
            if only_match is not None and task["match_id"] != only_match:
                continue
            outcomes.append(self.handle(task))
        return outcomes

    def run(self, poll_seconds: float = 5.0, stop: Callable[[], bool] | None = None) -> None:
        """Poll for tasks until ``stop()`` says so (or forever)."""
        while stop is None or not stop():
            try:
                self.run_once()
            except PartnerError as exc:
                log.warning("exchange error: %s", exc)
            time.sleep(poll_seconds)

    def handle(self, task: dict[str, Any]) -> TaskOutcome:
        outcome = TaskOutcome(task["id"], task["match_id"], task["kind"], "done")
        try:
            if task["kind"] == "intersect":
                self._intersect(task, outcome)
            else:
                self._reblind(task, outcome)
        except TaskRefused as exc:
            reason = str(exc)
            log.warning("refused task %s of match %s: %s", task["id"], task["match_id"], reason)
            self.store.log("refuse", task_id=task["id"], match_id=task["match_id"], reason=reason)
            outcome.status, outcome.detail = "refused", reason
            try:
                self.api.refuse_task(task["id"], reason)
            except PartnerError as error:
                log.warning("could not report the refusal of task %s: %s", task["id"], error)
        except PartnerError as exc:
            log.warning("task %s: the exchange refused a call: %s", task["id"], exc)
            outcome.status, outcome.detail = "error", str(exc)
        return outcome

    # --- checks -----------------------------------------------------------------------------------

    def _approved(self, task: dict[str, Any]) -> dict[str, Any]:
        """Check the task against the match (exchange) and the signed contract (local record)."""
        match = self.api.get_match(task["match_id"])
        if match["state"] != "waiting_for_reblinds":
            raise TaskRefused(f"the match is {match['state']}, not waiting for re-blinds")
        for key, match_key in (
            ("counterparty_brand", "counterparty_brand"),
            ("counterparty_segment_id", "counterparty_segment_id"),
            ("segment_id", "segment_id"),
            ("declared_item_count", "counterparty_segment_size"),
            ("key_epoch", "key_epoch"),
            ("disclosure", "disclosure"),
        ):
            if task[key] != match[match_key]:
                raise TaskRefused(f"the task's {key} does not agree with the match")
        disclosure = match["disclosure"]
        counterparty = match["counterparty_brand"]
        policy = _policy(disclosure)
        if _task_kind(policy, self.brand_id, counterparty) != task["kind"]:
            raise TaskRefused(f"a {task['kind']} task does not fit the disclosure policy {disclosure!r}")
        if match["contract_id"] is None or match["contract_version"] is None:
            raise TaskRefused("the match names no contract")
        terms = self.store.signed_contract(match["contract_id"], match["contract_version"])
        if terms is None:
            raise TaskRefused(f"this agent did not sign contract {match['contract_id']} v{match['contract_version']}")
        if not terms.is_party(counterparty) or not terms.is_party(self.brand_id):
            raise TaskRefused("the signed contract is not between these two brands")
        if terms.psi is None or policy is None or _policy(terms.psi.disclosure) != policy:
            raise TaskRefused("the signed contract does not allow this disclosure policy")
        try:
            own = self.store.segment(task["segment_id"])
        except StoreError as exc:
            raise TaskRefused(str(exc)) from None
        if own.key_epoch != task["key_epoch"]:
            raise TaskRefused("the task's key epoch is not our segment's")
        if not terms.psi.allows_segment(own.segment_id, own.tags):
            raise TaskRefused(f"the signed contract does not cover our segment {own.segment_id}")
        return match

    def _items(self, task: dict[str, Any], outcome: TaskOutcome) -> bytes:
        mark = time.perf_counter()
        advance = self.bar("downloading (bytes)", task["declared_item_count"] * POINT_SIZE) if self.bar else None
        items = self.api.task_items(task["id"], progress=advance)
        outcome.seconds["download"] = time.perf_counter() - mark
        if len(items) != task["declared_item_count"] * POINT_SIZE:
            raise TaskRefused(
                f"the task carries {len(items) // POINT_SIZE} items; the counterparty segment declared "
                f"{task['declared_item_count']}"
            )
        try:
            self.store.consume(task["counterparty_brand"], task["key_epoch"], task["declared_item_count"])
        except (ReblindBudgetExceeded, StoreError) as exc:
            raise TaskRefused(f"re-blinding budget: {exc}") from None
        return items

    def _reblind_items(self, task: dict[str, Any], items: bytes, outcome: TaskOutcome) -> bytes:
        mark = time.perf_counter()
        scalar = self.store.psi_key(task["key_epoch"]).scalar
        advance = self.bar("re-blinding", task["declared_item_count"]) if self.bar else None
        try:
            result = reblind(scalar, items, executor=self.executor, progress=advance)
        except BlindingError as exc:
            raise TaskRefused(f"the items are not valid points: {exc}") from None
        outcome.seconds["reblind"] = time.perf_counter() - mark
        return result

    # --- the two kinds of work ----------------------------------------------------------------------

    def _reblind(self, task: dict[str, Any], outcome: TaskOutcome) -> None:
        self._approved(task)
        items = self._items(task, outcome)
        result = self._reblind_items(task, items, outcome)
        del items
        if task["kind"] == "reblind_shuffled":
            mark = time.perf_counter()
            result = sorted_records(result)
            outcome.seconds["order"] = time.perf_counter() - mark
        mark = time.perf_counter()
        advance = self.bar("uploading (bytes)", len(result)) if self.bar else None
        self.api.put_task_result(task["id"], result, progress=advance)
        outcome.seconds["upload"] = time.perf_counter() - mark

    def _intersect(self, task: dict[str, Any], outcome: TaskOutcome) -> None:
        self._approved(task)
        items = self._items(task, outcome)
        theirs = self._reblind_items(task, items, outcome)
        del items
        own = self.store.segment(task["segment_id"])
        mark = time.perf_counter()
        mine = self.api.task_reblinded(task["id"])
        if len(mine) != own.size * POINT_SIZE:
            raise TaskRefused(f"the re-blinded segment has {len(mine) // POINT_SIZE} items, ours has {own.size}")
        try:
            rows = membership(mine, theirs)
        except PsiError as exc:
            raise TaskRefused(str(exc)) from None
        members = self.store.members(own.segment_id)
        matched = [members[i] for i in rows]
        self.store.save_result(task["match_id"], matched)
        outcome.seconds["intersect"] = time.perf_counter() - mark
        report = MembershipReport(
            match_id=task["match_id"],
            reporting_brand=self.brand_id,
            counterparty_brand=task["counterparty_brand"],
            overlap_count=len(matched),
            key_epoch=task["key_epoch"],
        )
        signed = sign_membership_report(report, self.store.signing_key().private_key())
        self.api.put_task_report(task["id"], signed)

    # --- requesting ---------------------------------------------------------------------------------

    def request_match(
        self,
        segment_id: str,
        counterparty_segment_id: str,
        *,
        disclosure: str | None = None,
        timeout: float = 3600.0,
        poll_seconds: float = 0.5,
    ) -> MatchOutcome:
        """Request a match, do this agent's own tasks for it, and wait until it ends.

        The counterparty's agent must be running meanwhile. For a membership match whose recipient is
        this brand, the matched member ids are returned (and kept in the agent home).
        """
        match = self.api.create_match(segment_id, counterparty_segment_id, disclosure)
        deadline = time.monotonic() + timeout
        while match["state"] not in _TERMINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(f"match {match['id']} is still {match['state']} after {timeout:.0f} s")
            self.run_once(only_match=match["id"])
            match = self.api.get_match(match["id"])
            if match["state"] not in _TERMINAL:
                time.sleep(poll_seconds)
        outcome = MatchOutcome(match)
        if match["state"] == "done" and _policy(match["disclosure"]) == MembershipPolicy(self.brand_id):
            path = self.store.home / "results" / f"{match['id']}.members"
            outcome.members = path.read_text().splitlines() if path.exists() else []
            outcome.members_file = path
        return outcome
