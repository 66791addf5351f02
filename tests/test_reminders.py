"""Reminders before a session (the events file's `reminders`), the calendar file, and the
notice when a session changes: the rules as pure functions, then through the Dispatcher with
the real outbox sender, the database and a movable clock."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiogram import Bot, Dispatcher

from bot.app import create_bot, create_dispatcher, open_app
from bot.domain import calendar as calendar_module
from bot.domain.calendar import PRODID, calendar_file
from bot.domain.config import Settings
from bot.domain.events import DEFAULT_REMINDERS, EventCatalog, EventsFileError, parse_events
from bot.domain.reminders import GRACE, due_reminders, time_left
from bot.domain.texts import use_locale
from bot.reminder_worker import ReminderScheduler
from bot.sender import Sender
from storage.database import Database, open_database
from storage.migrations import MIGRATIONS
from storage.outbox import Outbox
from storage.reminders import Reminders
from tests.client import TelegramUser, feed_deliver
from tests.fake_telegram import FakeSession, FakeTelegram
from tests.helpers import EVENTS_TOML, FAST, MOSCOW, Clock, dispatcher_for, event_toml, fill_form

FILE = Path("events.toml")
EVENT_ID = "forum-2026"
# EVENTS_TOML's session: 10 December 2026, 12:00 Moscow time.
STARTS = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
DAY_BEFORE, HOUR_BEFORE = STARTS - timedelta(days=1), STARTS - timedelta(hours=1)
REMINDER = "Напоминаем"


# --- a tiny RFC 5545 reader, independent of the library that writes the file ------------------


def read_ics(content: bytes) -> list[tuple[str, dict[str, str], str]]:
    """(name, parameters, value) of each content line: lines unfolded as RFC 5545 §3.1 says
    (CRLF followed by one space or tab continues the line; folding counts octets, so the
    bytes are joined before decoding), text values unescaped (§3.3.11)."""
    assert b"\n" not in content.replace(b"\r\n", b""), "lines end with CRLF"
    unfolded = re.sub(rb"\r\n[ \t]", b"", content).decode("utf-8")
    result = []
    for line in unfolded.split("\r\n"):
        if not line:
            continue
        head, _, value = line.partition(":")
        name, *params = head.split(";")
        parameters = dict(param.split("=", 1) for param in params)
        value = re.sub(r"\\([\\;,nN])", lambda m: "\n" if m[1] in "nN" else m[1], value)
        result.append((name.upper(), parameters, value))
    return result


def utc_instant(value: str) -> datetime:
    """A DATE-TIME in UTC form (§3.3.5, "19980119T070000Z")."""
    assert value.endswith("Z"), f"{value} is not in UTC"
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def vevent(content: bytes) -> dict[str, str]:
    lines = read_ics(content)
    names = [name for name, _, _ in lines]
    assert names[0] == "BEGIN" and lines[0][2] == "VCALENDAR"
    assert names.count("BEGIN") == 2 and ("BEGIN", {}, "VEVENT") in lines
    calendar = {name: value for name, _, value in lines[: names.index("BEGIN", 1)]}
    assert calendar["VERSION"] == "2.0" and calendar["PRODID"] == PRODID
    start = lines.index(("BEGIN", {}, "VEVENT"))
    end = lines.index(("END", {}, "VEVENT"))
    return {name: value for name, _, value in lines[start + 1 : end]}


# --- the events file ----------------------------------------------------------------------------

BASE = """[[events]]
id = "s1"
title = "Сессия"
starts_at = 2022-11-24T12:00:00
registration_deadline = 2022-11-22T23:59:00
location = "Онлайн"
"""


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", DEFAULT_REMINDERS),
        ("reminders = []", ()),
        ('reminders = ["1h", "1d"]', (timedelta(days=1), timedelta(hours=1))),
        ('reminders = ["30m"]', (timedelta(minutes=30),)),
        (
            'reminders = ["2d", "90m", "3h"]',
            (timedelta(days=2), timedelta(hours=3), timedelta(minutes=90)),
        ),
    ],
)
def test_reminders_key_reads_days_hours_minutes(line: str, expected: tuple[timedelta, ...]) -> None:
    [event] = parse_events(BASE + line + "\n", file=FILE, default_zone=MOSCOW)
    assert event.reminders == expected


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('reminders = "1d"', "must be a list"),
        ("reminders = 1", "must be a list"),
        ('reminders = ["1w"]', "'1w' is not a time such as '1d'"),
        ('reminders = ["0h"]', "'0h' is not a time"),
        ('reminders = ["1 h"]', "'1 h' is not a time"),
        ('reminders = ["-1h"]', "'-1h' is not a time"),
        ("reminders = [60]", "60 is not a time"),
        ('reminders = [""]', "'' is not a time"),
        ('reminders = ["1h", "60m"]', "'60m' is the same time as another"),
        ('reminders = ["61d"]', "more than 60 days"),
    ],
)
def test_a_wrong_reminder_names_file_event_and_key(line: str, fragment: str) -> None:
    with pytest.raises(EventsFileError) as caught:
        parse_events(BASE + line + "\n", file=FILE, default_zone=MOSCOW)
    message = str(caught.value)
    assert message.startswith(f"{FILE}: event 's1': key 'reminders': ")
    assert fragment in message
    assert "\n" not in message


# --- when a reminder is due ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "offsets"),
    [
        (DAY_BEFORE - timedelta(seconds=1), []),
        (DAY_BEFORE, [timedelta(days=1)]),
        (DAY_BEFORE + GRACE - timedelta(seconds=1), [timedelta(days=1)]),
        (DAY_BEFORE + GRACE, []),  # the bot was down past due + 15 minutes: skipped
        (HOUR_BEFORE, [timedelta(hours=1)]),
        (STARTS, []),
    ],
)
def test_a_reminder_is_due_for_fifteen_minutes_and_never_after_the_start(
    now: datetime, offsets: list[timedelta]
) -> None:
    catalog = parse_events(EVENTS_TOML, file=FILE, default_zone=MOSCOW)
    assert [due.offset for due in due_reminders(catalog, now)] == offsets


def test_a_reminder_close_to_the_start_is_not_due_once_it_started() -> None:
    catalog = parse_events(EVENTS_TOML + 'reminders = ["10m"]\n', file=FILE, default_zone=MOSCOW)
    assert [due.at for due in due_reminders(catalog, STARTS - timedelta(minutes=1))] == [
        STARTS - timedelta(minutes=10)
    ]
    assert due_reminders(catalog, STARTS) == []


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (timedelta(days=1), "1 день"),
        (timedelta(days=2), "2 дня"),
        (timedelta(hours=1), "1 час"),
        (timedelta(hours=5), "5 часов"),
        (timedelta(minutes=30), "30 минут"),
        (timedelta(minutes=21), "21 минуту"),
        (timedelta(minutes=90), "90 минут"),
    ],
)
def test_time_left_uses_the_largest_whole_unit(offset: timedelta, text: str) -> None:
    assert time_left(offset) == text


# --- the calendar file --------------------------------------------------------------------------


def test_calendar_file_reads_back_with_another_parser() -> None:
    toml = event_toml(
        id="long",
        # Long enough to be folded, with characters RFC 5545 escapes.
        title="Сессия; «ЭтНик», стратегия \\ практика — " + "очень длинное название " * 5,
        starts_at=datetime(2026, 12, 10, 12, 0, tzinfo=MOSCOW),
        ends_at=datetime(2026, 12, 10, 16, 30, tzinfo=MOSCOW),
        timezone="Europe/Moscow",
        registration_deadline=datetime(2026, 12, 8, 23, 59, tzinfo=MOSCOW),
        location="Саратов, ул. Московская, 72",
        join_url="https://example.org/join?a=1&b=2",
        contact="org@example.ru & +7 8452 00-00-00",
    )
    [event] = parse_events(toml, file=FILE, default_zone=MOSCOW)
    now = datetime(2026, 11, 26, 9, 0, 5, tzinfo=UTC)

    content = calendar_file(event, sequence=3, now=now)

    assert all(len(line) <= 75 for line in content.split(b"\r\n")), "folded at 75 octets"
    properties = vevent(content)
    assert properties["UID"] == "long@event-registration-bot"
    assert properties["SEQUENCE"] == "3"
    assert utc_instant(properties["DTSTAMP"]) == now
    assert utc_instant(properties["DTSTART"]) == event.starts_at
    assert (
        utc_instant(properties["DTEND"])
        == event.end()
        == datetime(2026, 12, 10, 13, 30, tzinfo=UTC)
    )
    assert properties["SUMMARY"] == event.title
    assert properties["LOCATION"] == event.location
    assert properties["URL"] == "https://example.org/join?a=1&b=2"
    assert "org@example.ru & +7 8452 00-00-00" in properties["DESCRIPTION"]
    assert "https://example.org/join?a=1&b=2" in properties["DESCRIPTION"]


def test_calendar_file_ends_two_hours_after_the_start_without_ends_at_or_link() -> None:
    [event] = parse_events(BASE, file=FILE, default_zone=MOSCOW)
    properties = vevent(calendar_file(event, sequence=0, now=datetime(2022, 11, 1, tzinfo=UTC)))
    assert utc_instant(properties["DTSTART"]) == datetime(2022, 11, 24, 9, 0, tzinfo=UTC)
    assert utc_instant(properties["DTEND"]) == datetime(2022, 11, 24, 11, 0, tzinfo=UTC)
    assert "URL" not in properties and "DESCRIPTION" not in properties


def test_calendar_file_made_once_per_version_is_each_time_the_file_made_afresh() -> None:
    # Each session version's file is made once and copied with its own DTSTAMP: every copy
    # must be byte for byte the file icalendar makes for that moment, language and version.
    [event] = parse_events(BASE, file=FILE, default_zone=MOSCOW)
    linked = replace(event, join_url="https://example.org/j", contact="org@example.ru")
    moments = (
        datetime(2022, 11, 1, tzinfo=UTC),
        datetime(2026, 3, 5, 17, 4, 59, 999_999, tzinfo=UTC),
        datetime(2026, 3, 5, 20, 4, 59, tzinfo=MOSCOW),
    )
    for variant in (
        event,
        linked,
        replace(linked, title="Другая сессия"),
        replace(linked, location="Зал 2"),
    ):
        for sequence in (0, 1):
            for language in ("ru", "en"):
                for now in moments:
                    with use_locale(language):
                        made = calendar_file(variant, sequence=sequence, now=now)
                        afresh = calendar_module._build(variant, sequence=sequence, now=now)
                    assert made == afresh, (variant.title, sequence, language, now)
                    assert utc_instant(vevent(made)["DTSTAMP"]) == now.replace(microsecond=0)


# --- through the Dispatcher ---------------------------------------------------------------------


async def register(make_user, user_id: int = 1001) -> TelegramUser:  # type: ignore[no-untyped-def]
    user: TelegramUser = make_user(user_id, first_name="Мария", username=f"user{user_id}")
    await fill_form(user)
    await user.click("Подтвердить")
    return user


def reminders_to(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.text or "" for m in fake.messages_to(chat_id) if REMINDER in (m.text or "")]


def scheduler(dispatcher: Dispatcher) -> ReminderScheduler:
    found: ReminderScheduler = dispatcher["reminder_scheduler"]
    return found


async def test_confirming_sends_the_calendar_file_and_me_sends_it_again(
    make_user, fake: FakeTelegram, clock: Clock
) -> None:
    user = await register(make_user)
    first = fake.messages_to(1001)[-1]
    assert first.filename == "forum-2026.ics" and first.document is not None
    assert "Файл для календаря" in (first.caption or "")
    properties = vevent(first.document)
    assert utc_instant(properties["DTSTART"]) == STARTS
    assert utc_instant(properties["DTEND"]) == STARTS + timedelta(hours=2)
    assert properties["SUMMARY"] == "Стратегическая сессия «ЭтНик»"
    assert properties["URL"] == "https://example.org/join"
    assert "org@example.ru" in properties["DESCRIPTION"]

    clock.advance(timedelta(days=20))  # after the deadline the button stays
    await user.send("/me")
    [again] = await user.click("Файл для календаря")
    assert again.filename == "forum-2026.ics" and again.document is not None
    again_properties = vevent(again.document)
    assert again_properties["UID"] == properties["UID"]
    assert again_properties["SEQUENCE"] == properties["SEQUENCE"] == "0"


async def test_each_registrant_gets_each_reminder_once_with_the_join_link(
    make_user, fake: FakeTelegram, sender: Sender, dispatcher: Dispatcher, db: Database,
    clock: Clock,
) -> None:  # fmt: skip
    await register(make_user, 1001)
    await register(make_user, 1002)
    assert await scheduler(dispatcher).run_due() == 0  # not yet

    clock.now = DAY_BEFORE + timedelta(minutes=3)
    assert await scheduler(dispatcher).run_due() == 2
    assert await scheduler(dispatcher).run_due() == 0  # never twice
    await sender.idle()
    [text] = reminders_to(fake, 1001)
    assert "через 1 день" in text
    assert "Стратегическая сессия «ЭтНик»" in text
    assert "10 декабря 2026, 12:00 (МСК, UTC+3)" in text
    assert "Онлайн" in text and "https://example.org/join" in text
    assert len(reminders_to(fake, 1002)) == 1

    clock.now = HOUR_BEFORE
    assert await scheduler(dispatcher).run_due() == 2
    await sender.idle()
    assert ["через 1 час" in text for text in reminders_to(fake, 1001)] == [False, True]
    rows = await db.fetchall("SELECT registration_id, offset_minutes FROM reminders ORDER BY 1, 2")
    assert [tuple(row) for row in rows] == [(1, 60), (1, 1440), (2, 60), (2, 1440)]


async def test_reminders_survive_a_restart_and_are_not_queued_again(
    make_user, bot: Bot, fake: FakeTelegram, settings: Settings, db: Database, clock: Clock,
    dispatcher: Dispatcher,
) -> None:  # fmt: skip
    await register(make_user)
    clock.now = DAY_BEFORE
    assert await scheduler(dispatcher).run_due() == 1
    # The bot stops before sending it; the next one queues nothing more and sends it.
    restarted = await dispatcher_for(EVENTS_TOML, settings, db, clock)
    clock.advance(timedelta(minutes=5))
    assert await scheduler(restarted).run_due() == 0
    sender = Sender(bot, restarted["outbox"], clock, FAST)
    await sender.start()
    await sender.idle()
    await sender.stop(grace=1)
    assert len(reminders_to(fake, 1001)) == 1


async def test_a_reminder_is_skipped_when_the_bot_was_down_past_due_and_fifteen_minutes(
    make_user, dispatcher: Dispatcher, db: Database, clock: Clock
) -> None:
    await register(make_user)
    clock.now = DAY_BEFORE + GRACE + timedelta(seconds=1)
    assert await scheduler(dispatcher).run_due() == 0
    clock.now = HOUR_BEFORE + timedelta(minutes=1)
    assert await scheduler(dispatcher).run_due() == 1
    assert await db.fetchall("SELECT * FROM reminders WHERE offset_minutes = 1440") == []


async def test_a_reminder_is_skipped_for_who_registered_after_it_was_due(
    make_user, fake: FakeTelegram, sender: Sender, settings: Settings, db: Database,
    clock: Clock, bot: Bot,
) -> None:  # fmt: skip
    late = EVENTS_TOML.replace("2026-12-08T23:59:00", "2026-12-10T11:00:00")
    dispatcher = await dispatcher_for(late, settings, db, clock)
    early = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1001)
    await fill_form(early)
    await early.click("Подтвердить")
    clock.now = DAY_BEFORE + timedelta(minutes=1)
    newcomer = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1002)
    await fill_form(newcomer)
    await newcomer.click("Подтвердить")

    assert await scheduler(dispatcher).run_due() == 1
    clock.now = HOUR_BEFORE
    assert await scheduler(dispatcher).run_due() == 2
    outbox = await db.fetchall(
        "SELECT chat_id, count(*) FROM outbox WHERE kind = 'reminder' GROUP BY chat_id"
    )
    assert {row[0]: row[1] for row in outbox} == {1001: 2, 1002: 1}


async def test_reminders_of_a_withdrawn_or_forgotten_registration_are_dropped(
    make_user, fake: FakeTelegram, dispatcher: Dispatcher, db: Database, clock: Clock,
    bot: Bot,
) -> None:  # fmt: skip
    withdrawing = await register(make_user, 1001)
    forgetting = await register(make_user, 1002)
    staying = await register(make_user, 1003)
    await withdrawing.send("/me")
    await withdrawing.click("Отменить регистрацию")
    await withdrawing.click("Да, отменить")  # before its reminder was due: none is queued

    clock.now = DAY_BEFORE
    assert await scheduler(dispatcher).run_due() == 2  # queued, not yet sent
    await forgetting.send("/forget")
    await forgetting.click("Да, удалить всё")
    assert "данные удалены" in forgetting.last_text

    sender = Sender(bot, dispatcher["outbox"], clock, FAST)
    await sender.start()
    await sender.idle()
    clock.now = HOUR_BEFORE
    assert await scheduler(dispatcher).run_due() == 1
    await sender.idle()
    await sender.stop(grace=1)
    assert reminders_to(fake, 1001) == reminders_to(fake, 1002) == []
    assert len(reminders_to(fake, 1003)) == 2
    dropped = await db.fetchall(
        "SELECT status, text, error FROM outbox WHERE kind = 'reminder' AND chat_id = 1002"
    )
    assert [tuple(row) for row in dropped] == [("failed", None, "personal data erased")]
    assert staying.chat_id == 1003


async def test_a_reminder_to_a_chat_that_blocked_the_bot_is_given_up_not_sent_late(
    make_user, fake: FakeTelegram, sender: Sender, dispatcher: Dispatcher, db: Database,
    clock: Clock,
) -> None:  # fmt: skip
    await register(make_user, 1001)
    fake.block(1001)
    clock.now = DAY_BEFORE
    await scheduler(dispatcher).run_due()
    await sender.idle()
    clock.now = HOUR_BEFORE
    await scheduler(dispatcher).run_due()
    await sender.idle()
    fake.unblock(1001)
    assert await dispatcher["outbox"].chat_is_back(1001) == 0
    assert reminders_to(fake, 1001) == []


# --- a changed session, after a restart with another events file --------------------------------


@pytest.fixture
def restart(settings: Settings, clock: Clock, fake: FakeTelegram):  # type: ignore[no-untyped-def]
    """Start the bot (`open_app`, as `run` does) with `toml` as its events file."""

    async def start(toml: str) -> AsyncIterator[tuple[Dispatcher, Bot]]:
        settings.events_file.write_text(toml, encoding="utf-8")
        async with open_app(settings, clock=clock) as opened:
            bot = create_bot(settings, session=FakeSession(fake))
            dispatcher = create_dispatcher(
                settings=settings, db=opened.db, catalog=opened.catalog, clock=clock
            )
            sender = Sender(bot, dispatcher["outbox"], clock, FAST)
            await sender.start()
            try:
                yield dispatcher, bot
                await sender.idle()
            finally:
                await sender.stop(grace=1)
                await bot.session.close()

    return start


async def test_a_moved_session_tells_every_registrant_and_moves_the_reminders(
    restart, fake: FakeTelegram, clock: Clock
) -> None:  # type: ignore[no-untyped-def]
    async for dispatcher, bot in restart(EVENTS_TOML):
        for user_id in (1001, 1002):
            user = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=user_id)
            await fill_form(user)
            await user.click("Подтвердить")
    before = len(fake.messages_to(1001))

    moved = EVENTS_TOML.replace("2026-12-10T12:00:00", "2026-12-11T15:30:00").replace(
        'location = "Онлайн"', 'location = "Саратов, Дом дружбы"'
    )
    async for _ in restart(moved):
        pass
    notice, calendar = fake.messages_to(1001)[before:]
    text = notice.text or ""
    assert "Изменения в мероприятии «Стратегическая сессия «ЭтНик»»" in text
    assert (
        "было 10 декабря 2026, 12:00 (МСК, UTC+3), стало 11 декабря 2026, 15:30 (МСК, UTC+3)"
        in text
    )
    assert "было «Онлайн», стало «Саратов, Дом дружбы»" in text
    assert "Окончание" in text  # the end follows the start (ends_at not given)
    assert "Ссылка для подключения: было" not in text
    assert calendar.filename == "forum-2026.ics" and calendar.document is not None
    properties = vevent(calendar.document)
    new_start = datetime(2026, 12, 11, 12, 30, tzinfo=UTC)
    assert utc_instant(properties["DTSTART"]) == new_start
    assert properties["LOCATION"] == "Саратов, Дом дружбы"
    assert properties["SEQUENCE"] == "1"
    assert len(fake.messages_to(1002)) == before + 2  # the other registrant too

    # Unchanged at the next start: nobody is told again. The reminders follow the new time.
    async for dispatcher, _bot in restart(moved):
        clock.now = DAY_BEFORE
        assert await scheduler(dispatcher).run_due() == 0
        clock.now = new_start - timedelta(days=1)
        assert await scheduler(dispatcher).run_due() == 2
    assert len(fake.messages_to(1001)) == before + 3
    assert "11 декабря 2026, 15:30" in (fake.messages_to(1001)[-1].text or "")
    # ...and /me's file has the new SEQUENCE.
    async for dispatcher, bot in restart(moved):
        user = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1001)
        await user.send("/me")
        [again] = await user.click("Файл для календаря")
        assert again.document is not None and vevent(again.document)["SEQUENCE"] == "1"


async def test_a_new_link_is_announced_and_a_changed_title_is_not(
    restart, fake: FakeTelegram
) -> None:  # type: ignore[no-untyped-def]
    async for dispatcher, bot in restart(EVENTS_TOML):
        user = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1001)
        await fill_form(user)
        await user.click("Подтвердить")
    before = len(fake.messages_to(1001))
    async for _ in restart(EVENTS_TOML.replace('title = "Стратегическая', 'title = "Новая')):
        pass
    assert len(fake.messages_to(1001)) == before
    relinked = EVENTS_TOML.replace("https://example.org/join", "https://example.org/new")
    async for _ in restart(relinked):
        pass
    notice, _calendar = fake.messages_to(1001)[before:]
    assert (
        "Ссылка для подключения: было https://example.org/join, стало https://example.org/new"
        in (notice.text or "")
    )


# --- the schema step ----------------------------------------------------------------------------

# Found by its content: steps are renumbered when branches merge.
REMINDERS_STEP = next(
    number for number, step in enumerate(MIGRATIONS, 1) if "CREATE TABLE reminders" in step
)


async def test_the_reminders_step_keeps_the_outbox_and_records_each_reminder_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.sqlite3"
    now = "2026-11-26T09:00:00+00:00"
    async with open_database(path, migrate_to=REMINDERS_STEP - 1) as db:
        await db.execute(
            "INSERT INTO events (id, title, starts_at, timezone, registration_deadline, "
            "location, synced_at) VALUES ('e', 'Т', ?, 'Europe/Moscow', ?, 'М', ?)",
            (now, now, now),
        )
        await db.execute(
            "INSERT INTO outbox (chat_id, kind, text, created_at, media_kind, media_file_id) "
            "VALUES (5, 'broadcast', 'подпись', ?, 'photo', 'file-1')",
            (now,),
        )
        await db.execute(
            "INSERT INTO outbox (chat_id, kind, text, created_at, status, sent_at, message_id) "
            "VALUES (-100, 'card', NULL, ?, 'sent', ?, 42)",
            (now, now),
        )
        before = [tuple(row) for row in await db.fetchall("SELECT * FROM outbox ORDER BY id")]
    async with open_database(path) as db:
        after = await db.fetchall("SELECT * FROM outbox ORDER BY id")
        assert [tuple(row)[: len(before[0])] for row in after] == before
        indexes = {row[0] for row in await db.fetchall("SELECT name FROM sqlite_master")}
        assert {"outbox_pending", "outbox_by_broadcast", "outbox_sent"} <= indexes
        await db.execute(
            "INSERT INTO registrations (event_id, user_id, telegram_name, full_name, position, "
            "organization, phone, email, consent_at, consent_version, status, created_at, "
            "updated_at) VALUES ('e', 7, 'М', 'Иванова Мария', 'И', 'О', '+79161234567', "
            "'m@example.com', ?, '1', 'confirmed', ?, ?)",
            (now, now, now),
        )
        await db.execute(
            "INSERT INTO outbox (chat_id, kind, registration_id, text, created_at, "
            "attachment_name, attachment) VALUES (7, 'reminder', 1, '', ?, 'e.ics', x'00')",
            (now,),
        )
        record = "INSERT INTO reminders VALUES (1, 60, ?, ?)"
        await db.execute(record, (now, now))
        with pytest.raises(sqlite3.IntegrityError):
            await db.execute(record, (now, now))
        with pytest.raises(sqlite3.IntegrityError):  # a file needs its name
            await db.execute(
                "INSERT INTO outbox (chat_id, kind, text, created_at, attachment) "
                "VALUES (7, 'reminder', '', ?, x'00')",
                (now,),
            )


async def test_reminders_to_more_chats_than_workers_all_go_out_once(
    make_user, fake: FakeTelegram, bot: Bot, dispatcher: Dispatcher, clock: Clock
) -> None:
    users = range(2001, 2013)
    for user_id in users:
        await register(make_user, user_id)
    clock.now = DAY_BEFORE
    assert await scheduler(dispatcher).run_due() == len(users)
    # Three chats at a time: the others wait their turn, none is left behind.
    sender = Sender(bot, dispatcher["outbox"], clock, replace(FAST, max_workers=3))
    await sender.start()
    await sender.idle()
    await sender.stop(grace=1)
    assert [len(reminders_to(fake, user_id)) for user_id in users] == [1] * len(users)


async def test_chats_with_cards_are_served_before_reminders_then_oldest_first(
    dispatcher: Dispatcher, db: Database, clock: Clock
) -> None:
    outbox = dispatcher["outbox"]
    for chat_id, kind in (
        (5, "reminder"),
        (3, "reminder"),
        (9, "card"),
        (5, "card"),
        (7, "digest"),
    ):
        await outbox.enqueue([chat_id], kind, "текст", now=clock())
    assert await outbox.pending_chats() == [5, 9, 7, 3]
    assert await outbox.pending_chats(limit=2) == [5, 9]


async def test_the_calendar_sequence_is_read_once_and_follows_a_change_synced_after(
    db: Database, catalog: EventCatalog, clock: Clock
) -> None:
    reminders = Reminders(db, Outbox(db))
    [event] = catalog
    assert await reminders.sequence(event.id) == 0
    # Read once a process: the versions change only at start-up (an edit by hand is not
    # seen until the next one).
    await db.execute("UPDATE event_versions SET sequence = 7 WHERE event_id = ?", (event.id,))
    assert await reminders.sequence(event.id) == 0
    moved = replace(event, starts_at=event.starts_at + timedelta(hours=1))
    [change] = await reminders.sync_versions(EventCatalog((moved,)), now=clock())
    assert change.sequence == 8
    assert await reminders.sequence(event.id) == 8
