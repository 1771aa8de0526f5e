"""privacy.noise: suppression, rounding, the exact discrete Laplace sampler and budget accounting."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy import noise
from privacy.noise import (
    DEFAULT_MIN_K,
    BudgetExhausted,
    InvalidEpsilon,
    PrivacyBudget,
    ReleasedCount,
    discrete_laplace,
    epsilon_from_milli,
    parse_epsilon,
    release_count,
    round_to_multiple,
    suppress_below_k,
)


def test_suppression_below_k() -> None:
    assert suppress_below_k(9, 10) is None
    assert suppress_below_k(10, 10) == 10
    assert suppress_below_k(DEFAULT_MIN_K - 1) is None
    with pytest.raises(ValueError):
        suppress_below_k(5, 0)


def test_rounding_is_down() -> None:
    assert round_to_multiple(1234, 100) == 1200
    assert round_to_multiple(1299, 100) == 1200
    assert round_to_multiple(7, 1) == 7
    with pytest.raises(ValueError):
        round_to_multiple(7, 0)


def test_release_without_noise() -> None:
    assert release_count(5, k=10) == ReleasedCount(None, True, False, 1, None)
    assert release_count(1234, k=10, round_to=100) == ReleasedCount(1200, False, False, 100, None)


@settings(max_examples=50)
@given(st.integers(0, 10**6), st.integers(1, 200), st.integers(1, 50))
def test_release_never_reports_below_k_without_noise(count: int, k: int, round_to: int) -> None:
    released = release_count(count, k=k, round_to=round_to)
    assert released.suppressed == (count < k)
    if released.value is not None:
        assert released.value % round_to == 0
        assert count - round_to < released.value <= count


def test_release_with_noise_spends_budget() -> None:
    budget = PrivacyBudget.for_pair("globex", "acme", "2026-11", "1")
    rng = random.Random(1)
    released = release_count(5000, k=10, epsilon="0.25", budget=budget, rng=rng)
    assert released.noised
    assert released.epsilon == "1/4"
    assert isinstance(released.value, int)
    assert abs(released.value - 5000) < 200
    assert budget.spent == Fraction(1, 4)


def test_release_refused_when_budget_exhausted() -> None:
    budget = PrivacyBudget.for_pair("acme", "globex", "2026-11", "0.5")
    release_count(5000, epsilon="0.5", budget=budget)
    with pytest.raises(BudgetExhausted):
        release_count(5000, epsilon="0.1", budget=budget)
    assert budget.spent == Fraction(1, 2)


def test_noised_release_suppresses_on_noised_value() -> None:
    released = release_count(0, k=10, epsilon=1, rng=random.Random(3))
    assert released.suppressed and released.value is None and released.noised


def test_release_argument_errors() -> None:
    with pytest.raises(TypeError):
        release_count(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        release_count(-1)
    with pytest.raises(ValueError):
        release_count(5, round_to=0)


@settings(max_examples=40, deadline=None)
@given(
    st.builds(Fraction, st.integers(1, 500), st.integers(1, 100)),
    st.integers(0, 2**32),
)
def test_discrete_laplace_is_an_integer(epsilon: Fraction, seed: int) -> None:
    value = discrete_laplace(epsilon, random.Random(seed))
    assert type(value) is int


def test_discrete_laplace_uses_csprng_by_default() -> None:
    assert all(type(discrete_laplace(1)) is int for _ in range(20))


@pytest.mark.parametrize("epsilon", [Fraction(1), Fraction(1, 2), Fraction(5, 2)])
def test_discrete_laplace_distribution(epsilon: Fraction) -> None:
    """Empirical P[0] and E|Z| against the two-sided geometric law, within 5 standard errors."""
    rng = random.Random(20261101)
    n = 4000
    samples = [discrete_laplace(epsilon, rng) for _ in range(n)]
    alpha = math.exp(-float(epsilon))
    p_zero = (1 - alpha) / (1 + alpha)
    observed_zero = samples.count(0) / n
    assert abs(observed_zero - p_zero) < 5 * math.sqrt(p_zero * (1 - p_zero) / n)
    mean_abs = 2 * alpha / (1 - alpha**2)
    variance = 2 * alpha / (1 - alpha) ** 2
    observed_abs = sum(abs(s) for s in samples) / n
    assert abs(observed_abs - mean_abs) < 5 * math.sqrt(variance / n)
    assert abs(sum(samples) / n) < 5 * math.sqrt(variance / n)


def test_bernoulli_exp_neg_rate() -> None:
    rng = random.Random(5)
    n = 4000
    for gamma in (Fraction(1, 3), Fraction(3, 2)):
        p = math.exp(-float(gamma))
        hits = sum(noise._bernoulli_exp_neg(gamma, rng) for _ in range(n))
        assert abs(hits / n - p) < 5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.1", Fraction(1, 10)), (0.1, Fraction(1, 10)), (2, Fraction(2)), (Fraction(3, 7), Fraction(3, 7))],
)
def test_parse_epsilon(value: object, expected: Fraction) -> None:
    assert parse_epsilon(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, "0", "-0.5", float("nan"), float("inf"), "abc", "1/0"])
def test_invalid_epsilon(value: object) -> None:
    with pytest.raises(InvalidEpsilon):
        parse_epsilon(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, None, [1], b"1"])
def test_epsilon_wrong_type(value: object) -> None:
    with pytest.raises(TypeError):
        parse_epsilon(value)  # type: ignore[arg-type]


def test_epsilon_from_milli() -> None:
    assert epsilon_from_milli(1500) == Fraction(3, 2)
    with pytest.raises(InvalidEpsilon):
        epsilon_from_milli(0)
    with pytest.raises(TypeError):
        epsilon_from_milli(1.5)  # type: ignore[arg-type]


def test_budget_accounting_is_exact() -> None:
    budget = PrivacyBudget.for_pair("b", "a", "2026-11", 1)
    assert budget.brands == ("a", "b")
    for _ in range(10):
        budget.spend(0.1)
    assert budget.spent == 1 and budget.remaining == 0
    assert not budget.can_spend("0.001")
    with pytest.raises(BudgetExhausted):
        budget.spend("0.001")


@settings(max_examples=50)
@given(st.lists(st.builds(Fraction, st.integers(1, 100), st.integers(1, 100)), max_size=20))
def test_budget_never_overspent(spends: list[Fraction]) -> None:
    budget = PrivacyBudget.for_pair("a", "b", "2026-11", 2)
    for eps in spends:
        before = budget.spent
        if budget.can_spend(eps):
            budget.spend(eps)
            assert budget.spent == before + eps
        else:
            with pytest.raises(BudgetExhausted):
                budget.spend(eps)
            assert budget.spent == before
        assert budget.spent <= budget.total


def test_budget_needs_two_brands() -> None:
    with pytest.raises(ValueError):
        PrivacyBudget.for_pair("a", "a", "2026-11", 1)
