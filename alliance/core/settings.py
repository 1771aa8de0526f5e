"""Service settings, read once from ``ALLIANCE_*`` environment variables (CLI flags override them).

Every value is typed and validated at start: a bad value stops the service with a message that names
the variable, instead of surfacing later as a confusing failure.
"""

from __future__ import annotations

import functools
import os
import zoneinfo
from collections.abc import Mapping
from typing import Literal

import msgspec

__all__ = ["DEFAULT_DATABASE_URL", "Settings", "SettingsError", "get_settings", "load_settings"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./alliance.db"
ENV_PREFIX = "ALLIANCE_"

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class SettingsError(ValueError):
    """A setting has a value the service cannot run with; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the exchange needs to run. Field ``x`` is read from ``ALLIANCE_X``."""

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    log_format: LogFormat = "text"
    log_level: LogLevel = "INFO"
    # Largest request body accepted outside the streamed binary uploads (bytes).
    max_body_bytes: int = 1_048_576
    # Identifies this alliance; it domain-separates PSI hashes so points never match across alliances.
    alliance_id: str = "demo-alliance"
    # SQL statements echoed to the log (debugging only).
    sql_echo: bool = False
    # Migrate the embedded SQLite database on start (PostgreSQL is migrated by `alliance migrate`).
    auto_migrate: bool = True
    # Console: signs CSRF tokens (>= 32 characters). Unset: one is generated and kept in the database.
    session_secret: str = ""
    # Console: a session ends after this long without a request, and in any case after the maximum.
    console_session_idle_minutes: int = 60
    console_session_max_hours: int = 12
    # Console: failed logins allowed per username and client address within the window.
    console_login_max_failures: int = 5
    console_login_window_minutes: int = 15
    # Console: the time zone pages show times and day boundaries in (IANA name).
    console_timezone: str = "Asia/Shanghai"
    # Settlement: file holding the exchange's Ed25519 statement-signing key (hex; created 0600 on first
    # use). Unset: the key is generated on first use and kept in the database.
    exchange_signing_key_file: str = ""
    # PostgreSQL: connections per worker for the redemption fast path (alliance.db.direct); also how many
    # redemptions per worker may contend for a benefit's budget row at once (the rest wait their turn).
    redemption_connections: int = 4
    # Freeze the start-up heap out of the collector's full passes (alliance.core.heap). Off only where many
    # apps start in one process (the tests), which would each pay a full collection for nothing.
    freeze_heap: bool = True

    def __post_init__(self) -> None:
        if not self.database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise SettingsError(
                "ALLIANCE_DATABASE_URL must start with 'sqlite+aiosqlite://' or 'postgresql+asyncpg://'"
            )
        if not 0 < self.port < 65536:
            raise SettingsError("ALLIANCE_PORT must be between 1 and 65535")
        if not 1 <= self.workers <= 64:
            raise SettingsError("ALLIANCE_WORKERS must be between 1 and 64")
        if not 1 <= self.redemption_connections <= 100:
            raise SettingsError("ALLIANCE_REDEMPTION_CONNECTIONS must be between 1 and 100")
        if not 1024 <= self.max_body_bytes <= 1 << 30:
            raise SettingsError("ALLIANCE_MAX_BODY_BYTES must be between 1024 and 1073741824")
        if not self.alliance_id or len(self.alliance_id) > 64:
            raise SettingsError("ALLIANCE_ALLIANCE_ID must be 1 to 64 characters")
        if self.session_secret and len(self.session_secret) < 32:
            raise SettingsError("ALLIANCE_SESSION_SECRET must be at least 32 characters (or unset)")
        if not 1 <= self.console_session_idle_minutes <= 24 * 60:
            raise SettingsError("ALLIANCE_CONSOLE_SESSION_IDLE_MINUTES must be between 1 and 1440")
        if not 1 <= self.console_session_max_hours <= 24 * 30:
            raise SettingsError("ALLIANCE_CONSOLE_SESSION_MAX_HOURS must be between 1 and 720")
        if not 1 <= self.console_login_max_failures <= 100:
            raise SettingsError("ALLIANCE_CONSOLE_LOGIN_MAX_FAILURES must be between 1 and 100")
        if not 1 <= self.console_login_window_minutes <= 24 * 60:
            raise SettingsError("ALLIANCE_CONSOLE_LOGIN_WINDOW_MINUTES must be between 1 and 1440")
        try:
            zoneinfo.ZoneInfo(self.console_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise SettingsError("ALLIANCE_CONSOLE_TIMEZONE must be an IANA time zone such as Asia/Shanghai") from None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _fields() -> tuple[str, ...]:
    return Settings.__struct_fields__


def load_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None) -> Settings:
    """Build settings from the environment, then apply explicit overrides (CLI flags).

    Unknown ``ALLIANCE_*`` variables are ignored (the partner agent has its own); a present variable
    with a value of the wrong type raises :class:`SettingsError` naming the variable.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for name in _fields():
        key = ENV_PREFIX + name.upper()
        if key in env:
            raw[name] = env[key]
    for name, value in (overrides or {}).items():
        if value is not None:
            raw[name] = value
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(str(exc))) from None


def _explain(message: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.port`"; name the environment variable instead.
    if " - at `$." in message:
        text, _, path = message.partition(" - at `$.")
        return f"{ENV_PREFIX}{path.rstrip('`').upper()}: {text}"
    return message


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
