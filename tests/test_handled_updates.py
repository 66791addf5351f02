"""Marks of handled updates: written when `mark` returns, several in one statement."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.database import Database, open_database
from storage.updates import HandledUpdates

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class CountingDatabase:
    """The database, counting statements and failing the ones it is told to."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.statements = 0
        self.failures = 0

    async def record(self, sql: str, params: tuple[object, ...] = ()) -> int:
        self.statements += 1
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        return await self._db.record(sql, params)

    async def fetchone(self, sql: str, params: tuple[object, ...] = ()) -> object:
        return await self._db.fetchone(sql, params)


async def stored(db: Database) -> list[int]:
    return [row[0] for row in await db.fetchall("SELECT update_id FROM handled_updates")]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(tmp_path / "bot.sqlite3") as database:
        yield database


async def test_marks_made_together_are_written_together(db: Database) -> None:
    counting = CountingDatabase(db)
    handled = HandledUpdates(counting)  # type: ignore[arg-type]

    await asyncio.gather(*(handled.mark(update_id, now=NOW) for update_id in range(1, 51)))

    assert sorted(await stored(db)) == list(range(1, 51))
    assert counting.statements < 50
    assert await handled.is_handled(50)
    assert not await handled.is_handled(51)


async def test_a_mark_written_twice_is_stored_once(db: Database) -> None:
    handled = HandledUpdates(db)
    await handled.mark(7, now=NOW)
    await asyncio.gather(handled.mark(7, now=NOW), handled.mark(7, now=NOW))
    assert await stored(db) == [7]


async def test_a_failed_write_fails_its_caller_and_the_others_try_again(db: Database) -> None:
    counting = CountingDatabase(db)
    handled = HandledUpdates(counting)  # type: ignore[arg-type]
    counting.failures = 1

    results = await asyncio.gather(
        *(handled.mark(update_id, now=NOW) for update_id in range(1, 6)), return_exceptions=True
    )

    failed = [update_id for update_id, result in zip(range(1, 6), results, strict=True) if result]
    assert len(failed) == 1
    assert all(isinstance(result, sqlite3.OperationalError) for result in results if result)
    assert sorted(await stored(db)) == [u for u in range(1, 6) if u not in failed]
