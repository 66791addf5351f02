"""Numbers and look-ups for admins: /stats and /find."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

from bot.events import Event
from storage.database import Database, casefold, utc_iso
from storage.export import open_read_only
from storage.registrations import Registration


@dataclass(frozen=True, slots=True)
class EventStats:
    confirmed: int
    withdrawn: int
    in_progress: int  # forms started and not finished
    today: int  # confirmed today, in the event's local day
    last_7_days: int
    unreachable: int  # confirmed registrants who blocked the bot


class AdminQueries:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def event_stats(self, event: Event, now: datetime) -> EventStats:
        local_today = datetime.combine(
            now.astimezone(event.timezone).date(), time(), event.timezone
        )
        row = await self._db.fetchone(
            """
            SELECT
                count(*) FILTER (WHERE status = 'confirmed'),
                count(*) FILTER (WHERE status = 'withdrawn'),
                count(*) FILTER (WHERE status = 'confirmed' AND created_at >= :today),
                count(*) FILTER (WHERE status = 'confirmed' AND created_at >= :week),
                count(*) FILTER (WHERE status = 'confirmed' AND user_id IN (
                    SELECT chat_id FROM chats WHERE unreachable IS NOT NULL))
            FROM registrations WHERE event_id = :event
            """,
            {
                "event": event.id,
                "today": utc_iso(local_today),
                "week": utc_iso(local_today - timedelta(days=6)),
            },
        )
        forms = await self._db.fetchone(
            "SELECT count(*) FROM fsm_states WHERE state LIKE 'Form:%' "
            "AND json_extract(data, '$.event_id') = ? "
            "AND json_extract(data, '$.registration_id') IS NULL",
            (event.id,),
        )
        assert row is not None and forms is not None
        return EventStats(
            confirmed=row[0],
            withdrawn=row[1],
            in_progress=forms[0],
            today=row[2],
            last_7_days=row[3],
            unreachable=row[4],
        )

    async def find(self, query: str, *, limit: int) -> tuple[list[Registration], int]:
        """Registrations whose name, organisation, e-mail or phone contains `query`
        (any case, Cyrillic included): up to `limit` of them, newest first, and how many.

        A search reads every registration (about a second for 100,000): through the bot's
        one connection it would hold its lock, and every other chat's reply, that long. So
        it runs in a worker thread on a read-only connection of its own, like an export."""
        return await asyncio.to_thread(_find, self._db.path, query, limit)


def _find(path: Path, query: str, limit: int) -> tuple[list[Registration], int]:
    needle = query.casefold()
    digits = re.sub(r"\D", "", query)
    # "8 912 ..." is how Russians type "+7 912 ...".
    if len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    where = (
        "instr(casefold(full_name), :q) OR instr(casefold(organization), :q) "
        "OR instr(casefold(email), :q)" + (" OR instr(phone, :digits)" if len(digits) >= 4 else "")
    )
    params = {"q": needle, "digits": digits}
    with open_read_only(path) as connection:
        connection.row_factory = sqlite3.Row
        connection.create_function("casefold", 1, casefold, deterministic=True)
        count = connection.execute(
            f"SELECT count(*) FROM registrations WHERE {where}", params
        ).fetchone()
        rows = connection.execute(
            f"SELECT * FROM registrations WHERE {where} ORDER BY created_at DESC, id DESC "
            "LIMIT :limit",
            {**params, "limit": limit},
        ).fetchall()
    return [Registration.from_row(row) for row in rows], count[0]
