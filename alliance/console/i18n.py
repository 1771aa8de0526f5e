"""Languages of the console (English and Simplified Chinese) and locale-aware formatting of money,
numbers and times.

Messages live in ``messages/<locale>.json`` as flat ``key -> text`` maps with ``{name}`` placeholders; both
catalogues carry the same keys (a test checks it). The language comes from the ``bax_lang`` cookie set by
the switcher, else from ``Accept-Language``, else English.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.numbers import format_decimal

from contracts.currencies import minor_unit_exponent

__all__ = [
    "DEFAULT_LOCALE",
    "LANG_COOKIE",
    "LOCALES",
    "Translator",
    "catalogue",
    "format_money",
    "negotiate_locale",
]

LOCALES: tuple[str, ...] = ("en", "zh-Hans")
DEFAULT_LOCALE = "en"
LANG_COOKIE = "bax_lang"
# The CLDR locale used for number and currency formats of each console language.
_BABEL_LOCALE = {"en": "en", "zh-Hans": "zh_Hans_CN"}
_CATALOGUE_DIR = Path(__file__).parent / "messages"


@functools.cache
def catalogue(locale: str) -> Mapping[str, str]:
    """The messages of ``locale`` (one of :data:`LOCALES`)."""
    if locale not in LOCALES:
        raise ValueError(f"unknown console locale {locale!r}")
    data: dict[str, str] = json.loads((_CATALOGUE_DIR / f"{locale}.json").read_text(encoding="utf-8"))
    return data


def negotiate_locale(cookie: str | None, accept_language: str | None) -> str:
    """The console language for a request: an explicit choice (cookie) wins, then the browser's
    preferences in q-value order (any ``zh`` variant -> Simplified Chinese), then English."""
    if cookie in LOCALES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary == "zh":
            ranked.append((-quality, position, "zh-Hans"))
        elif primary == "en":
            ranked.append((-quality, position, "en"))
    ranked = [r for r in ranked if r[0] < 0]  # q=0 means "not this one"
    return min(ranked)[2] if ranked else DEFAULT_LOCALE


@functools.cache
def _babel_locale(locale: str) -> Locale:
    return Locale.parse(_BABEL_LOCALE[locale])


def format_money(amount_minor: int, currency: str, locale: str) -> str:
    """``123450, "CNY"`` -> ``¥1,234.50`` in Chinese, ``CN¥1,234.50`` in English.

    Takes integer minor units (never a float) and shows exactly the ISO 4217 number of decimals of the
    currency (CLDR's display digits differ for a few currencies; the ledger's unit is the ISO one).
    """
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise TypeError("money amounts are integers in minor units")
    exponent = minor_unit_exponent(currency)
    babel_locale = _babel_locale(locale)
    pattern = copy.copy(babel_locale.currency_formats["standard"])
    pattern.frac_prec = (exponent, exponent)
    text = pattern.apply(
        Decimal(amount_minor).scaleb(-exponent), babel_locale, currency=currency, currency_digits=False
    )
    return str(text)


@dataclass(frozen=True)
class Translator:
    """Everything a template needs to speak one language in one time zone."""

    locale: str
    timezone: ZoneInfo

    def __call__(self, key: str, /, **values: Any) -> str:
        """The message ``key`` with ``{placeholders}`` filled in; an unknown key shows as itself (the
        catalogue test catches those before release)."""
        text = catalogue(self.locale).get(key) or catalogue(DEFAULT_LOCALE).get(key) or key
        return text.format_map(values) if values else text

    def has(self, key: str) -> bool:
        return key in catalogue(self.locale)

    @property
    def html_lang(self) -> str:
        return self.locale

    def number(self, value: int) -> str:
        return str(format_decimal(value, locale=_babel_locale(self.locale)))

    def money(self, amount_minor: int, currency: str) -> str:
        return format_money(amount_minor, currency, self.locale)

    def time(self, value: datetime | None) -> str:
        """A timestamp in the console's time zone, ``2026-11-23 18:53`` in both languages (unambiguous
        and sortable); empty for ``None``."""
        if value is None:
            return ""
        return value.astimezone(self.timezone).strftime("%Y-%m-%d %H:%M")

    def date(self, value: datetime) -> str:
        return value.astimezone(self.timezone).strftime("%Y-%m-%d")
