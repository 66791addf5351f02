"""Exports: the cell rule, the fast formatters against the reference ones, the CSV and XLSX files
read back and compared with the database, and `python -m bot export` as an operator runs it."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import random
import sqlite3
import stat
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

import storage.export.times
from bot.domain.cells import CSV_DELIMITER, CSV_RULE, cell, cells, csv_line, registrant_csv
from bot.domain.events import EventCatalog, parse_events
from bot.domain.validation import format_phone, format_phone_by_parsing
from storage.database import open_database
from storage.erasure import PersonalData
from storage.events import EventsRepository
from storage.export import UnknownEvent, export_filename, export_to_file
from storage.export.columns import ANSWERS_COLUMN, COLUMNS, columns_for, export_rows
from storage.export.csv import csv_lines
from storage.export.source import SchemaMismatch, open_read_only
from storage.export.times import CsvTimes, LocalTimes, local_time
from storage.migrations import LATEST_VERSION
from storage.registrations import NewRegistration, Registrations
from tests.helpers import expected_rows, header

MOSCOW = ZoneInfo("Europe/Moscow")
FORMULA = '=HYPERLINK("http://x","y")'

SESSIONS_TOML = """
[[events]]
id = "forum-2026"
title = "Стратегическая сессия «ЭтНик»"
starts_at = 2026-12-10T12:00:00
timezone = "Europe/Moscow"
registration_deadline = 2026-12-08T23:59:00
location = "Онлайн"

[[events]]
id = "sib-2026"
title = "Сессия в Новосибирске"
starts_at = 2026-12-20T10:00:00
timezone = "Asia/Novosibirsk"
registration_deadline = 2026-12-18T23:59:00
location = "Новосибирск"
"""
# Gone from the file since: its registrations stay and are exported with its stored details.
OLD_SESSION_TOML = """
[[events]]
id = "old-2025"
title = "Прошлая сессия"
starts_at = 2025-06-01T10:00:00
timezone = "Asia/Vladivostok"
registration_deadline = 2025-05-30T23:59:00
location = "Онлайн"
"""


# --- The cell rule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "in_csv", "in_xlsx"),
    [
        ("Иванова Мария Петровна", "Иванова Мария Петровна", "Иванова Мария Петровна"),
        ("<html>", "<html>", "<html>"),
        (FORMULA, "'" + FORMULA, FORMULA),
        ("+7 912 345-67-89", "'+7 912 345-67-89", "+7 912 345-67-89"),
        ("-5", "'-5", "-5"),
        ("@user", "'@user", "@user"),
        ("\t=1+1", "' =1+1", " =1+1"),
        ("\r\n=cmd|' /C calc'!A0", "' =cmd|' /C calc'!A0", " =cmd|' /C calc'!A0"),
        ("строка 1\r\nстрока 2", "строка 1 строка 2", "строка 1 строка 2"),
        ("a\t\t\nb\u2028c", "a b c", "a b c"),
        ("nul\x00and\x1bescape", "nul and escape", "nul and escape"),
        ("e-mail: a@b.ru; x=1", "e-mail: a@b.ru; x=1", "e-mail: a@b.ru; x=1"),
        ("", "", ""),
        (None, "", ""),
        (123456789, "123456789", "123456789"),
    ],
)
def test_cell_flattens_and_neutralises_when_value_is_tricky(
    value: object, in_csv: str, in_xlsx: str
) -> None:
    assert cell(value, for_csv=True) == in_csv
    assert cell(value, for_csv=False) == in_xlsx


def test_cell_prefixes_every_white_space_that_flattening_leaves() -> None:
    spaces = [chr(code) for code in range(0x110000) if chr(code).isspace()]
    kept = [space for space in spaces if cell(space, for_csv=False) == space]

    assert " " in kept
    assert "\xa0" in kept
    assert all(cell(space + "=1+1", for_csv=True) == f"'{space}=1+1" for space in kept)


def test_export_filename_names_session_and_date() -> None:
    day = date(2026, 11, 26)

    assert export_filename("forum-2026", "csv", day) == "registrations_forum-2026_2026-11-26.csv"
    assert export_filename(None, "xlsx", day) == "registrations_all_2026-11-26.xlsx"


def test_columns_add_session_column_only_when_every_session() -> None:
    assert [c.header for c in columns_for(None)] == [c.header for c in (*COLUMNS, ANSWERS_COLUMN)]
    assert "export_column_session" not in [c.header for c in columns_for("forum-2026")]
    # every session: the session column and the «Ответы» column
    assert len(columns_for(None)) == len(columns_for("forum-2026")) + 2


# --- The fast formatters equal the reference ones -------------------------------------------


def _example_numbers() -> list[str]:
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.supported_types_for_region(region):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                numbers.append(number)
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            numbers.append(number)
    e164 = phonenumbers.PhoneNumberFormat.E164
    result = [phonenumbers.format_number(number, e164) for number in numbers]
    # Russian numbers take several rules by their leading digits: every 3-digit prefix.
    rng = random.Random(7)
    result += [f"+7{prefix}{rng.randrange(10**7):07d}" for prefix in range(300, 1000)]
    return result


def test_format_phone_equals_phonenumbers_own_for_every_example_number() -> None:
    numbers = _example_numbers()

    assert len(numbers) > 1500
    assert [format_phone(n) for n in numbers] == [format_phone_by_parsing(n) for n in numbers]


@pytest.mark.parametrize(
    "odd", ["", "+", "79123456789", "+7912abc", "+0123", "+01", "+999123", "+٧٩١٢٣٤٥٦٧٨٩"]
)
def test_format_phone_falls_back_when_not_e164(odd: str) -> None:
    assert format_phone(odd) == format_phone_by_parsing(odd)


def test_local_time_names_the_zone() -> None:
    assert local_time("2026-11-26T09:00:00+00:00", MOSCOW) == "26.11.2026 12:00 (МСК, UTC+3)"
    assert (
        local_time("2026-11-26T09:00:00.123456+00:00", ZoneInfo("Asia/Novosibirsk"))
        == "26.11.2026 16:00 (МСК+4, UTC+7)"
    )


def _transitions(zone: ZoneInfo, first_year: int, last_year: int) -> list[datetime]:
    """The UTC hours in which the zone's offset changes (one change a day at most)."""
    day = datetime(first_year, 1, 1, tzinfo=UTC)
    found = []
    while day.year <= last_year:
        after = day + timedelta(days=1)
        offset = day.astimezone(zone).utcoffset()
        if after.astimezone(zone).utcoffset() != offset:
            hours = (day + timedelta(hours=hour) for hour in range(1, 25))
            found.append(next(h for h in hours if h.astimezone(zone).utcoffset() != offset))
        day = after
    return found


