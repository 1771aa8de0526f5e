"""Bounds on money, stated once for the whole exchange.

Every amount that enters (contract terms, benefits, redemptions, conversions, operator postings) is at
most `MAX_AMOUNT` minor units, and every running total (an account's balance, a benefit's spending, a
month's commission) at most `MAX_TOTAL`. Both sit far inside a signed 64-bit integer (about 9.2 * 10**18),
so no sum the exchange forms can overflow a PostgreSQL ``bigint`` or turn into a float on SQLite, and
`MAX_TOTAL` is below 2**53, so a total read by a JavaScript or spreadsheet client is still exact.

10**12 minor units is ten billion yuan; 10**15 is a thousand times that.
"""

from __future__ import annotations

__all__ = ["MAX_AMOUNT", "MAX_TOTAL", "amount_in_bounds", "total_in_bounds"]

MAX_AMOUNT = 10**12
"""The largest single amount, in minor units."""

MAX_TOTAL = 10**15
"""The largest running total (positive or negative), in minor units."""


def amount_in_bounds(amount: int) -> bool:
    """Whether one amount (of either sign) is within `MAX_AMOUNT`."""
    return -MAX_AMOUNT <= amount <= MAX_AMOUNT


def total_in_bounds(total: int) -> bool:
    """Whether a running total (of either sign) is within `MAX_TOTAL`."""
    return -MAX_TOTAL <= total <= MAX_TOTAL
