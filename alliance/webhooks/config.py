"""Webhook delivery settings, read from ``ALLIANCE_WEBHOOKS_*`` environment variables.

Kept beside the webhook code rather than in :class:`alliance.core.settings.Settings` so this domain can
be read and tuned on its own; the names follow the same ``ALLIANCE_`` convention and a bad value stops
the service with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from alliance.core.settings import SettingsError

__all__ = ["WebhookSettings", "load_webhook_settings"]

_PREFIX = "ALLIANCE_WEBHOOKS_"


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Allow http:// endpoints on 127.0.0.1 / localhost (tests and local demos only; production needs https).
    allow_insecure_localhost: bool = False
    # Run the delivery worker inside each server process.
    worker: bool = True
    # How often the worker looks for due deliveries (seconds).
    poll_seconds: float = 1.0
    # First retry delay; attempt n waits retry_base_seconds * 2**(n-1), at most max_delay_seconds.
    retry_base_seconds: float = 10.0
    max_delay_seconds: float = 3600.0
    # A delivery still failing after this many attempts is marked failed (about 21 hours with the defaults).
    max_attempts: int = 8
    # Per-request timeout talking to an endpoint (seconds).
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not 0.01 <= self.poll_seconds <= 3600:
            raise SettingsError("ALLIANCE_WEBHOOKS_POLL_SECONDS must be between 0.01 and 3600")
        if not 0.01 <= self.retry_base_seconds <= 86_400:
            raise SettingsError("ALLIANCE_WEBHOOKS_RETRY_BASE_SECONDS must be between 0.01 and 86400")
        if not self.retry_base_seconds <= self.max_delay_seconds <= 7 * 86_400:
            raise SettingsError("ALLIANCE_WEBHOOKS_MAX_DELAY_SECONDS must be between the base delay and 7 days")
        if not 1 <= self.max_attempts <= 50:
            raise SettingsError("ALLIANCE_WEBHOOKS_MAX_ATTEMPTS must be between 1 and 50")
        if not 0.1 <= self.timeout_seconds <= 120:
            raise SettingsError("ALLIANCE_WEBHOOKS_TIMEOUT_SECONDS must be between 0.1 and 120")


def load_webhook_settings(environ: Mapping[str, str] | None = None) -> WebhookSettings:
    """Read the settings now (not cached: cheap, and tests change the environment)."""
    env = os.environ if environ is None else environ
    raw = {
        name: env[_PREFIX + name.upper()] for name in WebhookSettings.__struct_fields__ if _PREFIX + name.upper() in env
    }
    try:
        return msgspec.convert(raw, WebhookSettings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if " - at `$." in message:
            text, _, path = message.partition(" - at `$.")
            message = f"{_PREFIX}{path.rstrip('`').upper()}: {text}"
        raise SettingsError(message) from None
