"""Migrations bring an empty database to the models' schema, on both backends, and re-run cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from alliance.db.base import Base
from alliance.db.migrate import migrate
from alliance.db.session import create_engine
from tests.conftest import Database, drop_pg_database, fresh_database


async def _tables_and_version(url: str) -> tuple[set[str], str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    finally:
        await engine.dispose()
    return tables, str(version)


def test_migrations_up_on_an_empty_database(backend: str, tmp_path: Path) -> None:
    db = fresh_database(backend, tmp_path)
    try:
        migrate(db.url)
        migrate(db.url)  # idempotent
        tables, version = asyncio.run(_tables_and_version(db.url))
        assert set(Base.metadata.tables) <= tables
        assert version
    finally:
        if backend == "postgresql":
            drop_pg_database(db.url)


async def test_models_and_migrations_agree(database: Database) -> None:
    """Comparing the migrated schema with the models finds nothing: no model change lacks a migration."""
    engine = create_engine(database.url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    finally:
        await engine.dispose()
    assert diff == []
