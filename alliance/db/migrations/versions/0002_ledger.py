"""contracts (signing keys, versions, signatures) and the settlement ledger, with append-only guards

Revision ID: 0002_ledger
Revises: 0001
Create Date: 2026-11-23

The ledger's append-only rule, enforced by triggers (see docs/ledger.md):
- ledger_postings: no UPDATE, no DELETE.
- ledger_transactions: no DELETE; no UPDATE of a sealed row (seq set); an unsealed row may be updated
  only by sealing it: seq, prev_hash, hash and sealed_at all set, every other column unchanged.
- ledger_accounts: balances change (the sealer), account/currency/brand do not; no DELETE.
- ledger_chain_head: seq never goes backwards; no DELETE.
On SQLite the same UPDATE rules hold; DELETE is not guarded there (the embedded single-file backend;
verification still detects a removed row through the chain and the head).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0002_ledger"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64

_TX_CONTENT = (
    "id",
    "idempotency_scope",
    "idempotency_key",
    "brand_id",
    "kind",
    "occurred_at",
    "posted_at",
    "period",
)

PG_GUARDS = [
    """
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END
    $$
    """,
    f"""
    CREATE FUNCTION ledger_transactions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'the ledger is append-only: DELETE of transaction % is refused', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF OLD.seq IS NOT NULL THEN
            RAISE EXCEPTION 'ledger transaction % is sealed (seq %) and cannot change', OLD.id, OLD.seq
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF NEW.seq IS NULL OR NEW.prev_hash IS NULL OR NEW.hash IS NULL OR NEW.sealed_at IS NULL
           OR ({", ".join("NEW." + c for c in _TX_CONTENT)}, NEW.reference::text)
              IS DISTINCT FROM ({", ".join("OLD." + c for c in _TX_CONTENT)}, OLD.reference::text) THEN
            RAISE EXCEPTION 'ledger transaction % may only be sealed (seq, prev_hash, hash, sealed_at)', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE FUNCTION ledger_accounts_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' OR (NEW.account, NEW.currency, NEW.brand_id)
                               IS DISTINCT FROM (OLD.account, OLD.currency, OLD.brand_id) THEN
            RAISE EXCEPTION 'ledger account rows keep their identity: % refused', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE FUNCTION ledger_chain_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' OR NEW.seq < OLD.seq OR NEW.id <> OLD.id THEN
            RAISE EXCEPTION 'the ledger chain head only moves forward: % refused', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings "
    "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
    "CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions "
    "FOR EACH ROW EXECUTE FUNCTION ledger_transactions_guard()",
    "CREATE TRIGGER ledger_accounts_identity BEFORE UPDATE OR DELETE ON ledger_accounts "
    "FOR EACH ROW EXECUTE FUNCTION ledger_accounts_guard()",
    "CREATE TRIGGER ledger_chain_head_forward BEFORE UPDATE OR DELETE ON ledger_chain_head "
    "FOR EACH ROW EXECUTE FUNCTION ledger_chain_head_guard()",
]

PG_DROP_GUARDS = [
    "DROP TRIGGER IF EXISTS ledger_chain_head_forward ON ledger_chain_head",
    "DROP TRIGGER IF EXISTS ledger_accounts_identity ON ledger_accounts",
    "DROP TRIGGER IF EXISTS ledger_transactions_append_only ON ledger_transactions",
    "DROP TRIGGER IF EXISTS ledger_postings_append_only ON ledger_postings",
    "DROP FUNCTION IF EXISTS ledger_chain_head_guard()",
    "DROP FUNCTION IF EXISTS ledger_accounts_guard()",
    "DROP FUNCTION IF EXISTS ledger_transactions_guard()",
    "DROP FUNCTION IF EXISTS ledger_refuse_change()",
]

_SQLITE_CHANGED = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in (*_TX_CONTENT, "reference"))

