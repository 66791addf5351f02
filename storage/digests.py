"""Daily digests: which days are done, and the numbers a digest reports."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain.digest import (
    MAX_NAMES,
    PER_DAY_DAYS,
    EventDigest,
    UpgradeNotice,
    coming_erasures,
    events_for_digest,
    render_digest,
)
from bot.domain.events import Event, EventCatalog
from bot.domain.retention import grace_until
from bot.domain.texts import LOCALE
from storage.database import Connection, Database, Row, utc_iso
from storage.retention import Retention
from storage.seats import SeatCount


class Digests:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def last(self, connection: Connection | None = None) -> tuple[date, datetime] | None:
        """The latest digest day and when it was made (inside the caller's transaction
        when `connection` is given)."""
        sql = "SELECT local_date, created_at FROM digests ORDER BY local_date DESC LIMIT 1"
        if connection is None:
            row = await self._db.fetchone(sql)
        else:
            async with connection.execute(sql) as cursor:
                row = await cursor.fetchone()
        if row is None:
            return None
        return date.fromisoformat(row["local_date"]), datetime.fromisoformat(row["created_at"])

    async def record(self, connection: Connection, local_date: date, now: datetime) -> bool:
        """Mark `local_date` done inside the caller's transaction (the one that enqueues the
        digest's messages); False when it was done already, so the caller rolls back."""
        async with connection.execute(
            "INSERT INTO digests (local_date, created_at) VALUES (?, ?) "
            "ON CONFLICT (local_date) DO NOTHING",
            (local_date.isoformat(), utc_iso(now)),
        ) as cursor:
            return cursor.rowcount == 1

    async def stats(
        self,
        event: Event,
        since: datetime | None,
        now: datetime,
        *,
        final: bool = False,
        max_names: int = MAX_NAMES,
        connection: Connection | None = None,
    ) -> EventDigest:
        """The event's numbers for a digest made at `now`: new = confirmed registrations
        created in (since, now], all of them when `since` is None.

        With `connection` (inside the caller's transaction) the numbers and the digest's
        record are one snapshot; without it each query takes the shared lock in turn.
        """

        async def fetchall(sql: str, params: dict[str, Any]) -> list[Row]:
            if connection is None:
                return await self._db.fetchall(sql, params, heavy=True)
            async with connection.execute(sql, params) as cursor:
                return list(await cursor.fetchall())

        params = {
            "event_id": event.id,
            # Before every stored time (a time on both engines: PostgreSQL's are timestamptz).
            "since": utc_iso(since) if since else "0001-01-01T00:00:00+00:00",
            "now": utc_iso(now),
            "max_names": max_names,
        }
        names = await fetchall(
            """
            SELECT full_name, organization FROM registrations
            WHERE event_id = :event_id AND status = 'confirmed' AND erased_at IS NULL
              AND created_at > :since AND created_at <= :now
            ORDER BY created_at, id LIMIT :max_names
            """,
            params,
        )
        (counts,) = await fetchall(
            """
            SELECT
                count(CASE WHEN status = 'confirmed' AND created_at > :since THEN 1 END) AS new,
                count(CASE WHEN status = 'confirmed' THEN 1 END) AS confirmed,
                count(CASE WHEN status = 'withdrawn' THEN 1 END) AS withdrawn,
                count(CASE WHEN status = 'waiting' THEN 1 END) AS waiting
            FROM registrations WHERE event_id = :event_id AND created_at <= :now
            """,
            params,
        )
        # The local day depends on the offset at that instant (DST), which SQLite cannot
        # look up, so the grouping is done here.
        created = await fetchall(
            """
            SELECT created_at FROM registrations
            WHERE event_id = :event_id AND status = 'confirmed' AND created_at <= :now
            """,
            params,
        )
        per_day = Counter(
            datetime.fromisoformat(row["created_at"]).astimezone(event.timezone).date()
            for row in created
        )
        sources = await fetchall(
            """
            SELECT source, count(*) AS confirmed, count(CASE WHEN created_at > :since THEN 1 END)
                AS new
            FROM registrations
            WHERE event_id = :event_id AND status = 'confirmed' AND created_at <= :now
            GROUP BY source
            """,
            params,
        )
        # Seats as a newcomer sees them (storage/seats.py): everyone waiting holds one.
        seats = SeatCount(int(counts["confirmed"]), event.capacity, int(counts["waiting"]), 0)
        return EventDigest(
            event=event,
            new=[(row["full_name"], row["organization"]) for row in names],
            new_count=int(counts["new"]),
            confirmed=int(counts["confirmed"]),
            withdrawn=int(counts["withdrawn"]),
            per_day=sorted(per_day.items())[-PER_DAY_DAYS:],
            final=final,
            sources=tuple((row["source"], row["confirmed"], row["new"]) for row in sources),
            capacity=seats.capacity,
            seats_left=seats.left,
            waiting=seats.waiting if seats.capacity is not None or seats.waiting else None,
        )

    async def compose(
        self,
        catalog: EventCatalog,
        zone: ZoneInfo,
        now: datetime,
        *,
        connection: Connection | None = None,
    ) -> list[str]:
        """The digest as it would be sent at `now`: new since the previous digest; the
        sessions whose data goes within a week; once, after the upgrade that began
        retention, the day before which nothing is erased."""
        last = await self.last(connection)
        since = last[1] if last else None
        stats = [
            # Each session as the organisers read it (their language's title).
            await self.stats(
                event.localized(LOCALE.get()), since, now, final=final, connection=connection
            )
            for event, final in events_for_digest(catalog.events, now, since)
        ]
        retention = Retention(self._db)
        began = await retention.since(connection)
        days = catalog.retention_days
        grace = None if began is None else grace_until(began, days, zone)
        held = await retention.held(connection)
        erasures = coming_erasures(
            [(session.title, session.end) for session in held], days, grace, now
        )
        # The first digest made after retention began, while its grace lasts (a new
        # installation has no digest before it: nothing to announce).
        first_since = began is not None and since is not None and since < began <= now
        upgrade = None
        if first_since and grace is not None and now < grace:
            upgrade = UpgradeNotice(grace.date(), days)
        return render_digest(
            now.astimezone(zone).date(), stats, now, erasures=erasures, upgrade=upgrade
        )
