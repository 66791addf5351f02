"""Plain helpers shared by test modules (fixtures live in conftest.py): identities, the sample
events file, the movable clock, fast send limits, the Dispatcher after a restart with another
events file, a participant's form, the real bot process, and the export oracle. No test module
imports another; they all import from here."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, closing
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Dispatcher

from bot.app import create_dispatcher
from bot.domain.cells import cell
from bot.domain.config import Settings
from bot.domain.events import load_events
from bot.domain.timefmt import zone_label
from bot.domain.validation import format_phone
from bot.sender import Limits
from storage.database import Database
from storage.events import EventsRepository
from storage.export.columns import columns_for, header_row
from tests.client import TelegramUser, http_deliver
from tests.fake_telegram import FakeTelegram

TOKEN = "7000000001:AAtest-token-for-tests-only-xxxxxxxxxx"
ADMIN_ID = 500
ORGANIZER_CHAT_ID = -1001234567890
MOSCOW = ZoneInfo("Europe/Moscow")


# --- the events file --------------------------------------------------------------------------


def event_toml(**fields: str | datetime) -> str:
    """One `[[events]]` table, keys in the order given: a datetime is written as its wall-clock
    time without the offset (the file's form: `timezone` names the zone), a string as a TOML
    basic string."""
    lines = ["[[events]]"]
    for key, value in fields.items():
        if isinstance(value, datetime):
            lines.append(f"{key} = {value:%Y-%m-%dT%H:%M:%S}")
        else:
            # A JSON string is a valid TOML basic string (the same escapes).
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


# The in-process tests' session: their clock stands on 26 November 2026, before its deadline.
EVENTS_TOML = event_toml(
    id="forum-2026",
    title="Стратегическая сессия «ЭтНик»",
    starts_at=datetime(2026, 12, 10, 12, 0, tzinfo=MOSCOW),
    timezone="Europe/Moscow",
    registration_deadline=datetime(2026, 12, 8, 23, 59, tzinfo=MOSCOW),
    location="Онлайн",
    description="Сессия для НКО & органов власти <онлайн>",
    join_url="https://example.org/join",
    contact="org@example.ru",
    privacy_policy="Данные обрабатываются по 152-ФЗ.",
    privacy_policy_version="v1",
)

# The session's own texts for English readers (issue 14): `<key>_en` beside each key.
ENGLISH_FIELDS = {
    "title_en": "Strategy session “EtNik”",
    "description_en": "A session for NGOs & public bodies <online>",
    "location_en": "Online",
    "privacy_policy_en": "The data is processed under Federal Law 152-FZ.",
}


def upcoming_event_toml(**fields: str) -> str:
    """A session ten days ahead of the real clock, for processes that run on it."""
    starts = (datetime.now(MOSCOW) + timedelta(days=10)).replace(hour=12, minute=0, second=0)
    values: dict[str, str | datetime] = {
        "id": "forum",
        "title": "Сессия «ЭтНик»",
        "starts_at": starts,
        "timezone": "Europe/Moscow",
        "registration_deadline": starts - timedelta(days=2),
        "location": "Онлайн",
        "contact": "org@example.ru",
    }
    return event_toml(**(values | fields))


# --- time and limits --------------------------------------------------------------------------


class Clock:
    """The time handlers see; tests move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


# Telegram's limits scaled down so that a test waits milliseconds, not seconds.
FAST = Limits(
    private_interval=0.05,
    group_interval=0.05,
    overall_per_second=1000,
    backoff_base=0.01,
    request_timeout=0.3,
    rescan_every=0.05,
)


async def wait_until(condition: Callable[[], bool], timeout: float = 40) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def dispatcher_for(
    events_toml: str,
    settings: Settings,
    db: Database,
    clock: Clock,
    *,
    retention_days: int | None = None,
) -> Dispatcher:
    """The production Dispatcher after the bot restarts with `events_toml` as its events file
    (and another RETENTION_DAYS, when given)."""
    settings.events_file.write_text(events_toml, encoding="utf-8")
    catalog = load_events(settings.events_file, default_zone=settings.timezone)
    archived = await EventsRepository(db).sync(catalog, now=clock())
    catalog = replace(catalog, archived=tuple(event for event, _ in archived))
    if retention_days is not None:
        settings = settings.model_copy(update={"retention_days": retention_days})
    return create_dispatcher(settings=settings, db=db, catalog=catalog, clock=clock)


# --- what people and organisers see -----------------------------------------------------------


async def fill_form(user: TelegramUser, *, position: str = "Главный специалист") -> None:
    """Every step up to the summary, the last one left to confirm."""
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    await user.send(position)
    await user.send("Министерство культуры Саратовской области")
    await user.share_contact("79123456789")
    await user.send("Maria.Ivanova@Example.RU")


def card_numbers(fake: FakeTelegram, chat_id: int) -> Counter[int]:
    """Registration numbers of the cards a chat received, combined messages included."""
    numbers: Counter[int] = Counter()
    for message in fake.messages_to(chat_id):
        numbers.update(int(n) for n in re.findall(r"регистрац\w+ №(\d+)", message.text or ""))
    return numbers


async def set_read_only(db: Database, value: bool) -> None:
    """Stand-in for a full or failing disk: the database refuses every write (SQLite's
    query_only; on PostgreSQL a statement trigger on every table)."""
    if db.dialect == "sqlite":
        await db.fetchall(f"PRAGMA query_only = {'ON' if value else 'OFF'}")
        return
    if not value:
        await db.execute("DROP FUNCTION IF EXISTS read_only() CASCADE")
        return
    await db.execute(
        "CREATE FUNCTION read_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'attempt to write a readonly database'; END $$"
    )
    for (table,) in await db.fetchall(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    ):
        await db.execute(
            f"CREATE TRIGGER read_only BEFORE INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION read_only()"
        )


# --- the real bot process ---------------------------------------------------------------------


def db_file(workdir: Path) -> Path:
    return workdir / "data" / "bot.sqlite3"


def bot_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    env.update(
        BOT_TOKEN=TOKEN,
        DATABASE_PATH=str(db_file(workdir)),
        EVENTS_FILE=str(workdir / "events.toml"),
        ADMIN_IDS=str(ADMIN_ID),
        ORGANIZER_CHAT_IDS="",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class BotProcess:
    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def wait(self, timeout: float = 15) -> int:  # noqa: ASYNC109
        return await asyncio.wait_for(self.process.wait(), timeout)


@asynccontextmanager
async def bot_process(
    workdir: Path, fake: FakeTelegram, base_url: str, run: int = 0, **env: str
) -> AsyncIterator[BotProcess]:
    """`python -m bot` against the fake at `base_url`, yielded once it polls."""
    log = workdir / f"bot-{run}.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=workdir,  # no .env of the developer's here
            env=bot_env(workdir, TELEGRAM_API_URL=base_url, **env),
            stdout=sink,
            stderr=sink,
        )
    running = BotProcess(process, log)
    polls = len(fake.calls_of("getUpdates"))
    try:
        await wait_until(
            lambda: len(fake.calls_of("getUpdates")) > polls or process.returncode is not None
        )
        assert process.returncode is None, running.output
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def register_over_http(
    fake: FakeTelegram, workdir: Path, user_id: int, *, database_url: str | None = None
) -> None:
    """A whole registration with the bot process in `workdir` (on PostgreSQL at
    `database_url` when given), confirmed."""
    database = database_url or db_file(workdir)
    user = TelegramUser(fake, http_deliver(fake, timeout=20, database=database), user_id=user_id)
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    await user.send("Главный специалист")
    await user.send("Министерство культуры")
    await user.send("+7 912 345-67-89")
    await user.send(f"user{user_id}@example.ru")
    replies = await user.click("Подтвердить")
    # The confirmation, then the calendar file.
    assert "Вы зарегистрированы" in (replies[0].text or "")


# --- the export oracle ------------------------------------------------------------------------


def export_source(db: Database) -> Path | str:
    """What the export reads: the SQLite file, or DATABASE_URL."""
    if db.path is not None:
        return db.path
    dsn: str = db.dsn  # type: ignore[attr-defined]
    return dsn


def _rows_by_name(database: Path | str, sql: str, params: tuple[object, ...]) -> list[Any]:
    if isinstance(database, Path):
        with closing(sqlite3.connect(database)) as connection:
            connection.row_factory = sqlite3.Row
            return connection.execute(sql, params).fetchall()

    async def fetch() -> list[Any]:
        import asyncpg

        from storage.postgres import _set_up_connection, translate

        connection = await asyncpg.connect(database)
        try:
            await _set_up_connection(connection)
            return list(await connection.fetch(translate(sql).sql, *params))
        finally:
            await connection.close()

    # Off the test's event loop: this helper is synchronous.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fetch()).result()


def expected_rows(database: Path | str, event_id: str | None, *, for_csv: bool) -> list[list[str]]:
    """The database's registrations as the export must show them, formatted independently of
    the export's fast paths, through the same `cell`."""
    status = {"confirmed": "подтверждена", "waiting": "лист ожидания", "withdrawn": "отменена"}

    def shown(stored: str, zone: ZoneInfo) -> str:
        local = datetime.fromisoformat(stored).astimezone(zone)
        return f"{local:%d.%m.%Y %H:%M} ({zone_label(local)})"

    rows = _rows_by_name(
        database,
        "SELECT r.*, e.title, e.timezone, c.unreachable FROM registrations r "
        "JOIN events e ON e.id = r.event_id LEFT JOIN chats c ON c.chat_id = r.user_id "
        "WHERE r.event_id = coalesce(?, r.event_id) "
        "ORDER BY e.starts_at, e.id, r.created_at, r.id",
        (event_id,),
    )
    result = []
    for row in rows:
        zone = ZoneInfo(row["timezone"])
        values = [
            status[row["status"]],
            shown(row["created_at"], zone),
            # Erased: the personal columns are empty.
            row["full_name"] or "",
            row["position"] or "",
            row["organization"] or "",
            format_phone(row["phone"]) if row["phone"] else "",
            row["email"] or "",
            "" if row["user_id"] is None else str(row["user_id"]),
            row["username"] or "",
            shown(row["consent_at"], zone),
            "да" if row["unreachable"] else "",
            row["source"] or "",
        ]
        if event_id is None:
            values.insert(0, row["title"])
            values.append(answers_cell(database, row["id"]))
        result.append([cell(value, for_csv=for_csv) for value in values])
    return result


def answers_cell(database: Path | str, registration_id: int) -> str:
    """The «Ответы» cell of an every-session export, made independently: "id: value" pairs,
    headed by the question's text when the events file in the test has none (the oracle's
    tests give their questions' texts by `QUESTION_TEXTS`)."""
    rows = [
        (row[0], row[1])
        for row in _rows_by_name(
            database,
            "SELECT question_id, value FROM answers WHERE registration_id = ?",
            (registration_id,),
        )
    ]
    order = {key: position for position, key in enumerate(QUESTION_TEXTS)}
    rows.sort(key=lambda row: (order.get(row[0], len(order)), row[0]))
    return "; ".join(f"{QUESTION_TEXTS.get(key, key)}: {value}" for key, value in rows)


# The texts of the questions of `QUESTIONS_TOML`, by id, in file order.
QUESTION_TEXTS = {
    "category": "Кого вы представляете?",
    "speaker": "Будете выступать?",
    "topic": "Тема выступления",
}
QUESTIONS_TOML = """
[[events.questions]]
id = "category"
text = "Кого вы представляете?"
text_en = "Whom do you represent?"
kind = "choice"
options = ["Орган власти", "СМИ", "НКО", "Другое"]
options_en = ["Government", "Media", "NGO", "Other"]

[[events.questions]]
id = "speaker"
text = "Будете выступать?"
kind = "yes_no"

[[events.questions]]
id = "topic"
text = "Тема выступления"
kind = "text"
required = false
max_length = 100
"""


def header(event_id: str | None) -> list[str]:
    return header_row(columns_for(event_id))


# --- personal data ----------------------------------------------------------------------------

# A registration's columns that hold personal data, written out here (not taken from the code
# under test): an erasure empties every one.
PERSONAL = (
    "full_name",
    "position",
    "organization",
    "phone",
    "phone_display",
    "email",
    "user_id",
    "username",
    "telegram_name",
    "csv_cells",
)

# What fill_form types, and how it is stored and shown.
TRACES = (
    "Иванова Мария Петровна",
    "Главный специалист",
    "Министерство культуры Саратовской области",
    "79123456789",
    "+7 912 345-67-89",
    "Maria.Ivanova",
    "Example.RU",
    "example.ru",
)


async def fail_writes(
    db: Database, table: str, operation: str, *, name: str = "", when: str = ""
) -> str:
    """A real database failure (as a full disk or a broken file would raise) on `table`'s
    `operation` (of the rows `when`, an SQL condition on NEW or OLD, says), made by a trigger
    in the engine's dialect; `stop_failing` ends it."""
    name = name or f"fail_{table}"
    if db.dialect == "postgres":
        await db.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
        )
        await db.execute(
            f"CREATE TRIGGER {name} BEFORE {operation} ON {table} "
            f"FOR EACH ROW {f'WHEN ({when}) ' if when else ''}EXECUTE FUNCTION {name}()"
        )
    else:
        await db.execute(
            f"CREATE TRIGGER {name} BEFORE {operation} ON {table} "
            f"{f'WHEN {when} ' if when else ''}BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    return name


async def stop_failing(db: Database, table: str, *, name: str = "") -> None:
    name = name or f"fail_{table}"
    if db.dialect == "postgres":
        await db.execute(f"DROP FUNCTION {name}() CASCADE")
    else:
        await db.execute(f"DROP TRIGGER {name}")


async def select(
    db: Database, sql: str, params: tuple[object, ...] = ()
) -> list[tuple[object, ...]]:
    """Rows as tuples, through the bot's database, on either engine (a test's look at what was
    stored)."""
    return [tuple(row) for row in await db.fetchall(sql, params)]


async def seat_counts_off(db: Database) -> list[tuple[object, ...]]:
    """Sessions whose seat counts (kept by triggers, storage/seats.py) differ from their
    registrations: (event, kept confirmed, waiting, offered, counted confirmed, waiting,
    offered). Empty when every count holds."""
    return await select(
        db,
        """
        SELECT * FROM (
            SELECT id, seats_confirmed, seats_waiting, seats_offered,
                (SELECT count(*) FROM registrations
                    WHERE event_id = events.id AND status = 'confirmed') AS confirmed,
                (SELECT count(*) FROM registrations
                    WHERE event_id = events.id AND status = 'waiting') AS waiting,
                (SELECT count(*) FROM registrations
                    WHERE event_id = events.id AND offered_at IS NOT NULL) AS offered
            FROM events
        ) AS counts
        WHERE seats_confirmed != confirmed OR seats_waiting != waiting
            OR seats_offered != offered
        """,
    )


def database_bytes(path: Path) -> dict[Path, bytes]:
    """The database file and its WAL, as bytes."""
    wal = Path(f"{path}-wal")
    return {path: path.read_bytes(), wal: wal.read_bytes() if wal.exists() else b""}


def assert_no_trace_in(path: Path, values: Iterable[str] = TRACES) -> None:
    for value in values:
        for file, content in database_bytes(path).items():
            assert value.encode() not in content, f"{value!r} is still in {file.name}"


async def assert_no_trace(db: Database, values: Iterable[str] = TRACES) -> None:
    """After the engine's copies are scrubbed (as each erasure asks): on SQLite, neither the
    file nor its WAL holds any of `values`, as bytes; on PostgreSQL (whose files a test cannot
    read) no row of any table does, as text, once the erased tables were vacuumed."""
    await db.erased_scrubbed(db.scrub_erased())
    if db.path is None:
        text = await all_rows_text(db)
        for value in values:
            assert value not in text, f"{value!r} is still in a table"
        return
    assert_no_trace_in(db.path, values)


async def assert_traces(db: Database, value: str = TRACES[0]) -> None:
    """The check above can fail: before an erasure the values are there."""
    if db.path is None:
        assert value in await all_rows_text(db)
        return
    assert any(value.encode() in content for content in database_bytes(db.path).values())


async def all_rows_text(db: Database) -> str:
    """Every row of every table of a PostgreSQL schema, as text."""
    tables = await db.fetchall(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    )
    parts = []
    for (table,) in tables:
        [row] = await db.fetchall(f"SELECT string_agg(t::text, ' ') FROM {table} AS t")
        parts.append(row[0] or "")
    return "\n".join(parts)


def registration_steps(user: TelegramUser) -> list[Callable[[], Awaitable[object]]]:
    """A whole registration in the shipped form, step by step, confirmed at the end."""
    return [
        lambda: user.send("/start"),
        lambda: user.click("Даю согласие"),
        lambda: user.send("Иванова Мария Петровна"),
        lambda: user.send("Главный специалист"),
        lambda: user.send("Министерство культуры"),
        lambda: user.send("+7 912 345-67-89"),
        lambda: user.send(f"user{user.user_id}@example.ru"),
        lambda: user.click("Подтвердить"),
    ]


async def participant(
    fake: FakeTelegram,
    database: Path | str,
    user_id: int,
    rng: random.Random,
    *,
    start_within: float,
    pause: tuple[float, float],
    patience: float = 120,
) -> str:
    """One person registering over HTTP at their own pace with the bot whose database is
    `database` (a SQLite file or a PostgreSQL URL): they start within `start_within` seconds
    and pause `pause` seconds between steps, each step handled within `patience` seconds.
    Returns the last text message they saw."""
    deliver = http_deliver(fake, timeout=patience, database=database)
    user = TelegramUser(fake, deliver, user_id=user_id)
    await asyncio.sleep(rng.uniform(0, start_within))
    for step in registration_steps(user):
        await step()
        await asyncio.sleep(rng.uniform(*pause))
    return user.last_message_text
