"""Disclosure control for overlap counts: minimum-k suppression, rounding, DP noise and budgets.

Mechanism (``cardinality`` policy, DESIGN.md §3). An overlap count has sensitivity 1: adding or
removing one person changes it by at most 1. To release it with epsilon-differential privacy we add
discrete Laplace noise (the two-sided geometric mechanism of Ghosh, Roughgarden and Sundararajan,
2009): ``P[Z = z] = (1 - a) / (1 + a) * a^|z|`` with ``a = exp(-epsilon)``. The sampler is the exact
one of Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020),
Algorithms 1 and 2: it uses only integer arithmetic on a rational epsilon and the OS CSPRNG
(``secrets``), so no floating-point rounding can skew the distribution or leak through the low bits
of a float, as it can with the textbook ``round(Laplace(1/epsilon))``.

Release order in :func:`release_count`: add noise, clamp at 0, suppress if below ``k``, round to the
contract's multiple. Clamping, suppression and rounding only look at the *noised* value, so they are
post-processing and keep the epsilon guarantee (rounding is down, as in contracts.terms); without
noise, suppression alone is a heuristic.

Accounting: a :class:`PrivacyBudget` belongs to one unordered brand pair and one calendar month. Each
noised release costs its epsilon once (both brands see the same released value), and by basic
sequential composition the month's releases together are (sum of epsilons)-DP, so ``spend`` refuses
anything that would take the sum past the total.
"""

from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final

import msgspec

__all__ = [
    "DEFAULT_MIN_K",
    "BudgetExhausted",
    "InvalidEpsilon",
    "PrivacyBudget",
    "ReleasedCount",
    "discrete_laplace",
    "epsilon_from_milli",
    "parse_epsilon",
    "release_count",
    "round_to_multiple",
    "suppress_below_k",
]

DEFAULT_MIN_K: Final = 100  # same default as contracts.terms.PsiTerms.min_k

Epsilon = Fraction | int | float | str


class InvalidEpsilon(ValueError):
    """Epsilon must be a positive, finite number."""


class BudgetExhausted(Exception):
    """Spending this epsilon would exceed the brand pair's budget for the month; nothing was spent."""


