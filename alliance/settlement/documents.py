"""Stored statements as brands download them: JSON (with the key that signed it), CSV and PDF - one
place, so the API and the console serve the same bytes."""

from __future__ import annotations

import base64
import csv
import io
from typing import Any

import msgspec
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from alliance.core.problems import Problem
from alliance.db.models import SettlementStatement
from alliance.settlement import signing
from alliance.settlement.months import check_month
from alliance.settlement.pdf import statement_pdf
from alliance.settlement.schemas import Statement

__all__ = ["MEDIA_TYPES", "get_statement", "statement_bytes", "statement_csv", "statement_json"]

MEDIA_TYPES = {"json": "application/json", "csv": "text/csv", "pdf": "application/pdf"}
"""The media type of each statement format. Litestar adds ``; charset=utf-8`` to ``text/*`` itself (giving
it here too sent the parameter twice)."""


async def get_statement(session: AsyncSession, brand_id: str, month: str) -> SettlementStatement:
    """The brand's own statement of a closed month, with the key that signed it; 404
    ``statement-not-found`` otherwise (also when the month is closed but the brand had no activity)."""
    check_month(month)
    row = await session.get(
        SettlementStatement, (month, brand_id), options=[selectinload(SettlementStatement.signing_key)]
    )
    if row is None:
        raise Problem(404, "statement-not-found", f"no statement for {month}")
    return row


def statement_json(row: SettlementStatement, public_key: bytes | None = None) -> bytes:
    """``{"signature": {...}, "statement": {...}}`` - canonical JSON (keys sorted), the statement
    exactly as signed, with the public half of the key that signed it (``row.key_id``): the key
    recorded for that id (loaded by :func:`get_statement`), else ``public_key`` if it has that id.
    409 ``statement-key-unknown`` if neither (the key that signed it was never registered)."""
    recorded = None if "signing_key" in sa_inspect(row).unloaded else row.signing_key
    if recorded is not None:
        public_key = bytes(recorded.public_key)
    if public_key is None or signing.key_id_of(public_key) != row.key_id:
        raise Problem(
            409,
            "statement-key-unknown",
            f"the statement of {row.period} was signed with key {row.key_id}, which is not on record here",
        )
    signature = signing.canonical_json(
        {
            "algorithm": "Ed25519",
            "key_id": row.key_id,
            "public_key": base64.b64encode(public_key).decode("ascii"),
            "value": row.signature,
        }
    )
    return b'{"signature":' + signature + b',"statement":' + row.document + b"}"


async def statement_bytes(session: AsyncSession, row: SettlementStatement, kind: str, key_file: str) -> bytes:
    """A stored statement as the brand downloads it (``json``, ``csv`` or ``pdf``): one place, so the API
    and the console serve the same bytes. JSON carries the key recorded at close (it may have been rotated
    since), registering the current key first if the statement predates its registration."""
    if kind == "csv":
        return statement_csv(row)
    if kind == "pdf":
        return statement_pdf(row)
    return statement_json(row, await signing.statement_public_key(session, row.key_id, key_file))


def _csv_totals(writer: Any, statement: Statement) -> None:
    writer.writerow(["section", "currency", "receivable", "payable", "net", "postings"])
    for s in statement.summary:
        writer.writerow(["summary", s.currency, s.receivable, s.payable, s.net, s.postings])
    writer.writerow([])
    writer.writerow(["section", "partner_id", "partner_name", "currency", "receivable", "payable", "net"])
    for p in statement.partners:
        writer.writerow(["partner", p.partner.id, p.partner.name, p.currency, p.receivable, p.payable, p.net])
    writer.writerow([])


def _csv_lines(writer: Any, statement: Statement) -> None:
    writer.writerow(
        ["section", "line_id", "partner_id", "partner_name", "kind", "direction", "currency", "amount", "count"]
    )
    for line in statement.lines:
        writer.writerow(
            [
                "line",
                line.line_id,
                line.partner.id,
                line.partner.name,
                line.kind,
                line.direction,
                line.currency,
                line.amount,
                line.count,
            ]
        )
    writer.writerow([])


def _csv_adjustments(writer: Any, statement: Statement) -> None:
    writer.writerow(
        [
            "section",
            "line_id",
            "transaction_id",
            "kind",
            "occurred_at",
            "original_period",
            "currency",
            "amount",
            "dispute_id",
        ]
    )
    for a in statement.adjustments:
        writer.writerow(
            [
                "adjustment",
                a.line_id,
                a.transaction_id,
                a.kind,
                a.occurred_at,
                a.original_period,
                a.currency,
                a.amount,
                a.dispute_id or "",
            ]
        )


def statement_csv(row: SettlementStatement) -> bytes:
    """The statement as CSV sections (UTF-8 with BOM, so spreadsheet software reads Chinese names)."""
    statement = msgspec.json.decode(row.document, type=Statement)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["statement", statement.period, statement.brand.id, statement.brand.name])
    writer.writerow(["signature", "Ed25519", row.key_id, row.signature])
    writer.writerow([])
    _csv_totals(writer, statement)
    _csv_lines(writer, statement)
    _csv_adjustments(writer, statement)
    return "\ufeff".encode() + out.getvalue().encode("utf-8")
