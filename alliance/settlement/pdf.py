"""A statement as PDF (fpdf2), with Chinese text in the bundled WenQuanYi Micro Hei subset.

Deterministic: the creation date is the end of the statement's period and the document id is derived
from the statement's bytes, so the same statement always gives the same PDF bytes.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import msgspec
from fpdf import FPDF

from alliance.db.models import SettlementStatement
from alliance.settlement.schemas import Statement

__all__ = ["FONT_FILE", "statement_pdf"]

FONT_FILE = Path(__file__).parent / "fonts" / "WenQuanYiMicroHei-GB2312.ttf"


def _money(amount: int, currency: str) -> str:
    return f"{amount:,} {currency}"


class _StatementPdf(FPDF):
    def __init__(self, document: bytes) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self._document_id = hashlib.sha256(document).hexdigest()[:32].upper()

    def file_id(self) -> str:
        return f"<{self._document_id}><{self._document_id}>"


def _new_pdf(row: SettlementStatement, statement: Statement) -> _StatementPdf:
    """A4 with the vendored CJK font and metadata fixed by the statement (no clock: re-runs agree)."""
    pdf = _StatementPdf(row.document)
    pdf.set_creation_date(datetime.fromisoformat(statement.period_end.replace("Z", "+00:00")))
    pdf.set_title(f"Statement {statement.period} - {statement.brand.name}")
    pdf.set_author("Brand Alliance Exchange")
    pdf.set_creator("Brand Alliance Exchange")
    pdf.set_producer("Brand Alliance Exchange")
    pdf.add_font("wqy", "", str(FONT_FILE))
    pdf.set_font("wqy", size=10)
    pdf.add_page()
    return pdf


def _heading(pdf: _StatementPdf, statement: Statement) -> None:
    width = pdf.epw
    pdf.set_font_size(16)
    pdf.cell(width, 10, f"Settlement statement {statement.period}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font_size(12)
    pdf.cell(width, 8, f"{statement.brand.name} ({statement.brand.id})", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font_size(9)
    pdf.cell(
        width,
        6,
        f"{statement.period_start} - {statement.period_end}; later events of this month post into "
        f"{statement.adjustments_into} as adjustments",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(3)


def _table(pdf: _StatementPdf, title: str, header: list[str], rows: list[list[str]], widths: list[float]) -> None:
    width = pdf.epw
    pdf.set_font_size(11)
    pdf.cell(width, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font_size(8)
    for cells, fill in [(header, True)] + [(r, False) for r in rows]:
        pdf.set_fill_color(230, 230, 230)
        for text_, w in zip(cells, widths, strict=True):
            pdf.cell(w * width, 6, text_, border=1, fill=fill)
        pdf.ln(6)
    if not rows:
        pdf.cell(width, 6, "(none)", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def _totals_tables(pdf: _StatementPdf, statement: Statement) -> None:
    _table(
        pdf,
        "Summary (net > 0: the alliance pays the brand)",
        ["Currency", "Receivable", "Payable", "Net", "Postings"],
        [
            [s.currency, _money(s.receivable, ""), _money(s.payable, ""), _money(s.net, ""), str(s.postings)]
            for s in statement.summary
        ],
        [0.16, 0.21, 0.21, 0.21, 0.21],
    )
    _table(
        pdf,
        "By partner",
        ["Partner", "Currency", "Receivable", "Payable", "Net"],
        [
            [p.partner.name, p.currency, _money(p.receivable, ""), _money(p.payable, ""), _money(p.net, "")]
            for p in statement.partners
        ],
        [0.36, 0.1, 0.18, 0.18, 0.18],
    )


def _line_tables(pdf: _StatementPdf, statement: Statement) -> None:
    _table(
        pdf,
        "Lines",
        ["Line", "Partner", "Kind", "Direction", "Amount", "Count"],
        [
            [
                line.line_id[-24:],
                line.partner.name,
                line.kind,
                line.direction,
                _money(line.amount, line.currency),
                str(line.count),
            ]
            for line in statement.lines
        ],
        [0.24, 0.22, 0.14, 0.12, 0.18, 0.1],
    )
    _table(
        pdf,
        "Adjustments (events of earlier months booked in this period)",
        ["Transaction", "Kind", "Occurred", "Of month", "Amount"],
        [
            [a.transaction_id, a.kind, a.occurred_at[:19], a.original_period, _money(a.amount, a.currency)]
            for a in statement.adjustments
        ],
        [0.26, 0.2, 0.22, 0.12, 0.2],
    )


def statement_pdf(row: SettlementStatement) -> bytes:
    """The statement as a PDF; the same statement always gives the same bytes."""
    statement = msgspec.json.decode(row.document, type=Statement)
    pdf = _new_pdf(row, statement)
    _heading(pdf, statement)
    _totals_tables(pdf, statement)
    _line_tables(pdf, statement)
    pdf.set_font_size(7)
    pdf.multi_cell(
        pdf.epw,
        4,
        f"Signed by the exchange (Ed25519, key {row.key_id}) over the canonical JSON of this statement; "
        f"signature {row.signature}. Verify the JSON download with `alliance statement verify FILE`.",
    )
    return bytes(pdf.output())