@pytest.mark.parametrize(
    "zone",
    [
        "Europe/Moscow",  # 2011 and 2014 changes
        "Europe/Samara",  # stayed at UTC+4 when Moscow left it: "МСК" became "МСК+1"
        "Europe/Berlin",
        "America/St_Johns",  # UTC-3:30, switching at :30 UTC
        "Australia/Lord_Howe",  # a 30-minute daylight saving shift
        "Asia/Kathmandu",  # UTC+5:45
        "UTC",
    ],
)
def test_local_times_equal_local_time_around_every_transition(zone: str) -> None:
    tz = ZoneInfo(zone)
    times = LocalTimes(tz)
    moments = []
    for transition in _transitions(tz, 2010, 2027):
        moments += [transition + timedelta(minutes=7 * step) for step in range(-18, 18)]
    rng = random.Random(zone)
    start = datetime(2010, 1, 1, tzinfo=UTC)
    moments += [start + timedelta(seconds=rng.randrange(18 * 365 * 86400)) for _ in range(200)]
    stored = [m.isoformat() for m in moments]
    stored += [(m + timedelta(microseconds=123456)).isoformat() for m in moments[:50]]

    assert [times(s) for s in stored] == [local_time(s, tz) for s in stored]
    # The same as CSV cell bytes, from a fresh cache of each.
    csv_times = CsvTimes(LocalTimes(tz))
    assert [csv_times(s) for s in stored] == [local_time(s, tz).encode() for s in stored]


