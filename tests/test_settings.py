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
    "MODE",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "WEBHOOK_LISTEN",
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


# --- webhook mode --------------------------------------------------------------------------------

SECRET = "s3cr3t_Token-" + "x" * 20
WEBHOOK = {"mode": "webhook", "webhook_url": "https://bot.example.org/tg", "webhook_secret": SECRET}


def test_polling_is_the_default_and_needs_no_webhook_settings() -> None:
    loaded = settings()

    assert loaded.mode == "polling"
    assert loaded.webhook_url is None
    assert loaded.webhook_secret is None
    assert loaded.webhook_listen == ("127.0.0.1", 8080)


def test_webhook_mode_reads_its_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODE", " Webhook ")
    monkeypatch.setenv("WEBHOOK_URL", "https://bot.example.org:8443/telegram/updates")
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("WEBHOOK_LISTEN", "0.0.0.0:9000")

    loaded = settings()

    assert loaded.mode == "webhook"
    assert loaded.webhook_url == "https://bot.example.org:8443/telegram/updates"
    assert loaded.webhook_secret is not None
    assert loaded.webhook_secret.get_secret_value() == SECRET
    assert SECRET not in repr(loaded)
    assert loaded.webhook_listen == ("0.0.0.0", 9000)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (" localhost:1 ", ("localhost", 1)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:65535", ("::", 65535)),
        ("[2001:db8::1]:80", ("2001:db8::1", 80)),
    ],
)
def test_webhook_listen_parses_host_and_port(value: str, expected: tuple[str, int]) -> None:
    assert settings(webhook_listen=value).webhook_listen == expected


@pytest.mark.parametrize(
    ("overrides", "variable", "fragment"),
    [
        ({"mode": "hook"}, "MODE", "polling or webhook"),
        ({"mode": ""}, "MODE", "polling or webhook"),
        ({"webhook_url": "http://bot.example.org/tg"}, "WEBHOOK_URL", "https:// URL with a path"),
        ({"webhook_url": "https://bot.example.org"}, "WEBHOOK_URL", "with a path"),
        ({"webhook_url": "https://bot.example.org/"}, "WEBHOOK_URL", "with a path"),
        ({"webhook_url": "https:///tg"}, "WEBHOOK_URL", "https:// URL"),
        ({"webhook_url": "https://bot.example.org/tg?x=1"}, "WEBHOOK_URL", "no ?query"),
        ({"webhook_url": "https://bot.example.org/a b"}, "WEBHOOK_URL", "https:// URL"),
        ({"webhook_url": "https://bot.example.org:8080/tg"}, "WEBHOOK_URL", "443, 80, 88 or 8443"),
        ({"webhook_url": "https://bot.example.org:x/tg"}, "WEBHOOK_URL", "is not a URL"),
        ({"webhook_secret": "a" * 257}, "WEBHOOK_SECRET", "1 to 256 characters"),
        ({"webhook_secret": "with space"}, "WEBHOOK_SECRET", "A-Z, a-z, 0-9, _ and -"),
        ({"webhook_secret": "пароль"}, "WEBHOOK_SECRET", "1 to 256 characters"),
        ({"webhook_listen": "8080"}, "WEBHOOK_LISTEN", "host:port"),
        ({"webhook_listen": "::1:8080"}, "WEBHOOK_LISTEN", "IPv6 in brackets"),
        ({"webhook_listen": "[::g]:8080"}, "WEBHOOK_LISTEN", "host:port"),
        ({"webhook_listen": "[1.2.3.4]:8080"}, "WEBHOOK_LISTEN", "not an IPv6 address"),
        ({"webhook_listen": "127.0.0.1:0"}, "WEBHOOK_LISTEN", "1 to 65535"),
        ({"webhook_listen": "127.0.0.1:70000"}, "WEBHOOK_LISTEN", "1 to 65535"),
        ({"webhook_listen": "127.0.0.1:"}, "WEBHOOK_LISTEN", "host:port"),
        (WEBHOOK | {"webhook_url": None}, "WEBHOOK_URL", "required when MODE=webhook"),
        (WEBHOOK | {"webhook_url": "  "}, "WEBHOOK_URL", "required when MODE=webhook"),
        (WEBHOOK | {"webhook_secret": None}, "WEBHOOK_SECRET", "required when MODE=webhook"),
        (WEBHOOK | {"webhook_secret": ""}, "WEBHOOK_SECRET", "required when MODE=webhook"),
    ],
)
def test_webhook_settings_name_the_variable_when_wrong(
    overrides: dict[str, object], variable: str, fragment: str
) -> None:
    message = settings_error(**overrides)

    assert message.startswith(variable), message
    assert fragment in message
    assert message.endswith("(see .env.example)")
    assert "\n" not in message
    # The secret is never repeated, even a wrong one.
    for value in overrides.values():
        if isinstance(value, str) and overrides.get("webhook_secret") == value and value:
            assert value not in message
    assert SECRET not in message


def test_webhook_mode_loads_with_url_and_secret() -> None:
    loaded = settings(**WEBHOOK)

    assert (loaded.mode, loaded.webhook_url) == ("webhook", "https://bot.example.org/tg")
