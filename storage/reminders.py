"""Reminders and notices of a changed session, queued to registrants through the outbox.

A reminder is queued for every registrant at once, in one transaction with its record in
`reminders`, whose primary key (registration, offset) lets it be queued once: a kill before
the commit queues nothing, after it everything, and a second run finds it recorded. The
sender then delivers as it delivers cards. Withdrawal and erasure give up a registration's
undelivered rows (storage/erasure.py drops rows by registration), /forget a person's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from bot.domain.calendar import calendar_file, calendar_name
from bot.domain.events import EventCatalog
from bot.domain.reminders import SessionChange, SessionVersion, change_text, offset_minutes
from bot.domain.texts import DEFAULT_LOCALE, LANGUAGES, t, use_locale
from storage.database import Connection, Database, utc_iso
from storage.outbox import Outbox

logger = logging.getLogger(__name__)

# Each registrant of :event_id who reads :language (a private chat's id is its user's,
# followed if it moved), parked at once when their chat refuses the bot, as Outbox.add
# does. `extra` narrows it. Who has no language recorded reads the default one.
_TO_REGISTRANTS = """
    INSERT INTO outbox (chat_id, kind, registration_id, text, attachment_name, attachment,
        created_at, status, error)
    SELECT target.chat_id, 'reminder', target.id, :text, :attachment_name, :attachment, :now,
        CASE WHEN chats.unreachable IS NULL THEN 'pending' ELSE 'failed' END, chats.unreachable
    FROM (
        SELECT registrations.id, COALESCE(moved.moved_to, registrations.user_id) AS chat_id
        FROM registrations
        LEFT JOIN chats AS moved
            ON moved.chat_id = registrations.user_id AND moved.moved_to IS NOT NULL
        LEFT JOIN languages ON languages.user_id = registrations.user_id
        WHERE registrations.event_id = :event_id AND registrations.status = 'confirmed'
            AND registrations.erased_at IS NULL
            AND COALESCE(languages.language, :default_language) = :language {extra}
        ORDER BY registrations.id
    ) AS target
    LEFT JOIN chats ON chats.chat_id = target.chat_id
    RETURNING registration_id
