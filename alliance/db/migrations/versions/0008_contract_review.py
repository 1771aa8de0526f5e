"""contract review: the alliance's approval or rejection (veto) of a contract version; indexes for the
console's keyset pages over contracts, segments and match jobs

Revision ID: 0008_contract_review
Revises: 0007_settlement
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_contract_review"
down_revision: str | None = "0007_settlement"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contract_reviews",
        sa.Column("contract_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("reviewed_by", sa.String(length=100), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id", "version"],
            ["contract_versions.contract_id", "contract_versions.version"],
            name="fk_contract_reviews_version",
        ),
        sa.PrimaryKeyConstraint("contract_id", "version", name=op.f("pk_contract_reviews")),
    )
    op.create_index("ix_contracts_created_at", "contracts", ["created_at", "id"], unique=False)
    op.create_index("ix_segments_created_at", "segments", ["created_at", "id"], unique=False)
    op.create_index("ix_match_jobs_requested_at", "match_jobs", ["requested_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_match_jobs_requested_at", table_name="match_jobs")
    op.drop_index("ix_segments_created_at", table_name="segments")
    op.drop_index("ix_contracts_created_at", table_name="contracts")
    op.drop_table("contract_reviews")