@pytest.mark.parametrize(
    "zone", ["Europe/Moscow", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns"]
)
def test_local_times_work_an_hour_out_once_whatever_the_offsets_minutes(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tz = ZoneInfo(zone)
    slow: list[str] = []

    def counted(stored: str, zone: ZoneInfo) -> str:
        slow.append(stored)
        return local_time(stored, zone)

    monkeypatch.setattr(storage.export.times, "local_time", counted)
    stored = [f"2026-11-26T09:{m:02d}:{s:02d}.5+00:00" for m in range(60) for s in (0, 59)]
    times = LocalTimes(tz)
    csv_times = CsvTimes(LocalTimes(tz))

    texts = [times(s) for s in stored]
    encoded = [csv_times(s) for s in stored]

    assert slow == []  # one hour, worked out once: no time went through local_time
    assert texts == [local_time(s, tz) for s in stored]
    assert encoded == [text.encode() for text in texts]


def test_local_times_falls_back_when_not_stored_as_utc() -> None:
    times = LocalTimes(MOSCOW)
    times("2026-11-26T09:00:00+00:00")  # caches the UTC hour 09

    assert times("2026-11-26T09:30:00+03:00") == "26.11.2026 09:30 (МСК, UTC+3)"
    assert times("2026-11-26 09:30:00+00:00") == "26.11.2026 12:30 (МСК, UTC+3)"


# --- Files compared with the database -------------------------------------------------------


@dataclass
class Exported:
    path: Path  # the database
    catalog: EventCatalog


def _new(user_id: int, event_id: str, **fields: str | None) -> NewRegistration:
    values: dict[str, str | None] = {
        "full_name": "Иванова Мария Петровна",
        "position": "Директор",
        "organization": "ООО «Ромашка»",
        "phone": "+79123456789",
        "email": f"user{user_id}@example.ru",
        "username": f"user{user_id}",
    }
    values.update(fields)
    return NewRegistration(
        event_id=event_id,
        user_id=user_id,
        username=values["username"],
        telegram_name="Мария",
        full_name=str(values["full_name"]),
        position=str(values["position"]),
        organization=str(values["organization"]),
        phone=str(values["phone"]),
        email=str(values["email"]),
        consent_at=datetime(2026, 11, 26, 8, 58, 30, tzinfo=UTC),
        consent_version="v1",
    )


@pytest.fixture
async def exported(tmp_path: Path) -> AsyncIterator[Exported]:
    """A real database file: two sessions in the file, one gone from it, tricky values."""
    path = tmp_path / "data" / "bot.sqlite3"
    file_path = tmp_path / "events.toml"
    old = parse_events(OLD_SESSION_TOML, file=file_path, default_zone=MOSCOW)
    catalog = parse_events(SESSIONS_TOML, file=file_path, default_zone=MOSCOW)
    at = datetime(2026, 11, 26, 9, 0, 15, tzinfo=UTC)
    async with open_database(path) as db:
        events = EventsRepository(db)
        registrations = Registrations(db)
        await events.sync(old, now=at)
        await registrations.create(_new(900, "old-2025", phone="+79001234567"), now=at)
        await events.sync(catalog, now=at)
        await registrations.create(_new(1001, "forum-2026", organization="<html> & Co"), now=at)
        await registrations.create(
            _new(
                1002,
                "forum-2026",
                full_name=FORMULA,
                position="-5",
                organization="@user",
                phone="+375291234567",
                username=None,
            ),
            now=at + timedelta(minutes=1),
        )
        third = await registrations.create(
            _new(
                1003,
                "forum-2026",
                position="Менеджер\nпо связям",
                organization="\tООО «Тест»\r\n=1+1",
                phone="+78452123456",
            ),
            now=at + timedelta(hours=5, minutes=30),
        )
        # Withdrawn before withdrawal erased (schema 11): its values stay, to be exported.
        await db.execute(
            "UPDATE registrations SET status = 'withdrawn', updated_at = ? WHERE id = ?",
            ((at + timedelta(hours=6)).isoformat(), third.id),
        )
        await registrations.create(
            _new(
                1004,
                "sib-2026",
                full_name="Ким Ия",
                position=" Директор ",
                organization='ООО "Рога; и копыта"',
                phone="+998901234567",
            ),
            now=at + timedelta(days=3),
        )
        # 1001 blocked the bot: the export says so.
        await db.execute(
            "INSERT INTO chats (chat_id, unreachable, unreachable_at) VALUES (1001, ?, ?)",
            ("Forbidden: bot was blocked by the user", at.isoformat()),
        )
    yield Exported(path, catalog)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        return list(csv.reader(file, delimiter=CSV_DELIMITER))


def read_xlsx(path: Path) -> list[list[object]]:
    sheet = load_workbook(path).active
    assert sheet is not None
    return [[c.value for c in row] for row in sheet.iter_rows()]


# --- The CSV file's fast way --------------------------------------------------------------

# Values as they may lie in a database: what the bot writes, and what it never would.
_TEXT = st.one_of(
    st.sampled_from(["Иванова Мария", "ООО «Ромашка»", "a;b", 'say "hi"', "=1+1", "+7", " x"]),
    # SQLite's length() (the table's checks) stops at a NUL: none first.
    st.text(min_size=1, max_size=12).map(lambda text: "a" + text if text[0] == "\x00" else text),
)
_TIME = st.one_of(
    st.datetimes(
        # hypothesis takes naive bounds and adds the zone itself
        min_value=datetime(1970, 1, 2),  # noqa: DTZ001
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ).map(lambda moment: moment.isoformat()),
    st.sampled_from(["2026-03-29T01:30:00+00:00", "2026-11-26T12:00:00+03:00", "2026-11-26"]),
)
_STORED = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["confirmed", "withdrawn"]),
        "created_at": _TIME,
        "consent_at": _TIME,
        "full_name": _TEXT,
        "position": _TEXT,
        "organization": _TEXT,
        "phone": st.sampled_from(["+79123456789", "+375291234567", "+12025550123"]),
        "phone_display": st.none() | _TEXT | st.just("+7 912 345-67-89"),
        # SQLite's LIKE (the table's check) stops at a NUL.
        "email": _TEXT.map(lambda local: f"{local.replace(chr(0), '') or 'x'}@example.ru"),
        "user_id": st.integers(min_value=-(2**40), max_value=2**40),
        "username": st.none() | _TEXT,
        "unreachable_at": st.none() | _TEXT,
        # The source in the session's link: only the link's characters (the table's check).
        "source": st.none() | st.from_regex(r"[A-Za-z0-9_]{1,30}", fullmatch=True),
        # The CSV text of the registrant's values: stored by today's rule, by another, none.
        "csv_cells": st.sampled_from(["today's", "another rule's", None]),
    }
)