"""


class Reminders:
    def __init__(self, db: Database, outbox: Outbox) -> None:
        self._db = db
        self._outbox = outbox
        # Calendar sequences read so far, by session: they change only at a process's
        # start-up (`sync_versions`, before it takes updates), so one read a session lasts
        # the process. (A replica started with a changed events file raises one while this
        # process runs; this process sends its own file's times until it restarts with the
        # new file either way.)
        self._sequences: dict[str, int] = {}

    async def queue(
        self,
        event_id: str,
        offset: timedelta,
        due: datetime,
        texts: Mapping[str, str],
        *,
        now: datetime,
    ) -> int:
        """Queue the reminder `offset` before the start to every registrant who registered
        by `due` and has not had it, in their language (`texts` by language); returns how
        many were queued."""
        minutes = offset_minutes(offset)
        extra = (
            "AND registrations.created_at <= :due AND NOT EXISTS (SELECT 1 FROM reminders "
            "WHERE reminders.registration_id = registrations.id "
            "AND reminders.offset_minutes = :minutes)"
        )
        params = {
            "event_id": event_id,
            "default_language": DEFAULT_LOCALE,
            "attachment_name": None,
            "attachment": None,
            "now": utc_iso(now),
            "due": utc_iso(due),
            "minutes": minutes,
        }
        # Tens of thousands of rows: SQLite's work, on aiosqlite's thread (heavy).
        async with self._db.transaction(heavy=True) as connection:
            ids: list[int] = []
            for language, text in texts.items():
                rows = await connection.execute_fetchall(
                    _TO_REGISTRANTS.format(extra=extra),
                    params | {"language": language, "text": text},
                )
                ids.extend(row[0] for row in rows)
            await connection.executemany(
                "INSERT INTO reminders (registration_id, offset_minutes, due_at, queued_at) "
                "VALUES (?, ?, ?, ?)",
                [(id_, minutes, params["due"], params["now"]) for id_ in ids],
            )
        if ids:
            self._outbox.added.set()
        return len(ids)

    async def queued(self, event_id: str) -> dict[int, int]:
        """Reminders queued for a session so far, by offset in minutes (for tests, /stats)."""
        rows = await self._db.fetchall(
            "SELECT offset_minutes, count(*) FROM reminders JOIN registrations "
            "ON registrations.id = reminders.registration_id WHERE event_id = ? "
            "GROUP BY offset_minutes",
            (event_id,),
        )
        return {row[0]: row[1] for row in rows}

    async def sequence(self, event_id: str) -> int:
        """The SEQUENCE of the session's calendar file (0 until the session changes)."""
        known = self._sequences.get(event_id)
        if known is not None:
            return known
        row = await self._db.fetchone(
            "SELECT sequence FROM event_versions WHERE event_id = ?", (event_id,)
        )
        sequence = self._sequences[event_id] = int(row[0]) if row else 0
        return sequence

    async def sync_versions(self, catalog: EventCatalog, *, now: datetime) -> list[SessionChange]:
        """At start-up, after the events file is mirrored: a session whose start, end, place
        or link changed gets its calendar SEQUENCE raised and every registrant a notice of
        what changed, with the new calendar file, in the same transaction. Reminders follow
        the new start by themselves (they are due from the file's times)."""
        changes: list[SessionChange] = []
        async with self._db.transaction(heavy=True) as connection:
            async with connection.execute("SELECT * FROM event_versions") as cursor:
                stored = {row["event_id"]: row for row in await cursor.fetchall()}
            for event in catalog:
                version = SessionVersion.of(event)
                values = {
                    "event_id": event.id,
                    "starts_at": utc_iso(version.starts_at),
                    "ends_at": utc_iso(version.ends_at),
                    "location": version.location,
                    "join_url": version.join_url,
                    "now": utc_iso(now),
                }
                row = stored.get(event.id)
                if row is None:
                    await connection.execute(
                        "INSERT INTO event_versions (event_id, starts_at, ends_at, location, "
                        "join_url, sequence, changed_at) VALUES (:event_id, :starts_at, "
                        ":ends_at, :location, :join_url, 0, :now)",
                        values,
                    )
                    continue
                zone = event.timezone
                before = SessionVersion(
                    datetime.fromisoformat(row["starts_at"]).astimezone(zone),
                    datetime.fromisoformat(row["ends_at"]).astimezone(zone),
                    row["location"],
                    row["join_url"],
                )
                if before == version:
                    continue
                change = SessionChange(event, before, int(row["sequence"]) + 1)
                await connection.execute(
                    "UPDATE event_versions SET starts_at = :starts_at, ends_at = :ends_at, "
                    "location = :location, join_url = :join_url, sequence = sequence + 1, "
                    "changed_at = :now WHERE event_id = :event_id",
                    values,
                )
                if now < event.end():
                    await self._tell_registrants(connection, change, now)
                changes.append(change)
        self._sequences.clear()
        if changes:
            self._outbox.added.set()
        return changes

    async def _tell_registrants(
        self, connection: Connection, change: SessionChange, now: datetime
    ) -> None:
        event = change.event
        sql = _TO_REGISTRANTS.format(extra="")
        attachment = calendar_file(event, sequence=change.sequence, now=now)
        for language in LANGUAGES:
            common: dict[str, Any] = {
                "event_id": event.id,
                "now": utc_iso(now),
                "default_language": DEFAULT_LOCALE,
                "language": language,
            }
            with use_locale(language):
                notice = change_text(change)
                caption = t("calendar_caption", title=event.localized(language).title)
            await connection.execute_fetchall(
                sql, common | {"text": notice, "attachment_name": None, "attachment": None}
            )
            # The file after the notice: the sender keeps each chat's order.
            await connection.execute_fetchall(
                sql,
                common
                | {
                    "text": caption,
                    "attachment_name": calendar_name(event),
                    "attachment": attachment,
                },
            )
