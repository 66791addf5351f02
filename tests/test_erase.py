"""An admin's /erase and /audit through the production Dispatcher, and the audit's record of
every read of personal data (/find, /export, /broadcast). Each erasure ends with a look at the
bytes of the database file and its WAL."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from aiogram import Bot, Dispatcher

from bot.domain.events import EventCatalog
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length
from bot.domain.validation import PersonKey, ValidationError, parse_person_key
from bot.sender import Sender
from handlers.keyboards import EraseAction, EraseCallback, erase_callbacks
from storage.audit import KEPT_FOR, AuditEntry, AuditLog, Reason
from storage.database import Database
from storage.registrations import NewRegistration, Registrations
from tests.client import TelegramUser
from tests.fake_telegram import FakeTelegram
from tests.helpers import (
    ADMIN_ID,
    ORGANIZER_CHAT_ID,
    PERSONAL,
    TRACES,
    Clock,
    assert_no_trace,
    assert_traces,
    fill_form,
)

EVENT_ID = "forum-2026"
ERASED_CARD = "Данные участника удалены по его запросу: регистрация №{}"


@pytest.fixture
def admin(make_user) -> TelegramUser:  # type: ignore[no-untyped-def]
    user: TelegramUser = make_user(ADMIN_ID, first_name="Админ")
    return user


async def register(make_user, user_id: int = 1001) -> TelegramUser:  # type: ignore[no-untyped-def]
    """The participant of tests/helpers.py: TRACES are their answers."""
    user: TelegramUser = make_user(user_id, first_name="Мария", username=f"user{user_id}")
    await fill_form(user)
    await user.click("Подтвердить")
    return user


async def add_registration(registrations: Registrations, clock: Clock, user_id: int) -> int:
    registration = await registrations.create(
        NewRegistration(
            event_id=EVENT_ID,
            user_id=user_id,
            username=None,
            telegram_name="Участник",
            full_name=f"Участник Номер {user_id}",
            position="Специалист",
            organization="НКО «Дружба»",
            phone=f"+7912{user_id:07d}",
            email=f"user{user_id}@example.ru",
            consent_at=clock(),
            consent_version="v1",
        ),
        now=clock(),
    )
    return registration.id


async def personal_columns(db: Database, registration_id: int) -> dict[str, object]:
    row = await db.fetchone("SELECT * FROM registrations WHERE id = ?", (registration_id,))
    assert row is not None
    return {column: row[column] for column in PERSONAL}


async def audit_rows(db: Database, action: str) -> list[tuple[object, ...]]:
    rows = await db.fetchall(
        "SELECT reason, actor, registration_id, event_id, fields, row_count FROM audit "
        "WHERE action = ? ORDER BY id",
        (action,),
    )
    return [tuple(row) for row in rows]


def erased_cards(fake: FakeTelegram) -> list[int]:
    """Numbers of the "erased on request" cards the organisers got (combined ones too)."""
    return [
        int(number)
        for message in fake.messages_to(ORGANIZER_CHAT_ID)
        for number in re.findall(ERASED_CARD.format(r"(\d+)"), message.text or "")
    ]


def card_texts(fake: FakeTelegram) -> str:
    return "\n".join(message.text or "" for message in fake.messages_to(ORGANIZER_CHAT_ID))


# --- the query -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+7 912 345-67-89", PersonKey(phone="+79123456789")),
        ("8 (912) 345-67-89", PersonKey(phone="+79123456789")),
        ("89123456789", PersonKey(phone="+79123456789")),
        ("+44 20 7946 0958", PersonKey(phone="+442079460958")),
        ("Maria.Ivanova@Example.RU", PersonKey(email="maria.ivanova@example.ru")),
        ("  maria.ivanova@example.ru ", PersonKey(email="maria.ivanova@example.ru")),
        ("not-an-email@", PersonKey(email="not-an-email@")),
        ("1", PersonKey(registration_id=1)),
        ("123456789", PersonKey(registration_id=123456789)),
        ("№17", PersonKey(registration_id=17)),
        ("# 17", PersonKey(registration_id=17)),
        ("№79123456789", PersonKey(registration_id=79123456789)),
    ],
)
def test_person_key_is_a_phone_an_email_or_a_number(text: str, expected: PersonKey) -> None:
    assert parse_person_key(text) == expected


@pytest.mark.parametrize(
    "text", ["Иванова", "0", "№0", "№99999999999999999999", "12-34", "x" * 301, "+7 000"]
)
def test_person_key_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_person_key(text)
    assert caught.value.reason == "person_key_unclear"


def test_erase_buttons_carry_the_numbers_within_telegrams_64_bytes() -> None:
    buttons = erase_callbacks([1, 22, 333])
    assert buttons is not None
    yes, no = buttons
    assert yes.pack() == "erase:yes:1.22.333"
    assert EraseCallback.unpack(yes.pack()).registration_ids == [1, 22, 333]
    assert no.action is EraseAction.no
    assert erase_callbacks(range(1_000_000, 1_000_010)) is None  # too many for one button
    for forged in ("erase:yes:1.-2", "erase:yes:", "erase:yes:1;DROP", f"erase:yes:{2**63}"):
        with pytest.raises(ValueError):
            EraseCallback.unpack(forged)


# --- /erase --------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["8 (912) 345-67-89", "+7 912 345 67 89", "79123456789"])
async def test_erase_by_phone_in_any_form_lists_asks_and_erases(
    make_user,
    admin: TelegramUser,
    fake: FakeTelegram,
    sender: Sender,
    db: Database,
    clock: Clock,
    query: str,
) -> None:
    await register(make_user)
    await sender.idle()
    await assert_traces(db)
    clock.advance(timedelta(hours=1))

    [listing] = await admin.send(f"/erase {query}")

    text = listing.text or ""
    assert "Регистрации с персональными данными: 1" in text
    assert (
        "№1 · Стратегическая сессия «ЭтНик» · Иванова Мария Петровна · зарегистрирован(а)" in text
    )
    assert "Удалить персональные данные этих регистраций (1)?" in text
    assert admin.buttons(listing) == ["Да, удалить", "Нет, оставить"]
    assert await personal_columns(db, 1) != dict.fromkeys(PERSONAL)  # nothing erased yet

    await admin.click("Да, удалить")
    await sender.idle()

    assert admin.last_text == "Готово: персональные данные удалены, регистраций: 1 (1)."
    # The listing became the outcome: the names leave the admin's chat too.
    assert fake.last_message(ADMIN_ID).message_id == listing.message_id
    assert await personal_columns(db, 1) == dict.fromkeys(PERSONAL)
    row = await db.fetchone("SELECT status, erased_at, consent_at FROM registrations")
    assert row is not None
    # On request the registration ends with its data.
    assert (row["status"], row["erased_at"]) == ("withdrawn", clock().isoformat())
    assert await audit_rows(db, "erase") == [
        (
            "admin",
            f"admin {ADMIN_ID}",
            1,
            EVENT_ID,
            "full_name,position,organization,phone,email,user_id,username,telegram_name",
            None,
        )
    ]
    assert erased_cards(fake) == [1]
    erased_card = card_texts(fake).split(ERASED_CARD.format(1))[1]
    assert "Иванова" not in erased_card and "912" not in erased_card
    await assert_no_trace(db)


async def test_erase_by_email_in_any_case_erases_only_that_persons_registrations(
    make_user,
    admin: TelegramUser,
    fake: FakeTelegram,
    sender: Sender,
    db: Database,
    registrations: Registrations,
    clock: Clock,
) -> None:
    await register(make_user)
    other = await add_registration(registrations, clock, 2002)

    await admin.send("/erase MARIA.IVANOVA@example.ru")
    assert "№1 · " in admin.last_text and f"№{other}" not in admin.last_text
    await admin.click("Да, удалить")
    await sender.idle()

    assert "регистраций: 1 (1)" in admin.last_text
    assert await personal_columns(db, 1) == dict.fromkeys(PERSONAL)
    assert (await personal_columns(db, other))["full_name"] == "Участник Номер 2002"
    assert [row[2] for row in await audit_rows(db, "erase")] == [1]
    assert erased_cards(fake) == [1]
    # (The other registrant's e-mail is at example.ru too.)
    await assert_no_trace(db, [value for value in TRACES if value != "example.ru"])


@pytest.mark.parametrize("query", ["1", "№1", "#1"])
async def test_erase_by_registration_number(
    make_user, admin: TelegramUser, fake: FakeTelegram, sender: Sender, db: Database, query: str
) -> None:
    user = await register(make_user)
    await user.send("/me")
    await user.click("Отменить регистрацию")
    await user.click("Да, отменить")  # withdrawn and erased: nothing left for /erase
    await register(make_user)  # registered again: registration №2
    await sender.idle()

    await admin.send(f"/erase {query}")
    assert "Регистраций с персональными данными по запросу «" in admin.last_text
    await admin.send(f"/erase {query.replace('1', '2')}")
    assert "№2 · " in admin.last_text
    await admin.click("Да, удалить")
    await sender.idle()

    assert "регистраций: 1 (2)" in admin.last_text
    assert await personal_columns(db, 2) == dict.fromkeys(PERSONAL)
    assert [(row[0], row[2]) for row in await audit_rows(db, "erase")] == [
        ("withdrawal", 1),
        ("admin", 2),
    ]
    assert erased_cards(fake) == [2]
    await assert_no_trace(db)


async def test_erase_several_registrations_of_one_phone_at_once(
    admin: TelegramUser,
    fake: FakeTelegram,
    sender: Sender,
    db: Database,
    registrations: Registrations,
    clock: Clock,
) -> None:
    first = await add_registration(registrations, clock, 2001)
    second = await add_registration(registrations, clock, 2002)
    # A shared office phone: both registrations name it.
    await db.execute("UPDATE registrations SET phone = '+79120002001'")

    await admin.send("/erase +7 912 000-20-01")
    assert "Удалить персональные данные этих регистраций (2)?" in admin.last_text
    await admin.click("Да, удалить")
    await sender.idle()

    assert f"регистраций: 2 ({first}, {second})" in admin.last_text
    assert [row[:3] for row in await audit_rows(db, "erase")] == [
        ("admin", f"admin {ADMIN_ID}", first),
        ("admin", f"admin {ADMIN_ID}", second),
    ]
    assert erased_cards(fake) == [first, second]
    await assert_no_trace(db, ["Участник Номер 2001", "Участник Номер 2002", "79120002001"])


async def test_erase_of_more_matches_than_a_button_can_carry_asks_for_numbers(
    admin: TelegramUser, db: Database, registrations: Registrations, clock: Clock
) -> None:
    for user_id in range(2001, 2026):
        await add_registration(registrations, clock, user_id)
    await db.execute("UPDATE registrations SET phone = '+79120002001'")

    [reply] = await admin.send("/erase +7 912 000-20-01")

    text = reply.text or ""
    assert "Регистрации с персональными данными: 25" in text
    assert "№25 · " in text
    assert text.endswith(
        "Совпадений больше, чем можно удалить одной кнопкой (25). Удаляйте по номеру "
        "регистрации: /erase 1."
    )
    assert admin.buttons(reply) == []
    assert message_length(reply.source or "") <= MAX_MESSAGE_LENGTH


async def test_erase_without_a_match_or_an_argument_says_so_and_erases_nothing(
    make_user, admin: TelegramUser, db: Database
) -> None:
    await register(make_user)

    [reply] = await admin.send("/erase +7 999 000-00-00")
    assert reply.text == (
        "Регистраций с персональными данными по запросу «+7 999 000-00-00» нет: ничего не "
        "удалено. Если данные уже удаляли, журнал — /audit."
    )
    assert admin.buttons(reply) == []
    [reply] = await admin.send("/erase nobody@example.ru")
    assert "ничего не удалено" in (reply.text or "")
    [reply] = await admin.send("/erase")
    assert (reply.text or "").startswith("Напишите, чьи данные удалить: /erase +7 912")
    [reply] = await admin.send("/erase Иванова")
    assert (reply.text or "").startswith("Это не телефон, не e-mail и не номер регистрации.")
    assert await db.fetchall("SELECT * FROM audit") == []
    assert (await personal_columns(db, 1))["full_name"] == "Иванова Мария Петровна"


async def test_erase_declined_keeps_everything(
    make_user, admin: TelegramUser, fake: FakeTelegram, sender: Sender, db: Database
) -> None:
    await register(make_user)
    await admin.send("/erase 1")
    await admin.click("Нет, оставить")
    await sender.idle()

    assert admin.last_text == "Хорошо, ничего не удалено."
    assert (await personal_columns(db, 1))["full_name"] == "Иванова Мария Петровна"
    assert await db.fetchall("SELECT * FROM audit") == []
    assert erased_cards(fake) == []


async def test_erase_confirmed_twice_is_harmless(
    make_user, admin: TelegramUser, fake: FakeTelegram, sender: Sender, db: Database
) -> None:
    await register(make_user)
    [listing] = await admin.send("/erase 1")
    [yes] = [b for row in listing.inline_keyboard for b in row if b["text"] == "Да, удалить"]
    await admin.click("Да, удалить")
    erased = await personal_columns(db, 1)

    # A double tap, or the same request made again from another admin's old message.
    await admin.click_data(listing, yes["callback_data"])
    await sender.idle()

    assert admin.last_text == "Данные этих регистраций уже удалены: ничего не изменилось."
    assert await personal_columns(db, 1) == erased
    assert len(await audit_rows(db, "erase")) == 1
    assert erased_cards(fake) == [1]
    [reply] = await admin.send("/erase 1")
    assert "ничего не удалено" in (reply.text or "")
    await assert_no_trace(db)


async def test_an_old_erase_button_erases_what_its_message_listed(
    admin: TelegramUser, sender: Sender, db: Database, registrations: Registrations, clock: Clock
) -> None:
    first = await add_registration(registrations, clock, 2001)
    second = await add_registration(registrations, clock, 2002)
    [old] = await admin.send(f"/erase {first}")
    await admin.send(f"/erase {second}")

    [yes] = [b for row in old.inline_keyboard for b in row if b["text"] == "Да, удалить"]
    await admin.click_data(old, yes["callback_data"])

    assert [row[2] for row in await audit_rows(db, "erase")] == [first]
    assert (await personal_columns(db, second))["full_name"] == "Участник Номер 2002"


async def test_non_admins_are_refused_erase_audit_and_a_forged_erase_button(
    make_user, fake: FakeTelegram, db: Database
) -> None:
    participant = await register(make_user)
    stranger: TelegramUser = make_user(3003)
    for command in ("/erase 1", "/erase +7 912 345-67-89", "/audit"):
        replies = await stranger.send(command)
        assert [m.text for m in replies] == ["Эта команда доступна только администраторам бота."]
    # A button they could only have made up: refused, nothing erased.
    message = fake.last_message(participant.chat_id)
    forged = EraseCallback(action=EraseAction.yes, ids="1").pack()
    await participant.click_data(message, forged)
    [answer] = fake.calls_of("answerCallbackQuery")[-1:]
    assert answer.params["text"] == "Эта команда доступна только администраторам бота."
    assert (await personal_columns(db, 1))["full_name"] == "Иванова Мария Петровна"
    assert await db.fetchall("SELECT * FROM audit") == []
    in_group: TelegramUser = make_user(ADMIN_ID, chat_id=-100777)
    assert await in_group.send("/erase 1") == []  # even an admin: silent in a group


async def test_erase_and_audit_are_in_the_admins_menu_and_help(
    admin: TelegramUser, fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot
) -> None:
    await dispatcher["admin_menus"].set_all(bot)
    commands = [c["command"] for c in fake.commands_for({"type": "chat", "chat_id": ADMIN_ID})]
    assert commands[-2:] == ["erase", "audit"]
    assert "erase" not in [c["command"] for c in fake.commands_for()]
    [reply] = await admin.send("/help")
    assert "/erase телефон, e-mail или номер регистрации" in (reply.text or "")
    assert "/audit — журнал" in (reply.text or "")


# --- /audit --------------------------------------------------------------------------------


async def test_audit_shows_the_last_twenty_entries_newest_first_with_their_zone(
    make_user, admin: TelegramUser, db: Database, clock: Clock
) -> None:
    audit = AuditLog(db)
    for number in range(25):
        clock.advance(timedelta(minutes=1))
        await audit.record(AuditEntry(clock(), "find", f"admin {ADMIN_ID}", row_count=number))
    clock.advance(timedelta(minutes=1))
    await register(make_user)
    await admin.send("/erase 1")
    await admin.click("Да, удалить")

    [reply] = await admin.send("/audit")

    lines = (reply.text or "").splitlines()
    assert lines[0] == "Журнал, последние записи (20), новые сверху"
    assert lines[1] == (
        "26 ноября 2026, 12:26 (МСК, UTC+3) · удаление · по запросу · админ 500 · №1 · "
        "forum-2026 · удалено: ФИО, должность, место работы, телефон, e-mail, Telegram ID, "
        "имя пользователя, имя в Telegram"
    )
    assert lines[2] == "26 ноября 2026, 12:25 (МСК, UTC+3) · поиск · админ 500 · строк: 24"
    assert len(lines) == 21
    assert lines[-1].endswith("строк: 6")  # the 20th newest of them
    assert message_length(reply.source or "") <= MAX_MESSAGE_LENGTH


async def test_audit_of_long_entries_fits_one_message(
    admin: TelegramUser, db: Database, clock: Clock
) -> None:
    audit = AuditLog(db)
    fields = ("full_name", "position", "organization", "phone", "email", "user_id",
              "username", "telegram_name")  # fmt: skip
    for number in range(30):
        await audit.record(
            AuditEntry(clock(), "erase", f"admin {10**15 + number}", reason=Reason.retention,
                       registration_id=10**12 + number, event_id="x" * 32, fields=fields)
        )  # fmt: skip
    [reply] = await admin.send("/audit")
    assert message_length(reply.source or "") <= MAX_MESSAGE_LENGTH
    assert "…и ещё" in (reply.text or "")
    assert "python -m bot audit --since" in (reply.text or "")


async def test_audit_when_empty_says_so(admin: TelegramUser) -> None:
    [reply] = await admin.send("/audit")
    assert reply.text == "Журнал пуст: данных не удаляли, выгрузок, поиска и рассылок не было."


async def test_audit_entries_older_than_three_years_are_pruned(db: Database, clock: Clock) -> None:
    audit = AuditLog(db)
    await audit.record(AuditEntry(clock() - KEPT_FOR - timedelta(days=1), "find", "admin 1"))
    await audit.record(AuditEntry(clock() - KEPT_FOR + timedelta(days=1), "find", "admin 2"))
    assert await audit.prune(now=clock()) == 1
    assert [entry.actor for entry in await audit.recent(10)] == ["admin 2"]


async def test_the_hourly_pruning_prunes_the_audit(
    dispatcher: Dispatcher, bot: Bot, db: Database, clock: Clock, settings
) -> None:  # type: ignore[no-untyped-def]
    from bot.app import create_intake

    await AuditLog(db).record(AuditEntry(clock() - KEPT_FOR * 2, "find", "admin 1"))
    intake = create_intake(dispatcher, bot, db=db, settings=settings, clock=clock)
    await intake.start()
    try:
        for _ in range(200):
            if not await db.fetchall("SELECT * FROM audit"):
                break
            await asyncio.sleep(0.01)
    finally:
        await intake.close()
    assert await db.fetchall("SELECT * FROM audit") == []


# --- reads of personal data are recorded ---------------------------------------------------


async def test_find_is_recorded_with_how_many_were_shown_never_the_query(
    admin: TelegramUser, db: Database, registrations: Registrations, clock: Clock
) -> None:
    for user_id in range(2001, 2013):
        await add_registration(registrations, clock, user_id)

    await admin.send("/find участник")
    await admin.send("/find 912 000 2003")
    await admin.send("/find Петров")
    await admin.send("/find")  # no search: nothing to record

    assert await audit_rows(db, "find") == [
        (None, f"admin {ADMIN_ID}", None, None, None, 10),
        (None, f"admin {ADMIN_ID}", None, None, None, 1),
        (None, f"admin {ADMIN_ID}", None, None, None, 0),
    ]
    stored = " ".join(
        str(value) for row in await db.fetchall("SELECT * FROM audit") for value in row
    )
    for query in ("участник", "912", "2003", "Петров"):
        assert query not in stored


async def test_export_is_recorded_with_its_session_and_rows(
    admin: TelegramUser,
    db: Database,
    registrations: Registrations,
    clock: Clock,
    dispatcher: Dispatcher,
    fake: FakeTelegram,
) -> None:
    await add_registration(registrations, clock, 2001)
    await add_registration(registrations, clock, 2002)

    await admin.send("/export")
    await asyncio.wait_for(dispatcher["background_jobs"].idle(), 30)
    assert len([m for m in fake.messages_to(ADMIN_ID) if m.document]) == 2

    assert await audit_rows(db, "export") == [(None, f"admin {ADMIN_ID}", None, EVENT_ID, None, 2)]


async def test_export_that_reached_nobody_is_not_recorded(
    admin: TelegramUser,
    db: Database,
    registrations: Registrations,
    clock: Clock,
    dispatcher: Dispatcher,
    fake: FakeTelegram,
) -> None:
    await add_registration(registrations, clock, 2001)
    fake.fail("sendDocument", code=400, description="Bad Request: file is too big")
    await admin.send("/export")
    await asyncio.wait_for(dispatcher["background_jobs"].idle(), 30)
    assert await audit_rows(db, "export") == []


async def test_broadcast_is_recorded_with_its_recipients(
    admin: TelegramUser,
    db: Database,
    registrations: Registrations,
    clock: Clock,
    catalog: EventCatalog,
) -> None:
    for user_id in (2001, 2002, 2003):
        await add_registration(registrations, clock, user_id)

    await admin.send("/broadcast")
    await admin.send("До встречи!")
    await admin.click("Отправить (3)")
    await admin.send("/broadcast")
    await admin.send("Ещё раз")
    await admin.click("Отменить")  # cancelled: nothing sent, nothing recorded

    assert await audit_rows(db, "broadcast") == [
        (None, f"admin {ADMIN_ID}", None, EVENT_ID, None, 3)
    ]


async def test_erasure_by_reason_is_recorded_only_once_per_registration(
    personal_data, db: Database, registrations: Registrations, clock: Clock
) -> None:  # type: ignore[no-untyped-def]
    first = await add_registration(registrations, clock, 2001)
    erased = await personal_data.erase(
        [first, first], reason=Reason.admin, actor="operator", now=clock()
    )
    again = await personal_data.erase([first], reason=Reason.admin, actor="operator", now=clock())
    assert [entry.registration_id for entry in erased] == [first]
    assert again == []
    assert len(await audit_rows(db, "erase")) == 1


async def test_a_broadcast_after_retention_skips_the_erased_registrations(
    admin: TelegramUser,
    db: Database,
    registrations: Registrations,
    personal_data,
    clock: Clock,
) -> None:  # type: ignore[no-untyped-def]
    """Retention leaves a registration confirmed (counted) but with nobody to write to: an
    announcement goes to the others, and is not refused for a row without a chat."""
    first = await add_registration(registrations, clock, 2001)
    await add_registration(registrations, clock, 2002)
    await personal_data.erase([first], reason=Reason.retention, actor="retention", now=clock())

    await admin.send("/broadcast")
    assert "получателей: 1" in admin.last_text
    await admin.send("До встречи!")
    await admin.click("Отправить (1)")

    queued = await db.fetchall("SELECT chat_id FROM outbox WHERE kind = 'broadcast'")
    assert [row["chat_id"] for row in queued] == [2002]


async def test_erase_on_request_also_gives_up_messages_queued_to_the_person(
    make_user, admin: TelegramUser, sender: Sender, db: Database, clock: Clock
) -> None:
    """Once no registration of theirs is left: an announcement waiting for them, the record
    that they blocked the bot and an update of theirs set aside all go."""
    await register(make_user)
    await sender.idle()
    # They blocked the bot: an announcement waits, parked, for them to come back.
    await db.execute("INSERT INTO chats (chat_id, unreachable) VALUES (1001, 'blocked')")
    await db.execute(
        "INSERT INTO outbox (chat_id, kind, text, created_at, status, error) "
        "VALUES (1001, 'broadcast', ?, ?, 'failed', 'blocked')",
        ("Иванова Мария Петровна, до встречи", clock().isoformat()),
    )
    await db.execute(
        "INSERT INTO inbox (update_id, lane, payload, received_at, set_aside) "
        "VALUES (999999, 1001, ?, ?, 'failed')",
        ('{"text": "Maria.Ivanova@Example.RU"}', clock().isoformat()),
    )

    await admin.send("/erase 1")
    await admin.click("Да, удалить")

    queued = await db.fetchall("SELECT status, text FROM outbox WHERE chat_id = 1001")
    assert [tuple(row) for row in queued] == [("failed", None)]
    assert await db.fetchall("SELECT * FROM inbox WHERE lane = 1001") == []
    assert await db.fetchall("SELECT * FROM chats WHERE chat_id = 1001") == []
    await assert_no_trace(db)
