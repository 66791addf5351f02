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
from contextlib import closing, contextmanager
from pathlib import Path
from typing import NamedTuple, cast
from urllib.parse import quote

from storage.migrations import LATEST_VERSION


class ExportRecord(NamedTuple):
    """One registration as stored (times are UTC ISO strings)."""

    event_id: str
    status: str
    created_at: str
    # The personal columns are None once erased (storage/erasure.py).
    full_name: str | None
    position: str | None
    organization: str | None
    phone: str | None  # E.164
    phone_display: str | None  # as people read it; None in rows older than schema 6
    email: str | None
    user_id: int | None
    username: str | None
    consent_at: str
    unreachable_at: str | None  # the person blocked the bot (their private chat is unreachable)
    source: str | None  # the source in the session's link (bot/domain/sources.py)
    # Answers to the event's own questions: a JSON object, question id to value ("{}": none).
    answers: str | None


# What ExportRecord._make does, without a Python frame per row.
_record = functools.partial(tuple.__new__, ExportRecord)

# A registration's answers as one JSON object, read by the primary key of `answers`.
ANSWERS = """(
    SELECT json_group_object(answers.question_id, answers.value) FROM answers
    WHERE answers.registration_id = registrations.id
)"""
_COLUMNS = f"""
    registrations.event_id, registrations.status,
    registrations.created_at, registrations.full_name, registrations.position,
    registrations.organization, registrations.phone, registrations.phone_display,
    registrations.email, registrations.user_id, registrations.username,
    registrations.consent_at, chats.unreachable_at, registrations.source, {ANSWERS}
"""
_FROM = """
    FROM registrations
    -- A private chat's id is its user's id.
    LEFT JOIN chats ON chats.chat_id = registrations.user_id AND chats.unreachable IS NOT NULL
"""
# One session's registrations in the order they were made: the row id, given at insert as
# created_at is. The index on event_id holds them in that order already: no sort.
_OF_SESSION = "WHERE registrations.event_id = ? ORDER BY registrations.event_id, registrations.id"


class CsvRow(NamedTuple):
    """A registration for a CSV file: the registrant's own values come as the text stored
    with them (`registrant_csv`, bot/domain/cells.py), UTF-8 bytes ready for the file, when the
    rule that made it is today's; the caller makes the rest of the line."""

    id: int
    status: str
    created_at: str
    consent_at: str
    cells: bytes | None  # None: no text, or one made by another rule
    unreachable_at: str | None
    source: str | None
    answers: str | None  # as in ExportRecord


_CSV_ROWS = f"""
    SELECT registrations.id, registrations.status, registrations.created_at,
           registrations.consent_at,
           CASE WHEN registrations.csv_rule = :rule THEN {{cells}} END,
           chats.unreachable_at, registrations.source, {ANSWERS}
    {_FROM} WHERE registrations.event_id = :session
    ORDER BY registrations.event_id, registrations.id
"""
# The stored text as UTF-8 bytes: a cast in SQLite; PostgreSQL's cast to bytea would read
# backslashes as escapes.
_CSV_CELLS = {
    "sqlite": "CAST(registrations.csv_cells AS BLOB)",
    "postgres": "convert_to(registrations.csv_cells, 'UTF8')",
}


class SchemaMismatch(sqlite3.DatabaseError):
    """The file's schema is not the one this code reads (an export never migrates)."""


@contextmanager
def open_read_only(path: Path | str) -> Iterator[sqlite3.Connection]:
    """A read-only connection; it never creates the file, never migrates, never writes.
    SchemaMismatch when the file was not migrated to this code's schema: an operator who
    upgraded the code and exports before the bot has started once.

    `path` may be DATABASE_URL instead: then one read-only transaction of PostgreSQL's, with
    the subset of sqlite3.Connection that the export uses (storage/postgres.py: Snapshot)."""
    if isinstance(path, str) and path.startswith(("postgresql://", "postgres://")):
        from storage.postgres import Snapshot as PostgresSnapshot

        postgres = PostgresSnapshot(path)
        try:
            row = postgres.execute("SELECT version FROM schema_version").fetchone()
            _check_version(0 if row is None else int(row[0]))
            # Duck-typed: the export calls execute/cursor/fetch* only.
            yield cast(sqlite3.Connection, postgres)
        finally:
            postgres.close()
        return
    # `mode=ro` refuses writes at the SQLite level. The path is percent-encoded, since a
    # file name may hold "?" or "#", which would end the path part of the URI.
    uri = f"file:{quote(str(Path(path).absolute()))}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, check_same_thread=True)
    try:
        connection.execute("PRAGMA busy_timeout = 5000")
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        _check_version(version)
        yield connection
    finally:
        connection.close()


