"""Personal data leaves the database when its purpose ends (152-FZ): withdrawal and /forget,
through the production Dispatcher, each ending with a look at the bytes of the database file
and its WAL."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta

import pytest

from bot.sender import Sender
from storage.database import Database
from tests.client import TelegramUser
from tests.fake_telegram import FakeTelegram
from tests.helpers import (
    ORGANIZER_CHAT_ID,
    PERSONAL,
    Clock,
    assert_no_trace,
    assert_no_trace_in,
    assert_traces,
    fail_writes,
    fill_form,
    stop_failing,
)


async def register(make_user, user_id: int = 1001) -> TelegramUser:  # type: ignore[no-untyped-def]
    user: TelegramUser = make_user(user_id, first_name="Мария", username=f"user{user_id}")
    await fill_form(user)
    await user.click("Подтвердить")
    return user


async def registration_row(db: Database, registration_id: int = 1) -> dict[str, object]:
    row = await db.fetchone("SELECT * FROM registrations WHERE id = ?", (registration_id,))
    assert row is not None
    return dict(row)


async def test_withdrawal_erases_the_registrations_personal_data_at_once(
    make_user, fake: FakeTelegram, sender: Sender, db: Database, clock: Clock
) -> None:
    user = await register(make_user)
    await sender.idle()
    await assert_traces(db)
    clock.advance(timedelta(hours=1))

    await user.send("/me")
    await user.click("Отменить регистрацию")
    await user.click("Да, отменить")
    await sender.idle()

    assert "отменена" in user.last_text
    row = await registration_row(db)
    assert {column: row[column] for column in PERSONAL} == dict.fromkeys(PERSONAL)
    assert row["status"] == "withdrawn"
    assert row["erased_at"] == clock().isoformat()
    assert row["consent_at"] is not None and row["consent_version"]
    # The organisers learn of it by number and session only.
    card = fake.messages_to(ORGANIZER_CHAT_ID)[-1].text or ""
    assert "Отмена регистрации №1" in card
    assert "Иванова" not in card
    audit = await db.fetchall("SELECT * FROM audit")
    assert [(r["action"], r["reason"], r["actor"], r["registration_id"]) for r in audit] == [
        ("erase", "withdrawal", "participant", 1)
    ]
    assert audit[0]["fields"] == (
        "full_name,position,organization,phone,email,user_id,username,telegram_name"
    )
    # /me and /find have nothing of them; /start begins afresh.
    await user.send("/me")
    assert "не храним ни одной вашей регистрации" in user.last_text
    await assert_no_trace(db)


async def test_a_second_tap_on_withdraw_changes_nothing(
    make_user, sender: Sender, db: Database
) -> None:
    user = await register(make_user)
    await user.send("/me")
    await user.click("Отменить регистрацию")
    question = user.fake.last_message(user.chat_id)
    [yes] = [b for row in question.inline_keyboard for b in row if b["text"] == "Да, отменить"]
    await user.click("Да, отменить")
    erased = await registration_row(db)

    await user.click_data(question, yes["callback_data"])

    assert await registration_row(db) == erased
    assert len(await db.fetchall("SELECT * FROM audit")) == 1


async def test_forget_erases_every_registration_the_draft_and_queued_messages(
    make_user, fake: FakeTelegram, sender: Sender, db: Database, clock: Clock
) -> None:
    user = await register(make_user)
    await sender.idle()
    # An announcement still queued to them: the sender is stopped until /forget is done, so
    # that it cannot reach the row first.
    await sender.stop(grace=1)
    await db.execute(
        "INSERT INTO outbox (chat_id, kind, text, created_at) VALUES (1001, 'broadcast', ?, ?)",
        ("Иванова Мария Петровна, до встречи", clock().isoformat()),
    )
    # A form in progress, with an answer in it.
    await user.send("/start")

    await user.send("/forget")
    assert "Удалить все ваши данные?" in user.last_text
    assert "регистраций: 1" in user.last_text
    await user.click("Да, удалить всё")
    await sender.start()
    await sender.idle()

    assert "ваши данные удалены" in user.last_text
    row = await registration_row(db)
    assert row["status"] == "withdrawn" and row["full_name"] is None
    queued = await db.fetchall("SELECT status, text, error FROM outbox WHERE chat_id = 1001")
    assert [(r["status"], r["text"]) for r in queued] == [("failed", None)]
    assert await db.fetchall("SELECT * FROM fsm_states WHERE key LIKE '%:1001:%'") == []
    card = fake.messages_to(ORGANIZER_CHAT_ID)[-1].text or ""
    assert "Участник удалил свои данные: регистрация №1" in card
    audit = await db.fetchall("SELECT reason, actor, registration_id FROM audit")
    assert [tuple(r) for r in audit] == [("forget", "participant", 1)]
    await assert_no_trace(db)

    # Asked again: nothing is left, and it says so.
    await user.send("/forget")
    assert "нет ваших персональных данных" in user.last_text


async def test_forget_in_the_middle_of_a_form_erases_the_draft(
    make_user, sender: Sender, db: Database
) -> None:
    user: TelegramUser = make_user(1002, first_name="Мария")
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    await assert_traces(db)

    await user.send("/forget")
    assert "незаконченная анкета" in user.last_text
    assert "регистраци" not in user.last_text
    await user.click("Да, удалить всё")

    assert "ваши данные удалены" in user.last_text
    assert await db.fetchall("SELECT * FROM fsm_states WHERE key LIKE '%:1002:%'") == []
    audit = await db.fetchall("SELECT reason, fields FROM audit")
    assert [tuple(r) for r in audit] == [("forget", "draft")]
    await assert_no_trace(db)
    # The next message starts afresh: no question of the old form is asked.
    await user.send("Главный специалист")
    assert "должность" not in user.last_text


async def test_forget_declined_keeps_everything_and_asks_the_open_question_again(
    make_user, db: Database
) -> None:
    user: TelegramUser = make_user(1003, first_name="Мария")
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")

    await user.send("/forget")
    await user.click("Нет, оставить")

    assert await db.fetchall("SELECT * FROM fsm_states WHERE key LIKE '%:1003:%'") != []
    assert await db.fetchall("SELECT * FROM audit") == []
    assert "должность" in user.last_text  # the form goes on where it was


async def test_forget_with_nothing_stored_says_so(make_user, db: Database) -> None:
    user: TelegramUser = make_user(1004, first_name="Мария")

    await user.send("/forget")

    assert "нет ваших персональных данных" in user.last_text
    assert await db.fetchall("SELECT * FROM audit") == []


async def test_an_erasure_is_one_transaction(make_user, sender: Sender, db: Database) -> None:
    """A failure half-way (here SQLite refuses the record of the erasure, after the
    registration was emptied) leaves everything as it was, and the person is told."""
    user = await register(make_user)
    await sender.idle()
    before = await registration_row(db)
    await fail_writes(db, "audit", "INSERT", name="refuse_record")

    await user.send("/forget")
    await user.click("Да, удалить всё")

    assert "ваши данные удалены" not in user.last_text
    assert await registration_row(db) == before
    assert await db.fetchall("SELECT * FROM audit") == []
    await stop_failing(db, "audit", name="refuse_record")
    await user.send("/forget")
    await user.click("Да, удалить всё")
    assert "ваши данные удалены" in user.last_text


@pytest.mark.sqlite_only("the WAL and its bytes are SQLite's")
async def test_the_wal_is_cut_once_a_reader_holding_an_old_snapshot_lets_go(
    make_user, db: Database
) -> None:
    """An export reads a snapshot while a person withdraws: the erasure commits at once, the
    WAL keeps the old pages for the export, and is cut as soon as the export ends."""
    user = await register(make_user)
    await user.send("/me")
    await user.click("Отменить регистрацию")
    export = sqlite3.connect(f"file:{db.path}?mode=ro", uri=True)
    export.execute("BEGIN")
    assert export.execute("SELECT full_name FROM registrations").fetchall() == [
        ("Иванова Мария Петровна",)
    ]

    await user.click("Да, отменить")
    scrub = asyncio.ensure_future(db.wal_scrubbed(db.scrub_wal()))
    await asyncio.sleep(0.5)
    assert not scrub.done()
    # The export still sees its snapshot, whole.
    assert export.execute("SELECT full_name FROM registrations").fetchall() == [
        ("Иванова Мария Петровна",)
    ]
    export.execute("ROLLBACK")
    export.close()

    await asyncio.wait_for(scrub, 10)
    assert_no_trace_in(db.path)


async def test_an_undelivered_digest_loses_the_erased_name_and_keeps_the_others(
    make_user, sender: Sender, db: Database, clock: Clock
) -> None:
    user = await register(make_user)
    await sender.idle()
    await sender.stop()  # the digest waits, undelivered
    digest = (
        "1. Иванова Мария Петровна, Министерство культуры Саратовской области\n"
        "2. Петров Пётр Петрович, ООО «Ромашка»"
    )
    await db.execute(
        "INSERT INTO outbox (chat_id, kind, text, created_at) VALUES (-1, 'digest', ?, ?)",
        (digest, clock().isoformat()),
    )

    await user.send("/me")
    await user.click("Отменить регистрацию")
    await user.click("Да, отменить")

    row = await db.fetchone("SELECT status, text FROM outbox WHERE kind = 'digest'")
    assert row is not None
    assert (row["status"], row["text"]) == (
        "pending",
        "1. —, —\n2. Петров Пётр Петрович, ООО «Ромашка»",
    )
    await assert_no_trace(db)
