"""Events mirrored from the events file, so registrations outlive an edit of the file."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.domain.events import Event, EventCatalog
from storage.database import Database, utc_iso


class EventsRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def sync(self, catalog: EventCatalog, *, now: datetime) -> list[tuple[Event, int]]:
        """Upsert the file's events; return events gone from the file that have registrations.

        Event ids are permanent: a removed event stays (closed, `in_file = 0`) together with
        its registrations, and is returned with its number of active registrations.
        """
        stamp = utc_iso(now)
        async with self._db.transaction(heavy=True) as connection:
            await connection.executemany(
                """
                INSERT INTO events (id, title, starts_at, ends_at, timezone,
                                    registration_deadline, location, in_file, synced_at,
                                    capacity, offer_hours)
                VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET
                    title = excluded.title, starts_at = excluded.starts_at,
                    ends_at = excluded.ends_at, timezone = excluded.timezone,
                    registration_deadline = excluded.registration_deadline,
                    location = excluded.location, in_file = 1, synced_at = excluded.synced_at,
                    capacity = excluded.capacity, offer_hours = excluded.offer_hours
                """,
                [
                    (
                        event.id,
                        event.title,
                        utc_iso(event.starts_at),
                        utc_iso(event.end()),
                        event.timezone.key,
                        utc_iso(event.registration_deadline),
                        event.location,
                        stamp,
                        event.capacity,
                        event.offer_hours,
                    )
                    for event in catalog
                ],
            )
            ids = [event.id for event in catalog]
            placeholders = ", ".join("?" * len(ids))
            await connection.execute(
                f"UPDATE events SET in_file = 0 WHERE id NOT IN ({placeholders})", ids
            )
            async with connection.execute(
                """
                SELECT events.*, count(registrations.id) AS active
                FROM events JOIN registrations ON registrations.event_id = events.id
                WHERE events.in_file = 0 AND registrations.status = 'confirmed'
                GROUP BY events.id ORDER BY events.starts_at
                """
            ) as cursor:
                rows = await cursor.fetchall()
        archived = []
        for row in rows:
            zone = ZoneInfo(row["timezone"])
            event = Event(
                id=row["id"],
                title=row["title"],
                starts_at=datetime.fromisoformat(row["starts_at"]).astimezone(zone),
                registration_deadline=datetime.fromisoformat(
                    row["registration_deadline"]
                ).astimezone(zone),
                timezone=zone,
                location=row["location"],
                # NULL: synced before the column existed; Event.end() supplies the default.
                ends_at=(
                    datetime.fromisoformat(row["ends_at"]).astimezone(zone)
                    if row["ends_at"]
                    else None
                ),
            )
            archived.append((replace(event, in_file=False), int(row["active"])))
        return archived
