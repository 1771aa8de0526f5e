"""Every curl example in docs/api.md runs, in document order, against a real ``alliance serve`` on both
backends, with the real ``curl`` binary under bash; and every ``/v1`` route of the OpenAPI schema has one.

The guide's convention (explained at its top): each ```bash block holding a ``curl`` command has a comment
``# -> STATUS`` with the documented status, optionally followed by captures ``, $NAME = .path`` that set a
shell variable from the JSON response for later examples. The variables the reader starts with
(``$BAX``, ``$KEY``, ``$KEY_B``, ``$ADMIN_KEY``, ``$BRAND_A``, ``$BRAND_B``, ``$MONTH``, ...) are seeded
here through the services and the CLI. What an agent computes locally (public keys, contract
signatures, blinded points, re-blinded points, a signed report) is computed here by the privacy and
contracts libraries the moment an example first needs it.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import contracts
from alliance.app import create_app
from alliance.core.settings import Settings
from alliance.ledger import service as ledger
from privacy.psi import MembershipReport, membership, sign_membership_report
from tests import commands
from tests.alliance.ledger.support import owes
from tests.alliance.matches.psi_setup import Party, msgspec_terms, phones
from tests.conftest import Database
from tests.helpers import BrandHandle, make_admin_key, make_brand
from tests.procs import running_server

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "api.md"
EPOCH = "2026-11"  # the key epoch the guide's segments are blinded in
MEMBERS = 1000  # the guide's segments: 1,000 members each (the default minimum segment size)

_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
_EXPECT = re.compile(r"^#\s*->\s*(\d{3})(?:\s+([a-z][a-z0-9-]*))?(.*)$", re.M)
_CAPTURE = re.compile(r"\$([A-Z][A-Z0-9_]*)\s*=\s*(\.[A-Za-z0-9_.\[\]]*)")
_URL = re.compile(r"\$BAX(/[^\s\"'?]*)")
_METHOD = re.compile(r"(?:-X|--request)\s+([A-Z]+)")
_BODY = re.compile(r"(?:^|\s)(?:-d|--data|--data-binary|--data-raw|--json)\s")
_OUTPUT = re.compile(r"(?:^|\s)(?:-o|--output)\s+(\S+)")
_STATUS_MARK = "@@BAX"
UNSCHEMATISED = ("/metrics", "/schema/openapi.json")  # served, but not operations of the schema


@dataclass
class Example:
    line: int
    code: str
    status: int
    problem: str | None = None
    captures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def method(self) -> str:
        found = _METHOD.search(self.code)
        if found:
            return found.group(1)
        return "POST" if _BODY.search(self.code) else "GET"

    @property
    def path(self) -> str:
        found = _URL.search(self.code)
        assert found, f"docs/api.md:{self.line}: the example does not call $BAX/..."
        return found.group(1)


def examples(text: str) -> list[Example]:
    found = []
    for block in _BLOCK.finditer(text):
        code = block.group(1)
        if not re.search(r"(^|\s)curl\s", code):
            continue
        line = text.count("\n", 0, block.start()) + 1
        expect = _EXPECT.search(code)
        assert expect, f"docs/api.md:{line}: a curl example without '# -> STATUS'"
        assert len(re.findall(r"(^|\s)curl\s", code)) == 1, f"docs/api.md:{line}: one curl command per block"
        found.append(Example(line, code, int(expect.group(1)), expect.group(2), _CAPTURE.findall(expect.group(3))))
    return found


def route_of(path: str, templates: set[tuple[str, str]], method: str) -> tuple[str, str] | None:
    """The OpenAPI (method, path template) an example's concrete path calls."""
    for m, template in sorted(templates, key=lambda r: (r[1].count("{"), r)):  # literal segments first
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", r"[^/]+", re.escape(template)) + "$"
        if m == method and re.match(pattern, path):
            return (m, template)
    return None


