"""Run Alembic migrations programmatically (``alliance migrate``; ``alliance serve`` on SQLite)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "migrate"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_path_separator", "os")
    config.attributes["database_url"] = database_url
    return config


def migrate(database_url: str, revision: str = "heads") -> None:
    """Bring the schema up to ``revision`` (default: every head, so domain branches that have not been
    merged yet are all applied). Safe to run again: applied revisions are skipped."""
    command.upgrade(alembic_config(database_url), revision)
