"""The events table mirrors the events file: each session's end, and the default for a session
whose end was never synced."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.domain.events import Event, EventCatalog
from storage.database import Database, open_database
from storage.events import EventsRepository
from storage.migrations import LATEST_VERSION
from storage.registrations import NewRegistration, Registrations

SAMARA = ZoneInfo("Europe/Samara")
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
EVENT = Event(
    id="forum",
    title="Форум",
    starts_at=datetime(2026, 12, 10, 12, 0, tzinfo=SAMARA),
    registration_deadline=datetime(2026, 12, 8, 23, 59, tzinfo=SAMARA),
    timezone=SAMARA,
    location="Онлайн",
    ends_at=datetime(2026, 12, 11, 18, 30, tzinfo=SAMARA),
)


async def ends_at_column(db: Database) -> dict[str, str | None]:
    rows = await db.fetchall("SELECT id, ends_at FROM events ORDER BY id")
    return {row["id"]: row["ends_at"] for row in rows}


async def register(db: Database, event_id: str) -> None:
    await Registrations(db).create(
        NewRegistration(
            event_id=event_id,
            user_id=7,
            username=None,
            telegram_name="Мария",
            full_name="Иванова Мария Петровна",
            position="Инженер",
            organization="ООО «Ромашка»",
            phone="+79123456789",
            email="maria@example.ru",
            consent_at=NOW,
            consent_version="v1",
        ),
        now=NOW,
    )


async def test_sync_stores_each_sessions_end_in_utc(tmp_path: Path) -> None:
    default_end = replace(EVENT, id="short", ends_at=None)
    async with open_database(tmp_path / "bot.sqlite3") as db:
        await EventsRepository(db).sync(EventCatalog((EVENT, default_end)), now=NOW)

        assert await ends_at_column(db) == {
            "forum": "2026-12-11T14:30:00+00:00",
            "short": "2026-12-10T10:00:00+00:00",  # two hours after 12:00 in Samara (UTC+4)
        }

        # The file moves the end: the next sync follows it.
        later = replace(EVENT, ends_at=EVENT.starts_at + timedelta(hours=5))
        await EventsRepository(db).sync(EventCatalog((later, default_end)), now=NOW)
        assert (await ends_at_column(db))["forum"] == "2026-12-10T13:00:00+00:00"


async def test_session_gone_from_the_file_keeps_its_synced_end(tmp_path: Path) -> None:
    async with open_database(tmp_path / "bot.sqlite3") as db:
        await EventsRepository(db).sync(EventCatalog((EVENT,)), now=NOW)
        await register(db, EVENT.id)
        other = replace(EVENT, id="other")

        [(archived, count)] = await EventsRepository(db).sync(EventCatalog((other,)), now=NOW)

        assert (archived.id, count, archived.in_file) == ("forum", 1, False)
        assert archived.ends_at == EVENT.ends_at
        assert archived.end().tzinfo == SAMARA


async def test_session_synced_before_the_column_existed_ends_two_hours_after_its_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.sqlite3"
    async with open_database(path, migrate_to=LATEST_VERSION - 1) as db:
        await db.execute(
            "INSERT INTO events (id, title, starts_at, timezone, registration_deadline,"
            " location, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                "old",
                "Прошлая сессия",
                "2025-03-01T09:00:00+00:00",
                "Europe/Samara",
                "2025-02-27T20:00:00+00:00",
                "Онлайн",
                "2025-01-01T09:00:00+00:00",
            ),
        )
    async with open_database(path) as db:
        assert await ends_at_column(db) == {"old": None}  # until the next sync
        await register(db, "old")

        [(archived, _)] = await EventsRepository(db).sync(EventCatalog((EVENT,)), now=NOW)

        assert archived.id == "old" and archived.ends_at is None
        assert archived.end() == datetime(2025, 3, 1, 15, 0, tzinfo=SAMARA)
        assert (await ends_at_column(db))["old"] is None
