from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.domain.config import Settings, SettingsError, load_data_settings, load_settings

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
VARIABLES = (
    "BOT_TOKEN",
    "TELEGRAM_API_URL",
    "DATABASE_PATH",
    "DATABASE_URL",
    "ADMIN_IDS",
    "ORGANIZER_CHAT_IDS",
    "EVENTS_FILE",
    "TIMEZONE",
    "DIGEST_TIME",
    "RETENTION_DAYS",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv(variable.lower(), raising=False)


def settings(**overrides: object) -> Settings:
    return load_settings(_env_file=None, **({"bot_token": TOKEN} | overrides))


def settings_error(**overrides: object) -> str:
    with pytest.raises(SettingsError) as caught:
        settings(**overrides)
    return str(caught.value)


def test_load_settings_uses_defaults_when_only_token_given() -> None:
    loaded = settings()

    assert loaded.bot_token.get_secret_value() == TOKEN
    assert loaded.telegram_api_url == "https://api.telegram.org"
    assert loaded.database_path == Path("data/bot.sqlite3")
    assert loaded.admin_ids == ()
    assert loaded.organizer_chat_ids == ()
    assert loaded.events_file == Path("events.toml")
    assert loaded.timezone == ZoneInfo("Europe/Moscow")
    assert loaded.digest_time == time(9, 0)
    assert loaded.retention_days == 30


def test_load_settings_reads_environment_when_variables_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOT_TOKEN", f"  {TOKEN} ")
    monkeypatch.setenv("TELEGRAM_API_URL", "http://127.0.0.1:8081/")
    monkeypatch.setenv("DATABASE_PATH", "/var/lib/bot/db.sqlite3")
    monkeypatch.setenv("ADMIN_IDS", "1, 2,-100123")
    monkeypatch.setenv("ORGANIZER_CHAT_IDS", "-1001234567890")
    monkeypatch.setenv("EVENTS_FILE", "conf/events.toml")
    monkeypatch.setenv("TIMEZONE", "Europe/Saratov")
    monkeypatch.setenv("DIGEST_TIME", "7:30")
    monkeypatch.setenv("RETENTION_DAYS", " 90 ")

    loaded = load_settings(_env_file=None)

    assert loaded.bot_token.get_secret_value() == TOKEN
    assert loaded.telegram_api_url == "http://127.0.0.1:8081"
    assert loaded.database_path == Path("/var/lib/bot/db.sqlite3")
    assert loaded.admin_ids == (1, 2, -100123)
    assert loaded.organizer_chat_ids == (-1001234567890,)
    assert loaded.events_file == Path("conf/events.toml")
    assert loaded.timezone == ZoneInfo("Europe/Saratov")
    assert loaded.digest_time == time(7, 30)
    assert loaded.retention_days == 90


def test_load_settings_ignores_env_file_when_disabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("ADMIN_IDS=42\nTIMEZONE=Asia/Tokyo\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    loaded = settings()

    assert loaded.admin_ids == ()
    assert loaded.timezone == ZoneInfo("Europe/Moscow")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1, 2,-100123", (1, 2, -100123)),
        ("42", (42,)),
        (" 42 , ", (42,)),
        ("", ()),
        ("  ", ()),
        (",,", ()),
    ],
)
@pytest.mark.parametrize("variable", ["ADMIN_IDS", "ORGANIZER_CHAT_IDS"])
def test_load_settings_parses_comma_lists_when_ids_given(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: tuple[int, ...]
) -> None:
    monkeypatch.setenv(variable, value)

    loaded = settings()

    assert getattr(loaded, variable.lower()) == expected