SQLITE_GUARDS = [
    """
    CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE ON ledger_postings
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE of a posting is refused'); END
    """,
    """
    CREATE TRIGGER ledger_transactions_sealed BEFORE UPDATE ON ledger_transactions
    WHEN OLD.seq IS NOT NULL
    BEGIN SELECT RAISE(ABORT, 'a sealed ledger transaction cannot change'); END
    """,
    f"""
    CREATE TRIGGER ledger_transactions_seal_only BEFORE UPDATE ON ledger_transactions
    WHEN OLD.seq IS NULL AND (NEW.seq IS NULL OR NEW.prev_hash IS NULL OR NEW.hash IS NULL
                              OR NEW.sealed_at IS NULL OR {_SQLITE_CHANGED})
    BEGIN SELECT RAISE(ABORT, 'an unsealed ledger transaction may only be sealed'); END
    """,
    """
    CREATE TRIGGER ledger_accounts_identity BEFORE UPDATE ON ledger_accounts
    WHEN NEW.account IS NOT OLD.account OR NEW.currency IS NOT OLD.currency OR NEW.brand_id IS NOT OLD.brand_id
    BEGIN SELECT RAISE(ABORT, 'ledger account rows keep their identity'); END
    """,
    """
    CREATE TRIGGER ledger_chain_head_forward BEFORE UPDATE ON ledger_chain_head
    WHEN NEW.seq < OLD.seq OR NEW.id IS NOT OLD.id
    BEGIN SELECT RAISE(ABORT, 'the ledger chain head only moves forward'); END
    """,
]

SQLITE_DROP_GUARDS = [
    "DROP TRIGGER IF EXISTS ledger_chain_head_forward",
    "DROP TRIGGER IF EXISTS ledger_accounts_identity",
    "DROP TRIGGER IF EXISTS ledger_transactions_seal_only",
    "DROP TRIGGER IF EXISTS ledger_transactions_sealed",
    "DROP TRIGGER IF EXISTS ledger_postings_append_only",
]