@pytest.fixture(scope="module")
def scratch_database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EventCatalog]:
    path = tmp_path_factory.mktemp("csv") / "bot.sqlite3"
    catalog = parse_events(SESSIONS_TOML, file=path.with_name("events.toml"), default_zone=MOSCOW)

    async def create() -> None:
        async with open_database(path) as db:
            await EventsRepository(db).sync(catalog, now=datetime.now(UTC))

    asyncio.run(create())
    return path, catalog


def _user_id(row: dict[str, object], number: int) -> int:
    return int(str(row["user_id"])) * 100 + number  # one registration each


def _store(path: Path, rows: list[dict[str, object]]) -> None:
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("DELETE FROM registrations")
        connection.execute("DELETE FROM chats")
        for number, row in enumerate(rows):
            user_id = _user_id(row, number)
            connection.execute(
                "INSERT INTO registrations (event_id, user_id, username, telegram_name, "
                "full_name, position, organization, phone, phone_display, email, consent_at, "
                "consent_version, status, created_at, updated_at, source) "
                "VALUES (?, ?, ?, 'T', ?, ?, ?, ?, ?, ?, ?, 'v1', ?, ?, ?, ?)",
                (
                    ("forum-2026", "sib-2026")[number % 2],
                    user_id,
                    row["username"],
                    row["full_name"],
                    row["position"],
                    row["organization"],
                    row["phone"],
                    row["phone_display"],
                    row["email"],
                    row["consent_at"],
                    row["status"],
                    row["created_at"],
                    row["created_at"],
                    row["source"],
                ),
            )
            if row["unreachable_at"] is not None:
                connection.execute(
                    "INSERT INTO chats (chat_id, unreachable, unreachable_at) VALUES (?, ?, ?)",
                    (user_id, "blocked", row["unreachable_at"]),
                )
    connection.close()

    async def fill() -> None:  # as the bot does at start-up
        async with open_database(path) as db:
            await Registrations(db).fill_csv_cells()
            for number, row in enumerate(rows):
                if row["csv_cells"] == "another rule's":
                    await db.execute(
                        "UPDATE registrations SET csv_rule = 'another' WHERE user_id = ?",
                        (_user_id(row, number),),
                    )
                elif row["csv_cells"] is None:
                    await db.execute(
                        "UPDATE registrations SET csv_cells = NULL WHERE user_id = ?",
                        (_user_id(row, number),),
                    )

    asyncio.run(fill())


