"""The real thing: ``alliance`` as a subprocess, and ``alliance serve`` as a real HTTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Database
from tests.procs import free_port, running_server

ALLIANCE = [sys.executable, "-m", "alliance.cli"]


def run_cli(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ALLIANCE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli_env(database: Database) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env["ALLIANCE_DATABASE_URL"] = database.url
    return env


@pytest.fixture
def server(cli_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``alliance serve`` on a free port with JSON logs; yields its base URL and its log file."""
    log_path = tmp_path / "server.log"
    with running_server(["serve", "--port", str(free_port()), "--log-format", "json"], cli_env, log_path) as base:
        yield base, log_path


def test_cli_onboards_brands_and_manages_keys(cli_env: dict[str, str], sessions: object) -> None:
    added = run_cli(["brand", "add", "Lingo School 语言学校", "--category", "education", "--json"], cli_env)
    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)
    brand_id = created["brand"]["id"]
    secret = created["api_key"]["secret"]
    assert secret.startswith("bax_")

    duplicate = run_cli(["brand", "add", "Lingo School 语言学校"], cli_env)
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr

    listed = run_cli(["brand", "key", "list", brand_id], cli_env)
    assert listed.returncode == 0
    assert "active" in listed.stdout
    assert secret not in listed.stdout

    suspended = run_cli(["brand", "suspend", brand_id, "--reason", "test"], cli_env)
    assert suspended.returncode == 0
    assert "suspended" in suspended.stdout

    bad = run_cli(["brand", "suspend", "brd_unknown"], cli_env)
    assert bad.returncode == 1
    assert "no brand" in bad.stderr


def test_cli_rejects_bad_settings_clearly(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "ALLIANCE_DATABASE_URL": "mysql://nope"}
    result = run_cli(["brand", "list"], env)
    assert result.returncode == 2
    assert "ALLIANCE_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_answers_health_schema_and_api_and_never_logs_secrets(
    server: tuple[str, Path], cli_env: dict[str, str], sessions: object
) -> None:
    base, log_path = server
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}
    assert httpx.get(f"{base}/ready").status_code == 200
    schema = httpx.get(f"{base}/schema/openapi.json")
    assert schema.status_code == 200
    assert "/v1/me" in schema.json()["paths"]

    created = json.loads(run_cli(["brand", "add", "Sunny Travel 阳光旅行", "--json"], cli_env).stdout)
    secret = created["api_key"]["secret"]
    me = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    assert me.json()["brand"]["name"] == "Sunny Travel 阳光旅行"
    issued = httpx.post(f"{base}/v1/api-keys", json={"label": "x"}, headers={"Authorization": f"Bearer {secret}"})
    second = issued.json()["secret"]
    assert httpx.get(f"{base}/v1/me", headers={"Authorization": "Bearer bax_wrong"}).status_code == 401

    time.sleep(0.2)
    logs = log_path.read_text()
    assert '"path": "/v1/me"' in logs  # JSON access log lines
    assert '"request_id"' in logs
    assert secret not in logs
    assert second not in logs


def test_partner_agent_talks_to_the_real_server(
    server: tuple[str, Path], cli_env: dict[str, str], sessions: object
) -> None:
    base, _ = server
    created = json.loads(run_cli(["brand", "add", "Home Appliances 家电", "--json"], cli_env).stdout)
    env = {**cli_env, "ALLIANCE_URL": base, "ALLIANCE_API_KEY": created["api_key"]["secret"]}
    partner = [sys.executable, "-m", "alliance.partner.cli"]
    me = subprocess.run([*partner, "me"], env=env, capture_output=True, text=True, timeout=60)
    assert me.returncode == 0, me.stderr
    assert "Home Appliances 家电" in me.stdout
    refused = subprocess.run(
        [*partner, "me"], env={**env, "ALLIANCE_API_KEY": "bax_x_y"}, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "urn:bax:problem:unauthenticated" in refused.stderr
    assert "Traceback" not in refused.stderr