def upgrade() -> None:
    op.create_table("signing_keys",
    sa.Column("id", sa.String(length=32), nullable=False),
    sa.Column("brand_id", sa.String(length=32), nullable=False),
    sa.Column("public_key", sa.LargeBinary(length=32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["brand_id"], ["brands.id"], name=op.f("fk_signing_keys_brand_id_brands")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys"))
    )
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.create_index("ix_signing_keys_brand_id_created_at", ["brand_id", "created_at"], unique=False)

    op.create_table("contracts",
    sa.Column("id", sa.String(length=64), nullable=False),
    sa.Column("party_a", sa.String(length=32), nullable=False),
    sa.Column("party_b", sa.String(length=32), nullable=False),
    sa.Column("created_by", sa.String(length=32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["party_a"], ["brands.id"], name=op.f("fk_contracts_party_a_brands")),
    sa.ForeignKeyConstraint(["party_b"], ["brands.id"], name=op.f("fk_contracts_party_b_brands")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_contracts")),
    sa.UniqueConstraint("party_a", "party_b", name="uq_contracts_party_a")
    )
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.create_index("ix_contracts_party_b", ["party_b"], unique=False)

    op.create_table("contract_versions",
    sa.Column("contract_id", sa.String(length=64), nullable=False),
    sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
    sa.Column("canonical", sa.LargeBinary(), nullable=False),
    sa.Column("fingerprint", sa.String(length=64), nullable=False),
    sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("effective_to", sa.DateTime(timezone=True), nullable=True),
    sa.Column("proposed_by", sa.String(length=32), nullable=False),
    sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["contract_id"], ["contracts.id"], name=op.f("fk_contract_versions_contract_id_contracts")),
    sa.PrimaryKeyConstraint("contract_id", "version", name=op.f("pk_contract_versions"))
    )
    op.create_table("contract_signatures",
    sa.Column("contract_id", sa.String(length=64), nullable=False),
    sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
    sa.Column("brand_id", sa.String(length=32), nullable=False),
    sa.Column("key_id", sa.String(length=32), nullable=False),
    sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
    sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["brand_id"], ["brands.id"], name=op.f("fk_contract_signatures_brand_id_brands")),
    sa.ForeignKeyConstraint(["contract_id", "version"], ["contract_versions.contract_id", "contract_versions.version"], name="fk_contract_signatures_version"),
    sa.ForeignKeyConstraint(["key_id"], ["signing_keys.id"], name=op.f("fk_contract_signatures_key_id_signing_keys")),
    sa.PrimaryKeyConstraint("contract_id", "version", "brand_id", name=op.f("pk_contract_signatures"))
    )

    op.create_table("ledger_transactions",
    sa.Column("id", sa.String(length=32), nullable=False),
    sa.Column("idempotency_scope", sa.String(length=32), nullable=False),
    sa.Column("idempotency_key", sa.String(length=255), nullable=False),
    sa.Column("brand_id", sa.String(length=32), nullable=True),
    sa.Column("kind", sa.String(length=32), nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("period", sa.String(length=7), nullable=False),
    sa.Column("reference", sa.JSON(), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=True),
    sa.Column("prev_hash", sa.String(length=64), nullable=True),
    sa.Column("hash", sa.String(length=64), nullable=True),
    sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["brand_id"], ["brands.id"], name=op.f("fk_ledger_transactions_brand_id_brands")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
    sa.UniqueConstraint("idempotency_scope", "idempotency_key", name="uq_ledger_transactions_idempotency_scope"),
    sa.UniqueConstraint("seq", name="uq_ledger_transactions_seq")
    )
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_transactions_period", ["period"], unique=False)
        batch_op.create_index("ix_ledger_transactions_posted_at_id", ["posted_at", "id"], unique=False)
        batch_op.create_index(
            "ix_ledger_transactions_unsealed",
            ["posted_at", "id"],
            unique=False,
            postgresql_where=sa.text("seq IS NULL"),
            sqlite_where=sa.text("seq IS NULL"),
        )

    op.create_table("ledger_postings",
    sa.Column("transaction_id", sa.String(length=32), nullable=False),
    sa.Column("line", sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column("account", sa.String(length=100), nullable=False),
    sa.Column("brand_id", sa.String(length=32), nullable=True),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("currency", sa.String(length=3), nullable=False),
    sa.ForeignKeyConstraint(["brand_id"], ["brands.id"], name=op.f("fk_ledger_postings_brand_id_brands")),
    sa.PrimaryKeyConstraint("transaction_id", "line", name=op.f("pk_ledger_postings"))
    )
    with op.batch_alter_table("ledger_postings", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_postings_brand_id_transaction_id", ["brand_id", "transaction_id"], unique=False)

    op.create_table("ledger_accounts",
    sa.Column("account", sa.String(length=100), nullable=False),
    sa.Column("currency", sa.String(length=3), nullable=False),
    sa.Column("brand_id", sa.String(length=32), nullable=True),
    sa.Column("balance", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("account", "currency", name=op.f("pk_ledger_accounts"))
    )
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_accounts_brand_id", ["brand_id"], unique=False)

    chain_head = op.create_table("ledger_chain_head",
    sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("hash", sa.String(length=64), nullable=False),
    sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_chain_head"))
    )
    op.bulk_insert(chain_head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH, "sealed_at": None}])

    op.create_table("ledger_periods",
    sa.Column("period", sa.String(length=7), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("next_period", sa.String(length=7), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_by", sa.String(length=100), nullable=True),
    sa.PrimaryKeyConstraint("period", name=op.f("pk_ledger_periods"))
    )

    guards = PG_GUARDS if op.get_bind().dialect.name == "postgresql" else SQLITE_GUARDS
    for statement in guards:
        op.execute(statement)


def downgrade() -> None:
    drops = PG_DROP_GUARDS if op.get_bind().dialect.name == "postgresql" else SQLITE_DROP_GUARDS
    for statement in drops:
        op.execute(statement)
    op.drop_table("ledger_periods")
    op.drop_table("ledger_chain_head")
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_accounts_brand_id")
    op.drop_table("ledger_accounts")
    with op.batch_alter_table("ledger_postings", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_postings_brand_id_transaction_id")
    op.drop_table("ledger_postings")
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transactions_unsealed")
        batch_op.drop_index("ix_ledger_transactions_posted_at_id")
        batch_op.drop_index("ix_ledger_transactions_period")
    op.drop_table("ledger_transactions")
    op.drop_table("contract_signatures")
    op.drop_table("contract_versions")
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.drop_index("ix_contracts_party_b")
    op.drop_table("contracts")
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_signing_keys_brand_id_created_at")
    op.drop_table("signing_keys")
