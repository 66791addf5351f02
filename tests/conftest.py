"""Shared fixtures: settings on a real database (a SQLite file, and a PostgreSQL schema: every
test that takes `settings` runs on both engines), the production Dispatcher on a fake Telegram."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
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
from tests.helpers import (
    ADMIN_ID,
    EVENTS_TOML,
    FAST,
    ORGANIZER_CHAT_ID,
    TOKEN,
    Clock,
    seat_counts_off,
)
from tests.postgres_server import create_schema, drop_schema, missing, postgres_url, with_schema

ENGINES = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): about SQLite by nature (its file, WAL, PRAGMAs, its migration "
        "chain): runs on SQLite only",
    )
    config.addinivalue_line("markers", "postgres_only: about the PostgreSQL engine itself")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames:
        engines = list(ENGINES)
        if metafunc.definition.get_closest_marker("sqlite_only"):
            engines = ["sqlite"]
        elif metafunc.definition.get_closest_marker("postgres_only"):
            engines = ["postgres"]
        metafunc.parametrize("engine", engines, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a PostgreSQL server the tests on it are left out, said in one line at the end
    (pytest_terminal_summary); with REQUIRE_POSTGRES=1 (CI) that is an error instead."""
    why = missing()
    if why is None:
        return
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        raise pytest.UsageError(f"REQUIRE_POSTGRES=1 but {why}")
    kept = [
        item
        for item in items
        if _engine_of(item) != "postgres" and item.get_closest_marker("postgres_only") is None
    ]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
        config.stash[_LEFT_OUT] = f"PostgreSQL tests left out: {why}"


_LEFT_OUT = pytest.StashKey[str]()


def _engine_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("engine")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = terminalreporter.config.stash.get(_LEFT_OUT, None)
    if line:
        terminalreporter.write_line(line, yellow=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The PostgreSQL server's URL (tests/postgres_server.py); the tests' schemas are dropped
    together at the end (a drop each would cost a tenth of a second per test)."""
    with postgres_url() as url:
        yield url
        if _SCHEMAS:
            asyncio.run(drop_schema(url, *_SCHEMAS))
            _SCHEMAS.clear()


_SCHEMAS: list[str] = []


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    engine: str = request.param
    return engine


@pytest.fixture
async def database_url(engine: str, request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """None on SQLite; on PostgreSQL a URL whose search_path is a fresh schema."""
    if engine == "sqlite":
        yield None
        return
    server: str = request.getfixturevalue("postgres_server")
    schema = await create_schema(server)
    _SCHEMAS.append(schema)
    # Commits without waiting for the server's disk (tests only): a test's data need not
    # survive a crash of the server.
    yield with_schema(server, schema, synchronous_commit="off")


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.toml"
    path.write_text(EVENTS_TOML, encoding="utf-8")
    return path


@pytest.fixture
def settings(tmp_path: Path, events_file: Path, database_url: str | None) -> Settings:
    return load_settings(
        _env_file=None,
        bot_token=TOKEN,
        database_path=tmp_path / "data" / "bot.sqlite3",
        database_url=database_url,
        events_file=events_file,
        admin_ids=str(ADMIN_ID),
        organizer_chat_ids=str(ORGANIZER_CHAT_ID),
    )


@pytest.fixture
async def opened(settings: Settings, clock: Clock) -> AsyncIterator[Opened]:
    # The production start-up: migrated database, the events file loaded and mirrored.
    async with open_app(settings, clock=clock) as app:
        yield app
        # Whatever the test did, each session's seat counts still match its rows.
        assert await seat_counts_off(app.db) == []


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