def _check_version(version: int) -> None:
    if version < LATEST_VERSION:
        raise SchemaMismatch(
            f"its schema version is {version}, older than this code's {LATEST_VERSION}: "
            "start the bot once (it upgrades the file), then export again"
        )
    if version > LATEST_VERSION:
        raise SchemaMismatch(
            f"its schema version is {version}, newer than this code knows "
            f"({LATEST_VERSION}): upgrade the bot"
        )


class StoredEvent(NamedTuple):
    title: str
    timezone: str  # IANA name


def answered_questions(connection: sqlite3.Connection, event_id: str) -> list[str]:
    """The ids of the questions a session's registrations answered, as stored (a question
    gone from the events file keeps its answers)."""
    rows = connection.execute(
        "SELECT DISTINCT answers.question_id FROM answers "
        "JOIN registrations ON registrations.id = answers.registration_id "
        "WHERE registrations.event_id = ? ORDER BY answers.question_id",
        (event_id,),
    ).fetchall()
    return [question_id for (question_id,) in rows]


def stored_events(connection: sqlite3.Connection) -> dict[str, StoredEvent]:
    """Every session in the database, those gone from the events file included."""
    rows = connection.execute("SELECT id, title, timezone FROM events").fetchall()
    return {event_id: StoredEvent(title, timezone) for event_id, title, timezone in rows}


class Snapshot:
    """One read transaction: every query through it sees the same rows, however long the
    export takes and whatever the bot writes meanwhile."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def sessions(self, event_id: str | None) -> list[str]:
        """The one session, or every session by start."""
        if event_id is not None:
            return [event_id]
        rows = self._cursor.execute("SELECT id FROM events ORDER BY starts_at, id").fetchall()
        return [session for (session,) in rows]

    def records(self, session: str, *, batch: int = 1000) -> Iterator[ExportRecord]:
        """A session's registrations, withdrawn ones included, in the order they were made,
        `batch` rows at a time: memory stays flat however many there are."""
        with closing(self._cursor.connection.cursor()) as cursor:
            cursor.execute(f"SELECT {_COLUMNS} {_FROM} {_OF_SESSION}", (session,))
            while rows := cursor.fetchmany(batch):
                yield from map(_record, rows)

    def csv_rows(self, session: str, *, rule: str, batch: int = 100) -> Iterator[list[CsvRow]]:
        """The same registrations as `records`, as `CsvRow` tuples, a batch at a time."""
        dialect = getattr(self._cursor.connection, "dialect", "sqlite")
        with closing(self._cursor.connection.cursor()) as cursor:
            cursor.execute(
                _CSV_ROWS.format(cells=_CSV_CELLS[dialect]), {"session": session, "rule": rule}
            )
            while rows := cursor.fetchmany(batch):
                yield rows

    def record(self, registration_id: int) -> ExportRecord:
        row = self._cursor.execute(
            f"SELECT {_COLUMNS} {_FROM} WHERE registrations.id = ?", (registration_id,)
        ).fetchone()
        if row is None:
            raise LookupError(registration_id)
        return _record(row)


@contextmanager
def snapshot(connection: sqlite3.Connection) -> Iterator[Snapshot]:
    """Rows are read as plain tuples (the connection has no row factory)."""
    cursor = connection.cursor()
    cursor.execute("BEGIN")
    try:
        yield Snapshot(cursor)
    finally:
        cursor.execute("ROLLBACK")
        cursor.close()


def stream_registrations(
    connection: sqlite3.Connection, event_id: str | None, *, batch: int = 1000
) -> Iterator[ExportRecord]:
    """Every registration of one session (or of all, when `event_id` is None), withdrawn ones
    included, by session start, then in the order they were made, from one snapshot."""
    with snapshot(connection) as rows:
        for session in rows.sessions(event_id):
            yield from rows.records(session, batch=batch)
