"""The ledger's public API in one place (kept for its many callers): posting
(`alliance.ledger.posting`), the period rule (`alliance.ledger.periods`), validation
(`alliance.ledger.validation`) and reading back (`alliance.ledger.queries`). Nothing is defined here.

* ``await post_transaction(session, *, brand_id, idempotency_key, kind, postings, occurred_at,
  reference=None, allow_empty=False) -> PostedTransaction``
* ``await post_priced_event(session, priced, *, brand_id, idempotency_key, occurred_at, kind=None,
  reference=None) -> PostedTransaction``
* ``await open_period_for(session, occurred_at) -> str`` - the period a transaction would post into now
* ``await live_balances(session, brand_id) -> list[AccountBalance]`` - exact, including unsealed postings
* ``await list_transactions(session, *, brand_id, ...) -> TransactionPage``
"""

from __future__ import annotations

from alliance.ledger.periods import open_period_for
from alliance.ledger.posting import (
    ALLIANCE_SCOPE,
    PostedTransaction,
    PreparedPosting,
    post_adjustment,
    post_priced_event,
    post_transaction,
    prepare_priced_event,
)
from alliance.ledger.queries import balances_out, get_transaction, list_transactions, live_balances
from alliance.ledger.validation import MAX_AMOUNT, MAX_POSTINGS, account_brand

__all__ = [
    "ALLIANCE_SCOPE",
    "MAX_AMOUNT",
    "MAX_POSTINGS",
    "PostedTransaction",
    "PreparedPosting",
    "account_brand",
    "balances_out",
    "get_transaction",
    "list_transactions",
    "live_balances",
    "open_period_for",
    "post_adjustment",
    "post_priced_event",
    "post_transaction",
    "prepare_priced_event",
]
