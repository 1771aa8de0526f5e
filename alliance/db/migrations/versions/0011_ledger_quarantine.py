"""ledger: transactions the sealer could not seal, held out of the chain for an operator

Revision ID: 0011_ledger_quarantine
Revises: 0010_statement_keys
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_ledger_quarantine"
down_revision: str | None = "0010_statement_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_quarantine",
        sa.Column("transaction_id", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_ledger_quarantine")),
    )
    op.create_index("ix_ledger_quarantine_status", "ledger_quarantine", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ledger_quarantine_status", table_name="ledger_quarantine")
    op.drop_table("ledger_quarantine")
