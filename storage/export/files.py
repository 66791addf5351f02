"""Exports of registrations to CSV and XLSX: what each cell holds, and the two writers.

Runs off the event loop (`asyncio.to_thread(export_to_file, ...)`) on a read-only
connection of its own, and streams: rows go from the SQLite cursor to the file in batches, so
memory stays flat whatever the number of registrations.
"""

from __future__ import annotations

import codecs
import functools
import os
import re
import sqlite3
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Generic, Literal, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata

from bot.domain.cells import CSV_DELIMITER, CSV_RULE, cells, csv_line
from bot.domain.events import EventCatalog
from bot.domain.texts import t
from bot.domain.timefmt import zone_label
from bot.domain.validation import format_phone
from storage.export.source import (
    ExportRecord,
    StoredEvent,
    open_read_only,
    snapshot,
    stored_events,
    stream_registrations,
)

ExportFormat = Literal["csv", "xlsx"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "xlsx")

# Rows written at once: few system calls, and each batch (a CSV line is about 700 bytes, an
# XLSX row about 1.5 KB of XML, twice that as a str of Cyrillic) well under glibc's 128 KB
# mmap threshold. Above it every batch is a fresh mmap, zero-filled page by page: 500 rows
# at a time cost 35,000 page faults and about 1 s more for a 100,000-row XLSX.
_ROWS_PER_WRITE = 100
_XLSX_ROWS_PER_WRITE = 20

Target = Path | BinaryIO


class UnknownEvent(LookupError):
    def __init__(self, event_id: str) -> None:
        super().__init__(f"unknown session {event_id!r}")
        self.event_id = event_id


# --- What each column shows (the cell rule itself is bot/domain/cells.py) ----------------------


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
    """`format_phone`, about ten times faster: the same metadata, the same choice of rule.

    `format_phone` parses the number anew (about 50 µs), which alone would spend five seconds
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


def local_time(stored: str, zone: ZoneInfo) -> str:
    """A stored time in the session's zone, zone named: "26.11.2026 12:00 (МСК, UTC+3)"."""
    local = datetime.fromisoformat(stored).astimezone(zone)
    return (
        f"{local.day:02d}.{local.month:02d}.{local.year} {local.hour:02d}:{local.minute:02d} "
        f"({zone_label(local)})"
    )


_UTC_HOUR = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}")


