"""Schemathesis against the exchange's own OpenAPI document: every operation, on a real server per backend.

Each operation gets ``BAX_FUZZ_EXAMPLES`` generated requests (default 15; set it higher to run deeper by
hand) with the partner key of a seeded brand on ``/v1``, an operator key on ``/admin/v1`` and no key on
``/health`` and ``/ready``. Path parameters sometimes name seeded objects (a brand, key, segment, match,
task, contract, benefit, redemption, webhook, dispute, month), so the fuzzer reaches past the 404s; the
seeded brand has a statement in the closed month, so ``GET /v1/statements/{month}`` answers 200 in JSON, CSV
and PDF. Strict request bodies are documented ``additionalProperties: false``, so generated bodies reach the
handlers instead of stopping at the unknown-field 400.
Every response must be below 500 and conform to the document: a documented status code and content type,
and a body valid against the documented schema (problem+json for errors).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from litestar.serialization import encode_json
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from alliance.app import create_app
from alliance.core.settings import Settings
from alliance.db.migrate import migrate
from tests.conftest import drop_pg_database, fresh_database
from tests.fuzz.seed import Seeded, seed
from tests.procs import free_port, running_server

# What the exchange promises about every response. Not among them: schemathesis's positive/negative data
# acceptance checks, which expect the schema to encode every business rule (a 422 for a month that does
# not exist is not a defect) and flag unknown query parameters being ignored.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = int(os.environ.get("BAX_FUZZ_EXAMPLES", "15"))


# The non-JSON bodies the document promises (statements, the monthly report), read as strictly as a client
# would: schemathesis then checks the result against the documented `type: string` schema, and a body that
# does not parse fails the check. Without these it skips media types it cannot read.
@schemathesis.deserializer("text/csv")
def _csv(ctx: Any, response: Any) -> str:
    text: str = response.content.decode("utf-8")  # strict: a stray byte is a failure
    if not text.startswith("\ufeff") or (text and not text.endswith("\r\n")):
        raise ValueError("the CSV must start with a UTF-8 byte order mark and end its rows with CRLF")
    rows = list(csv.reader(text.removeprefix("\ufeff").splitlines(), strict=True))
    if not rows or not rows[0]:
        raise ValueError("the CSV has no header row")
    return text


@schemathesis.deserializer("application/pdf")
def _pdf(ctx: Any, response: Any) -> str:
    body: bytes = response.content
    if not body.startswith(b"%PDF-") or b"%%EOF" not in body[-1024:]:
        raise ValueError("not a complete PDF document")
    return body.decode("latin-1")


def _document() -> dict[str, Any]:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"), configure_logs=False)
    # The served JSON, not the Python objects behind it (tuples, datetimes).
    document: dict[str, Any] = json.loads(encode_json(app.openapi_schema.to_schema()))
    return document


DOCUMENT = _document()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)


@dataclass
class Server:
    base: str
    seeded: Seeded
    session: requests.Session
    log: Path


@pytest.fixture(scope="module")
def fuzz_server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``alliance serve`` on its own fresh database of ``backend``, seeded with real objects."""
    tmp = tmp_path_factory.mktemp(f"fuzz-{backend}")
    db = fresh_database(backend, tmp)
    migrate(db.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update({"ALLIANCE_DATABASE_URL": db.url, "ALLIANCE_AUTO_MIGRATE": "false"})
    log = tmp / "server.log"
    try:
        with running_server(["serve", "--port", str(free_port())], env, log) as base:
            served = httpx.get(f"{base}/schema/openapi.json", timeout=10).json()
            assert served == DOCUMENT, "the fuzzed document must be the one the server serves"
            seeded = asyncio.run(seed(db.url, base))
            with requests.Session() as session:
                yield Server(base, seeded, session, log)
    finally:
        if backend == "postgresql":
            drop_pg_database(db.url)


def _headers(path: str, seeded: Seeded) -> dict[str, str]:
    if path.startswith("/v1/"):
        return {"Authorization": f"Bearer {seeded.brand_key}"}
    if path.startswith("/admin/v1/"):
        return {"Authorization": f"Bearer {seeded.admin_key}"}
    return {}


@SCHEMA.parametrize()
@SCHEMA.given(data=st.data())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    derandomize=True,
)
def test_operation_conforms_to_the_document(case: Any, data: st.DataObject, fuzz_server: Server) -> None:
    seeded = fuzz_server.seeded
    for name in list(case.path_parameters or {}):
        known = seeded.path_values.get(name)
        if known and data.draw(st.booleans(), label=f"seeded {name}"):
            case.path_parameters[name] = data.draw(st.sampled_from(known), label=name)
    started = time.monotonic()
    case.call_and_validate(
        base_url=fuzz_server.base,
        session=fuzz_server.session,
        headers=_headers(case.path, seeded),
        checks=CHECKS,
        timeout=30,
    )
    assert time.monotonic() - started < 30
