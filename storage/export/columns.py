"""What each column of an export shows (the cell rule itself is bot/domain/cells.py)."""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata

from bot.domain.events import EventCatalog
from bot.domain.texts import t
from bot.domain.validation import format_phone
from storage.export.source import (
    ExportRecord,
    StoredEvent,
    stored_events,
    stream_registrations,
)
from storage.export.times import LocalTimes

ExportFormat = Literal["csv", "xlsx"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "xlsx")


class _PhoneRule(NamedTuple):
    leading: re.Pattern[str] | None
    pattern: re.Pattern[str]
    rule: str  # "\\1 \\2-\\3-\\4", as phonenumbers passes it to re.sub
    template: str | None  # the same as str.format template: "{0} {1}-{2}-{3}"


def _format_template(rule: str) -> str | None:
    parts = re.split(r"\\([1-9])", rule)
    literals = parts[::2]
    if any("\\" in literal for literal in literals):
        return None
    escaped = [literal.replace("{", "{{").replace("}", "}}") for literal in literals]
    groups = [f"{{{int(number) - 1}}}" for number in parts[1::2]]
    return "".join(part for pair in zip(escaped, [*groups, ""], strict=True) for part in pair)


@functools.cache
def _international_rules(country_code: int) -> tuple[_PhoneRule, ...]:
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region.upper())
    if metadata is None:
        return ()
    formats = metadata.intl_number_format or metadata.number_format
    return tuple(
        _PhoneRule(
            re.compile(rule.leading_digits_pattern[-1]) if rule.leading_digits_pattern else None,
            re.compile(rule.pattern),
            rule.format,
            _format_template(rule.format),
        )
        for rule in formats
        if rule.pattern is not None and rule.format is not None
    )


def phone_for_people(e164: str) -> str:
    """`format_phone`, much faster (bench/ANALYSIS.md): the same metadata, the same choice of rule.

    `format_phone` parses the number anew, which alone would dominate the time of a large export
    on a 100,000-row export. A stored phone is E.164 already, so this applies phonenumbers'
    own INTERNATIONAL rule (the first format whose leading digits and pattern fit the
    national number, then `re.sub`) with the patterns compiled once and the substitution as
    a str.format. Anything unusual falls back to `format_phone`; a test checks that both
    agree on every example number phonenumbers has.
    """
    digits = e164[1:]
    if e164[:1] != "+" or not (digits.isascii() and digits.isdigit()) or digits[0] == "0":
        return format_phone(e164)
    # Country calling codes are prefix-free, 1 to 3 digits, never starting with 0.
    for length in (1, 2, 3):
        code = int(digits[:length])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return format_phone(e164)
    national = digits[length:]
    rules = _international_rules(code)
    if not national or not rules:
        return format_phone(e164)
    for leading, pattern, rule, template in rules:
        if leading is not None and not leading.match(national):
            continue
        # phonenumbers takes the first rule whose pattern matches the whole number, then
        # re.sub()s it, which replaces what match() finds first. When that match is the whole
        # number, the rule fits and the result is the template filled with its groups ("" for
        # a group not taken).
        match = pattern.match(national)
        if match is not None and match.end() == len(national) and template is not None:
            return f"+{code} " + template.format(*match.groups(""))
        if pattern.fullmatch(national):
            return f"+{code} {pattern.sub(rule, national)}"
    return f"+{code} {national}"


def _phone(record: ExportRecord) -> str:
    if record.phone is None:
        return ""
    return record.phone_display or phone_for_people(record.phone)


@dataclass(frozen=True, slots=True)
class Session:
    """What a row needs of its session: from the events file, or as mirrored in the database
    for a session gone from the file."""

    title: str
    local_time: LocalTimes  # a stored time, shown in the session's zone
    status_labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class Column:
    header: str  # key in bot.domain.texts
    value: Callable[[ExportRecord, Session], str]
    width: float  # XLSX column width, in characters of the default font
    every_session_only: bool = False  # shown only when every session is exported


# One row per column, in file order: adding a column is one line here plus its header in
# bot/domain/texts.py.
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


def columns_for(event_id: str | None) -> tuple[Column, ...]:
    every = event_id is None
    return tuple(column for column in COLUMNS if every or not column.every_session_only)


def header_row(columns: Sequence[Column]) -> list[str]:
    return [t(column.header) for column in columns]


def status_labels() -> dict[str, str]:
    statuses = ("confirmed", "waiting", "withdrawn")
    return {status: t(f"export_status_{status}") for status in statuses}


def session_of(
    event_id: str,
    catalog: EventCatalog,
    stored: dict[str, StoredEvent],
    labels: dict[str, str],
) -> Session:
    """The session as the events file has it, else as the database last saw it."""
    event = catalog.get(event_id)
    if event is not None:
        return Session(event.title, LocalTimes(event.timezone), labels)
    title, zone = stored[event_id]
    return Session(title, LocalTimes(ZoneInfo(zone)), labels)


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
    sessions = Sessions(connection, catalog)
    for record in stream_registrations(connection, event_id):
        yield build_row(record, sessions[record.event_id], columns)


class Sessions(dict[str, Session]):
    """Each session of an export, looked up once."""

    def __init__(self, connection: sqlite3.Connection, catalog: EventCatalog) -> None:
        super().__init__()
        self._catalog = catalog
        self._stored = stored_events(connection)
        self._labels = status_labels()

    def __missing__(self, event_id: str) -> Session:
        session = self[event_id] = session_of(event_id, self._catalog, self._stored, self._labels)
        return session