@functools.cache
def _shifted_minutes(shift: int) -> dict[str, tuple[int, str]]:
    """Stored minutes ("07") -> (0 for the local hour the UTC hour starts in, 1 for the next;
    the local minutes), in a zone `shift` minutes past a whole-hour offset (India: 30)."""
    return {
        f"{minute:02d}": ((minute + shift) // 60, f"{(minute + shift) % 60:02d}")
        for minute in range(60)
    }


def _hour_prefix(moment: datetime) -> str:
    return f"{moment.day:02d}.{moment.month:02d}.{moment.year} {moment.hour:02d}:"


_Text = TypeVar("_Text", str, bytes)
_Other = TypeVar("_Other")


# What a UTC hour's times show, worked out once: the local date-and-hour prefixes it starts in
# and ends in (the same but in a zone whose offset is not whole hours), the zone label after
# the time (" (МСК, UTC+3)"), `_shifted_minutes(shift)`, and the shift itself. A plain tuple:
# the hot loop indexes it, and Python indexes an exact tuple fastest.
HourParts = tuple[tuple[_Text, _Text], _Text, dict[str, tuple[int, _Text]], int]


class _PerHour(Generic[_Text, _Other]):
    """Texts of stored times put together from parts worked out once per UTC hour
    (`_hour`); a time in an hour without them, or not as `utc_iso` writes it, goes to
    `_other`. The one hot path of `LocalTimes` and `CsvTimes`."""

    def __init__(self) -> None:
        # UTC hour and colon ("2026-11-26T09:") -> its parts, or None when it has no fast
        # path.
        self._hours: dict[str, HourParts[_Text] | None] = {}

    def __call__(self, stored: str) -> _Text | _Other:
        parts = self._hours.get(stored[:14])
        if parts is not None and stored.endswith("+00:00"):
            minutes = parts[2].get(stored[14:16])
            if minutes is not None:
                return parts[0][minutes[0]] + minutes[1] + parts[1]
        hour = stored[:14]
        if hour not in self._hours and self.parts(hour) is not None:
            return self(stored)
        return self._other(stored)

    def parts(self, hour: str) -> HourParts[_Text] | None:
        """The parts of a UTC hour and colon as stored ("2026-11-26T09:"); None when the
        hour has no fast path."""
        if hour not in self._hours:
            self._hours[hour] = self._hour(hour) if hour[13:] == ":" else None
        return self._hours[hour]

    def _hour(self, hour: str) -> HourParts[_Text] | None:
        raise NotImplementedError

    def _other(self, stored: str) -> _Other:
        raise NotImplementedError


class LocalTimes(_PerHour[str, str]):
    """`local_time` in one zone for many times stored by `utc_iso`, about ten times faster.

    zoneinfo and `zone_label` cost microseconds a call, and an export shows two times a row.
    Within one UTC hour whose two ends have the same offset (whole minutes) and the same label
    (no zone changes its offset twice within an hour), the local time is one of two local
    dates and hours (one, for a whole-hour offset) plus the stored minutes shifted by the
    offset's odd minutes: worked out once per hour, then a lookup and a concatenation. Any
    other hour, and any time not in `utc_iso` form, goes through `local_time`.
    """

    def __init__(self, zone: ZoneInfo) -> None:
        super().__init__()
        self._zone = zone

    def _other(self, stored: str) -> str:
        return local_time(stored, self._zone)

    def _hour(self, hour: str) -> HourParts[str] | None:
        if not _UTC_HOUR.fullmatch(hour[:13]):
            return None
        utc_start = datetime.fromisoformat(f"{hour}00:00+00:00")
        start = utc_start.astimezone(self._zone)
        end = (utc_start + timedelta(minutes=59, seconds=59)).astimezone(self._zone)
        offset = start.utcoffset()
        label = zone_label(start)
        if offset is None or offset % timedelta(minutes=1) or end.utcoffset() != offset:
            return None
        if zone_label(end) != label:
            return None
        # The UTC hour starts `shift` minutes into a local hour and ends in the next one.
        shift = offset // timedelta(minutes=1) % 60
        first = start.replace(minute=0, second=0, tzinfo=None)
        before = _hour_prefix(first)
        after = _hour_prefix(first + timedelta(hours=1)) if shift else before
        return (before, after), f" ({label})", _shifted_minutes(shift), shift


@functools.cache
def _shifted_minute_bytes(shift: int) -> dict[str, tuple[int, bytes]]:
    """`_shifted_minutes`, the local minutes encoded."""
    return {
        stored: (which, local.encode())
        for stored, (which, local) in _shifted_minutes(shift).items()
    }


def _as_cell(text: str) -> bytes | None:
    """`text` as it goes into a CSV line, when it goes as it is (nothing to flatten, quote
    or neutralise), else None."""
    return text.encode() if csv_line(cells([text], for_csv=True)) == text else None


class CsvTimes(_PerHour[bytes, bytes | None]):
    """`LocalTimes` as they go into a CSV line, UTF-8 bytes: the same per-hour parts, encoded
    once. None for a time that would not go into the line as it is (no time we write;
    checked once per hour all the same)."""

    def __init__(self, times: LocalTimes) -> None:
        super().__init__()
        self._times = times

    def _other(self, stored: str) -> bytes | None:
        return _as_cell(self._times(stored))

    def _hour(self, hour: str) -> HourParts[bytes] | None:
        parts = self._times.parts(hour)
        if parts is None:
            return None
        (before, after), zone, _, shift = parts
        if any(_as_cell(prefix + "00" + zone) is None for prefix in {before, after}):
            return None
        prefixes = (before.encode(), after.encode())
        return prefixes, zone.encode(), _shifted_minute_bytes(shift), shift


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
    Column("export_column_full_name", lambda r, s: r.full_name, 36),
    Column("export_column_position", lambda r, s: r.position, 30),
    Column("export_column_organization", lambda r, s: r.organization, 40),
    Column("export_column_phone", lambda r, s: r.phone_display or phone_for_people(r.phone), 19),
    Column("export_column_email", lambda r, s: r.email, 30),
    Column("export_column_user_id", lambda r, s: str(r.user_id), 14),
    Column("export_column_username", lambda r, s: r.username or "", 20),
    Column("export_column_consent_at", lambda r, s: s.local_time(r.consent_at), 29),
    # Registrants who blocked the bot: announcements no longer reach them.
    Column(
        "export_column_unreachable",
        lambda r, s: t("export_unreachable_yes") if r.unreachable_at else "",
        14,
    ),
)


def columns_for(event_id: str | None) -> tuple[Column, ...]:
    every = event_id is None
    return tuple(column for column in COLUMNS if every or not column.every_session_only)


