"""Console users (alliance admins and auditors), their login sessions, login attempts for throttling, and
the console's signing secret when none is configured."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from alliance.db.base import Base, UTCDateTime, utcnow
from alliance.db.models.audit import AuditEntry

__all__ = ["ConsoleLoginAttempt", "ConsoleSecret", "ConsoleSession", "ConsoleUser"]


class ConsoleUser(Base):
    """A person who operates the exchange through the web console.

    ``role`` is ``admin`` (may change things) or ``auditor`` (reads everything, changes nothing).
    ``password_hash`` is an Argon2id PHC string (argon2-cffi); the password itself is never stored.
    """

    __tablename__ = "console_users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)  # stored lower-case
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ConsoleSession(Base):
    """A signed-in browser. ``id`` is the SHA-256 of the cookie's 256-bit token, so a copy of this table
    does not let anyone sign in; deleting the row ends the session everywhere at once."""

    __tablename__ = "console_sessions"
    __table_args__ = (
        Index("ix_console_sessions_user_id", "user_id"),
        Index("ix_console_sessions_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source_ip: Mapped[str | None] = mapped_column(String(64))


class ConsoleLoginAttempt(Base):
    """A login attempt that has not (yet) succeeded, per username and client address. Rows older than
    the throttling window are pruned; a successful login removes the pair's rows."""

    __tablename__ = "console_login_attempts"
    __table_args__ = (
        Index("ix_console_login_attempts_username_source_ip_at", "username", "source_ip", "at"),
        Index("ix_console_login_attempts_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    source_ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConsoleSecret(Base):
    """Secrets the console generates for itself when the operator configured none (the CSRF signing key
    when ``ALLIANCE_SESSION_SECRET`` is unset). Kept in the database so every worker agrees on it."""

    __tablename__ = "console_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# The audit-log page filters by action with keyset pagination on (at, id); without this index a filter on
# a rare action walks the whole log. Declared here because the console is the query's only user.
Index("ix_audit_log_action_at", AuditEntry.action, AuditEntry.at)
