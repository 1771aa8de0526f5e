"""Running the command lines (``alliance``, ``alliance-partner``) in the test process.

Starting Python, importing the service and building its parser costs about two seconds a call, so tests
call ``main(argv)`` directly, with the environment, standard input and output the process would have had:
the result has the same ``returncode``, ``stdout`` and ``stderr`` as :func:`subprocess.run` gives. One
smoke test per console script still starts the installed script as a real process
(``tests/alliance/spine/test_cli_and_server.py``).

The command runs on a thread of its own, so that its ``asyncio.run`` works from async tests too; async
tests await :func:`run_async` so that the app under test keeps serving meanwhile. The process-wide
environment and standard streams are swapped for the duration of the call, so only one command runs at
a time (a lock); the environment is restored afterwards, including what the command set in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from alliance.cli import main as alliance_main
from alliance.partner.cli import main as partner_main

__all__ = ["ALLIANCE", "PARTNER", "CommandResult", "run", "run_async"]

Main = Callable[[Sequence[str] | None], int]
ALLIANCE: Main = alliance_main
PARTNER: Main = partner_main

_one_at_a_time = threading.Lock()


@dataclass(frozen=True)
class CommandResult:
    """What :func:`subprocess.run` with ``capture_output=True, text=True`` would have returned."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _process_context(env: Mapping[str, str] | None, stdin: str | None) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    saved_env = dict(os.environ)
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    out, err = io.StringIO(), io.StringIO()
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin or ""), out, err
    try:
        yield out, err
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.environ.clear()
        os.environ.update(saved_env)


def run(
    main: Main, args: Sequence[str], env: Mapping[str, str] | None = None, stdin: str | None = None
) -> CommandResult:
    """``main(args)`` as the process ``prog args`` with environment ``env`` (default: this process's)
    and ``stdin`` as its standard input; an ``argparse`` exit becomes the return code as it would."""
    outcome: list[int] = []
    failure: list[BaseException] = []

    def call() -> None:
        try:
            outcome.append(main(list(args)))
        except SystemExit as exc:  # argparse: --help (0), usage errors (2)
            code = exc.code
            outcome.append(code if isinstance(code, int) else (0 if code is None else 1))
        except BaseException as exc:  # a traceback the real process would print: the test fails on it
            failure.append(exc)

    with _one_at_a_time, _process_context(env, stdin) as (out, err):
        worker = threading.Thread(target=call, name=f"command {' '.join(args)[:40]}")
        worker.start()
        worker.join()
    if failure:
        raise failure[0]
    return CommandResult(list(args), outcome[0], out.getvalue(), err.getvalue())


async def run_async(
    main: Main, args: Sequence[str], env: Mapping[str, str] | None = None, stdin: str | None = None
) -> CommandResult:
    """:func:`run` without blocking the test's event loop."""
    return await asyncio.to_thread(run, main, args, env, stdin)
