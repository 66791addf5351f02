"""Registrations for an export, streamed through a read-only connection of their own.

The bot's aiosqlite connection is one writer shared by every handler; an export reading
100,000 rows through it would hold its lock for seconds. WAL lets a second connection read a
consistent snapshot while the bot goes on writing, so the export runs in a worker thread on
a short-lived stdlib `sqlite3` connection, opened read-only.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote


class ExportRecord(NamedTuple):
    """One registration as stored (times are UTC ISO strings)."""

    event_id: str
    status: str
    created_at: str
    full_name: str
    position: str
    organization: str
    phone: str  # E.164
    phone_display: str | None  # as people read it; None in rows older than schema 6
    email: str
    user_id: int
    username: str | None
    consent_at: str
    unreachable_at: str | None  # the person blocked the bot (their private chat is unreachable)


# What ExportRecord._make does, without a Python frame per row.
_record = functools.partial(tuple.__new__, ExportRecord)

# One session's registrations in the order they were made: the row id, given at insert as
# created_at is. The index on event_id holds them in that order already: no sort.
_SELECT = """
    SELECT registrations.event_id, registrations.status,
           registrations.created_at, registrations.full_name, registrations.position,
           registrations.organization, registrations.phone, registrations.phone_display,
           registrations.email, registrations.user_id, registrations.username,
           registrations.consent_at, chats.unreachable_at
    FROM registrations
    -- A private chat's id is its user's id.
    LEFT JOIN chats ON chats.chat_id = registrations.user_id AND chats.unreachable IS NOT NULL
    WHERE registrations.event_id = ?
    ORDER BY registrations.event_id, registrations.id
"""


@contextmanager
def open_read_only(path: Path | str) -> Iterator[sqlite3.Connection]:
    """A read-only connection; it never creates the file, never migrates, never writes."""
    # `mode=ro` refuses writes at the SQLite level. The path is percent-encoded, since a
    # file name may hold "?" or "#", which would end the path part of the URI.
    uri = f"file:{quote(str(Path(path).absolute()))}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, check_same_thread=True)
    try:
        connection.execute("PRAGMA busy_timeout = 5000")
        yield connection
    finally:
        connection.close()


class StoredEvent(NamedTuple):
    title: str
    timezone: str  # IANA name


def stored_events(connection: sqlite3.Connection) -> dict[str, StoredEvent]:
    """Every session in the database, those gone from the events file included."""
    rows = connection.execute("SELECT id, title, timezone FROM events").fetchall()
    return {event_id: StoredEvent(title, timezone) for event_id, title, timezone in rows}


def stream_registrations(
    connection: sqlite3.Connection, event_id: str | None, *, batch: int = 1000
) -> Iterator[ExportRecord]:
    """Every registration of one session (or of all, when `event_id` is None), withdrawn ones
    included, by session start, then in the order they were made. Reads `batch` rows at a
    time: memory stays flat however many there are.

    Every session is read in one read transaction, so the rows are a consistent snapshot
    even while the bot keeps writing.
    """
    cursor = connection.cursor()
    cursor.row_factory = None
    cursor.execute("BEGIN")
    try:
        if event_id is None:
            sessions = [
                session
                for (session,) in cursor.execute(
                    "SELECT id FROM events ORDER BY starts_at, id"
                ).fetchall()
            ]
        else:
            sessions = [event_id]
        for session in sessions:
            cursor.execute(_SELECT, (session,))
            while rows := cursor.fetchmany(batch):
                yield from map(_record, rows)
    finally:
        cursor.execute("ROLLBACK")
        cursor.close()
