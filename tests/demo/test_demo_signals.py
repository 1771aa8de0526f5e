"""`alliance demo --json`, serving, stopped with SIGTERM as Docker, Kubernetes and systemd stop it: stdout is
one JSON document, and the exchange server the demo started stops with it (it used to keep running)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.procs import free_port


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _serving(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_demo_json_summary_then_sigterm_stops_its_server(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    command = [sys.executable, "-m", "alliance.cli", "demo", "--json", "--scale", "1000", "--seed", "3"]
    command += ["--port", str(port), "--workers", "2", "--demo-file", str(tmp_path / "demo.db")]
    out, err = tmp_path / "stdout.json", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        demo = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=stdout, stderr=stderr)
        try:
            _wait_for(lambda: b"Serving until Ctrl-C" in err.read_bytes() or demo.poll() is not None, 240, "the demo")
            assert demo.poll() is None, err.read_text()
            base = f"http://127.0.0.1:{port}"
            assert _serving(base)
            demo.send_signal(signal.SIGTERM)
            assert demo.wait(timeout=30) == 0, err.read_text()
        finally:
            if demo.poll() is None:
                demo.kill()
    _wait_for(lambda: not _serving(base), 20, "the demo's exchange server to stop")
    summary = json.loads(out.read_text())  # stdout holds the JSON document and nothing else
    assert len(summary["brands"]) == 6 and len(summary["overlaps"]) == 15
    assert sum(p["net"] for p in summary["net_positions"]) == 0
    assert summary["console_url"] == f"{base}/console" and summary["logins"]["admin"]
    assert "Traceback" not in err.read_text()
    assert "stopping" in err.read_text()