def _general_way(path: Path, catalog: EventCatalog, event_id: str | None) -> list[str]:
    columns = columns_for(event_id)
    with open_read_only(path) as connection:
        return [
            csv_line(cells(row, for_csv=True))
            for row in export_rows(connection, catalog, event_id, columns)
        ]


@pytest.mark.slow  # 150 hypothesis examples, each a fresh database: over 10 s
@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_STORED, min_size=1, max_size=4), every=st.booleans())
def test_csv_lines_agree_with_the_general_way_on_arbitrary_rows(
    scratch_database: tuple[Path, EventCatalog], rows: list[dict[str, object]], every: bool
) -> None:
    path, catalog = scratch_database
    _store(path, rows)
    event_id = None if every else "forum-2026"

    with open_read_only(path) as connection:
        lines = [
            line.decode()
            for batch in csv_lines(connection, catalog, event_id, columns_for(event_id))
            for line in batch
        ]

    assert lines == _general_way(path, catalog, event_id)


def _csv_lines_and_whole_reads(exported: Exported) -> tuple[list[str], int]:
    statements: list[str] = []
    with open_read_only(exported.path) as connection:
        connection.set_trace_callback(statements.append)
        batches = list(csv_lines(connection, exported.catalog, None, columns_for(None)))
    lines = [line.decode() for batch in batches for line in batch]
    return lines, sum("WHERE registrations.id =" in statement for statement in statements)


def test_csv_lines_use_the_stored_texts_even_of_tricky_values(exported: Exported) -> None:
    lines, whole_reads = _csv_lines_and_whole_reads(exported)

    # The formula, "-5" and "@user"; the tab, line break and "=1+1"; the quote and ";": all
    # stored as the cell rule makes them, so no row is read again whole.
    assert lines == _general_way(exported.path, exported.catalog, None)
    assert (len(lines), whole_reads) == (5, 0)


async def test_a_value_changed_by_hand_clears_its_stored_text_and_the_export_stays_right(
    exported: Exported,
) -> None:
    async with open_database(exported.path) as db:
        await db.execute(
            "UPDATE registrations SET position = 'Новая должность' WHERE user_id = 1001"
        )
        await db.execute("UPDATE registrations SET csv_rule = 'older' WHERE user_id = 1004")
        await db.execute("UPDATE registrations SET status = 'withdrawn' WHERE user_id = 1002")
        stored = await db.fetchall(
            "SELECT user_id, csv_cells IS NULL AS cleared FROM registrations ORDER BY user_id"
        )

    lines, whole_reads = _csv_lines_and_whole_reads(exported)

    # The status is not in the stored text: changing it leaves the text alone.
    assert [(row["user_id"], row["cleared"]) for row in stored] == [
        (900, 0),
        (1001, 1),
        (1002, 0),
        (1003, 0),
        (1004, 0),
    ]
    assert lines == _general_way(exported.path, exported.catalog, None)
    assert "Новая должность" in lines[1]
    assert whole_reads == 2  # 1001's cleared text, 1004's made by another rule