def header_row(columns: Sequence[Column]) -> list[str]:
    return [t(column.header) for column in columns]


def status_labels() -> dict[str, str]:
    return {status: t(f"export_status_{status}") for status in ("confirmed", "withdrawn")}


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


# --- Writers ----------------------------------------------------------------------------


@contextmanager
def _binary_output(target: Target) -> Iterator[BinaryIO]:
    if not isinstance(target, Path):
        yield target
        return
    # Written beside the target and renamed when complete, so a failed export leaves no
    # half-file; personal data, so the file is its owner's only from birth, like the database.
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_csv(target: Target, header: Sequence[str], batches: Iterable[list[bytes]]) -> int:
    """UTF-8 with a BOM (so Excel recognises the encoding), ";"-separated, CRLF line ends.
    `batches` are lists of lines, each a `csv_line` encoded, as `csv_lines` yields them;
    each batch is written at once. Returns the number of lines."""
    count = 0
    with _binary_output(target) as stream:
        stream.write(codecs.BOM_UTF8 + csv_line(cells(header, for_csv=True)).encode() + b"\r\n")
        for lines in batches:
            if lines:
                stream.write(b"\r\n".join(lines) + b"\r\n")
                count += len(lines)
    return count


_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_CONTENT_TYPES = (
    _XML_DECLARATION
    + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "</Types>"
)
_ROOT_RELS = (
    _XML_DECLARATION + f'<Relationships xmlns="{_PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK_RELS = (
    _XML_DECLARATION + f'<Relationships xmlns="{_PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_REL_NS}/styles" Target="styles.xml"/>'
    "</Relationships>"
)
# Style 1: the header, bold; style 2: the data. Both use number format 49 ("@", Text), so a
# phone typed over in Excel stays text as well.
_STYLES = (
    _XML_DECLARATION + f'<styleSheet xmlns="{_MAIN_NS}">'
    '<fonts count="2">'
    '<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    "</fonts>"
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="3">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="49" fontId="1" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" '
    'applyFont="1"/>'
    '<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)


def _column_letters(count: int) -> list[str]:
    letters = []
    for number in range(1, count + 1):
        name = ""
        while number:
            number, rest = divmod(number - 1, 26)
            name = chr(ord("A") + rest) + name
        letters.append(name)
    return letters


def _xml_text(value: str) -> str:
    if "&" in value or "<" in value or ">" in value:
        value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value


def _xml_row(number: int, letters: Sequence[str], values: Sequence[str], style: int) -> str:
    texts = cells(values, for_csv=False)
    joined = "".join(texts)
    if "&" in joined or "<" in joined or ">" in joined:
        texts = [_xml_text(text) for text in texts]
    # Rows are built as one string per cell and joined: the common case, with no value
    # starting or ending with white space, has no per-cell attribute to decide.
    head = f'{number}" s="{style}" t="inlineStr"><is><t>'
    if any([text.strip() != text for text in texts]):
        # XML readers may drop white space at the ends of an element without this.
        spaced = f'{number}" s="{style}" t="inlineStr"><is><t xml:space="preserve">'
        opened = [spaced if text.strip() != text else head for text in texts]
    else:
        opened = [head] * len(texts)
    row = "".join(
        [
            f'<c r="{letter}{middle}{text}</t></is></c>'
            for letter, middle, text in zip(letters, opened, texts, strict=True)
        ]
    )
    return f'<row r="{number}">{row}</row>'


def write_xlsx(
    target: Target,
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    widths: Sequence[float],
    sheet_name: str,
) -> int:
    """One sheet: a bold header row, frozen; fixed column widths; every value an inline text
    cell (never a formula, never a number). Streams the sheet into the zip row by row, so
    memory stays flat; returns the number of data rows.

    Inline strings rather than a shared-strings table: that table would have to be held in
    memory whole and written after the sheet. Spreadsheet programs read both alike.
    """
    letters = _column_letters(len(header))
    if len(widths) != len(header):
        raise ValueError("one width per column")
    workbook = (
        _XML_DECLARATION + f'<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}"><sheets>'
        f'<sheet name="{_xml_text(sheet_name)}" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    columns = "".join(
        f'<col min="{number}" max="{number}" width="{width}" customWidth="1" style="2"/>'
        for number, width in enumerate(widths, start=1)
    )
    sheet_start = (
        _XML_DECLARATION + f'<worksheet xmlns="{_MAIN_NS}">'
        '<sheetViews><sheetView tabSelected="1" workbookViewId="0">'
        '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
        '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
        "</sheetView></sheetViews>"
        f'<sheetFormatPr defaultRowHeight="15"/><cols>{columns}</cols><sheetData>'
    )
    # Ids and phones are text on purpose: no green "number stored as text" triangles.
    sheet_end = (
        "</sheetData><ignoredErrors>"
        f'<ignoredError sqref="A1:{letters[-1]}1048576" numberStoredAsText="1"/>'
        "</ignoredErrors></worksheet>"
    )
    count = 0
    with (
        _binary_output(target) as stream,
        # Level 1: the sheet is repetitive XML, so the fastest level is only ~10% larger.
        zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
    ):
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", workbook)
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        archive.writestr("xl/styles.xml", _STYLES)
        with archive.open("xl/worksheets/sheet1.xml", "w") as sheet:
            chunk = [sheet_start, _xml_row(1, letters, header, 1)]
            for count, row in enumerate(rows, start=1):
                chunk.append(_xml_row(count + 1, letters, row, 2))
                if len(chunk) >= _XLSX_ROWS_PER_WRITE:
                    sheet.write("".join(chunk).encode())
                    chunk.clear()
            chunk.append(sheet_end)
            sheet.write("".join(chunk).encode())
    return count


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


def csv_lines(
    connection: sqlite3.Connection,
    catalog: EventCatalog,
    event_id: str | None,
    columns: Sequence[Column],
) -> Iterator[list[bytes]]:
    """The CSV lines of an export, UTF-8, a batch at a time: each registration's
    `csv_line(cells(build_row(...)))`.

    A 100,000-row export spends its time per row, so the common row is put together from
    parts that need nothing more: the session and status as made once per session, the
    times from `CsvTimes`, and the registrant's own values as stored with them, made by
    today's rule (`registrant_csv`). `cells` and `csv_line` treat each value on its own, so
    the parts joined by the delimiter are the line. Any other row (no stored text, an
    unknown status, a time that needs more) is read whole and goes the general way. A test
    checks both ways agree on arbitrary rows; a column added to COLUMNS must be added here
    too, in its place.
    """
    sessions = Sessions(connection, catalog)
    delimiter = CSV_DELIMITER.encode()
    unreachable = _as_cell(t("export_unreachable_yes"))
    with snapshot(connection) as rows:
        for event in rows.sessions(event_id):
            session = sessions[event]
            # Every session export: the session column, the same for all its rows. (csv.writer
            # writes a lone empty value as "", an empty one among others as nothing.)
            title = b""
            if event_id is None:
                text = csv_line(cells([session.title], for_csv=True)) if session.title else ""
                title = (text + CSV_DELIMITER).encode()
            heads = {
                status: title + label
                for status, text in session.status_labels.items()
                if (label := _as_cell(text)) is not None
            }
            times = CsvTimes(session.local_time)
            for batch in rows.csv_rows(event, rule=CSV_RULE, batch=_ROWS_PER_WRITE):
                lines = []
                for registration_id, status, created_at, consent_at, registrant, blocked in batch:
                    head = heads.get(status)
                    created = times(created_at)
                    consent = times(consent_at)
                    if (
                        head is None
                        or registrant is None
                        or created is None
                        or consent is None
                        or unreachable is None
                    ):
                        record = rows.record(registration_id)
                        line = csv_line(cells(build_row(record, session, columns), for_csv=True))
                        lines.append(line.encode())
                        continue
                    lines.append(
                        delimiter.join(
                            (head, created, registrant, consent, unreachable if blocked else b"")
                        )
                    )
                yield lines


# --- The whole export -------------------------------------------------------------------


def export_to_file(
    database_path: Path | str,
    catalog: EventCatalog,
    event_id: str | None,
    fmt: ExportFormat,
    output: Target,
) -> int:
    """Write the registrations of one session (or of all, when `event_id` is None) to
    `output`; returns the number of rows written. Blocking: run it with asyncio.to_thread.

    Raises UnknownEvent for a session neither in the events file nor in the database, before
    `output` is touched.
    """
    columns = columns_for(event_id)
    with open_read_only(database_path) as connection:
        if (
            event_id is not None
            and catalog.get(event_id) is None
            and event_id not in stored_events(connection)
        ):
            raise UnknownEvent(event_id)
        header = header_row(columns)
        if fmt == "csv":
            return write_csv(output, header, csv_lines(connection, catalog, event_id, columns))
        return write_xlsx(
            output,
            header,
            export_rows(connection, catalog, event_id, columns),
            widths=[column.width for column in columns],
            sheet_name=t("export_sheet_name"),
        )
