"""The redemption store a test runs through: ``redemption_store`` is ``direct`` (PostgreSQL's fast path,
`redemption_store.AsyncpgStore`) or ``portable`` (`CoreStore`, through the session).

A test that asks for ``redemption_store`` runs once per store on PostgreSQL and once (portable) on
SQLite, which has no fast path. ``direct`` also checks that the fast path answered every redemption
itself - refusals and replays included - and handed none over; ``portable`` turns the fast path off.
``race_store`` is the same choice for tests of lost races, where the fast path must hand over.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from alliance.benefits import redemption

STORES = ("direct", "portable")


CHOICES = ("redemption_store", "race_store")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name in CHOICES:
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, STORES, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """SQLite has one store: drop its ``direct`` variants (reported as deselected)."""
    dropped: list[pytest.Item] = []
    kept: list[pytest.Item] = []
    for item in items:
        params = getattr(item, "callspec", None)
        chosen = params.params if params is not None else {}
        if chosen.get("backend") == "sqlite" and "direct" in (chosen.get(name) for name in CHOICES):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def redemption_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    store: str = request.param
    handed_over: list[str] = []
    redeem_direct = redemption.redeem_direct

    async def direct(*args: Any) -> Any:
        answer = await redeem_direct(*args)
        if answer is None:
            handed_over.append(args[-1].code)
        return answer

    async def off(*_args: Any) -> None:
        return None

    monkeypatch.setattr(redemption, "redeem_direct", direct if store == "direct" else off)
    yield store
    assert handed_over == [], f"the fast path handed redemptions over to the portable path: {handed_over}"


@pytest.fixture
def race_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    store: str = request.param
    if store == "portable":

        async def off(*_args: Any) -> None:
            return None

        monkeypatch.setattr(redemption, "redeem_direct", off)
    return store
