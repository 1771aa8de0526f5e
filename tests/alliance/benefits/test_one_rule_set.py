"""A sweep over the source: the redemption and reversal rules exist once.

Every refusal of a redemption or a reversal is written in the pure rule modules (`rules`,
`redemption_rules`, `reversal_rules`); the paths that run them (the services, both stores, the SQL, the
routes) refuse nothing of their own, so a refusal added to one path only cannot exist. A refusal added
to the rules later must also be exercised by `test_redemption_rules` (which needs no database).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import alliance.benefits

PACKAGE = Path(alliance.benefits.__file__).parent
RULES = ("rules.py", "redemption_rules.py", "reversal_rules.py")
PATHS = ("redemption.py", "redemption_store.py", "redemption_sql.py", "reversal.py", "routes.py", "booking.py")
# Not a redemption or reversal: reading one redemption back (GET) answers 404 like the reversal does.
READS = {("redemption.py", "own_redemption")}


def _slugs(module: str) -> dict[str, set[str]]:
    """slug -> the functions of ``module`` that build a ``Refusal`` or ``Problem`` with it."""
    tree = ast.parse((PACKAGE / module).read_text())
    found: dict[str, set[str]] = {}
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("Refusal", "Problem")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                found.setdefault(str(node.args[1].value), set()).add(function.name)
    return found


def _rule_slugs() -> set[str]:
    return {slug for module in RULES for slug in _slugs(module)}


@pytest.mark.parametrize("module", PATHS)
def test_the_paths_decide_no_refusal_of_their_own(module: str) -> None:
    rules = _rule_slugs()
    duplicated = {
        slug: functions
        for slug, functions in _slugs(module).items()
        if slug in rules and not {(module, f) for f in functions} <= READS
    }
    assert duplicated == {}, f"{module} decides refusals the rules decide: {duplicated}"


def test_every_rule_refusal_is_exercised_without_a_database() -> None:
    tested = (Path(__file__).parent / "test_redemption_rules.py").read_text()
    untested = sorted(slug for slug in _rule_slugs() if f'"{slug}"' not in tested)
    assert untested == []
