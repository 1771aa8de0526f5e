"""The real thing: ``alliance`` and ``alliance-partner`` as installed console scripts in their own
processes (one smoke test each), the rest of the command line in-process (``tests/commands.py``), and
``alliance serve`` as a real HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import commands
from tests.conftest import Database
from tests.procs import exchange_env, running_server

SCRIPTS = Path(sys.executable).parent  # the virtual environment's bin/, where pip put the console scripts


def run_cli(args: list[str], env: dict[str, str]) -> commands.CommandResult:
    return commands.run(commands.ALLIANCE, args, env)


@pytest.fixture
def cli_env(database: Database) -> dict[str, str]:
    return exchange_env(database.url)


@pytest.fixture(scope="module")
def server(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``alliance serve`` on a free port with JSON logs; yields its base URL and its log file."""
    log_path = tmp_path_factory.mktemp("json-server") / "server.log"
    with running_server(["serve", "--log-format", "json"], exchange_env(database.url), log_path) as base:
        yield base, log_path


def test_installed_alliance_script_runs_in_its_own_process(cli_env: dict[str, str], sessions: object) -> None:
    added = subprocess.run(
        [str(SCRIPTS / "alliance"), "brand", "add", "Console Script 脚本", "--json"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["api_key"]["secret"].startswith("bax_")
    refused = subprocess.run(
        [str(SCRIPTS / "alliance"), "brand", "list"],
        env={**cli_env, "ALLIANCE_DATABASE_URL": "mysql://nope"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "ALLIANCE_DATABASE_URL" in refused.stderr
    assert "Traceback" not in refused.stderr


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
    me = subprocess.run([str(SCRIPTS / "alliance-partner"), "me"], env=env, capture_output=True, text=True, timeout=60)
    assert me.returncode == 0, me.stderr
    assert "Home Appliances 家电" in me.stdout
    refused = commands.run(commands.PARTNER, ["me"], {**env, "ALLIANCE_API_KEY": "bax_x_y"})
    assert refused.returncode == 1
    assert "urn:bax:problem:unauthenticated" in refused.stderr
    assert "Traceback" not in refused.stderr
