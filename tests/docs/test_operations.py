"""Every ``alliance`` / ``alliance-partner`` command named in docs/operations.md exists: each command line
is parsed by the real command-line parser (subcommands, flags and their values), and ``--help`` works
for each distinct subcommand it names."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from alliance import cli as exchange_cli
from alliance.partner import cli as partner_cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "alliance": exchange_cli._parser,
    "alliance-partner": partner_cli._parser,
}
_STOP = {"|", "||", "&&", ";", ">", "<", "#"}


def command_lines(text: str) -> list[list[str]]:
    """Command lines in code blocks and inline code that start with one of our programs."""
    candidates = [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]
    candidates += re.findall(r"`((?:alliance|alliance-partner) [^`]+)`", text)
    found = []
    for line in candidates:
        if line.split(" ", 1)[0] not in PARSERS:
            continue
        tokens = shlex.split(line, comments=True)
        cut = next((i for i, t in enumerate(tokens) if t in _STOP), len(tokens))
        found.append(tokens[:cut])
    return found


COMMANDS = command_lines(DOC.read_text(encoding="utf-8"))


def test_the_runbook_names_commands() -> None:
    named = {" ".join(c[:2]) for c in COMMANDS}
    for needed in ("alliance close", "alliance ledger", "alliance brand", "alliance admin-key", "alliance migrate"):
        assert needed in named, needed


@pytest.mark.parametrize("tokens", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_command_line_parses(tokens: list[str]) -> None:
    program, *args = tokens
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            parsed = PARSERS[program]().parse_args(args)
    except SystemExit:
        pytest.fail(f"{' '.join(tokens)}: {errors.getvalue()}")
    assert callable(parsed.func)


def _subcommand_path(tokens: list[str]) -> list[str]:
    """The leading words that select subcommands (before the first flag or argument value)."""
    path = []
    parser = PARSERS[tokens[0]]()
    for word in tokens[1:]:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers or word not in subparsers[0].choices:
            break
        path.append(word)
        parser = subparsers[0].choices[word]
    return [tokens[0], *path]


HELP_TARGETS = sorted({tuple(_subcommand_path(c)) for c in COMMANDS})


@pytest.mark.parametrize("target", HELP_TARGETS, ids=[" ".join(t) for t in HELP_TARGETS])
def test_help_works(target: tuple[str, ...]) -> None:
    program, *path = target
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        PARSERS[program]().parse_args([*path, "--help"])
    assert exited.value.code == 0
    assert out.getvalue().startswith(f"usage: {' '.join(target)}")
