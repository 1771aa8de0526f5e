"""Wire schemas for match jobs and agent tasks. Results reuse the protocol messages of
:mod:`privacy.psi` (``CardinalityResult`` / ``MembershipResult``) so agents and the exchange agree."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from privacy.psi import CardinalityResult, MembershipResult

__all__ = ["MatchCreate", "MatchOut", "MatchResultOut", "TaskKind", "TaskOut", "TaskRefusal"]

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
TaskKind = Literal["reblind_shuffled", "reblind_ordered", "intersect"]
MatchResultOut = CardinalityResult | MembershipResult


class MatchCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Match the caller's published ``segment_id`` with another brand's published segment.

    The contract in force between the two brands decides the disclosure policy; ``disclosure``, when
    given, must equal it (a guard against matching under terms the caller did not expect).
    """

    segment_id: Id
    counterparty_segment_id: Id
    disclosure: Annotated[str, msgspec.Meta(max_length=100)] | None = None


class MatchOut(msgspec.Struct):
    """A match as one of its two parties sees it. ``result`` is set once ``state`` is ``done``."""

    id: str
    state: str
    role: Literal["requester", "responder"]
    segment_id: str
    counterparty_brand: str
    counterparty_segment_id: str
    counterparty_segment_size: int
    key_epoch: str
    disclosure: str
    min_k: int
    round_to: int
    differential_privacy: bool
    basis: str
    contract_id: str | None
    contract_version: int | None
    failure_reason: str | None
    requested_at: datetime
    expires_at: datetime
    completed_at: datetime | None
    result: MatchResultOut | None = None


class TaskOut(msgspec.Struct):
    """Work for the calling brand's agent.

    - ``reblind_shuffled`` / ``reblind_ordered``: download ``items`` (the counterparty's published segment,
      ``declared_item_count`` records), re-blind each with the key of ``key_epoch``, upload them shuffled
      or in order to ``result``.
    - ``intersect`` (membership recipient): re-blind ``items`` locally, download ``reblinded`` (the
      counterparty's ordered re-blinding of ``segment_id``), intersect, report the signed count.
    """

    id: str
    match_id: str
    kind: TaskKind
    state: str
    segment_id: str
    counterparty_brand: str
    counterparty_segment_id: str
    declared_item_count: int
    key_epoch: str
    disclosure: str
    expires_at: datetime
    failure_reason: str | None = None


class TaskRefusal(msgspec.Struct, forbid_unknown_fields=True):
    """Why the agent refuses a task (logged by the agent, shown to both parties in the failed match)."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=400)]
