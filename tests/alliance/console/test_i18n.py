"""Languages: complete catalogues, negotiation, the switcher, and money formatted per locale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from alliance.console.i18n import LOCALES, catalogue, format_money, negotiate_locale
from alliance.console.nav import NAV
from tests.alliance.console.console_helpers import ConsoleUser, csrf_token, sign_in

CONSOLE = Path(__file__).parents[3] / "alliance" / "console"
_LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z0-9_.\-]+)["']""")


def test_catalogues_have_the_same_keys_and_placeholders() -> None:
    english = catalogue("en")
    for locale in LOCALES:
        assert set(catalogue(locale)) == set(english), locale
        for key, text in catalogue(locale).items():
            assert text.strip(), f"{locale}:{key} is empty"
            assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", english[key])), key


def test_every_message_the_console_uses_exists() -> None:
    used = {entry.label for entry in NAV}
    for path in [*CONSOLE.rglob("*.html"), *CONSOLE.rglob("*.py")]:
        # Keys built from a prefix ("role." ~ user.role) are listed explicitly below.
        used |= {k for k in _LITERAL_KEY.findall(path.read_text(encoding="utf-8")) if not k.endswith(".")}
    used |= {f"role.{r}" for r in ("admin", "auditor")} | {f"status.{s}" for s in ("active", "suspended", "revoked")}
    used |= {f"lang.{code}" for code in LOCALES} | {"brands.notice.suspended", "brands.notice.reactivated"}
    used |= {f"keys.error.{slug}" for slug in ("last-active-key", "api-key-revoked", "api-key-not-found")}
    missing = used - set(catalogue("en"))
    assert not missing, f"add these messages to the catalogues: {sorted(missing)}"


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, None, "en"),
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-Hans"),
        (None, "en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        (None, "fr-FR, zh-Hans;q=0.5", "zh-Hans"),
        (None, "zh-TW", "zh-Hans"),
        (None, "zh;q=0, en;q=0.1", "en"),
        (None, "de-DE", "en"),
        (None, "zh;q=bogus", "en"),
        ("zh-Hans", "en", "zh-Hans"),
        ("en", "zh-CN", "en"),
        ("klingon", "zh-CN", "zh-Hans"),
    ],
)
def test_language_negotiation(cookie: str | None, header: str | None, expected: str) -> None:
    assert negotiate_locale(cookie, header) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "english", "chinese"),
    [
        (123450, "CNY", "CN¥1,234.50", "¥1,234.50"),
        (-5, "CNY", "-CN¥0.05", "-¥0.05"),
        (0, "USD", "$0.00", "US$0.00"),
        (1234, "JPY", "¥1,234", "JP¥1,234"),
        (1234567, "KWD", "KWD1,234.567", "KWD1,234.567"),
        (10**17 + 1, "CNY", "CN¥1,000,000,000,000,000.01", "¥1,000,000,000,000,000.01"),
    ],
)
def test_money_is_formatted_from_minor_units_per_locale(amount: int, currency: str, english: str, chinese: str) -> None:
    assert format_money(amount, currency, "en") == english
    assert format_money(amount, currency, "zh-Hans") == chinese


def test_money_refuses_floats_and_unknown_currencies() -> None:
    with pytest.raises(TypeError):
        format_money(12.5, "CNY", "en")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_money(True, "CNY", "en")
    with pytest.raises(ValueError):
        format_money(1, "XXX", "en")


async def test_switching_to_chinese_and_back(web: AsyncTestClient[Litestar], admin: ConsoleUser) -> None:
    token = await sign_in(web, admin)
    switched = await web.post(
        "/console/language", data={"_csrf_token": token, "lang": "zh-Hans", "next": "/console/brands"}
    )
    assert switched.status_code == 303
    assert switched.headers["location"] == "/console/brands"
    page = await web.get("/console/brands")
    assert '<html lang="zh-Hans">' in page.text
    assert "接入品牌" in page.text and "Onboard a brand" not in page.text
    await web.post("/console/language", data={"_csrf_token": token, "lang": "en", "next": "/console/"})
    assert "Onboard a brand" in (await web.get("/console/brands")).text


async def test_the_browser_language_is_the_default(web: AsyncTestClient[Litestar]) -> None:
    page = await web.get("/console/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "登录" in page.text
    assert csrf_token(page.text)
