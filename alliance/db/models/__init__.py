"""Every ORM model, imported here so Alembic and the app see the whole schema."""

from alliance.db.models.audit import AuditEntry
from alliance.db.models.brand import ApiKey, Brand

__all__ = ["ApiKey", "AuditEntry", "Brand"]