async def test_start_up_stores_the_missing_texts_and_an_edit_rewrites_its_own(
    exported: Exported,
) -> None:
    async with open_database(exported.path) as db:
        registrations = Registrations(db)
        await db.execute("UPDATE registrations SET csv_cells = NULL, phone_display = NULL")
        await db.execute("UPDATE registrations SET csv_rule = 'older' WHERE user_id = 1002")

        assert await registrations.fill_csv_cells(batch=2) == 5
        assert await registrations.fill_csv_cells() == 0
        (first,) = await registrations.active_for_user(1001)
        await registrations.update_field(
            first.id, user_id=1001, field="phone", value="+74951234567", now=datetime.now(UTC)
        )
        row = await db.fetchone("SELECT * FROM registrations WHERE user_id = 1001")

    assert row is not None
    assert row["csv_rule"] == CSV_RULE
    assert row["csv_cells"] == registrant_csv(
        row["full_name"],
        row["position"],
        row["organization"],
        "+7 495 123-45-67",
        row["email"],
        1001,
        row["username"],
    )
    lines, whole_reads = _csv_lines_and_whole_reads(exported)
    assert lines == _general_way(exported.path, exported.catalog, None)
    assert whole_reads == 0


def test_the_rule_of_stored_texts_changes_with_the_cell_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bot.domain.cells

    assert bot.domain.cells.rule_fingerprint() == CSV_RULE
    monkeypatch.setattr(bot.domain.cells, "CSV_RISKY_FIRST", frozenset("=+-"))
    changed = bot.domain.cells.rule_fingerprint()

    assert changed != CSV_RULE


@pytest.mark.parametrize("event_id", [None, "forum-2026", "sib-2026", "old-2025"])
def test_csv_holds_every_registration_as_in_database(
    exported: Exported, tmp_path: Path, event_id: str | None
) -> None:
    output = tmp_path / "out.csv"

    count = export_to_file(exported.path, exported.catalog, event_id, "csv", output)

    expected = expected_rows(exported.path, event_id, for_csv=True)
    assert count == len(expected) > 0
    raw = output.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\r\n") == count + 1  # line breaks in values were flattened
    assert read_csv(output) == [header(event_id), *expected]


async def test_export_shows_a_changed_phone_and_phones_stored_before_schema_6(
    exported: Exported, tmp_path: Path
) -> None:
    async with open_database(exported.path) as db:
        registrations = Registrations(db)
        (first,) = await registrations.active_for_user(1001)
        await registrations.update_field(
            first.id, user_id=1001, field="phone", value="+74951234567", now=datetime.now(UTC)
        )
        # Rows written before the phone as people read it was stored.
        await db.execute("UPDATE registrations SET phone_display = NULL WHERE user_id = 1002")
    output = tmp_path / "out.csv"

    export_to_file(exported.path, exported.catalog, "forum-2026", "csv", output)

    rows = read_csv(output)[1:]
    assert [row[5] for row in rows] == [
        "'+7 495 123-45-67",
        "'+375 29 123-45-67",
        "'+7 845 212-34-56",
    ]
    assert rows == expected_rows(exported.path, "forum-2026", for_csv=True)


def test_csv_shows_values_as_a_person_reads_them(exported: Exported, tmp_path: Path) -> None:
    output = tmp_path / "out.csv"

    export_to_file(exported.path, exported.catalog, "forum-2026", "csv", output)

    first, second, third = read_csv(output)[1:]
    assert first[:2] == ["подтверждена", "26.11.2026 12:00 (МСК, UTC+3)"]
    assert first[4:9] == [
        "<html> & Co",
        "'+7 912 345-67-89",
        "user1001@example.ru",
        "1001",
        "user1001",
    ]
    assert first[9] == "26.11.2026 11:58 (МСК, UTC+3)"
    assert second[2:5] == ["'" + FORMULA, "'-5", "'@user"]
    assert second[8] == ""
    assert third[:1] == ["отменена"]
    assert third[3:6] == ["Менеджер по связям", "' ООО «Тест» =1+1", "'+7 845 212-34-56"]


