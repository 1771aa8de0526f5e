"""Match jobs and agent tasks: private set intersection through the exchange (DESIGN.md §3).

No HTTP objects here. A match exists only under the signed contract in force between the two brands
whose PSI terms cover both segments (``alliance.contracts.service.psi_terms_in_force``); the terms fix
the disclosure policy, minimum k, rounding and the pair's monthly differential-privacy budget.

State machine of a match: ``requested`` (checks run) -> ``waiting_for_reblinds`` (agents have tasks) ->
``computing`` -> ``done``; ``failed`` (an agent refused, a budget ran out) and ``expired`` (not done by
``expires_at``) are terminal too. Tasks: ``pending`` -> ``open`` -> ``done`` | ``failed`` | ``cancelled``.

- ``cardinality``: each agent re-blinds the other's published segment and returns it shuffled; the
  exchange counts common 16-byte truncations and releases the count through :mod:`privacy.noise`.
- ``membership_to:X``: the other brand's agent re-blinds X's segment in order; only X's agent may
  download that (its ``intersect`` task), re-blinds the other's segment itself, intersects locally and
  reports the count signed with its Ed25519 key, which the exchange verifies and passes on.

What the caller may rely on: a brand reaches only matches it is a party to and only its own tasks
(anything else is 404, exactly like a missing id); re-blinded sets go to nobody but the membership
recipient and are deleted when the match ends; the exact count of a cardinality match is never stored.

The work is split by job; this module is the domain's one import for routes and other packages:
`alliance.matches.creation` (the checks and the new match), `alliance.matches.tasks` (agent work),
`alliance.matches.lifecycle` (computing, releasing, ending, expiring, reading up to date) and
`alliance.matches.views` (what the API shows, and the lookups).
"""

from __future__ import annotations

from alliance.matches.creation import create_match
from alliance.matches.lifecycle import (
    ACTIVE_STATES,
    compute_match,
    expire_due,
    get_match,
    list_matches,
    match_result,
)
from alliance.matches.tasks import (
    list_tasks,
    refuse_task,
    submit_membership_report,
    submit_task_result,
    task_input_set,
    task_reblinded_set,
)
from alliance.matches.views import get_task, match_out, task_out

__all__ = [
    "ACTIVE_STATES",
    "compute_match",
    "create_match",
    "expire_due",
    "get_match",
    "get_task",
    "list_matches",
    "list_tasks",
    "match_out",
    "match_result",
    "refuse_task",
    "submit_membership_report",
    "submit_task_result",
    "task_input_set",
    "task_out",
    "task_reblinded_set",
]
