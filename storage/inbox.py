"""The inbox: updates written down before Telegram is told they arrived.

An update leaves the inbox when its id is written to handled_updates (a trigger, migration
10); one that could not be handled stays, set aside with its reason, until it is pruned.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from storage.database import Database, utc_iso
from storage.updates import KEEP_FOR

T = TypeVar("T")

# Rows written by one statement at most: four parameters each, under SQLite's 32,766.
MAX_BATCH = 1000


@dataclass(frozen=True)
class Arrival:
    update_id: int
    lane: int
    payload: str


@dataclass(frozen=True)
class Waiting:
    update_id: int
    lane: int
    payload: str
    attempts: int


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[start : start + MAX_BATCH] for start in range(0, len(items), MAX_BATCH)]


# Sizes vary with the requests in hand: the texts of the common ones are kept.
@functools.lru_cache(maxsize=128)
def insert_arrivals(rows: int) -> str:
    """The statement that writes `rows` arrivals (update id, lane, payload, received at),
    returning the ids new to the bot: neither handled before nor already waiting."""
    # The CASTs type the VALUES for PostgreSQL (no-ops to SQLite; utc_text: see
    # storage/migrations.py). WHERE: SQLite's parser needs one before ON CONFLICT after a
    # SELECT. NOT EXISTS, not NOT IN: PostgreSQL cannot make NOT IN an anti-join (NULLs), so
    # it read the whole of handled_updates (two days of ids) into a hash at every write;
    # NOT EXISTS looks each id up by its key.
    return (
        "INSERT INTO inbox (update_id, lane, payload, received_at) "
        "SELECT column1, column2, column3, column4 FROM (VALUES "
        + ", ".join(
            ["(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS utc_text))"] * rows
        )
        + ") AS arrivals WHERE NOT EXISTS (SELECT 1 FROM handled_updates "
        "WHERE handled_updates.update_id = arrivals.column1) "
        "ON CONFLICT (update_id) DO NOTHING RETURNING update_id"
    )


class Inbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def accept(
        self, arrivals: Sequence[Arrival], dropped: Sequence[int], *, now: datetime
    ) -> set[int]:
        """Write a batch at once: the updates to handle, and those dropped unhandled (they
        count as handled). Returns the ids new to the bot: neither handled before nor
        already waiting (Telegram sends an update again when it missed our confirmation)."""
        at = utc_iso(now)
        inserts = [
            (
                insert_arrivals(len(chunk)),
                tuple(
                    value
                    for arrival in chunk
                    for value in (arrival.update_id, arrival.lane, arrival.payload, at)
                ),
            )
            for chunk in _chunks(arrivals)
        ]
        marks = [
            (
                "INSERT OR IGNORE INTO handled_updates (update_id, handled_at) VALUES "
                + ", ".join(["(?, ?)"] * len(chunk)),
                tuple(value for update_id in chunk for value in (update_id, at)),
            )
            for chunk in _chunks(dropped)
        ]
        if len(inserts) + len(marks) == 1:
            # One statement is atomic on its own: one round trip instead of three.
            [(sql, params)] = inserts or marks
            rows = await self._db.fetchall(sql, params)
            return {row[0] for row in rows} if inserts else set()
        fresh: set[int] = set()
        # Inserts decided by the keys alone (ON CONFLICT, NOT EXISTS): safe without PostgreSQL's
        # global write lock (storage/postgres.py).
        async with self._db.transaction(serial=False) as connection:
            for sql, params in inserts:
                fresh.update(row[0] for row in await connection.execute_fetchall(sql, params))
            for sql, params in marks:
                await connection.execute(sql, params)
        return fresh

    async def waiting(self) -> list[Waiting]:
        """What is left to handle, oldest first, after a stop or a crash.

        Each chat's updates are handled one at a time in order, so of each chat's waiting
        updates only the first can have been in hand when the process stopped: it is the one
        whose attempt is counted (an update that kills the process is tried three times)."""
        async with self._db.transaction() as connection:
            await connection.execute(
                """
                UPDATE inbox SET attempts = attempts + 1
                WHERE update_id IN (
                    SELECT min(update_id) FROM inbox WHERE set_aside IS NULL GROUP BY lane)
                """
            )
            rows = await connection.execute_fetchall(
                "SELECT update_id, lane, payload, attempts FROM inbox "
                "WHERE set_aside IS NULL ORDER BY update_id"
            )
        return [Waiting(*row) for row in rows]

    async def stale_lanes(self, *, received_before: datetime, limit: int = 100) -> list[int]:
        """Chats with updates waiting since before `received_before`: left by a replica that
        stopped, or not yet taken (the caller tries each chat's turn)."""
        rows = await self._db.fetchall(
            "SELECT lane FROM inbox WHERE set_aside IS NULL AND received_at < ? "
            "GROUP BY lane ORDER BY min(update_id) LIMIT ?",
            (utc_iso(received_before), limit),
        )
        return [row[0] for row in rows]

    async def set_aside(self, update_id: int, reason: str) -> None:
        await self._db.execute(
            "UPDATE inbox SET set_aside = ? WHERE update_id = ?", (reason, update_id)
        )

    async def set_aside_rows(self) -> list[tuple[int, str]]:
        rows = await self._db.fetchall(
            "SELECT update_id, set_aside FROM inbox WHERE set_aside IS NOT NULL ORDER BY update_id"
        )
        return [(row[0], row[1]) for row in rows]

    async def prune(self, *, now: datetime) -> int:
        """Updates set aside are kept as long as handled ids, for diagnosis, then deleted
        (they hold what a person typed)."""
        return await self._db.execute(
            "DELETE FROM inbox WHERE set_aside IS NOT NULL AND received_at < ?",
            (utc_iso(now - KEEP_FOR),),
            heavy=True,
        )