def schema_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///unused.db"), configure_logs=False)
    schema = app.openapi_schema.to_schema()
    return {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


GUIDE_EXAMPLES = examples(GUIDE.read_text(encoding="utf-8"))


def test_every_partner_route_has_a_curl_example() -> None:
    routes = schema_routes()
    covered = {route_of(e.path, routes, e.method) for e in GUIDE_EXAMPLES}
    missing = sorted(r for r in routes if r[1].startswith("/v1/") and r not in covered)
    assert not missing, f"docs/api.md has no curl example for: {missing}"
    unknown = [
        f"line {e.line}: {e.method} {e.path}"
        for e in GUIDE_EXAMPLES
        if route_of(e.path, routes, e.method) is None and e.path not in UNSCHEMATISED
    ]
    assert not unknown, f"examples calling no route of the schema: {unknown}"


def test_every_operator_route_and_probe_has_an_example() -> None:
    routes = schema_routes()
    covered = {route_of(e.path, routes, e.method) for e in GUIDE_EXAMPLES}
    missing = sorted(r for r in routes if not r[1].startswith("/v1/") and r not in covered)
    assert not missing, f"docs/api.md has no curl example for: {missing}"
    assert any(e.path == "/metrics" for e in GUIDE_EXAMPLES)


# --- running the examples ----------------------------------------------------------------------------


def dig(value: Any, path: str) -> Any:
    for name, index in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        value = value[name] if name else value[int(index)]
    return value


def check_body(body: bytes, content_type: str, where: str) -> None:
    """The response body is what its content type says."""
    kind = content_type.split(";")[0].strip()
    if kind.endswith("json"):
        json.loads(body)
    elif kind == "text/csv":
        rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        assert rows, where
    elif kind == "application/pdf":
        assert body.startswith(b"%PDF-"), where
    elif kind == "application/octet-stream":
        assert body and len(body) % 32 == 0, where
    elif kind == "text/plain":
        assert body.decode("utf-8"), where
    else:
        raise AssertionError(f"{where}: unexpected content type {content_type!r}")


class Guide:
    """The state a reader of the guide holds: shell variables, files, and the agents' local keys."""

    def __init__(self, base: str, work: Path, a: Party, b: Party, env: dict[str, str]) -> None:
        self.base = base
        self.work = work
        self.a = a
        self.b = b
        self.env = env
        self.derived: dict[str, Callable[[], None]] = {
            "SIGNATURE_A": lambda: self._sign("SIGNATURE_A", a),
            "SIGNATURE_B": lambda: self._sign("SIGNATURE_B", b),
            "reblinded-b.bin": self._reblind_for_b,
            "report.json": self._report,
        }

    def _sign(self, name: str, party: Party) -> None:
        contract = httpx.get(f"{self.base}/v1/contracts/{self.env['CONTRACT']}", headers=party.headers).json()
        terms = msgspec_terms(contract["versions"][0]["terms"])
        self.env[name] = base64.b64encode(contracts.sign_terms(party.signing, terms)).decode()

    def _reblind_for_b(self) -> None:
        # B's agent re-blinds A's points in their order (a reblind_ordered task).
        items = (self.work / "items-b.bin").read_bytes()
        (self.work / "reblinded-b.bin").write_bytes(self.b.reblind(items))

    def _report(self) -> None:
        # A's agent: re-blind B's points, intersect with B's ordered re-blinding of A's own, sign the count.
        theirs = self.a.reblind((self.work / "items-a.bin").read_bytes())
        rows = membership((self.work / "reblinded-mine.bin").read_bytes(), theirs)
        report = MembershipReport(
            match_id=self.env["MATCH"],
            reporting_brand=self.a.id,
            counterparty_brand=self.b.id,
            overlap_count=len(rows),
            key_epoch=EPOCH,
        )
        (self.work / "report.json").write_bytes(msgspec.json.encode(sign_membership_report(report, self.a.signing)))

    def run(self, example: Example) -> None:
        where = f"docs/api.md:{example.line}"
        for name, make in self.derived.items():
            if (f"${name}" in example.code or f"@{name}" in example.code) and not (
                name in self.env or (self.work / name).exists()
            ):
                make()
        wrapper = f"curl() {{ command curl -sS -w '\\n{_STATUS_MARK} %{{http_code}} %{{content_type}}\\n' \"$@\"; }}\n"
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", wrapper + example.code],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            timeout=60,
        )
        out = done.stdout
        mark = out.rfind(f"\n{_STATUS_MARK} ".encode())
        assert done.returncode == 0 and mark >= 0, f"{where}: exit {done.returncode}\n{done.stderr.decode()}"
        body = out[:mark]
        status_text, _, content_type = out[mark + len(_STATUS_MARK) + 2 :].decode().strip().partition(" ")
        shown = body[:2000].decode("utf-8", "replace")
        assert int(status_text) == example.status, f"{where}: got {status_text}, documented {example.status}\n{shown}"
        output = _OUTPUT.search(example.code)
        if output:
            body = (self.work / output.group(1)).read_bytes()
        if example.status != 204:
            check_body(body, content_type, where)
        if example.status >= 400:
            assert content_type.startswith("application/problem+json"), f"{where}: {content_type}"
            assert example.problem, f"{where}: name the problem type after the status"
            assert json.loads(body)["type"] == f"urn:bax:problem:{example.problem}", f"{where}: {shown}"
        for name, path in example.captures:
            value = dig(json.loads(body), path)
            assert isinstance(value, str | int), f"{where}: {path} is {value!r}"
            self.env[name] = str(value)


