"""Shared fixtures: settings, a real SQLite file, the production Dispatcher on a fake Telegram."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiogram import Bot, Dispatcher

from bot.app import create_bot, create_dispatcher
from bot.domain.config import Settings, load_settings
from bot.domain.events import EventCatalog, load_events
from storage.database import Database, open_database
from storage.events import EventsRepository
from storage.registrations import Registrations
from tests.client import TelegramUser, feed_deliver
from tests.fake_telegram import FakeSession, FakeTelegram

TOKEN = "7000000001:AAtest-token-for-tests-only-xxxxxxxxxx"
ADMIN_ID = 500
ORGANIZER_CHAT_ID = -1001234567890

EVENTS_TOML = """
[[events]]
id = "forum-2026"
title = "Стратегическая сессия «ЭтНик»"
starts_at = 2026-12-10T12:00:00
timezone = "Europe/Moscow"
registration_deadline = 2026-12-08T23:59:00
location = "Онлайн"
description = "Сессия для НКО & органов власти <онлайн>"
join_url = "https://example.org/join"
contact = "org@example.ru"
privacy_policy = "Данные обрабатываются по 152-ФЗ."
privacy_policy_version = "v1"
"""


class Clock:
    """The time handlers see; tests move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.toml"
    path.write_text(EVENTS_TOML, encoding="utf-8")
    return path


@pytest.fixture
def settings(tmp_path: Path, events_file: Path) -> Settings:
    return load_settings(
        _env_file=None,
        bot_token=TOKEN,
        database_path=tmp_path / "data" / "bot.sqlite3",
        events_file=events_file,
        admin_ids=str(ADMIN_ID),
        organizer_chat_ids=str(ORGANIZER_CHAT_ID),
    )


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    async with open_database(settings.database_path) as database:
        yield database


@pytest.fixture
async def catalog(settings: Settings, db: Database, clock: Clock) -> EventCatalog:
    events = load_events(settings.events_file, default_zone=settings.timezone)
    archived = await EventsRepository(db).sync(events, now=clock())
    return replace(events, archived=tuple(event for event, _ in archived))


@pytest.fixture
def fake() -> FakeTelegram:
    return FakeTelegram(token=TOKEN)


@pytest.fixture
async def bot(settings: Settings, fake: FakeTelegram) -> AsyncIterator[Bot]:
    bot = create_bot(settings, session=FakeSession(fake))
    yield bot
    await bot.session.close()


@pytest.fixture
def dispatcher(settings: Settings, db: Database, catalog: EventCatalog, clock: Clock) -> Dispatcher:
    return create_dispatcher(settings=settings, db=db, catalog=catalog, clock=clock)


@pytest.fixture
def registrations(db: Database) -> Registrations:
    return Registrations(db)


@pytest.fixture
def user(fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot) -> TelegramUser:
    return TelegramUser(
        fake, feed_deliver(dispatcher, bot), user_id=1001, first_name="Мария", username="maria"
    )


@pytest.fixture
def make_user(fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot):  # type: ignore[no-untyped-def]
    def make(user_id: int, **kwargs: object) -> TelegramUser:
        return TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=user_id, **kwargs)  # type: ignore[arg-type]

    return make
