"""The deployment kit stays true: files parse, every variable they set is a setting the exchange knows
and documents, the image's entrypoint and commands exist, and the production-style start serves."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

from alliance.core.settings import ENV_PREFIX, Settings
from tests import commands
from tests.conftest import create_pg_database, drop_pg_database, selected_backends
from tests.procs import exchange_env, running_server

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KNOWN = {ENV_PREFIX + name.upper() for name in Settings.__struct_fields__}


def yaml_documents() -> list[tuple[str, dict[str, object]]]:
    docs = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), f"{path} holds a non-mapping document"
            docs.append((str(path.relative_to(ROOT)), doc))
    return docs


def env_names_in(value: object) -> set[str]:
    """Every ALLIANCE_* name a manifest sets, wherever it sits (env maps, env lists, ConfigMap data)."""
    return set(re.findall(r"\b(ALLIANCE_[A-Z_]+)\b", json.dumps(value)))


def test_every_deploy_file_parses() -> None:
    docs = yaml_documents()
    kinds = {doc.get("kind") for _, doc in docs if "kind" in doc}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "Job"} <= kinds
    assert any(name.endswith("compose.yaml") for name, _ in docs)


def test_every_variable_the_deploy_files_set_is_a_known_setting() -> None:
    texts = [p.read_text() for p in DEPLOY.rglob("*") if p.is_file()]
    used = set().union(*(env_names_in(t) for t in texts))
    assert used, "the deploy files set no ALLIANCE_* variables at all?"
    assert used <= KNOWN, f"unknown settings in deploy files: {sorted(used - KNOWN)}"


def test_every_setting_is_documented() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(name for name in KNOWN if f"`{name}`" not in reference)
    assert not missing, f"document these in docs/configuration.md: {missing}"


def test_probes_point_at_real_endpoints() -> None:
    [deployment] = [d for _, d in yaml_documents() if d.get("kind") == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["args"] == ["serve"]


def test_image_entrypoint_and_commands_exist() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    command = json.loads(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["alliance"]
    assert entrypoint[0] in scripts
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M), "the image must run as a non-root user"
    assert "HEALTHCHECK" in dockerfile
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    used_commands = {tuple(command)} | {tuple(s["command"]) for s in compose["services"].values() if "command" in s}
    for args in used_commands:
        if not args or args[0] not in {"serve", "migrate"}:
            continue
        result = commands.run(commands.ALLIANCE, [*args, "--help"])
        assert result.returncode == 0, result.stderr


def test_production_style_start_serves_the_api(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """As the Job and Deployment do: `alliance migrate`, then `alliance serve` with two workers on PostgreSQL."""
    if "postgresql" not in selected_backends(request.config):
        pytest.skip("the production-style start needs PostgreSQL (not selected with --db)")
    url = create_pg_database()
    try:
        env = exchange_env(url, auto_migrate="false", workers="2")
        migrated = commands.run(commands.ALLIANCE, ["migrate"], env)
        assert migrated.returncode == 0, migrated.stderr
        added = commands.run(commands.ALLIANCE, ["brand", "add", "Deploy Check", "--json"], env)
        secret = json.loads(added.stdout)["api_key"]["secret"]
        with running_server(["serve"], env, tmp_path / "prod.log") as base:
            for _ in range(20):  # spread over both workers
                ready = httpx.get(f"{base}/ready", timeout=5)
                assert ready.status_code == 200
                assert ready.json()["database"] == "postgresql"
                me = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {secret}"}, timeout=5)
                assert me.status_code == 200
        log = (tmp_path / "prod.log").read_text()
        assert log.count("Started server process") >= 2, "two worker processes were expected"
    finally:
        drop_pg_database(url)
