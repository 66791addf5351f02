"""Shared fixtures: settings, a real SQLite file, the production Dispatcher on a fake Telegram."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiogram import Bot, Dispatcher

from bot.app import Opened, create_bot, create_dispatcher, open_app
from bot.domain.config import Settings, load_settings
from bot.domain.events import EventCatalog
from bot.sender import Sender
from storage.database import Database
from storage.erasure import PersonalData
from storage.registrations import Registrations
from tests.client import TelegramUser, feed_deliver
from tests.fake_telegram import FakeSession, FakeTelegram
from tests.helpers import ADMIN_ID, EVENTS_TOML, FAST, ORGANIZER_CHAT_ID, TOKEN, Clock


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
async def opened(settings: Settings, clock: Clock) -> AsyncIterator[Opened]:
    # The production start-up: migrated database, the events file loaded and mirrored.
    async with open_app(settings, clock=clock) as app:
        yield app


@pytest.fixture
def db(opened: Opened) -> Database:
    return opened.db


@pytest.fixture
def catalog(opened: Opened) -> EventCatalog:
    return opened.catalog


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
async def sender(bot: Bot, dispatcher: Dispatcher, clock: Clock) -> AsyncIterator[Sender]:
    """The outbox's sender, started, on Telegram's limits scaled down (FAST)."""
    sender = Sender(bot, dispatcher["outbox"], clock, FAST)
    await sender.start()
    yield sender
    await sender.stop(grace=1)


@pytest.fixture
def registrations(db: Database) -> Registrations:
    return Registrations(db)


@pytest.fixture
def personal_data(db: Database) -> PersonalData:
    return PersonalData(db)


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
