"""console: indexes behind the finance pages (redemptions newest first, by benefit, by distributor, and
the reversed ones)

The redemption list of the console is keyset-paginated on ``(redeemed_at, id)``; each filter needs an
index led by its column and ending in that key, or a page would sort every matching row. The reversed
redemptions (a few per cent) get a partial index, so "show me the reversals" never walks the rest.

Revision ID: 0009_console_finance
Revises: 0008_contract_review
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_console_finance"
down_revision: str | None = "0008_contract_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_redemptions_redeemed_at_id", "redemptions", ["redeemed_at", "id"])
    op.create_index("ix_redemptions_benefit_id_redeemed_at", "redemptions", ["benefit_id", "redeemed_at", "id"])
    op.create_index(
        "ix_redemptions_distributor_brand_id_redeemed_at", "redemptions", ["distributor_brand_id", "redeemed_at", "id"]
    )
    op.create_index(
        "ix_redemptions_reversed",
        "redemptions",
        ["redeemed_at", "id"],
        postgresql_where=sa.text("status <> 'redeemed'"),
        sqlite_where=sa.text("status <> 'redeemed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_redemptions_reversed", table_name="redemptions")
    op.drop_index("ix_redemptions_distributor_brand_id_redeemed_at", table_name="redemptions")
    op.drop_index("ix_redemptions_benefit_id_redeemed_at", table_name="redemptions")
    op.drop_index("ix_redemptions_redeemed_at_id", table_name="redemptions")