@pytest.mark.parametrize("value", ["1,abc", "1;2", "1.5", "@admin", "1 2"])
@pytest.mark.parametrize("variable", ["ADMIN_IDS", "ORGANIZER_CHAT_IDS"])
def test_load_settings_names_list_variable_when_value_is_not_an_id(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    message = settings_error()

    assert message.startswith(f"{variable}: ")
    assert "is not an integer id" in message


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (None, "is missing"),
        ("", "is malformed"),
        ("not-a-token", "is malformed"),
        ("123456789:short", "is malformed"),
        ("123456789 AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "is malformed"),
        ("bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "is malformed"),
        ("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsa!", "is malformed"),
    ],
)
def test_load_settings_explains_token_when_missing_or_malformed(
    monkeypatch: pytest.MonkeyPatch, token: str | None, problem: str
) -> None:
    if token is not None:
        monkeypatch.setenv("BOT_TOKEN", token)

    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)

    message = str(caught.value)
    assert message.startswith(f"BOT_TOKEN {problem}")
    assert "@BotFather" in message
    assert ".env.example" in message
    assert "\n" not in message
    if token:
        assert token not in message


@pytest.mark.parametrize(
    ("overrides", "variable", "fragment"),
    [
        ({"timezone": "Mars/Olympus"}, "TIMEZONE", "'Mars/Olympus'"),
        ({"timezone": "МСК"}, "TIMEZONE", "unknown IANA time zone"),
        ({"digest_time": "25:00"}, "DIGEST_TIME", "'25:00'"),
        ({"digest_time": "9"}, "DIGEST_TIME", "HH:MM"),
        ({"digest_time": "09:60"}, "DIGEST_TIME", "HH:MM"),
        ({"digest_time": "9am"}, "DIGEST_TIME", "HH:MM"),
        ({"telegram_api_url": "api.telegram.org"}, "TELEGRAM_API_URL", "http(s) URL"),
        ({"telegram_api_url": "ftp://api.telegram.org"}, "TELEGRAM_API_URL", "http(s) URL"),
        ({"telegram_api_url": "https://"}, "TELEGRAM_API_URL", "http(s) URL"),
        ({"admin_ids": "x"}, "ADMIN_IDS", "'x'"),
        ({"organizer_chat_ids": "-"}, "ORGANIZER_CHAT_IDS", "'-'"),
        ({"retention_days": "-1"}, "RETENTION_DAYS", "'-1'"),
        ({"retention_days": "3651"}, "RETENTION_DAYS", "from 0 to 3650"),
        ({"retention_days": "30 дней"}, "RETENTION_DAYS", "number of days"),
        ({"retention_days": ""}, "RETENTION_DAYS", "number of days"),
        ({"retention_days": "1.5"}, "RETENTION_DAYS", "'1.5'"),
    ],
)
def test_load_settings_names_variable_when_value_is_bad(
    overrides: dict[str, object], variable: str, fragment: str
) -> None:
    message = settings_error(**overrides)

    assert message.startswith(f"{variable}: ")
    assert fragment in message
    assert message.endswith("(see .env.example)")
    assert "\n" not in message
    assert TOKEN not in message
    assert TOKEN.split(":")[1] not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("09:00", time(9, 0)), ("9:05", time(9, 5)), (" 23:59 ", time(23, 59)), ("00:00", time(0))],
)
def test_load_settings_parses_digest_time_when_hh_mm(value: str, expected: time) -> None:
    assert settings(digest_time=value).digest_time == expected


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("1", 1), (" 30 ", 30), ("3650", 3650)])
def test_load_settings_parses_retention_days_when_in_range(value: str, expected: int) -> None:
    assert settings(retention_days=value).retention_days == expected


def test_operator_settings_read_retention_days_and_name_it_when_bad(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server-side export reads DataSettings, without a token.
    monkeypatch.setenv("RETENTION_DAYS", "7")
    assert load_data_settings(_env_file=None).retention_days == 7

    monkeypatch.setenv("RETENTION_DAYS", "неделя")
    with pytest.raises(SettingsError) as caught:
        load_data_settings(_env_file=None)
    assert str(caught.value).startswith("RETENTION_DAYS: 'неделя' is not a number of days")


def test_settings_repr_hides_token_when_printed() -> None:
    loaded = settings()

    assert TOKEN not in repr(loaded)
    assert TOKEN not in str(loaded)
