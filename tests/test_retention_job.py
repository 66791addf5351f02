"""The retention job through the production Dispatcher: registrations of sessions past their
period are erased, unfinished forms expire, the organisers' digest warns a week before; each
erasure ends with a look at the bytes of the database file and its WAL."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from aiogram import Bot, Dispatcher

from bot.domain.config import Settings
from bot.domain.digest import ErasureNotice, UpgradeNotice, coming_erasures, render_digest
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length
from bot.domain.retention import erasure_moment, grace_until
from bot.retention_worker import RetentionJob, RetentionRun
from bot.sender import Sender
from storage.database import Database, utc_iso
from tests.client import TelegramUser, feed_deliver, http_deliver
from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import (
    ADMIN_ID,
    EVENTS_TOML,
    MOSCOW,
    ORGANIZER_CHAT_ID,
    TOKEN,
    TRACES,
    Clock,
    assert_no_trace,
    assert_no_trace_in,
    assert_traces,
    bot_process,
    db_file,
    dispatcher_for,
    event_toml,
    fill_form,
    register_over_http,
    upcoming_event_toml,
    wait_until,
)

# forum-2026 ends on 10 December 2026 at 14:00 (Moscow; starts_at + 2 h): with RETENTION_DAYS
# = 30 its data is kept to the end of 9 January 2027 and erased from the start of the 10th.
DUE = datetime(2027, 1, 10, 0, 0, tzinfo=MOSCOW)
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)  # retention began long before: no grace left

LATER_TOML = event_toml(
    id="later-2026",
    title="Вторая сессия",
    starts_at=datetime(2026, 12, 20, 12, 0, tzinfo=MOSCOW),
    timezone="Europe/Moscow",
    registration_deadline=datetime(2026, 12, 18, 23, 59, tzinfo=MOSCOW),
    location="Онлайн",
)
# Another person's answers: still stored when forum-2026's are erased.
PETROV = ("Петров Пётр Петрович", "petrov@sever.org")


async def retention_began(db: Database, moment: datetime) -> None:
    await db.execute("UPDATE meta SET value = ? WHERE key = 'retention_since'", (utc_iso(moment),))


async def run_retention(dispatcher: Dispatcher) -> RetentionRun:
    job: RetentionJob = dispatcher["retention"]
    return await job.run_once()


async def register(user: TelegramUser) -> None:
    await fill_form(user)
    replies = await user.click("Подтвердить")
    assert "Вы зарегистрированы" in (replies[0].text or "")


async def register_petrov(user: TelegramUser, event_id: str) -> None:
    await user.send(f"/start {event_id}")
    await user.click("Даю согласие")
    await user.send(PETROV[0])
    await user.send("Директор")
    await user.send("Фонд «Север»")
    await user.send("+7 900 111-22-33")
    await user.send(PETROV[1])
    replies = await user.click("Подтвердить")
    assert "Вы зарегистрированы" in (replies[0].text or "")


async def audit(db: Database) -> list[tuple[object, ...]]:
    rows = await db.fetchall(
        "SELECT action, reason, actor, registration_id, event_id, fields FROM audit ORDER BY id"
    )
    return [tuple(row) for row in rows]


async def erased_at(db: Database) -> dict[int, object]:
    rows = await db.fetchall("SELECT id, erased_at FROM registrations ORDER BY id")
    return {row["id"]: row["erased_at"] for row in rows}


# --- the rule ---------------------------------------------------------------------------------

END = datetime(2026, 12, 10, 14, 0, tzinfo=MOSCOW)


@pytest.mark.parametrize(
    ("since", "days", "grace"),
    [
        # The first start with retention counts like a session's end, on TIMEZONE's calendar.
        (datetime(2027, 1, 5, 10, 0, tzinfo=UTC), 30, datetime(2027, 2, 5, 0, 0, tzinfo=MOSCOW)),
        # 22:30 UTC is already the next day in Moscow.
        (datetime(2027, 1, 5, 22, 30, tzinfo=UTC), 0, datetime(2027, 1, 7, 0, 0, tzinfo=MOSCOW)),
    ],
)
def test_the_upgrades_grace_ends_at_a_midnight_in_timezone(
    since: datetime, days: int, grace: datetime
) -> None:
    assert grace_until(since, days, MOSCOW) == grace


@pytest.mark.parametrize(
    ("grace", "moment"),
    [
        (None, datetime(2027, 1, 10, 0, 0, tzinfo=MOSCOW)),
        (datetime(2027, 1, 1, 0, 0, tzinfo=MOSCOW), datetime(2027, 1, 10, 0, 0, tzinfo=MOSCOW)),
        (datetime(2027, 2, 5, 0, 0, tzinfo=MOSCOW), datetime(2027, 2, 5, 0, 0, tzinfo=MOSCOW)),
    ],
)
def test_data_goes_at_its_sessions_moment_or_when_the_grace_ends_if_later(
    grace: datetime | None, moment: datetime
) -> None:
    assert erasure_moment(END, 30, grace) == moment


def test_the_digest_names_the_sessions_whose_data_goes_within_a_week_soonest_first() -> None:
    now = datetime(2027, 1, 3, 9, 0, tzinfo=MOSCOW)
    sessions = [
        ("Через неделю", END),  # erased from 10 January, 00:00: within the week
        ("Слишком рано", END + timedelta(days=1)),  # 11 January: not yet
        ("Завтра", END - timedelta(days=6)),  # 4 January
        ("Уже прошла", END - timedelta(days=8)),  # due before now: the job's, not the digest's
    ]
    assert coming_erasures(sessions, 30, None, now) == [
        ErasureNotice("Завтра", date(2027, 1, 4)),
        ErasureNotice("Через неделю", date(2027, 1, 10)),
    ]


# --- registrations ----------------------------------------------------------------------------


async def test_registrations_of_a_session_past_its_period_are_erased_and_others_kept(
    settings: Settings,
    db: Database,
    clock: Clock,
    fake: FakeTelegram,
    bot: Bot,
    sender: Sender,
) -> None:
    await retention_began(db, LONG_AGO)
    dispatcher = await dispatcher_for(EVENTS_TOML + LATER_TOML, settings, db, clock)
    maria = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1001, first_name="Мария")
    petrov = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1002, first_name="Пётр")
    await maria.send("/start forum-2026")
    await register(maria)
    await register_petrov(petrov, "later-2026")
    await sender.idle()
    cards = len(fake.messages_to(ORGANIZER_CHAT_ID))

    clock.now = DUE - timedelta(minutes=1)
    assert await run_retention(dispatcher) == RetentionRun(erased=0, drafts=0, postponed=0)
    await assert_traces(db)

    clock.now = DUE
    assert await run_retention(dispatcher) == RetentionRun(erased=1, drafts=0, postponed=0)

    assert await erased_at(db) == {1: utc_iso(clock()), 2: None}
    row = await db.fetchone("SELECT * FROM registrations WHERE id = 1")
    assert row is not None
    assert row["status"] == "confirmed"  # the record stays: session, status, times, consent
    assert row["full_name"] is None and row["email"] is None and row["csv_cells"] is None
    assert row["consent_at"] is not None
    assert await audit(db) == [
        (
            "erase",
            "retention",
            "retention",
            1,
            "forum-2026",
            "full_name,position,organization,phone,email,user_id,telegram_name",  # no username
        )
    ]
    await sender.idle()
    assert len(fake.messages_to(ORGANIZER_CHAT_ID)) == cards  # no card for retention
    await assert_no_trace(db)
    await assert_traces(db, PETROV[0])  # the later session's are kept
    # Erasing twice is harmless: nothing left to do, nothing recorded again.
    assert await run_retention(dispatcher) == RetentionRun(erased=0, drafts=0, postponed=0)
    assert len(await audit(db)) == 1


async def test_retention_erases_in_batches_every_status(
    settings: Settings, db: Database, clock: Clock, fake: FakeTelegram, bot: Bot
) -> None:
    await retention_began(db, LONG_AGO)
    dispatcher = await dispatcher_for(EVENTS_TOML, settings, db, clock)
    job = RetentionJob(
        db=db,
        personal_data=dispatcher["personal_data"],
        retention_days=30,
        zone=MOSCOW,
        form_states=(),
        clock=clock,
        batch=2,
    )
    for user_id in range(2001, 2006):
        user = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=user_id)
        await register(user)
    # One withdrew (erased then) and registered again: a new row, confirmed.
    await user.send("/me")
    await user.click("Отменить регистрацию")
    await user.click("Да, отменить")
    await user.send("/start")
    await register(user)

    clock.now = DUE
    assert (await job.run_once()).erased == 5
    assert all(await erased_at(db))
    assert [entry[1] for entry in await audit(db)] == ["withdrawal"] + ["retention"] * 5
    await assert_no_trace(db)


async def test_retention_erases_a_place_in_the_waiting_list_too(
    settings: Settings, db: Database, clock: Clock, fake: FakeTelegram, bot: Bot
) -> None:
    await retention_began(db, LONG_AGO)
    dispatcher = await dispatcher_for(EVENTS_TOML + "capacity = 1\n", settings, db, clock)
    await register(TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1001))
    petrov = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1002)
    await petrov.send("/start forum-2026")
    await petrov.click("Даю согласие")
    for answer in (PETROV[0], "Директор", "Фонд «Север»", "+7 900 111-22-33", PETROV[1]):
        await petrov.send(answer)
    await petrov.click("Встать в лист ожидания")
    statuses = await db.fetchall("SELECT status FROM registrations ORDER BY id")
    assert [row["status"] for row in statuses] == ["confirmed", "waiting"]

    clock.now = DUE
    assert (await run_retention(dispatcher)).erased == 2
    assert all((await erased_at(db)).values())
    await assert_no_trace(db, (*TRACES, *PETROV))


async def test_nothing_is_erased_before_the_upgrades_grace_ends_and_the_log_says_when(
    make_user, db: Database, clock: Clock, dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    await register(make_user(1001, first_name="Мария"))
    # The bot that erases by RETENTION_DAYS first started on 5 January 2027 (13:00 Moscow):
    # nothing goes before 30 days after it, on Moscow's calendar: from 5 February.
    await retention_began(db, datetime(2027, 1, 5, 10, 0, tzinfo=UTC))
    grace = datetime(2027, 2, 5, 0, 0, tzinfo=MOSCOW)

    caplog.set_level(logging.INFO, logger="bot.retention_worker")
    clock.now = DUE + timedelta(days=1)
    assert await run_retention(dispatcher) == RetentionRun(erased=0, drafts=0, postponed=1)
    clock.now = grace - timedelta(minutes=1)
    assert await run_retention(dispatcher) == RetentionRun(erased=0, drafts=0, postponed=1)
    await assert_traces(db)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "kept until 2027-02-05" in warning.getMessage()
    assert "Иванова" not in caplog.text

    clock.now = grace
    assert await run_retention(dispatcher) == RetentionRun(erased=1, drafts=0, postponed=0)
    await assert_no_trace(db)


async def test_retention_days_0_erases_from_the_midnight_after_the_session_ends(
    settings: Settings, db: Database, clock: Clock, fake: FakeTelegram, bot: Bot
) -> None:
    await retention_began(db, LONG_AGO)
    dispatcher = await dispatcher_for(EVENTS_TOML, settings, db, clock, retention_days=0)
    await register(TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1001))

    clock.now = datetime(2026, 12, 10, 23, 59, tzinfo=MOSCOW)  # the session's day: kept
    assert (await run_retention(dispatcher)).erased == 0
    clock.now = datetime(2026, 12, 11, 0, 0, tzinfo=MOSCOW)
    assert (await run_retention(dispatcher)).erased == 1
    await assert_no_trace(db)


async def test_a_session_gone_from_the_events_file_and_without_an_end_is_erased_too(
    make_user, settings: Settings, db: Database, clock: Clock
) -> None:
    await retention_began(db, LONG_AGO)
    await register(make_user(1001, first_name="Мария"))
    # The bot restarts without the session; its row was synced before `ends_at` existed.
    dispatcher = await dispatcher_for(LATER_TOML, settings, db, clock)
    await db.execute("UPDATE events SET ends_at = NULL WHERE id = 'forum-2026'")

    # Taken to end two hours after it starts, as if it were in the file without ends_at.
    clock.now = DUE - timedelta(minutes=1)
    assert (await run_retention(dispatcher)).erased == 0
    clock.now = DUE
    assert (await run_retention(dispatcher)).erased == 1
    assert [entry[4] for entry in await audit(db)] == ["forum-2026"]
    await assert_no_trace(db)


# --- the organisers' digest -------------------------------------------------------------------


def digest_at(clock: Clock, day: date) -> None:
    clock.now = datetime.combine(day, datetime.min.time(), tzinfo=MOSCOW).replace(hour=9)


async def test_the_digest_says_a_week_ahead_when_a_sessions_data_goes(
    make_user, db: Database, clock: Clock, dispatcher: Dispatcher, fake: FakeTelegram,
    sender: Sender,
) -> None:  # fmt: skip
    await retention_began(db, LONG_AGO)
    await register(make_user(1001, first_name="Мария"))
    digest = dispatcher["digest"]
    await digest.run_due()  # the first start: counting begins

    notice = (
        "Данные участников сессии «Стратегическая сессия «ЭтНик»» будут удалены 10.01.2027 — "
        "выгрузите их до этого дня (/export)."
    )
    digest_at(clock, date(2027, 1, 2))  # 7 days and 15 hours before
    assert await digest.run_due()
    await sender.idle()
    assert notice not in (fake.messages_to(ORGANIZER_CHAT_ID)[-1].text or "")

    digest_at(clock, date(2027, 1, 3))
    assert await digest.run_due()
    await sender.idle()
    text = fake.messages_to(ORGANIZER_CHAT_ID)[-1].text or ""
    assert notice in text
    assert "Удаление персональных данных участников" in text

    # Once erased, nothing more to say about it.
    clock.now = DUE
    await run_retention(dispatcher)
    sent = len(fake.messages_to(ORGANIZER_CHAT_ID))
    digest_at(clock, date(2027, 1, 10))
    await digest.run_due()
    await sender.idle()
    assert fake.messages_to(ORGANIZER_CHAT_ID)[sent:] == []  # no session, nothing to erase


async def test_the_first_digest_after_the_upgrade_announces_the_grace_once(
    make_user, db: Database, clock: Clock, dispatcher: Dispatcher, fake: FakeTelegram,
    sender: Sender,
) -> None:  # fmt: skip
    await register(make_user(1001, first_name="Мария"))
    digest = dispatcher["digest"]
    await digest.run_due()  # digests made before the upgrade
    # The upgrade: the bot that erases by RETENTION_DAYS starts on 27 November.
    await retention_began(db, datetime(2026, 11, 27, 12, 0, tzinfo=UTC))

    digest_at(clock, date(2026, 11, 28))
    assert await digest.run_due()
    await sender.idle()
    text = fake.messages_to(ORGANIZER_CHAT_ID)[-1].text or ""
    assert (
        "Бот теперь удаляет персональные данные участников через 30 дней после окончания "
        "мероприятия. Данные уже прошедших сессий не будут удалены раньше 28.12.2026" in text
    )

    digest_at(clock, date(2026, 11, 29))
    assert await digest.run_due()
    await sender.idle()
    assert "Бот теперь удаляет" not in (fake.messages_to(ORGANIZER_CHAT_ID)[-1].text or "")


def test_erasure_notices_of_many_sessions_fit_telegrams_limit() -> None:
    now = datetime(2027, 1, 3, 9, 0, tzinfo=MOSCOW)
    notices = [ErasureNotice(f"{index:03} " + "Ж" * 196, date(2027, 1, 10)) for index in range(60)]
    messages = render_digest(
        date(2027, 1, 3), [], now, erasures=notices, upgrade=UpgradeNotice(date(2027, 1, 9), 30)
    )
    assert len(messages) > 1
    assert all(message_length(message) <= MAX_MESSAGE_LENGTH for message in messages)
    joined = "".join(messages)
    assert all(f"{index:03} " in joined for index in range(60))
    assert "(продолжение)" in messages[1]


# --- unfinished forms -------------------------------------------------------------------------


async def start_form(user: TelegramUser) -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send(TRACES[0])
    assert "должность" in user.last_text


async def forms(db: Database) -> list[tuple[object, ...]]:
    rows = await db.fetchall("SELECT key, state FROM fsm_states ORDER BY key")
    return [tuple(row) for row in rows]


async def test_a_form_untouched_for_a_week_is_deleted_and_the_next_message_starts_afresh(
    make_user, db: Database, clock: Clock, dispatcher: Dispatcher, fake: FakeTelegram
) -> None:
    user: TelegramUser = make_user(1002, first_name="Мария")
    await start_form(user)
    await assert_traces(db)
    seen = len(fake.messages_to(1002))

    clock.advance(timedelta(days=7, minutes=1))
    assert (await run_retention(dispatcher)).drafts == 1

    assert await forms(db) == []
    assert await audit(db) == [("erase", "draft_expiry", "retention", None, "forum-2026", "draft")]
    assert len(fake.messages_to(1002)) == seen  # the person is not told
    await assert_no_trace(db, [TRACES[0]])
    await user.send("Главный специалист")
    assert "Место работы" not in user.last_text  # no question of the old form
    assert await forms(db) == []


async def test_a_form_touched_six_days_ago_is_kept(
    make_user, db: Database, clock: Clock, dispatcher: Dispatcher
) -> None:
    user: TelegramUser = make_user(1002, first_name="Мария")
    await start_form(user)

    clock.advance(timedelta(days=6, hours=23))
    assert (await run_retention(dispatcher)).drafts == 0

    assert len(await forms(db)) == 1
    await user.send("Главный специалист")
    assert "Место работы" in user.last_text  # the form goes on


async def test_a_form_answered_while_the_job_runs_is_kept_whole(
    make_user, db: Database, clock: Clock, dispatcher: Dispatcher, fake: FakeTelegram
) -> None:
    user: TelegramUser = make_user(1002, first_name="Мария")
    await start_form(user)
    clock.advance(timedelta(days=7, minutes=1))
    fake.slow("sendMessage", 0.2)

    # The answer is saved, its reply still on the way, when the job looks.
    # (A reply is never ahead of the data: once it is being sent, the step is saved.)
    sends = len(fake.calls_of("sendMessage"))
    step = asyncio.create_task(user.send("Главный специалист"))
    await wait_until(lambda: len(fake.calls_of("sendMessage")) > sends)
    assert [state for _, state in await forms(db)] == ["Form:organization"]
    assert (await run_retention(dispatcher)).drafts == 0
    await step
    fake.slow("sendMessage", 0)

    row = await db.fetchone("SELECT data FROM fsm_states")
    assert row is not None
    assert {"full_name": TRACES[0], "position": "Главный специалист"}.items() <= json.loads(
        row["data"]
    ).items()
    assert "Место работы" in user.last_text


async def test_a_form_whose_registration_closed_is_deleted_however_fresh(
    make_user, db: Database, clock: Clock, dispatcher: Dispatcher
) -> None:
    clock.now = datetime(2026, 12, 8, 20, 0, tzinfo=MOSCOW)  # the deadline is 23:59
    user: TelegramUser = make_user(1002, first_name="Мария")
    await start_form(user)
    clock.now = datetime(2026, 12, 8, 23, 59, tzinfo=MOSCOW)
    assert (await run_retention(dispatcher)).drafts == 0

    clock.now = datetime(2026, 12, 9, 0, 0, tzinfo=MOSCOW)
    assert (await run_retention(dispatcher)).drafts == 1
    assert await forms(db) == []
    await assert_no_trace(db, [TRACES[0]])


async def test_a_form_for_a_session_gone_from_the_events_file_is_deleted(
    make_user, settings: Settings, db: Database, clock: Clock
) -> None:
    user: TelegramUser = make_user(1002, first_name="Мария")
    await start_form(user)
    dispatcher = await dispatcher_for(LATER_TOML, settings, db, clock)

    assert (await run_retention(dispatcher)).drafts == 1
    assert await forms(db) == []


async def test_a_change_from_me_left_open_expires_with_its_copy_of_the_data(
    make_user, db: Database, clock: Clock, dispatcher: Dispatcher
) -> None:
    user: TelegramUser = make_user(1001, first_name="Мария")
    await register(user)
    await user.send("/me")
    await user.click("Изменить данные")
    await user.click("Должность")
    assert [state for _, state in await forms(db)] == ["Form:position"]

    clock.advance(timedelta(days=8))
    assert (await run_retention(dispatcher)).drafts == 1
    assert await forms(db) == []
    # The registration itself is not touched.
    assert await erased_at(db) == {1: None}


async def test_an_admins_broadcast_being_written_is_not_a_form(
    make_user, db: Database, clock: Clock, dispatcher: Dispatcher
) -> None:
    await register(make_user(1001, first_name="Мария"))
    admin: TelegramUser = make_user(ADMIN_ID, first_name="Админ")
    await admin.send("/broadcast")
    assert [state for _, state in await forms(db)] == ["BroadcastForm:writing"]

    clock.advance(timedelta(days=8))
    assert (await run_retention(dispatcher)).drafts == 0
    assert [state for _, state in await forms(db)] == ["BroadcastForm:writing"]


# --- the real process -------------------------------------------------------------------------


def erased_in(path: Path) -> bool:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT erased_at FROM registrations").fetchall()
    return bool(rows) and all(erased for (erased,) in rows)


def no_trace_in(path: Path, values: tuple[str, ...]) -> bool:
    try:
        assert_no_trace_in(path, values)
    except AssertionError:
        return False
    return True


@pytest.mark.slow
async def test_the_bot_process_erases_at_start_up_what_is_past_its_period(tmp_path: Path) -> None:
    events = tmp_path / "events.toml"
    events.write_text(upcoming_event_toml(), encoding="utf-8")
    fake = FakeTelegram(token=TOKEN)
    typed = ("Иванова Мария Петровна", "Главный специалист", "+79123456789", "user1001@example.ru")
    async with serve(fake) as base_url:
        async with bot_process(tmp_path, fake, base_url) as bot:
            await register_over_http(fake, tmp_path, 1001)
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
        assert not no_trace_in(db_file(tmp_path), typed)
        # The session, it turns out, took place in 2022, and retention began long before the
        # process starts again: the erasure is due the moment it does.
        events.write_text(
            event_toml(
                id="forum",
                title="Сессия «ЭтНик»",
                starts_at=datetime(2022, 11, 24, 12, 0, tzinfo=MOSCOW),
                timezone="Europe/Moscow",
                registration_deadline=datetime(2022, 11, 22, 23, 59, tzinfo=MOSCOW),
                location="Онлайн",
            ),
            encoding="utf-8",
        )
        with sqlite3.connect(db_file(tmp_path)) as connection:
            connection.execute(
                "UPDATE meta SET value = '2022-01-01T00:00:00+00:00' WHERE key = 'retention_since'"
            )
        async with bot_process(tmp_path, fake, base_url, run=1) as bot:
            await wait_until(lambda: erased_in(db_file(tmp_path)), timeout=20)
            await wait_until(lambda: no_trace_in(db_file(tmp_path), typed), timeout=20)
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
            output = bot.output
    assert "Retention: erased the personal data of 1 registrations of forum" in output
    assert not any(value in output for value in typed)
    assert_no_trace_in(db_file(tmp_path), typed)


@pytest.mark.slow
async def test_the_bot_process_deletes_a_form_left_for_seven_days(tmp_path: Path) -> None:
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    fake = FakeTelegram(token=TOKEN)
    typed = ("Сидорова Анна Павловна", "Ведущий специалист")
    path = db_file(tmp_path)
    async with serve(fake) as base_url:
        async with bot_process(tmp_path, fake, base_url) as bot:
            user = TelegramUser(fake, http_deliver(fake, timeout=20, database=path), user_id=1002)
            await user.send("/start")
            await user.click("Даю согласие")
            for answer in typed:
                await user.send(answer)
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
        assert not no_trace_in(path, typed)
        # The form was last touched eight days ago.
        with sqlite3.connect(path) as connection:
            connection.execute(
                "UPDATE fsm_states SET updated_at = ? WHERE state IS NOT NULL",
                ((datetime.now(UTC) - timedelta(days=8)).isoformat(),),
            )
        async with bot_process(tmp_path, fake, base_url, run=1) as bot:
            await wait_until(lambda: no_trace_in(path, typed), timeout=20)
            sent_before = len(fake.messages_to(1002))
            # The person gets nothing; their next message starts afresh.
            await user.send("Главный специалист")
            assert len(fake.messages_to(1002)) == sent_before + 1
            assert "место работы" not in user.last_message_text.lower()
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
    with sqlite3.connect(path) as connection:
        audit = connection.execute("SELECT reason, fields FROM audit").fetchall()
    assert audit == [("draft_expiry", "draft")]
    assert_no_trace_in(path, typed)
