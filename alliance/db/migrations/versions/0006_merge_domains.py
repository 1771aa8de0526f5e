"""Merge the domain branches (ledger, console, benefits, matching) into one line.

Revision ID: 0006_merge
Revises: 0002_ledger, 0003_console, 0004_benefits, 0005_matching
Create Date: 2026-11-23
"""

from collections.abc import Sequence

revision: str = "0006_merge"
down_revision: str | Sequence[str] | None = ("0002_ledger", "0003_console", "0004_benefits", "0005_matching")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