async def test_an_erased_registration_is_exported_with_its_status_and_no_personal_data(
    exported: Exported, tmp_path: Path
) -> None:
    async with open_database(exported.path) as db:
        (second,) = await Registrations(db).active_for_user(1002)
        await PersonalData(db).withdraw(second.id, user_id=1002, now=datetime.now(UTC))
    csv_path, xlsx_path = tmp_path / "out.csv", tmp_path / "out.xlsx"

    export_to_file(exported.path, exported.catalog, "forum-2026", "csv", csv_path)
    export_to_file(exported.path, exported.catalog, "forum-2026", "xlsx", xlsx_path)

    for rows in (read_csv(csv_path)[1:], read_xlsx(xlsx_path)[1:]):
        assert len(rows) == 3
        assert rows[1][0] == "отменена"
        assert rows[1][2:9] == [""] * 7  # name, position, organisation, phone, e-mail, ids
        assert rows[1][9] == "26.11.2026 11:58 (МСК, UTC+3)"  # the consent record stays
    assert read_csv(csv_path)[1:] == expected_rows(exported.path, "forum-2026", for_csv=True)


@pytest.mark.parametrize("event_id", [None, "forum-2026", "old-2025"])
def test_xlsx_holds_every_registration_as_text_cells(
    exported: Exported, tmp_path: Path, event_id: str | None
) -> None:
    output = tmp_path / "out.xlsx"

    count = export_to_file(exported.path, exported.catalog, event_id, "xlsx", output)

    expected = expected_rows(exported.path, event_id, for_csv=False)
    assert count == len(expected) > 0
    assert read_xlsx(output) == [header(event_id), *expected]
    workbook = load_workbook(output)
    sheet = workbook.active
    assert sheet is not None
    assert sheet.title == "Регистрации"
    assert sheet.freeze_panes == "A2"
    columns = columns_for(event_id)
    for letter, column in zip("ABCDEFGHIJK", columns, strict=False):
        assert sheet.column_dimensions[letter].width == column.width
    for row in sheet.iter_rows():
        for value in row:
            assert value.data_type == "s"  # text: never a formula, never a number
            assert isinstance(value.value, str)
            assert value.number_format == "@"
    assert all(c.font.b for c in sheet[1])


def test_xlsx_keeps_formulas_and_phones_as_text(exported: Exported, tmp_path: Path) -> None:
    output = tmp_path / "out.xlsx"

    export_to_file(exported.path, exported.catalog, "forum-2026", "xlsx", output)

    first, second, third = read_xlsx(output)[1:]
    assert first[5] == "+7 912 345-67-89"
    assert first[7] == "1001"
    assert second[2:5] == [FORMULA, "-5", "@user"]
    assert third[4] == " ООО «Тест» =1+1"
    with zipfile.ZipFile(output) as archive:
        assert archive.testzip() is None
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet
    assert "&lt;html&gt; &amp; Co" in sheet


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_writes_to_binary_stream_and_leaves_it_open(exported: Exported, fmt: str) -> None:
    stream = io.BytesIO()

    count = export_to_file(exported.path, exported.catalog, None, fmt, stream)  # type: ignore[arg-type]

    assert count == 5
    assert not stream.closed
    assert stream.getvalue()[:2] in (b"\xef\xbb", b"PK")


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_writes_header_only_when_session_has_no_registrations(
    exported: Exported, tmp_path: Path, fmt: str
) -> None:
    with sqlite3.connect(exported.path) as connection:
        connection.execute("DELETE FROM registrations WHERE event_id = 'sib-2026'")
    connection.close()
    output = tmp_path / f"out.{fmt}"

    count = export_to_file(exported.path, exported.catalog, "sib-2026", fmt, output)  # type: ignore[arg-type]

    assert count == 0
    rows = read_csv(output) if fmt == "csv" else read_xlsx(output)
    assert rows == [header("sib-2026")]


def test_export_file_is_private_to_its_owner(exported: Exported, tmp_path: Path) -> None:
    output = tmp_path / "out.csv"

    export_to_file(exported.path, exported.catalog, None, "csv", output)

    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out.csv"]


def test_export_rejects_unknown_session_before_writing(exported: Exported, tmp_path: Path) -> None:
    output = tmp_path / "out.csv"

    with pytest.raises(UnknownEvent):
        export_to_file(exported.path, exported.catalog, "nope", "csv", output)

    assert not output.exists()


