"""Digests against a real SQLite file: the numbers a digest reports, one digest per day."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.domain.events import Event, EventCatalog
from storage.database import Database, open_database
from storage.digests import Digests
from storage.erasure import PersonalData
from storage.events import EventsRepository
from storage.registrations import NewRegistration, Registration, Registrations

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 4, 2, 7, 0, tzinfo=UTC)  # 09:00 in Berlin (CEST)

EVENT = Event(
    id="forum",
    title="Форум",
    starts_at=datetime(2026, 4, 20, 10, 0, tzinfo=BERLIN),
    registration_deadline=datetime(2026, 4, 18, 23, 59, tzinfo=BERLIN),
    timezone=BERLIN,
    location="Онлайн",
)
OTHER = Event(
    id="other",
    title="Семинар",
    starts_at=datetime(2026, 4, 21, 10, 0, tzinfo=BERLIN),
    registration_deadline=datetime(2026, 4, 19, 23, 59, tzinfo=BERLIN),
    timezone=BERLIN,
    location="Онлайн",
)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(tmp_path / "db.sqlite3") as db:
        await EventsRepository(db).sync(EventCatalog((EVENT, OTHER)), now=NOW - timedelta(days=30))
        yield db


async def register(
    db: Database, user_id: int, at: datetime, *, event: Event = EVENT, name: str = ""
) -> Registration:
    return await Registrations(db).create(
        NewRegistration(
            event_id=event.id,
            user_id=user_id,
            username=None,
            telegram_name=f"user{user_id}",
            full_name=name or f"Участник {user_id}",
            position="Директор",
            organization=f"Организация {user_id}",
            phone="+79123456789",
            email=f"user{user_id}@example.ru",
            consent_at=at,
            consent_version="v1",
        ),
        now=at,
    )


async def test_stats_lists_new_confirmed_registrations_since_the_previous_digest(
    database: Database,
) -> None:
    since = NOW - timedelta(days=1)
    await register(database, 1, since - timedelta(minutes=1))
    await register(database, 2, since)  # belonged to the previous digest
    await register(database, 3, since + timedelta(microseconds=1), name="<b>Иван</b> & Co")
    await register(database, 4, NOW)
    withdrawn = await register(database, 5, NOW - timedelta(hours=1))
    await PersonalData(database).withdraw(withdrawn.id, user_id=5, now=NOW)
    await register(database, 6, NOW + timedelta(seconds=1))  # after this digest
    await register(database, 7, NOW - timedelta(hours=2), event=OTHER)

    stats = await Digests(database).stats(EVENT, since, NOW)

    assert stats.event == EVENT
    assert stats.new == [("<b>Иван</b> & Co", "Организация 3"), ("Участник 4", "Организация 4")]
    assert stats.new_count == 2
    assert (stats.confirmed, stats.withdrawn) == (4, 1)
    assert stats.final is False


async def test_stats_counts_everything_as_new_when_no_digest_was_made(database: Database) -> None:
    for user_id in range(1, 6):
        await register(database, user_id, NOW - timedelta(days=6 - user_id))

    stats = await Digests(database).stats(EVENT, None, NOW, final=True, max_names=2)

    assert stats.new == [("Участник 1", "Организация 1"), ("Участник 2", "Организация 2")]
    assert stats.new_count == 5
    assert stats.final is True


async def test_stats_groups_per_day_by_local_date_across_dst(database: Database) -> None:
    # Berlin moves from UTC+1 to UTC+2 in the night to 29 March 2026.
    moments = [
        datetime(2026, 3, 28, 22, 30, tzinfo=UTC),  # 23:30 CET, 28 March
        datetime(2026, 3, 28, 23, 30, tzinfo=UTC),  # 00:30 CET, 29 March
        datetime(2026, 3, 29, 21, 30, tzinfo=UTC),  # 23:30 CEST, 29 March
        datetime(2026, 3, 29, 22, 30, tzinfo=UTC),  # 00:30 CEST, 30 March (a fixed +1 says 29)
        datetime(2026, 3, 30, 8, 0, tzinfo=UTC),
    ]
    for user_id, moment in enumerate(moments, start=1):
        await register(database, user_id, moment)

    stats = await Digests(database).stats(EVENT, None, NOW)

    assert stats.per_day == [
        (date(2026, 3, 28), 1),
        (date(2026, 3, 29), 2),
        (date(2026, 3, 30), 2),
    ]


async def test_stats_per_day_keeps_the_seven_latest_days_with_confirmed_registrations(
    database: Database,
) -> None:
    for user_id in range(1, 10):  # 24 March … 1 April, one a day, 10:00 local
        await register(database, user_id, NOW - timedelta(days=10 - user_id, hours=-1))
    await register(database, 10, NOW - timedelta(days=1, hours=-2))
    gone = await register(database, 11, NOW - timedelta(hours=1))
    await PersonalData(database).withdraw(gone.id, user_id=11, now=NOW)

    stats = await Digests(database).stats(EVENT, None, NOW)

    assert stats.per_day == [
        (date(2026, 3, 26), 1),
        (date(2026, 3, 27), 1),
        (date(2026, 3, 28), 1),
        (date(2026, 3, 29), 1),
        (date(2026, 3, 30), 1),
        (date(2026, 3, 31), 1),
        (date(2026, 4, 1), 2),
    ]


async def test_stats_is_empty_for_an_event_without_registrations(database: Database) -> None:
    stats = await Digests(database).stats(OTHER, NOW - timedelta(days=1), NOW)

    assert (stats.new, stats.new_count, stats.confirmed, stats.withdrawn) == ([], 0, 0, 0)
    assert stats.per_day == []


async def test_stats_reads_inside_the_callers_transaction(database: Database) -> None:
    await register(database, 1, NOW - timedelta(hours=1))
    digests = Digests(database)

    async with database.transaction() as connection:
        stats = await digests.stats(EVENT, None, NOW, connection=connection)
        assert await digests.record(connection, date(2026, 4, 2), NOW)

    assert stats.new_count == 1


async def test_last_is_none_before_the_first_digest(database: Database) -> None:
    assert await Digests(database).last() is None


async def test_record_makes_one_digest_per_day(database: Database) -> None:
    digests = Digests(database)

    async with database.transaction() as connection:
        first = await digests.record(connection, date(2026, 4, 2), NOW)
    async with database.transaction() as connection:
        again = await digests.record(connection, date(2026, 4, 2), NOW + timedelta(minutes=5))

    assert (first, again) == (True, False)
    assert await digests.last() == (date(2026, 4, 2), NOW)
    rows = await database.fetchall("SELECT local_date, created_at FROM digests")
    assert [tuple(row) for row in rows] == [("2026-04-02", "2026-04-02T07:00:00+00:00")]


async def test_last_is_the_latest_day_whatever_the_order_of_recording(database: Database) -> None:
    digests = Digests(database)
    async with database.transaction() as connection:
        await digests.record(connection, date(2026, 4, 2), NOW)
        await digests.record(connection, date(2026, 4, 1), NOW + timedelta(minutes=1))

    assert await digests.last() == (date(2026, 4, 2), NOW)


async def test_record_is_undone_with_the_callers_transaction(database: Database) -> None:
    digests = Digests(database)

    with pytest.raises(RuntimeError):
        async with database.transaction() as connection:
            assert await digests.record(connection, date(2026, 4, 2), NOW)
            raise RuntimeError("enqueueing the digest failed")

    assert await digests.last() is None
    async with database.transaction() as connection:
        assert await digests.record(connection, date(2026, 4, 2), NOW)
