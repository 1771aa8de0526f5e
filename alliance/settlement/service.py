"""The monthly close, statements, disputes and the finance report (see ``docs/settlement.md``).

Public API (no HTTP objects; errors are `Problem`):

* ``await close_month(session, ctx, month, *, key_file) -> RunOut`` - close ``YYYY-MM`` in the caller's
  database transaction: lock the ledger period, seal, aggregate in SQL, net multilaterally, write one
  signed statement per brand with activity and the run. A second call for a closed month rebuilds the
  statements, checks they are byte-identical to the stored ones and returns the run (``already_closed``).
* ``await build_statements(session, month, *, key_file) -> (dict[brand_id, bytes], RunTotals)``
* ``await get_statement(session, brand_id, month) -> SettlementStatement`` (404 for no statement)
* ``statement_json(row, public_key=None) -> bytes`` (with the key that signed it), ``statement_csv(row) -> bytes``
* ``await list_runs(session) -> list[RunOut]``, ``await get_run(session, month) -> RunOut``
* ``await open_dispute(...)``, ``await list_disputes(...)``, ``await resolve_dispute(...)``
* ``await monthly_report(session, month) -> ReportOut``, ``report_csv(report) -> bytes``
* ``await exchange_key(session, key_file, key_id=None) -> ExchangeKeyOut`` (current, or any by key id),
  ``await list_exchange_keys(session, key_file)``, ``await rotate_exchange_key(session, ctx, key_file)``

The work is split by job; this module is the domain's one import for routes, the console, the CLI and
the demo: `alliance.settlement.close` (the close and its runs), `.statements` (building the signed
statements, from `.aggregate`'s SQL totals), `.documents` (stored statements as JSON, CSV, PDF),
`.disputes`, `.report` (the finance report) and `.keys` (the statement signing keys).
"""

from __future__ import annotations

from alliance.settlement.close import close_month, get_run, list_runs
from alliance.settlement.disputes import list_disputes, open_dispute, resolve_dispute
from alliance.settlement.documents import get_statement, statement_bytes, statement_csv, statement_json
from alliance.settlement.keys import exchange_key, list_exchange_keys, rotate_exchange_key
from alliance.settlement.months import DISPUTE_KIND, check_month
from alliance.settlement.report import monthly_report, report_csv
from alliance.settlement.statements import ALLIANCE_PARTNER, RunTotals, build_statements

__all__ = [
    "ALLIANCE_PARTNER",
    "DISPUTE_KIND",
    "RunTotals",
    "build_statements",
    "check_month",
    "close_month",
    "exchange_key",
    "get_run",
    "get_statement",
    "list_disputes",
    "list_exchange_keys",
    "list_runs",
    "monthly_report",
    "open_dispute",
    "report_csv",
    "resolve_dispute",
    "rotate_exchange_key",
    "statement_bytes",
    "statement_csv",
    "statement_json",
]
