"""The probe type of the tenant-isolation sweep (``tests/alliance/test_isolation.py``).

A domain lists its partner routes in ``tests/alliance/<domain>/isolation_probes.py`` as
``PROBES: dict[tuple[str, str], Probe]`` keyed by ``(METHOD, "/v1/path/{param}")``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.helpers import BrandHandle

__all__ = ["Probe", "SetUp", "Verify"]

SetUp = Callable[[AsyncTestClient[Litestar], BrandHandle], Awaitable[dict[str, str]]]
Verify = Callable[[AsyncTestClient[Litestar], BrandHandle, dict[str, str]], Awaitable[None]]


@dataclass(frozen=True)
class Probe:
    """How to aim a route at brand A's object.

    ``setup`` creates the object as brand A and returns the path values; after brand B's call,
    ``verify`` (as brand A) asserts the object is unchanged. ``body`` is what B sends.
    """

    setup: SetUp | None = None
    verify: Verify | None = None
    body: Any = None
    extra_ids: list[str] = field(default_factory=list)
