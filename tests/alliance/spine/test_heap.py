"""The start-up heap freeze (``alliance/core/heap.py``): on by default, off with ``freeze_heap=False``
(which the tests' shared app uses, see ``tests/conftest.py``)."""

from __future__ import annotations

import gc

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from alliance.app import create_app
from alliance.core.settings import Settings, load_settings


def test_the_freeze_is_on_unless_switched_off() -> None:
    assert load_settings({}).freeze_heap is True
    assert load_settings({"ALLIANCE_FREEZE_HEAP": "false"}).freeze_heap is False


async def test_a_started_app_freezes_its_start_up_heap_and_thaws_it_on_shutdown(settings: Settings) -> None:
    app = create_app(msgspec.structs.replace(settings, freeze_heap=True), configure_logs=False)
    before = gc.get_freeze_count()
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/health")).status_code == 200
        assert gc.get_freeze_count() > before
    assert gc.get_freeze_count() == 0


async def test_the_tests_app_leaves_the_collector_alone(app: Litestar, client: AsyncTestClient[Litestar]) -> None:
    assert app.state.settings.freeze_heap is False
    assert (await client.get("/health")).status_code == 200
    assert gc.get_freeze_count() == 0
