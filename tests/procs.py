"""Starting the real exchange as a subprocess for tests that need a real HTTP server.

:func:`running_server` is the one way the tests start ``alliance serve``; the ``live_server`` fixture
(``tests/conftest.py``) shares one such server on the test database among the tests of a module.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

__all__ = ["exchange_env", "free_port", "running_server"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exchange_env(database_url: str, **settings: str) -> dict[str, str]:
    """This process's environment without its ``ALLIANCE_*`` variables, plus the database and ``settings``
    (``ALLIANCE_`` + name, upper-cased)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env["ALLIANCE_DATABASE_URL"] = database_url
    env.update({f"ALLIANCE_{name.upper()}": value for name, value in settings.items()})
    return env


@contextlib.contextmanager
def running_server(args: list[str], env: dict[str, str], log_path: Path, timeout: float = 30) -> Iterator[str]:
    """Run ``alliance <args>`` (a ``serve``, with ``--port`` unless ``args`` is ``["serve"]``, then a free
    one is chosen) until the block ends; yields the base URL once ``/health`` answers."""
    if "--port" not in args:
        args = [*args, "--port", str(free_port())]
    port = args[args.index("--port") + 1]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "alliance.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
