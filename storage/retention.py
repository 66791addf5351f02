"""What personal data is still held, by session, for the retention job and the digest's
notices (bot/domain/retention.py says when it goes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.domain.events import DEFAULT_DURATION
from storage.database import Connection, Database


@dataclass(frozen=True, slots=True)
class HeldData:
    """A session, from the events table (so one gone from the events file counts too), with
    how many of its registrations still hold personal data."""

    event_id: str
    title: str
    # When the session ends, in its zone: `ends_at`, or DEFAULT_DURATION after the start in
    # a row synced before the column existed.
    end: datetime
    registrations: int


_HELD = """
    SELECT events.id, events.title, events.starts_at, events.ends_at, events.timezone,
        count(*) AS registrations
    FROM events JOIN registrations ON registrations.event_id = events.id
    WHERE registrations.erased_at IS NULL
    GROUP BY events.id ORDER BY events.id
"""


class Retention:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def since(self, connection: Connection | None = None) -> datetime | None:
        """When retention began: the first start of a bot that erases by it (migration 11)."""
        sql = "SELECT value FROM meta WHERE key = 'retention_since'"
        if connection is None:
            row = await self._db.fetchone(sql)
        else:
            async with connection.execute(sql) as cursor:
                row = await cursor.fetchone()
        return None if row is None else datetime.fromisoformat(row["value"])

    async def held(self, connection: Connection | None = None) -> list[HeldData]:
        """Every session with registrations not yet erased."""
        if connection is None:
            rows = await self._db.fetchall(_HELD, heavy=True)
        else:
            async with connection.execute(_HELD) as cursor:
                rows = list(await cursor.fetchall())
        held = []
        for row in rows:
            zone = ZoneInfo(row["timezone"])
            if row["ends_at"]:
                end = datetime.fromisoformat(row["ends_at"]).astimezone(zone)
            else:
                end = datetime.fromisoformat(row["starts_at"]).astimezone(zone) + DEFAULT_DURATION
            held.append(HeldData(row["id"], row["title"], end, int(row["registrations"])))
        return held

    async def not_erased(self, event_id: str, *, limit: int) -> list[int]:
        """Up to `limit` registrations of the session still holding personal data, any
        status."""
        rows = await self._db.fetchall(
            "SELECT id FROM registrations WHERE event_id = ? AND erased_at IS NULL "
            "ORDER BY id LIMIT ?",
            (event_id, limit),
        )
        return [int(row["id"]) for row in rows]
