"""Settings: typed, validated at start, errors name the variable."""

from __future__ import annotations

import pytest

from alliance.core.settings import DEFAULT_DATABASE_URL, SettingsError, load_settings


def test_defaults_are_the_embedded_database() -> None:
    settings = load_settings({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.is_sqlite


def test_environment_and_overrides() -> None:
    settings = load_settings(
        {"ALLIANCE_PORT": "9001", "ALLIANCE_LOG_FORMAT": "json", "ALLIANCE_SQL_ECHO": "true", "OTHER": "x"},
        overrides={"workers": 4, "host": None},
    )
    assert (settings.port, settings.log_format, settings.sql_echo, settings.workers) == (9001, "json", True, 4)
    assert settings.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ALLIANCE_PORT": "eighty"}, "ALLIANCE_PORT"),
        ({"ALLIANCE_PORT": "70000"}, "ALLIANCE_PORT"),
        ({"ALLIANCE_LOG_FORMAT": "xml"}, "ALLIANCE_LOG_FORMAT"),
        ({"ALLIANCE_WORKERS": "0"}, "ALLIANCE_WORKERS"),
        ({"ALLIANCE_DATABASE_URL": "mysql://localhost/db"}, "ALLIANCE_DATABASE_URL"),
        ({"ALLIANCE_SQL_ECHO": "maybe"}, "ALLIANCE_SQL_ECHO"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env)