def parse_epsilon(value: Epsilon) -> Fraction:
    """Epsilon as an exact fraction; floats are read by their decimal repr (``0.1`` -> 1/10).

    Raises ``InvalidEpsilon`` for zero, negative, NaN or infinite values, ``TypeError`` for other types.
    """
    if isinstance(value, bool) or not isinstance(value, Fraction | int | float | str):
        raise TypeError(f"epsilon must be a number or a decimal string, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEpsilon(f"epsilon must be finite, got {value!r}")
    try:
        eps = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise InvalidEpsilon(f"not a number: {value!r}") from None
    if eps <= 0:
        raise InvalidEpsilon(f"epsilon must be positive, got {value!r}")
    return eps


def epsilon_from_milli(milli: int) -> Fraction:
    """Epsilon from the contracts' integer thousandths (``dp_epsilon_milli_per_month``: 1500 = 1.5)."""
    if isinstance(milli, bool) or not isinstance(milli, int):
        raise TypeError("milli-epsilon must be an int")
    return parse_epsilon(Fraction(milli, 1000))


def _bernoulli_exp_neg(gamma: Fraction, rng: random.Random) -> bool:
    """True with probability exp(-gamma), exactly, for rational gamma >= 0 (CKS20 Algorithm 1)."""
    whole = math.floor(gamma)
    for _ in range(whole):
        # exp(-gamma) = exp(-1)^whole * exp(-(gamma - whole)): one exp(-1) trial per unit.
        if not _bernoulli_exp_neg_le1(Fraction(1), rng):
            return False
    return _bernoulli_exp_neg_le1(gamma - whole, rng)


def _bernoulli_exp_neg_le1(gamma: Fraction, rng: random.Random) -> bool:
    # For gamma in [0, 1]: draw Bernoulli(gamma / k) for k = 1, 2, ... until one fails; the index k of
    # the first failure is odd with probability exp(-gamma) (a truncated Taylor series argument).
    k = 1
    while rng.randrange(gamma.denominator * k) < gamma.numerator:
        k += 1
    return k % 2 == 1


def discrete_laplace(epsilon: Epsilon, rng: random.Random | None = None) -> int:
    """One exact sample of the discrete Laplace with ``P[z] ~ exp(-epsilon * |z|)`` (CKS20 Algorithm 2).

    This is the epsilon-DP noise for a sensitivity-1 integer count. ``rng`` defaults to
    ``secrets.SystemRandom()``; pass a seeded ``random.Random`` only in tests.
    """
    eps = parse_epsilon(epsilon)
    gen = rng if rng is not None else secrets.SystemRandom()
    # Lap_Z(t/s) with s/t = epsilon: scale t/s = 1/epsilon.
    s, t = eps.numerator, eps.denominator
    while True:
        u = gen.randrange(t)
        if not _bernoulli_exp_neg(Fraction(u, t), gen):
            continue
        v = 0
        while _bernoulli_exp_neg_le1(Fraction(1), gen):
            v += 1
        y = (u + t * v) // s
        negative = gen.randrange(2) == 1
        if negative and y == 0:
            continue  # otherwise 0 would be drawn twice as often as it should
        return -y if negative else y


def suppress_below_k(count: int, k: int = DEFAULT_MIN_K) -> int | None:
    """``None`` (suppressed) for a count below ``k``, else the count: small overlaps are not reported."""
    if k < 1:
        raise ValueError("k must be at least 1")
    return None if count < k else count


def round_to_multiple(count: int, multiple: int) -> int:
    """Round down to a multiple, as contracts specify (``multiple=1`` leaves the count alone)."""
    if multiple < 1:
        raise ValueError("multiple must be at least 1")
    return count // multiple * multiple


class ReleasedCount(msgspec.Struct, frozen=True):
    """A count as the exchange may show it: ``value`` is None when suppressed.

    ``epsilon`` is the exact epsilon spent, as a fraction string (e.g. ``"1/10"``), or None if no
    noise was added.
    """

    value: int | None
    suppressed: bool
    noised: bool
    rounded_to: int
    epsilon: str | None


@dataclass(slots=True)
class PrivacyBudget:
    """Epsilon budget of one (unordered) brand pair for one month; ``spend`` refuses overspend.

    Store ``total``/``spent`` as ``str(Fraction)`` and rebuild with ``Fraction(text)``; arithmetic
    is exact, so many small spends never drift past the total.
    """

    brands: tuple[str, str]
    month: str
    total: Fraction
    spent: Fraction = field(default=Fraction(0))

    @classmethod
    def for_pair(cls, brand_x: str, brand_y: str, month: str, total: Epsilon) -> PrivacyBudget:
        """A fresh budget; the pair is stored sorted so (A, B) and (B, A) share one budget."""
        if brand_x == brand_y:
            raise ValueError("a budget is for two different brands")
        first, second = sorted((brand_x, brand_y))
        return cls((first, second), month, parse_epsilon(total))

    @property
    def remaining(self) -> Fraction:
        return self.total - self.spent

    def can_spend(self, epsilon: Epsilon) -> bool:
        return parse_epsilon(epsilon) <= self.remaining

    def spend(self, epsilon: Epsilon) -> Fraction:
        """Record a release costing ``epsilon``; returns it as a Fraction. Raises ``BudgetExhausted``."""
        eps = parse_epsilon(epsilon)
        if eps > self.remaining:
            raise BudgetExhausted(
                f"epsilon {eps} exceeds the remaining {self.remaining} of {self.total} "
                f"for {self.brands[0]}/{self.brands[1]} in {self.month}"
            )
        self.spent += eps
        return eps


def release_count(
    true_count: int,
    *,
    k: int = DEFAULT_MIN_K,
    epsilon: Epsilon | None = None,
    budget: PrivacyBudget | None = None,
    round_to: int = 1,
    rng: random.Random | None = None,
) -> ReleasedCount:
    """Apply the contract's disclosure rules to a true overlap count.

    With ``epsilon``, the budget (if given) is charged first (``BudgetExhausted`` stops the release
    before any noise is drawn), then discrete Laplace noise is added. The result is clamped at 0,
    suppressed below ``k`` and rounded to ``round_to``.
    """
    if isinstance(true_count, bool) or not isinstance(true_count, int):
        raise TypeError("true_count must be an int")
    if true_count < 0:
        raise ValueError("true_count must be non-negative")
    if round_to < 1:
        raise ValueError("round_to must be at least 1")
    value = true_count
    spent: Fraction | None = None
    if epsilon is not None:
        spent = budget.spend(epsilon) if budget is not None else parse_epsilon(epsilon)
        value += discrete_laplace(spent, rng)
    kept = suppress_below_k(max(value, 0), k)
    if kept is None:
        return ReleasedCount(None, True, spent is not None, round_to, _fraction_text(spent))
    return ReleasedCount(round_to_multiple(kept, round_to), False, spent is not None, round_to, _fraction_text(spent))


def _fraction_text(value: Fraction | None) -> str | None:
    return None if value is None else str(value)
