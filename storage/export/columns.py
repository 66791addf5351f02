"""What each column of an export shows (the cell rule itself is bot/domain/cells.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from bot.domain.events import EventCatalog
from bot.domain.form import FORM
from bot.domain.texts import t
from bot.domain.validation import format_phone
from storage.export.source import (
    ExportRecord,
    StoredEvent,
    answered_questions,
    stored_events,
    stream_registrations,
)
from storage.export.times import LocalTimes

ExportFormat = Literal["csv", "xlsx"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "xlsx")


def _phone(record: ExportRecord) -> str:
    if record.phone is None:
        return ""
    return record.phone_display or format_phone(record.phone)


@dataclass(frozen=True, slots=True)
class Session:
    """What a row needs of its session: from the events file, or as mirrored in the database
    for a session gone from the file."""

    title: str
    local_time: LocalTimes  # a stored time, shown in the session's zone
    status_labels: dict[str, str]
    # The event's own questions, (id, Russian text), in file order: the «Ответы» cell.
    questions: tuple[tuple[str, str], ...] = ()
    # The standard questions kept in `answers` (their own columns): not in «Ответы».
    standard: frozenset[str] = frozenset()


@lru_cache(maxsize=1)  # the same row's JSON, read by each of its question columns
def parse_answers(stored: str | None) -> Mapping[str, str]:
    if not stored or stored == "{}":
        return {}
    parsed: dict[str, str] = json.loads(stored)
    return parsed


def answers_text(
    answers: Mapping[str, str],
    questions: Sequence[tuple[str, str]],
    standard: Collection[str] = (),
) -> str:
    """«Ответы» of an every-session export: "question: answer; …", the file's questions in
    order, then those gone from it by id; not the `standard` questions (columns of their
    own)."""
    if not answers:
        return ""
    texts = dict(questions)
    order = [key for key, _ in questions if key in answers]
    order += sorted(key for key in answers if key not in texts and key not in standard)
    return "; ".join(f"{texts.get(key, key)}: {answers[key]}" for key in order)


@dataclass(frozen=True, slots=True)
class Column:
    header: str  # key in bot.domain.texts
    value: Callable[[ExportRecord, Session], str]
    width: float  # XLSX column width, in characters of the default font
    every_session_only: bool = False  # shown only when every session is exported
    # An event question's column: its id; `header` is then the text itself, not a key.
    question: str | None = None
    # A column of a stored answer (an event question's, or a standard question's kept in
    # `answers`): its id there.
    answer: str | None = None


# One row per column, in file order: adding a column is one line here plus its header in
# the catalogue (and its part of the CSV line in csv.py).
COLUMNS: tuple[Column, ...] = (
    Column("export_column_session", lambda r, s: s.title, 40, every_session_only=True),
    Column("export_column_status", lambda r, s: s.status_labels.get(r.status, r.status), 14),
    Column("export_column_registered_at", lambda r, s: s.local_time(r.created_at), 29),
    # An erased registration's personal columns are empty (NULL).
    Column("export_column_full_name", lambda r, s: r.full_name or "", 36),
    Column("export_column_position", lambda r, s: r.position or "", 30),
    Column("export_column_organization", lambda r, s: r.organization or "", 40),
    Column("export_column_phone", lambda r, s: _phone(r), 19),
    Column("export_column_email", lambda r, s: r.email or "", 30),
    Column("export_column_user_id", lambda r, s: "" if r.user_id is None else str(r.user_id), 14),
    Column("export_column_username", lambda r, s: r.username or "", 20),
    Column("export_column_consent_at", lambda r, s: s.local_time(r.consent_at), 29),
    # Registrants who blocked the bot: announcements no longer reach them.
    Column(
        "export_column_unreachable",
        lambda r, s: t("export_unreachable_yes") if r.unreachable_at else "",
        14,
    ),
    # Where the person came from: the source in the session's link, empty without one.
    Column("export_column_source", lambda r, s: r.source or "", 16),
)
# Every session: the answers to each one's own questions in one cell; one session has a
# column per question instead (`question_column`). After the standard questions kept in
# `answers`, a column each (`field_column`).
ANSWERS_COLUMN = Column(
    "export_answers",
    lambda r, s: answers_text(parse_answers(r.answers), s.questions, s.standard),
    60,
    every_session_only=True,
)


def question_column(question_id: str, header: str) -> Column:
    return Column(
        header,
        lambda r, s: parse_answers(r.answers).get(question_id, ""),
        30,
        question=question_id,
        answer=question_id,
    )


def field_column(field_id: str) -> Column:
    """A standard question kept in `answers` (bot/domain/form.py: FormFields.in_answers),
    headed by its name in the catalogue (`field_<id>`)."""
    return Column(
        f"field_{field_id}",
        lambda r, s: parse_answers(r.answers).get(field_id, ""),
        30,
        answer=field_id,
    )


def columns_for(
    event_id: str | None,
    questions: Sequence[tuple[str, str]] = (),
    standard: Sequence[str] = FORM.in_answers,
) -> tuple[Column, ...]:
    """The columns of an export: the registration's own, a column per `standard` question
    kept in `answers`; then «Ответы» for every session, or for one session a column per
    question of it, (id, header) as `session_questions` gives them."""
    every = event_id is None
    own = tuple(column for column in COLUMNS if every or not column.every_session_only)
    own += tuple(field_column(key) for key in standard)
    if every:
        return (*own, ANSWERS_COLUMN)
    return own + tuple(question_column(key, header) for key, header in questions)


def session_questions(
    connection: sqlite3.Connection,
    catalog: EventCatalog,
    event_id: str,
    standard: Collection[str] = FORM.in_answers,
) -> list[tuple[str, str]]:
    """One session's questions for its export, (id, header): those of the events file,
    headed by their Russian text, then any gone from it whose answers are stored, by id
    (not the `standard` questions, which have columns of their own)."""
    event = catalog.get(event_id)
    listed = [(q.id, q.text) for q in event.questions] if event else []
    known = {key for key, _ in listed}.union(standard)
    return listed + [
        (key, key) for key in answered_questions(connection, event_id) if key not in known
    ]


def header_row(columns: Sequence[Column]) -> list[str]:
    return [column.header if column.question else t(column.header) for column in columns]


def status_labels() -> dict[str, str]:
    statuses = ("confirmed", "waiting", "withdrawn")
    return {status: t(f"export_status_{status}") for status in statuses}


def session_of(
    event_id: str,
    catalog: EventCatalog,
    stored: dict[str, StoredEvent],
    labels: dict[str, str],
    standard: frozenset[str] = frozenset(),
) -> Session:
    """The session as the events file has it, else as the database last saw it."""
    event = catalog.get(event_id)
    if event is not None:
        questions = tuple((question.id, question.text) for question in event.questions)
        return Session(event.title, LocalTimes(event.timezone), labels, questions, standard)
    title, zone = stored[event_id]
    return Session(title, LocalTimes(ZoneInfo(zone)), labels, standard=standard)


def build_row(record: ExportRecord, session: Session, columns: Sequence[Column]) -> list[str]:
    """The values of one registration, formatted for people; the writer applies `cells`."""
    return [column.value(record, session) for column in columns]


def export_filename(event_id: str | None, fmt: ExportFormat, today: date) -> str:
    """registrations_forum-2026_2026-11-26.csv; "all" for every session."""
    return f"registrations_{event_id or 'all'}_{today.isoformat()}.{fmt}"


def export_rows(
    connection: sqlite3.Connection,
    catalog: EventCatalog,
    event_id: str | None,
    columns: Sequence[Column],
) -> Iterator[list[str]]:
    """The rows of an export, formatted for people; the writer applies `cells`."""
    sessions = Sessions(connection, catalog, columns)
    for record in stream_registrations(connection, event_id):
        yield build_row(record, sessions[record.event_id], columns)


class Sessions(dict[str, Session]):
    """Each session of an export, looked up once."""

    def __init__(
        self, connection: sqlite3.Connection, catalog: EventCatalog, columns: Sequence[Column]
    ) -> None:
        super().__init__()
        self._catalog = catalog
        self._stored = stored_events(connection)
        self._labels = status_labels()
        # The standard questions with columns of their own.
        self._standard = frozenset(
            column.answer for column in columns if column.answer and not column.question
        )

    def __missing__(self, event_id: str) -> Session:
        session = self[event_id] = session_of(
            event_id, self._catalog, self._stored, self._labels, self._standard
        )
        return session
