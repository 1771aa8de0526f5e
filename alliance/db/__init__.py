"""Storage: SQLAlchemy models, engine/session wiring and Alembic migrations."""
