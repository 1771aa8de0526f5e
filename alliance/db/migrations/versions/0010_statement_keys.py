"""settlement: the public half of every statement signing key, by key id (statement key rotation)

A statement stores the id of the key that signed it; this table keeps each key's public half for good,
so a statement is served with (and verifies against) its own key after the exchange's key is rotated.
The database-stored key in use now is registered here; a file key (``ALLIANCE_EXCHANGE_SIGNING_KEY_FILE``)
registers itself on first use.

Revision ID: 0010_statement_keys
Revises: 0009_console_finance
Create Date: 2026-11-24
"""

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0010_statement_keys"
down_revision: str | None = "0009_console_finance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    keys = op.create_table(
        "statement_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_statement_keys")),
    )
    signing_keys = sa.table(
        "exchange_signing_keys",
        sa.column("purpose", sa.String()),
        sa.column("public_key", sa.LargeBinary()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    query = sa.select(signing_keys.c.public_key, signing_keys.c.created_at).where(signing_keys.c.purpose == "statement")
    for public_key, created_at in op.get_bind().execute(query).all():
        raw = bytes(public_key)
        when = created_at or datetime.now(UTC)
        op.bulk_insert(
            keys,
            [
                {
                    "key_id": hashlib.sha256(raw).hexdigest()[:16],
                    "public_key": raw,
                    "source": "database",
                    "created_at": when if when.tzinfo else when.replace(tzinfo=UTC),
                    "retired_at": None,
                }
            ],
        )


def downgrade() -> None:
    op.drop_table("statement_keys")
