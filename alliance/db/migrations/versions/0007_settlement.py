"""settlement: runs of the monthly close, signed statements, disputes

Revision ID: 0007_settlement
Revises: 0006_merge
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_settlement"
down_revision: str | None = "0006_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "settlement_runs",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("next_period", sa.String(length=7), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.String(length=100), nullable=False),
        sa.Column("transactions", sa.Integer(), nullable=False),
        sa.Column("statements", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_settlement_runs")),
    )
    op.create_table(
        "settlement_disputes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("brand_id", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("line_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("adjustment_transaction_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["brand_id"], ["brands.id"], name=op.f("fk_settlement_disputes_brand_id_brands")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_disputes")),
    )
    with op.batch_alter_table("settlement_disputes", schema=None) as batch_op:
        batch_op.create_index("ix_settlement_disputes_brand_id", ["brand_id"], unique=False)

    op.create_table(
        "settlement_statements",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("brand_id", sa.String(length=32), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["brand_id"], ["brands.id"], name=op.f("fk_settlement_statements_brand_id_brands")),
        sa.ForeignKeyConstraint(
            ["period"], ["settlement_runs.period"], name=op.f("fk_settlement_statements_period_settlement_runs")
        ),
        sa.PrimaryKeyConstraint("period", "brand_id", name=op.f("pk_settlement_statements")),
    )


def downgrade() -> None:
    op.drop_table("settlement_statements")
    with op.batch_alter_table("settlement_disputes", schema=None) as batch_op:
        batch_op.drop_index("ix_settlement_disputes_brand_id")

    op.drop_table("settlement_disputes")
    op.drop_table("settlement_runs")
