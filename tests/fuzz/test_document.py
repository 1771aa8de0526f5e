"""What the fuzzer relies on in the OpenAPI document, checked directly (no server): strict request bodies
say ``additionalProperties: false``, multi-format routes document every format; and the 5xx the deeper
fuzzing found, as regressions."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.fuzz.test_openapi_fuzz import DOCUMENT, _document
from tests.helpers import BrandHandle, assert_problem


def _structs() -> dict[str, list[type[msgspec.Struct]]]:
    """Every msgspec Struct of the exchange (the app is built, so every domain is imported), by name."""
    found: dict[str, list[type[msgspec.Struct]]] = {}
    todo: list[type[msgspec.Struct]] = [msgspec.Struct]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("alliance."):
            found.setdefault(cls.__name__, []).append(cls)
    return found


def test_the_document_is_the_same_on_every_build() -> None:
    """The fuzz test compares the served document with one built in the test process: no random examples."""
    assert _document() == DOCUMENT


def test_strict_bodies_are_documented_closed() -> None:
    components: dict[str, dict[str, Any]] = DOCUMENT["components"]["schemas"]
    structs = _structs()
    checked = 0
    for name, schema in components.items():
        if len(structs.get(name, [])) != 1:
            continue  # not a Struct of ours, or a name Litestar had to qualify
        strict = structs[name][0].__struct_config__.forbid_unknown_fields
        assert (schema.get("additionalProperties") is False) == strict, name
        checked += strict
    assert checked >= 20, "the exchange's request bodies forbid unknown fields"


def _ok_content(path: str) -> dict[str, Any]:
    content: dict[str, Any] = DOCUMENT["paths"][path]["get"]["responses"]["200"]["content"]
    return content


def test_statement_and_report_document_every_format() -> None:
    statement = _ok_content("/v1/statements/{month}")
    assert statement["application/json"]["schema"] == {"$ref": "#/components/schemas/StatementSigned"}
    assert statement["text/csv"]["schema"]["type"] == "string"
    assert statement["application/pdf"]["schema"] == {
        "type": "string",
        "format": "binary",
        "description": "A PDF document",
    }
    report = _ok_content("/admin/v1/reports/{month}")
    assert set(report) == {"application/json", "text/csv"}
    assert report["application/json"]["schema"] == {"$ref": "#/components/schemas/ReportOut"}
    for path, formats in (
        ("/v1/statements/{month}", ["json", "csv", "pdf"]),
        ("/admin/v1/reports/{month}", ["json", "csv"]),
    ):
        (param,) = [p for p in DOCUMENT["paths"][path]["get"]["parameters"] if p["name"] == "format"]
        assert param["schema"]["enum"] == formats
    # Every success response of the document names its real media types: JSON, except these.
    others = {
        (path, method): sorted(set(response["content"]) - {"application/json"})
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        for status, response in operation["responses"].items()
        if status.startswith("2") and set(response.get("content") or {}) - {"application/json"}
    }
    assert others == {
        ("/v1/statements/{month}", "get"): ["application/pdf", "text/csv"],
        ("/admin/v1/reports/{month}", "get"): ["text/csv"],
        ("/v1/tasks/{task_id}/items", "get"): ["application/octet-stream"],
        ("/v1/tasks/{task_id}/reblinded", "get"): ["application/octet-stream"],
    }


async def test_nul_in_text_is_a_400_on_every_backend(client: AsyncTestClient[Litestar], brand_a: BrandHandle) -> None:
    """Found by the fuzzer: PostgreSQL cannot store U+0000 in text (a key label holding one was a 500), while
    SQLite stored it; both backends now refuse it before any handler runs."""
    response = await client.post("/v1/api-keys", json={"label": "fuzz\u0000label"}, headers=brand_a.headers)
    assert_problem(response, 400, "invalid-text")
    escaped_backslash = await client.post(  # the text "\\u0000" (a backslash, then u0000) is not a NUL
        "/v1/api-keys",
        content=b'{"label": "fuzz\\\\u0000"}',
        headers={**brand_a.headers, "content-type": "application/json"},
    )
    assert escaped_backslash.status_code == 201, escaped_backslash.text
    assert escaped_backslash.json()["key"]["label"] == "fuzz\\u0000"
    for path in ("/v1/benefits/ben_%00", "/v1/benefits?tag=a%00b", "/v1/ledger/transactions?cursor=%00"):
        assert_problem(await client.get(path, headers=brand_a.headers), 400, "invalid-text")