def publish_segment(base: str, party: Party, points: bytes) -> str:
    """B's segment, published the way its agent would (the guide shows A doing the same calls)."""
    created = httpx.post(
        f"{base}/v1/segments",
        json={"name": "Fruit club", "id_type": "phone", "size": len(points) // 32, "key_epoch": EPOCH, "tags": ["psi"]},
        headers=party.headers,
    )
    assert created.status_code == 201, created.text
    segment_id = str(created.json()["id"])
    octet = {**party.headers, "Content-Type": "application/octet-stream"}
    assert httpx.put(f"{base}/v1/segments/{segment_id}/items", content=points, headers=octet).status_code == 200
    assert httpx.post(f"{base}/v1/segments/{segment_id}/publish", headers=party.headers).status_code == 200
    return segment_id


def previous_month(now: datetime) -> tuple[str, datetime]:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    mid = (first - timedelta(days=1)).replace(day=15, hour=12)
    return mid.strftime("%Y-%m"), mid


@pytest.fixture
def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}


@pytest.fixture
async def seeded(sessions: async_sessionmaker[AsyncSession]) -> tuple[BrandHandle, BrandHandle, str, str]:
    """Brand A (the caller of the guide), brand B (its partner), an operator key, and a past month with
    a coupon obligation of B to A, booked (closed in the test, before the server starts)."""
    a = await make_brand(sessions, "Cotton Home 棉家", "home")
    b = await make_brand(sessions, "Fresh Fruit 鲜果", "fruit")
    admin = (await make_admin_key(sessions))["Authorization"].removeprefix("Bearer ")
    month, occurred = previous_month(datetime.now(UTC))
    async with sessions() as session, session.begin():
        await ledger.post_transaction(
            session,
            brand_id=a.id,
            idempotency_key="guide-seed",
            kind="coupon",
            postings=owes(b.id, a.id, 10_000),
            occurred_at=occurred,
            reference={"event_id": "guide-seed"},
        )
    return a, b, admin, month


@pytest.fixture
def server(database: Database, clean_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    env = {**clean_env, "ALLIANCE_DATABASE_URL": database.url, "ALLIANCE_WEBHOOKS_WORKER": "false"}
    with running_server(["serve"], env, tmp_path / "server.log") as base:
        yield base


def test_every_curl_example_runs_against_a_real_server(
    database: Database,
    seeded: tuple[BrandHandle, BrandHandle, str, str],
    server: str,
    clean_env: dict[str, str],
    tmp_path: Path,
) -> None:
    assert shutil.which("curl"), "the API guide test needs the curl command"
    a_handle, b_handle, admin, month = seeded
    closed = commands.run(commands.ALLIANCE, ["close", "--month", month, "--database-url", database.url], clean_env)
    assert closed.returncode == 0, closed.stderr
    a, b = Party(a_handle), Party(b_handle)
    work = tmp_path / "work"
    work.mkdir()
    (work / "points-a.bin").write_bytes(a.blind(sorted(phones(0, MEMBERS))))
    (work / "points-b.bin").write_bytes(b.blind(phones(600, MEMBERS)))  # 400 members in common with A
    env = {
        **clean_env,
        "BAX": server,
        "KEY": a.handle.key,
        "KEY_B": b.handle.key,
        "ADMIN_KEY": admin,
        "BRAND_A": a.id,
        "BRAND_B": b.id,
        "MONTH": month,
        "PUBLIC_KEY_A": base64.b64encode(a.signing.public_key().public_bytes_raw()).decode(),
        "PUBLIC_KEY_B": base64.b64encode(b.signing.public_key().public_bytes_raw()).decode(),
    }
    env["SEGMENT_B"] = publish_segment(server, b, (work / "points-b.bin").read_bytes())
    guide = Guide(server, work, a, b, env)
    assert len(GUIDE_EXAMPLES) > 60
    for example in GUIDE_EXAMPLES:
        guide.run(example)
    # The match in the guide found the 400 members in common.
    result = httpx.get(f"{server}/v1/matches/{env['MATCH']}/result", headers=a.headers).json()
    assert result["report"]["report"]["overlap_count"] == 400