def test_read_only_connection_cannot_write(exported: Exported) -> None:
    with (
        open_read_only(exported.path) as connection,
        pytest.raises(sqlite3.OperationalError, match="readonly"),
    ):
        connection.execute("DELETE FROM registrations")


async def test_export_refuses_a_file_of_a_newer_schema(exported: Exported, tmp_path: Path) -> None:
    async with open_database(exported.path) as db:
        await db.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")  # a newer bot's file
    output = tmp_path / "out.csv"

    with pytest.raises(SchemaMismatch, match=r"newer than this code knows .*: upgrade the bot"):
        export_to_file(exported.path, exported.catalog, None, "csv", output)

    assert not output.exists()


async def test_export_reads_snapshot_while_bot_writes(exported: Exported, tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    async with open_database(exported.path) as db:
        async with db.transaction() as connection:
            await connection.execute("UPDATE registrations SET position = 'Новая должность'")
            # The bot's write transaction is open: WAL lets the export read the last commit.
            count = await asyncio.to_thread(
                export_to_file, exported.path, exported.catalog, None, "csv", output
            )
        assert count == 5
        assert "Новая должность" not in output.read_text(encoding="utf-8-sig")
        assert await db.fetchone("SELECT 1") is not None


# --- `python -m bot export` -------------------------------------------------------------------


def run_cli(
    exported: Exported, workdir: Path, *args: str
) -> subprocess.Popen[str]:  # started, not waited for: the runs overlap their start-up
    (workdir / "events.toml").write_text(SESSIONS_TOML, encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"BOT_TOKEN", "DATABASE_PATH", "EVENTS_FILE", "TIMEZONE"}
    }
    env["DATABASE_PATH"] = str(exported.path)
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "export", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # runs `python -m bot export` as subprocesses
def test_cli_exports_without_token_and_rejects_unknown_session(
    exported: Exported, tmp_path: Path
) -> None:
    workdir = tmp_path / "server"
    workdir.mkdir()
    assert not (workdir / ".env").exists()
    outdated = Exported(tmp_path / "outdated.sqlite3", exported.catalog)

    async def create_outdated() -> None:  # code upgraded, bot not yet started on the file
        async with open_database(outdated.path, migrate_to=LATEST_VERSION - 1):
            pass

    asyncio.run(create_outdated())
    outdated_run = run_cli(outdated, workdir, "--format", "csv", "--output", "old.csv")
    csv_run = run_cli(
        exported, workdir, "--event", "forum-2026", "--format", "csv", "--output", "forum.csv"
    )
    xlsx_run = run_cli(exported, workdir, "--format", "xlsx", "--output", "all.xlsx")
    bad_run = run_cli(
        exported, workdir, "--event", "nope", "--format", "csv", "--output", "nope.csv"
    )
    outputs = {
        name: run.communicate(timeout=120)
        for name, run in (
            ("csv", csv_run),
            ("xlsx", xlsx_run),
            ("bad", bad_run),
            ("outdated", outdated_run),
        )
    }

    assert csv_run.returncode == 0, outputs["csv"]
    assert outputs["csv"][0] == "3 rows written to forum.csv\n"
    assert read_csv(workdir / "forum.csv") == [
        header("forum-2026"),
        *expected_rows(exported.path, "forum-2026", for_csv=True),
    ]
    assert xlsx_run.returncode == 0, outputs["xlsx"]
    assert outputs["xlsx"][0] == "5 rows written to all.xlsx\n"
    assert read_xlsx(workdir / "all.xlsx") == [
        header(None),
        *expected_rows(exported.path, None, for_csv=False),
    ]
    assert bad_run.returncode == 2
    assert outputs["bad"][0] == ""
    assert outputs["bad"][1].count("\n") == 1
    assert outputs["bad"][1].startswith("error: unknown session 'nope'")
    assert not (workdir / "nope.csv").exists()
    assert outdated_run.returncode == 1
    assert outputs["outdated"][1] == (
        f"error: cannot read {str(outdated.path)!r}: its schema version is "
        f"{LATEST_VERSION - 1}, older than this code's {LATEST_VERSION}: start the bot once "
        "(it upgrades the file), then export again\n"
    )
    assert not (workdir / "old.csv").exists()
