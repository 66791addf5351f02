"""Settings from the environment and `.env`; one clear line on anything wrong."""

from __future__ import annotations

import ipaddress
import re
from datetime import time
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.domain.retention import DEFAULT_RETENTION_DAYS
from bot.domain.texts import DEFAULT_LOCALE, LANGUAGES

# A token from @BotFather: "<bot id>:<35 characters>".
TOKEN_PATTERN = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{30,}$")

IdList = Annotated[tuple[int, ...], NoDecode]

# Ten years: more is a typo rather than a retention period.
MAX_RETENTION_DAYS = 3650

# Telegram's rule for setWebhook's secret_token (sent back in X-Telegram-Bot-Api-Secret-Token).
WEBHOOK_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
# The ports Telegram posts webhooks to (https://core.telegram.org/bots/api#setwebhook).
WEBHOOK_PORTS = (443, 80, 88, 8443)
# A host name or an IPv4 address (IPv6 comes in brackets), then the port.
_LISTEN = re.compile(r"(?:\[([0-9A-Fa-f:.]{2,45})\]|([A-Za-z0-9.-]{1,253})):(\d{1,5})")

Mode = Literal["polling", "webhook"]


class SettingsError(Exception):
    """A start-up error to print as one line."""


class DataSettings(BaseSettings):
    """Where the data is: all an operator's export on the server needs (no token)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_path: Path = Path("data/bot.sqlite3")
    # postgresql://user:password@host:port/database: PostgreSQL instead of the SQLite file at
    # DATABASE_PATH (several replicas need it). Secret: it may hold a password; never logged.
    database_url: SecretStr | None = None
    events_file: Path = Path("events.toml")
    timezone: Annotated[ZoneInfo, NoDecode] = Field(
        default_factory=lambda: ZoneInfo("Europe/Moscow")
    )
    # Days after a session ends until its registrations' personal data is erased (0: the
    # next day). Here, not on Settings: the operator's commands on the server see it too.
    retention_days: int = DEFAULT_RETENTION_DAYS
    # The language of organiser cards, digests and exports (a participant reads their own).
    # Here, not on Settings: the operator's export on the server writes in it too.
    organizer_language: str = DEFAULT_LOCALE

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url(cls, value: object) -> object:
        if value is None or isinstance(value, SecretStr):
            return value
        text = str(value).strip()
        if not text:
            return None  # DATABASE_URL= in .env: SQLite
        if not text.startswith(("postgresql://", "postgres://")):
            # The value itself is not repeated: it may hold a password.
            raise ValueError(
                "must be a PostgreSQL URL, postgresql://user:password@host:port/database "
                "(leave it unset for SQLite at DATABASE_PATH)"
            )
        return text

    @property
    def database_dsn(self) -> str | None:
        """DATABASE_URL in clear, for the one call that connects with it."""
        return None if self.database_url is None else self.database_url.get_secret_value()

    @field_validator("organizer_language", mode="before")
    @classmethod
    def _language(cls, value: object) -> object:
        text = str(value).strip().lower()
        if text not in LANGUAGES:
            raise ValueError(
                f"{value!r} is not a language of the bot: one of {', '.join(LANGUAGES)}"
            )
        return text

    @field_validator("timezone", mode="before")
    @classmethod
    def _zone(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return ZoneInfo(value.strip())
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown IANA time zone {value!r}, e.g. Europe/Moscow") from None
        return value

    @field_validator("retention_days", mode="before")
    @classmethod
    def _days(cls, value: object) -> object:
        text = str(value).strip()
        if not re.fullmatch(r"\d{1,9}", text) or int(text) > MAX_RETENTION_DAYS:
            raise ValueError(
                f"{value!r} is not a number of days from 0 to {MAX_RETENTION_DAYS}, e.g. 30"
            )
        return int(text)


class Settings(DataSettings):
    bot_token: SecretStr
    telegram_api_url: str = "https://api.telegram.org"
    admin_ids: IdList = ()
    organizer_chat_ids: IdList = ()
    digest_time: Annotated[time, NoDecode] = time(9, 0)
    # How updates arrive: long polling (one process), or Telegram posting them to WEBHOOK_URL
    # through the operator's TLS proxy to WEBHOOK_LISTEN (bot/webhook.py).
    mode: Mode = "polling"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_listen: Annotated[tuple[str, int], NoDecode] = ("127.0.0.1", 8080)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: object) -> object:
        text = str(value).strip().lower()
        if text not in ("polling", "webhook"):
            raise ValueError(f"{value!r} is not a mode: polling or webhook")
        return text

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _webhook_url(cls, value: object) -> object:
        if value is None or not str(value).strip():
            return None
        text = str(value).strip()
        example = "e.g. https://bot.example.org/telegram"
        try:
            parts = urlsplit(text)
            port = parts.port or 443
        except ValueError:
            raise ValueError(f"{text!r} is not a URL, {example}") from None
        if (
            parts.scheme != "https"
            or not parts.hostname
            or re.search(r"\s", text)
            or parts.path in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                f"{text!r} is not an https:// URL with a path (and no ?query), {example}"
            )
        if port not in WEBHOOK_PORTS:
            raise ValueError(
                f"port {port}: Telegram posts only to ports 443, 80, 88 or 8443 "
                "(the TLS proxy's port, not WEBHOOK_LISTEN's)"
            )
        return text

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _webhook_secret(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or not str(value).strip():
            return None
        # The value is never repeated: an error line may end up in a log.
        if not WEBHOOK_SECRET_PATTERN.fullmatch(str(value).strip()):
            raise ValueError(
                "must be 1 to 256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule), "
                "e.g. from `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return SecretStr(str(value).strip())

    @field_validator("webhook_listen", mode="before")
    @classmethod
    def _listen(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        example = "e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"
        match = _LISTEN.fullmatch(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not host:port (IPv6 in brackets), {example}")
        ipv6, host, port = match[1], match[2], int(match[3])
        if ipv6 is not None:
            try:
                host = str(ipaddress.IPv6Address(ipv6))
            except ValueError:
                raise ValueError(f"{value!r}: {ipv6!r} is not an IPv6 address, {example}") from None
        if not 1 <= port <= 65535:
            raise ValueError(f"{value!r}: the port must be 1 to 65535, {example}")
        return (host, port)

    @model_validator(mode="after")
    def _webhook_needs(self) -> Settings:
        if self.mode == "webhook":
            for variable, value in (
                ("WEBHOOK_URL", self.webhook_url),
                ("WEBHOOK_SECRET", self.webhook_secret),
            ):
                if value is None:
                    raise ValueError(f"{variable} is required when MODE=webhook")
        return self

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if not TOKEN_PATTERN.fullmatch(value.get_secret_value().strip()):
            raise ValueError("malformed token")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("telegram_api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", value.strip()):
            raise ValueError("expected an http(s) URL such as https://api.telegram.org")
        return value.strip().rstrip("/")

    @field_validator("admin_ids", "organizer_chat_ids", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            for part in parts:
                if not re.fullmatch(r"-?\d{1,20}", part):
                    raise ValueError(f"{part!r} is not an integer id; expected e.g. 12345,-100987")
            return tuple(int(part) for part in parts)
        return value

    @field_validator("digest_time", mode="before")
    @classmethod
    def _hh_mm(cls, value: object) -> object:
        if isinstance(value, str):
            match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
            if not match:
                raise ValueError(f"{value!r} is not a time of day in HH:MM, e.g. 09:00")
            return time(int(match[1]), int(match[2]))
        return value


def load_settings(**overrides: object) -> Settings:
    """Build Settings or raise SettingsError with one line naming the variable."""
    return _load(Settings, overrides)


def load_data_settings(**overrides: object) -> DataSettings:
    return _load(DataSettings, overrides)


S = TypeVar("S", bound=DataSettings)


def _load(kind: type[S], overrides: dict[str, object]) -> S:
    try:
        return kind(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        # A rule across variables (a model validator) has no location: its message names them.
        variable = str(first["loc"][0]).upper() if first["loc"] else ""
        if variable == "BOT_TOKEN":
            problem = "is missing" if first["type"] == "missing" else "is malformed"
            raise SettingsError(
                f"BOT_TOKEN {problem}: get a token from @BotFather in Telegram and put it in "
                f".env (see .env.example), e.g. BOT_TOKEN=123456789:AA..."
            ) from None
        message = str(first["msg"]).removeprefix("Value error, ")
        prefix = f"{variable}: " if variable else ""
        raise SettingsError(f"{prefix}{message} (see .env.example)") from None
