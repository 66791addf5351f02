"""The participant's conversation through the production Dispatcher, in-process."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from aiogram import Bot, Dispatcher

from bot.app import create_dispatcher
from bot.domain.config import Settings
from bot.domain.events import load_events
from bot.domain.texts import t
from bot.middlewares import ConversationMiddleware
from handlers.keyboards import MyAction
from storage.database import Database
from storage.events import EventsRepository
from storage.registrations import Registrations
from tests.client import Deliver, TelegramUser, feed_deliver
from tests.fake_telegram import FakeTelegram, SentMessage, callback_query_update, text_update
from tests.helpers import EVENTS_TOML, Clock, dispatcher_for, fill_form, set_read_only, stop_failing
from tests.helpers import fail_writes as failing

EVENT_ID = "forum-2026"


async def test_a_registration_takes_as_many_bot_api_calls_as_a_bare_aiogram_form(
    user: TelegramUser,
) -> None:
    # bench/floor_bot.py: a message per step, and an answer to each of the two buttons; then
    # the calendar file, which the bare form does not send.
    await fill_form(user)
    await user.click("Подтвердить")
    calls = [
        call.method for call in user.fake.calls if call.params.get("chat_id") != -1001234567890
    ]
    assert len([call for call in calls if call != "setMyCommands"]) == 11, calls
    assert calls[-1] == "sendDocument"


async def stored_rows(db: Database) -> list[dict[str, object]]:
    return [dict(row) for row in await db.fetchall("SELECT * FROM registrations ORDER BY id")]


async def fsm_rows(db: Database) -> list[dict[str, object]]:
    return [dict(row) for row in await db.fetchall("SELECT * FROM fsm_states")]


async def outbox_rows(db: Database) -> list[dict[str, object]]:
    return [dict(row) for row in await db.fetchall("SELECT * FROM outbox ORDER BY id")]


async def test_registration_completes_and_is_stored(
    user: TelegramUser, registrations: Registrations, db: Database
) -> None:
    replies = await user.send("/start")
    greeting = replies[0].text or ""
    assert "Стратегическая сессия «ЭтНик»" in greeting
    assert "10 декабря 2026, 12:00 (МСК, UTC+3)" in greeting
    assert "8 декабря 2026, 23:59 (МСК, UTC+3)" in greeting
    assert "Сессия для НКО & органов власти <онлайн>" in greeting  # escaped, shown as written
    assert "152-ФЗ" in user.last_text
    assert len(replies) == 1  # the greeting and the consent request, with its buttons
    assert user.buttons(replies[0]) == ["✅ Даю согласие", "Не согласен(на)"]
    greeting_id = replies[0].message_id

    replies = await user.click("Даю согласие")
    assert "Шаг 1 из 5" in user.last_text
    # The consent request became the record of consent and the first question.
    assert len(replies) == 1 and replies[0].message_id == greeting_id
    assert "Согласие на обработку персональных данных получено" in user.last_text
    assert "10 декабря 2026, 12:00 (МСК, UTC+3)" in user.last_text
    assert user.buttons(replies[0]) == []  # the consent buttons are gone: cannot agree twice

    await user.send("  Иванова   Мария Петровна ")
    assert "Шаг 2 из 5" in user.last_text
    await user.send("Главный специалист")
    assert "Шаг 3 из 5" in user.last_text
    await user.send("Министерство культуры Саратовской области")
    assert "Шаг 4 из 5" in user.last_text
    assert user.reply_keyboard is not None
    assert user.reply_keyboard["keyboard"][0][0]["request_contact"] is True

    replies = await user.share_contact("79123456789")
    assert user.reply_keyboard is None  # removed once the phone is known
    assert len(replies) == 1  # with the next question
    assert "Телефон +7 912 345-67-89 записан" in user.last_text
    assert "Шаг 5 из 5" in user.last_text
    replies = await user.send("Maria.Ivanova@Example.RU")
    summary = user.last_text
    for shown in (
        "Иванова Мария Петровна",
        "Главный специалист",
        "Министерство культуры Саратовской области",
        "+7 912 345-67-89",
        "Maria.Ivanova@example.ru",
        "10 декабря 2026, 12:00 (МСК, UTC+3)",
        "Онлайн",
    ):
        assert shown in summary

    replies = await user.click("Подтвердить")
    confirmation = replies[0].text or ""
    assert "Вы зарегистрированы" in confirmation
    assert "10 декабря 2026, 12:00 (МСК, UTC+3)" in confirmation
    assert "https://example.org/join" in confirmation
    # The summary itself became the confirmation, without its buttons; the calendar follows.
    assert [message.edits for message in replies] == [[summary], []]
    assert user.buttons(replies[0]) == []
    assert replies[1].filename == "forum-2026.ics"

    [row] = await stored_rows(db)
    assert row["event_id"] == EVENT_ID
    assert row["user_id"] == 1001
    assert row["username"] == "maria"
    assert row["full_name"] == "Иванова Мария Петровна"
    assert row["position"] == "Главный специалист"
    assert row["organization"] == "Министерство культуры Саратовской области"
    assert row["phone"] == "+79123456789"
    assert row["email"] == "Maria.Ivanova@example.ru"
    assert row["status"] == "confirmed"
    assert row["consent_version"] == "v1"
    assert row["consent_at"] == "2026-11-26T09:00:00+00:00"
    assert await fsm_rows(db) == []  # the draft is gone once saved


async def test_declining_consent_stores_nothing(user: TelegramUser, db: Database) -> None:
    await user.send("/start")
    await user.click("Не согласен")
    assert "ничего не сохранили" in user.last_text
    assert await stored_rows(db) == []
    assert await fsm_rows(db) == []
    await user.send("Иванова Мария")  # no form any more: not taken as an answer
    assert "Не понял" in user.last_text


async def test_text_instead_of_consent_button_asks_again(user: TelegramUser) -> None:
    await user.send("/start")
    replies = await user.send("Иванова Мария Петровна")
    assert "нажмите одну из кнопок" in (replies[0].text or "")
    assert user.buttons(replies[-1]) == ["✅ Даю согласие", "Не согласен(на)"]


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (["Иван 3"], "В ФИО не должно быть цифр"),
        (["12345"], "должны быть буквы"),
        (["Я"], "Слишком коротко"),
        (["Иванов " * 30], "Слишком длинный ответ"),
        (["x" * 5000], "можно не больше 1000"),
        (["<b>Иван</b>"], "допустимы только буквы"),
    ],
)
async def test_bad_full_name_is_explained_and_asked_again(
    user: TelegramUser, db: Database, answers: list[str], reason: str
) -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    for answer in answers:
        replies = await user.send(answer)
    assert reason in (replies[0].text or "")
    assert "фамилию, имя и отчество" in user.last_text
    [row] = await fsm_rows(db)
    assert row["state"] == "Form:full_name"
    assert json.loads(row["data"])["full_name"] is None


@pytest.mark.parametrize(
    ("send", "kind"),
    [
        ("send_sticker", "стикер"),
        ("send_photo", "фото"),
        ("send_voice", "голосовое сообщение"),
        ("send_document", "файл"),
        ("send_location", "геопозиция"),
    ],
)
async def test_non_text_answer_is_explained_and_asked_again(
    user: TelegramUser, db: Database, send: str, kind: str
) -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    replies = await getattr(user, send)()
    assert f"Я жду ответ текстом, а пришло {kind}" in (replies[0].text or "")
    assert "должность" in user.last_text
    [row] = await fsm_rows(db)
    assert row["state"] == "Form:position"
    assert "Иванова Мария Петровна" in str(row["data"])


async def test_unknown_command_mid_form_is_explained_and_question_repeated(
    user: TelegramUser,
) -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    replies = await user.send("/register")
    assert "Команда /register здесь не работает" in (replies[0].text or "")
    assert "фамилию, имя и отчество" in user.last_text


async def test_help_mid_form_lists_commands_and_repeats_question(user: TelegramUser) -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    replies = await user.send("/help")
    assert "/cancel" in (replies[0].text or "")
    assert "должность" in user.last_text


async def test_start_mid_form_continues_the_same_form(user: TelegramUser, db: Database) -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    replies = await user.send("/start")
    assert "Вы уже заполняете анкету" in (replies[0].text or "")
    assert "должность" in user.last_text
    [row] = await fsm_rows(db)
    assert "Иванова Мария Петровна" in str(row["data"])


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("8 (912) 345-67-89", "+79123456789"),
        ("+7 912 345 67 89", "+79123456789"),
        ("89123456789", "+79123456789"),
        ("+375 29 123-45-67", "+375291234567"),
    ],
)
async def test_typed_phone_is_accepted_in_usual_forms(
    user: TelegramUser, db: Database, typed: str, stored: str
) -> None:
    await fill_until_phone(user)
    await user.send(typed)
    assert "Шаг 5 из 5" in user.last_text
    await user.send("maria@example.ru")
    await user.click("Подтвердить")
    [row] = await stored_rows(db)
    assert row["phone"] == stored


async def fill_until_phone(user: TelegramUser) -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    await user.send("Главный специалист")
    await user.send("Министерство культуры")


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("12345", "Такого номера не существует"),
        ("+7 912 345 67", "Такого номера не существует"),
        ("позвоните мне", "допустимы только цифры"),
        ("+7 000 000 00 00", "Такого номера не существует"),
    ],
)
async def test_bad_phone_is_explained_and_asked_again(
    user: TelegramUser, db: Database, typed: str, reason: str
) -> None:
    await fill_until_phone(user)
    replies = await user.send(typed)
    assert reason in (replies[0].text or "")
    assert "номер телефона" in user.last_text
    assert user.reply_keyboard is not None  # the share button is offered again
    [row] = await fsm_rows(db)
    assert row["state"] == "Form:phone"
    assert json.loads(row["data"])["phone"] is None


async def test_someone_elses_contact_is_refused(user: TelegramUser, db: Database) -> None:
    await fill_until_phone(user)
    replies = await user.share_contact("79991234567", user_id=777)
    assert "чужой контакт" in (replies[0].text or "")
    [row] = await fsm_rows(db)
    assert row["state"] == "Form:phone"
    assert "79991234567" not in str(row["data"])


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("maria.example.ru", "нет знака «@»"),
        ("maria@@example.ru", "ровно один знак «@»"),
        ("@example.ru", "Перед «@»"),
        ("maria@localhost", "домен с точкой"),
        ("maria ivanova@example.ru", "не должно быть пробелов"),
        ("maria..ivanova@example.ru", "записан с ошибкой"),
    ],
)
async def test_bad_email_is_explained_and_asked_again(
    user: TelegramUser, db: Database, typed: str, reason: str
) -> None:
    await fill_until_phone(user)
    await user.send("+79123456789")
    replies = await user.send(typed)
    assert reason in (replies[0].text or "")
    assert "электронной почты" in user.last_text
    assert await stored_rows(db) == []


async def test_changing_a_field_from_the_summary_asks_only_that_field(
    user: TelegramUser, db: Database
) -> None:
    await fill_form(user)
    await user.click("Должность")
    assert "Сейчас указано: Главный специалист" in user.last_text
    assert "Шаг" not in user.last_text
    await user.send("Директор")
    assert "Проверьте, пожалуйста, данные" in user.last_text
    assert "Директор" in user.last_text
    assert "Главный специалист" not in user.last_text

    await user.click("Телефон")
    replies = await user.send("+7 912 000-11-22")
    # The summary has its own buttons: the reply keyboard goes with a message of its own.
    assert "Телефон +7 912 000-11-22 записан" in (replies[0].text or "")
    assert user.reply_keyboard is None
    assert "Проверьте, пожалуйста, данные" in user.last_text
    await user.click("Подтвердить")
    [row] = await stored_rows(db)
    assert row["position"] == "Директор"
    assert row["phone"] == "+79120001122"


async def test_user_values_are_shown_literally_never_as_html(
    user: TelegramUser, db: Database
) -> None:
    await fill_form(user, position="<b>Директор</b> & Co")
    assert "<b>Директор</b> & Co" in user.last_text
    await user.click("Подтвердить")
    [row] = await stored_rows(db)
    assert row["position"] == "<b>Директор</b> & Co"


async def test_cancel_mid_form_drops_the_draft(user: TelegramUser, db: Database) -> None:
    await fill_until_phone(user)
    replies = await user.send("/cancel")
    assert "Анкета удалена" in (replies[0].text or "")
    assert "/start" in (replies[0].text or "")
    assert user.reply_keyboard is None
    assert await fsm_rows(db) == []
    assert await stored_rows(db) == []
    replies = await user.send("/cancel")
    assert "нечего отменять" in (replies[0].text or "")


def confirm_data(summary: SentMessage) -> str:
    """The summary's confirm button's callback data, to press it more than once."""
    [data] = [
        button["callback_data"]
        for row in summary.inline_keyboard
        for button in row
        if "Подтвердить" in button["text"]
    ]
    return str(data)


async def test_double_tap_on_confirm_makes_one_registration(
    user: TelegramUser, fake: FakeTelegram, db: Database
) -> None:
    await fill_form(user)
    summary = fake.last_message(user.chat_id)
    confirm = confirm_data(summary)
    await user.click_data(summary, confirm)
    replies = await user.click_data(summary, confirm)
    assert len(await stored_rows(db)) == 1
    confirmations = [
        m for m in fake.messages_to(user.chat_id) if "Вы зарегистрированы" in (m.text or "")
    ]
    assert len(confirmations) == 1
    assert replies == [] or all("Вы зарегистрированы" not in (m.text or "") for m in replies)
    answers = fake.calls_of("answerCallbackQuery")
    assert "Регистрация уже подтверждена" in str(answers[-1].params)


async def test_a_conversation_keeps_no_lock_once_its_updates_are_handled(
    user: TelegramUser, fake: FakeTelegram, dispatcher: Dispatcher, db: Database
) -> None:
    # Both presses in hand at once, one waiting for the conversation's lock (that the second
    # waits is shown by test_seats.py's double tap on joining the waiting list).
    await fill_form(user)
    summary = fake.last_message(user.chat_id)
    confirm = confirm_data(summary)
    await asyncio.gather(user.click_data(summary, confirm), user.click_data(summary, confirm))
    assert len(await stored_rows(db)) == 1
    confirmations = [
        m for m in fake.messages_to(user.chat_id) if "Вы зарегистрированы" in (m.text or "")
    ]
    assert len(confirmations) == 1
    # Nothing kept for a conversation with no update in hand (the map does not grow).
    [middleware] = [
        m for m in dispatcher.update.outer_middleware if isinstance(m, ConversationMiddleware)
    ]
    assert len(middleware.locks) == 0


def recording_user(
    fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot
) -> tuple[TelegramUser, list[dict[str, object]], Deliver]:
    """A user whose updates are kept, so a test can deliver one again as Telegram would."""
    delivered: list[dict[str, object]] = []
    inner = feed_deliver(dispatcher, bot)

    async def deliver(update: dict[str, object]) -> None:
        delivered.append(update)
        await inner(update)

    return TelegramUser(fake, deliver, user_id=1001), delivered, inner


async def test_redelivered_update_has_one_effect(
    fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot, db: Database
) -> None:
    user, delivered, inner = recording_user(fake, dispatcher, bot)
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    before = len(fake.messages)
    await inner(delivered[-1])  # Telegram sends the same update again after a restart
    assert len(fake.messages) == before
    [row] = await fsm_rows(db)
    assert row["state"] == "Form:position"  # the name was not taken as the position


async def test_start_after_registering_shows_the_registration(
    user: TelegramUser, db: Database
) -> None:
    await fill_form(user)
    await user.click("Подтвердить")
    replies = await user.send("/start")
    assert "Вы уже зарегистрированы" in (replies[0].text or "")
    assert "Иванова Мария Петровна" in user.last_text
    assert await fsm_rows(db) == []
    assert len(await stored_rows(db)) == 1


async def test_me_lists_registrations_and_changes_a_field(user: TelegramUser, db: Database) -> None:
    replies = await user.send("/me")
    assert [m.text for m in replies] == [
        "Мы не храним ни одной вашей регистрации. Зарегистрироваться — /start."
    ]
    await fill_form(user)
    await user.click("Подтвердить")
    replies = await user.send("/me")
    assert "Иванова Мария Петровна" in (replies[0].text or "")  # the card, then the notice
    await user.click("Изменить данные")
    await user.click("E-mail")
    assert "Сейчас указано: Maria.Ivanova@example.ru" in user.last_text
    await user.send("not an email")
    assert "электронной почты" in user.last_text
    replies = await user.send("new@example.ru")
    assert "Изменения сохранены" in (replies[0].text or "")
    assert "new@example.ru" in user.last_text
    [row] = await stored_rows(db)
    assert row["email"] == "new@example.ru"
    assert row["updated_at"] >= row["created_at"]
    assert await fsm_rows(db) == []


async def test_withdrawal_asks_first_and_keeps_history(user: TelegramUser, db: Database) -> None:
    await fill_form(user)
    await user.click("Подтвердить")
    await user.send("/me")
    await user.click("Отменить регистрацию")
    assert "Отменить регистрацию на «Стратегическая сессия «ЭтНик»»?" in user.last_text
    await user.click("Нет, оставить")
    assert (await stored_rows(db))[0]["status"] == "confirmed"

    await user.send("/me")
    await user.click("Отменить регистрацию")
    await user.click("Да, отменить")
    assert "отменена" in user.last_text
    [row] = await stored_rows(db)
    assert row["status"] == "withdrawn"

    await fill_form(user)  # registering again makes a new active row; the old one stays
    await user.click("Подтвердить")
    rows = await stored_rows(db)
    assert [row["status"] for row in rows] == ["withdrawn", "confirmed"]


@pytest.mark.parametrize("registration_id", [2**63, 10**30, -1, -(2**63) - 1, 0])
async def test_a_forged_registration_id_is_an_expired_button(
    user: TelegramUser,
    fake: FakeTelegram,
    db: Database,
    caplog: pytest.LogCaptureFixture,
    registration_id: int,
) -> None:
    # SQLite integers are 64-bit: a larger id in a button the client forged used to raise
    # OverflowError in the query and reach the errors handler.
    await fill_form(user)
    await user.click("Подтвердить")
    await user.send("/me")
    card = fake.last_message(user.chat_id)
    before = (await stored_rows(db), await fsm_rows(db), await outbox_rows(db))
    messages = len(fake.messages_to(user.chat_id))
    caplog.set_level(logging.INFO)
    for action in MyAction:
        for field in ("", "email"):
            await user.click_data(card, f"my:{action}:{registration_id}:{field}")
            assert len(fake.messages_to(user.chat_id)) == messages
            answer = fake.calls_of("answerCallbackQuery")[-1]
            assert answer.params.get("text") == "Эта кнопка больше не действует."
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert (await stored_rows(db), await fsm_rows(db), await outbox_rows(db)) == before


async def test_buttons_about_someone_elses_registration_change_nothing(
    user: TelegramUser, make_user: Callable[..., TelegramUser], fake: FakeTelegram, db: Database
) -> None:
    await fill_form(user)
    await user.click("Подтвердить")
    [row] = await stored_rows(db)
    stranger = make_user(2002)
    await stranger.send("/start")
    before = (await stored_rows(db), await outbox_rows(db))
    for action in MyAction:
        await stranger.click_data(
            fake.last_message(stranger.chat_id), f"my:{action}:{row['id']}:email"
        )
        answer = fake.calls_of("answerCallbackQuery")[-1]
        assert answer.params.get("text") == "Эта кнопка больше не действует."
    assert (await stored_rows(db), await outbox_rows(db)) == before


async def test_changes_are_refused_after_the_deadline(
    user: TelegramUser, clock: Clock, db: Database
) -> None:
    await fill_form(user)
    await user.click("Подтвердить")
    clock.advance(timedelta(days=30))
    [card, *_] = await user.send("/me")
    assert "Срок изменения данных истёк" in (card.text or "")
    assert user.buttons(card) == ["📅 Файл для календаря", "Отменить регистрацию"]


async def test_confirm_after_the_deadline_is_refused(
    user: TelegramUser, clock: Clock, db: Database
) -> None:
    await fill_form(user)
    clock.advance(timedelta(days=30))
    await user.click("Подтвердить")
    assert "регистрация уже закрыта" in user.last_text
    assert "org@example.ru" in user.last_text
    assert await stored_rows(db) == []


async def test_no_open_session_says_so_with_the_contact(user: TelegramUser, clock: Clock) -> None:
    clock.advance(timedelta(days=30))
    replies = await user.send("/start")
    assert "не открыта" in (replies[0].text or "")
    assert "org@example.ru" in (replies[0].text or "")


async def test_deep_link_opens_the_session(user: TelegramUser) -> None:
    await user.send(f"/start {EVENT_ID}")
    assert "152-ФЗ" in user.last_text
    replies = await user.send("/cancel")
    assert "Анкета удалена" in (replies[0].text or "")
    replies = await user.send("/start no-such-event")
    assert "Не нашёл мероприятие" in (replies[0].text or "")
    assert "152-ФЗ" in user.last_text  # then the open session is offered


async def test_group_start_points_to_the_private_chat(
    make_user: object, fake: FakeTelegram, db: Database
) -> None:
    member = make_user(2002, chat_id=-100555)  # type: ignore[operator]
    replies = await member.send("/start")
    assert f"https://t.me/{fake.bot_username}?start={EVENT_ID}" in (replies[0].text or "")
    replies = await member.send("Иванова Мария Петровна")
    assert replies == []  # the bot stays silent in groups
    assert await fsm_rows(db) == []


async def test_database_failure_tells_the_person_and_keeps_the_form(
    user: TelegramUser, db: Database
) -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    await set_read_only(db, True)  # the disk is full: nothing can be written
    replies = await user.send("Главный специалист")
    assert [m.text for m in replies] == [
        "Не получилось сохранить: что-то пошло не так на нашей стороне. Ваши ответы не "
        "потеряны, попробуйте ещё раз через минуту."
    ]
    await set_read_only(db, False)
    [row] = await fsm_rows(db)
    assert row["state"] == "Form:position"  # nothing half-written
    assert "Иванова Мария Петровна" in str(row["data"])
    await user.send("Главный специалист")
    assert "Шаг 3 из 5" in user.last_text


SECOND_EVENT = """
[[events]]
id = "media-2026"
title = "Пресс-конференция"
starts_at = 2026-12-20T15:00:00
timezone = "Europe/Samara"
registration_deadline = 2026-12-19T18:00:00
location = "Самара, ул. Ленина, 1"
"""


async def test_several_open_sessions_are_offered_as_buttons(
    settings: Settings, fake: FakeTelegram, bot: Bot, clock: Clock, db: Database
) -> None:
    dispatcher = await dispatcher_for(EVENTS_TOML + SECOND_EVENT, settings, db, clock)
    user = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1001)
    replies = await user.send("/start")
    assert "несколько мероприятий" in (replies[0].text or "")
    assert user.buttons(replies[0]) == ["Стратегическая сессия «ЭтНик»", "Пресс-конференция"]
    replies = await user.click("Пресс-конференция")
    greeting = replies[-1].text or ""  # the greeting and the consent request: one message
    assert "20 декабря 2026, 15:00 (МСК+1, UTC+4)" in greeting
    assert "Самара, ул. Ленина, 1" in greeting
    # No policy in the file: the default text.
    assert "Данные обрабатываются по 152-ФЗ." not in user.last_text
    assert "Федеральный закон № 152-ФЗ" in user.last_text


async def test_long_description_and_policy_are_sent_apart_when_too_long_together(
    settings: Settings, fake: FakeTelegram, bot: Bot, clock: Clock, db: Database
) -> None:
    # Each as long as the events file allows (bot.domain.events.MAX_LENGTHS), with characters that
    # HTML escaping lengthens.
    description = ("Описание & сессия. " * 100)[:1500].strip()
    policy = ("Условия & обработка данных. " * 100)[:2000].strip()
    long_event = SECOND_EVENT + f'description = "{description}"\nprivacy_policy = "{policy}"\n'
    dispatcher = await dispatcher_for(long_event, settings, db, clock)
    user = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1001)
    replies = await user.send("/start")
    assert len(replies) == 2
    assert all(len(message.text or "") <= 4096 for message in replies)
    assert description.strip() in (replies[0].text or "")
    assert policy.strip() in (replies[1].text or "")
    assert user.buttons(replies[1]) == ["✅ Даю согласие", "Не согласен(на)"]


async def test_event_removed_from_the_file_keeps_its_registrations_closed(
    settings: Settings,
    fake: FakeTelegram,
    bot: Bot,
    clock: Clock,
    db: Database,
    user: TelegramUser,
) -> None:
    await fill_form(user)
    await user.click("Подтвердить")

    # The organisers replace the session in the file; the bot restarts.
    dispatcher = await dispatcher_for(SECOND_EVENT, settings, db, clock)
    archived = await EventsRepository(db).sync(
        load_events(settings.events_file, default_zone=settings.timezone), now=clock()
    )
    assert [(event.id, count) for event, count in archived] == [(EVENT_ID, 1)]
    user = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1001)
    [card, *_] = await user.send("/me")
    assert "Стратегическая сессия «ЭтНик»" in (card.text or "")  # still shown to its registrant
    assert "Срок изменения данных истёк" in (card.text or "")
    replies = await user.send(f"/start {EVENT_ID}")
    assert "Регистрация на «Стратегическая сессия «ЭтНик»» закрыта" in (replies[0].text or "")
    [row] = await stored_rows(db)
    assert row["status"] == "confirmed"
    [event] = await db.fetchall("SELECT in_file FROM events WHERE id = ?", (EVENT_ID,))
    assert event["in_file"] == 0


async def test_update_applied_before_a_crash_but_not_marked_is_not_applied_again(
    fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot, db: Database
) -> None:
    user, delivered, inner = recording_user(fake, dispatcher, bot)
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    # The bot was killed after the answer was saved, before the update was marked handled.
    await db.execute(
        "DELETE FROM handled_updates WHERE update_id = ?", (delivered[-1]["update_id"],)
    )
    before = len(fake.messages)
    await inner(delivered[-1])
    # Not applied again (the name is not taken as the position); the question the reply
    # carried, possibly lost with the process, is asked again.
    assert len(fake.messages) == before + 1
    assert "Шаг 2 из 5" in user.last_text
    [row] = await fsm_rows(db)
    assert row["state"] == "Form:position"
    assert json.loads(row["data"])["position"] is None


@pytest.mark.slow  # waits out the retry's real backoff
async def test_a_reply_that_hits_a_server_error_is_retried(
    user: TelegramUser, fake: FakeTelegram
) -> None:
    fake.fail("sendMessage", code=502, description="Bad Gateway", chat_id=1001, times=2)
    replies = await user.send("/help")
    assert [m.text for m in replies][-1].startswith("Я регистрирую участников")  # type: ignore[union-attr]
    assert len([c for c in fake.calls_of("sendMessage") if c.error_code == 502]) == 2


@pytest.mark.sqlite_only("another process's write lock on the file")
async def test_a_locked_database_tells_the_person_and_loses_nothing(
    settings: Settings, fake: FakeTelegram, bot: Bot, catalog: object, clock: Clock
) -> None:
    import sqlite3

    from storage.database import open_database

    async with open_database(settings.database_path, busy_timeout_ms=200) as db:
        dispatcher = create_dispatcher(settings=settings, db=db, catalog=catalog, clock=clock)  # type: ignore[arg-type]
        user = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=1001)
        await user.send("/start")
        await user.click("Даю согласие")
        other = sqlite3.connect(settings.database_path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # e.g. an operator's sqlite3 shell mid-write
        try:
            replies = await user.send("Иванова Мария Петровна")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert "Не получилось сохранить" in (replies[-1].text or "")
        [row] = await fsm_rows(db)
        assert row["state"] == "Form:full_name"
        await user.send("Иванова Мария Петровна")  # the lock is gone: it goes through
        assert "Шаг 2 из 5" in user.last_text


ERROR_TRY_AGAIN = (
    "Не получилось сохранить: что-то пошло не так на нашей стороне. Ваши ответы не потеряны, "
    "попробуйте ещё раз через минуту."
)


async def fail_writes(db: Database, table: str, operation: str = "UPDATE") -> None:
    await failing(db, table, operation)


async def test_a_change_that_cannot_be_saved_keeps_the_question_open(
    user: TelegramUser, db: Database
) -> None:
    await fill_form(user)
    await user.click("Подтвердить")
    await user.send("/me")
    await user.click("Изменить данные")
    await user.click("E-mail")
    await fail_writes(db, "registrations")

    replies = await user.send("new@example.ru")

    assert [m.text for m in replies] == [ERROR_TRY_AGAIN]
    [row] = await stored_rows(db)
    assert row["email"] == "Maria.Ivanova@example.ru"  # unchanged
    [form] = await fsm_rows(db)
    assert form["state"] == "Form:email"  # the person can simply send it again
    await stop_failing(db, "registrations")
    replies = await user.send("new@example.ru")
    assert "Изменения сохранены" in (replies[0].text or "")
    [row] = await stored_rows(db)
    assert row["email"] == "new@example.ru"
    assert await fsm_rows(db) == []


async def test_a_change_delivered_again_after_a_crash_is_applied_once(
    user: TelegramUser, db: Database, dispatcher: Dispatcher, bot: Bot, fake: FakeTelegram
) -> None:
    await fill_form(user)
    await user.click("Подтвердить")
    await user.send("/me")
    await user.click("Изменить данные")
    await user.click("E-mail")
    # The change is written, then ending the form (one DELETE) fails: as if the process
    # died between.
    await fail_writes(db, "fsm_states", "DELETE")
    update = {
        "update_id": fake.next_update_id(),
        **text_update(user.user, "new@example.ru", message_id=fake.next_message_id(user.chat_id)),
    }
    await dispatcher.feed_raw_update(bot, update)
    assert user.last_text == ERROR_TRY_AGAIN
    [row] = await stored_rows(db)
    assert row["email"] == "new@example.ru"
    await stop_failing(db, "fsm_states")

    mark = fake.mark()
    await dispatcher.feed_raw_update(bot, update)  # Telegram delivers it again

    replies = fake.touched_since(mark, user.chat_id)
    assert "Изменения сохранены" in (replies[0].text or "")
    assert await fsm_rows(db) == []
    cards = await db.fetchall("SELECT text FROM outbox WHERE kind = 'card' ORDER BY id")
    assert len(cards) == 2  # the registration and one change, not two
    assert "new@example.ru" in cards[1]["text"]


@pytest.mark.parametrize(
    ("code", "description"),
    [
        (400, "Bad Request: query is too old and response timeout expired or query ID is invalid"),
        (502, "Bad Gateway"),
    ],
)
async def test_a_button_answer_telegram_refuses_does_not_cost_the_step(
    user: TelegramUser, fake: FakeTelegram, db: Database, code: int, description: str
) -> None:
    await user.send("/start")
    fake.fail("answerCallbackQuery", code=code, description=description, times=10)
    [reply] = await user.click("Даю согласие")
    # The spinner's answer is lost; the consent and the first question are not.
    assert "Шаг 1 из 5" in (reply.text or "")
    assert t("error_try_again") not in user.last_text
    [row] = await fsm_rows(db)
    assert row["state"] == "Form:full_name"


async def test_a_button_delivered_again_after_a_crash_with_its_buttons_already_gone_is_quiet(
    user: TelegramUser, fake: FakeTelegram, db: Database
) -> None:
    """Telegram delivers an update again if the bot died before confirming it; the message in
    it still shows the buttons the bot took off meanwhile. Taking them off again is refused
    ("message is not modified"): that is no error for the person."""
    await fill_form(user)
    [summary] = [m for m in fake.messages_to(user.chat_id) if m.inline_keyboard][-1:]
    as_pressed = fake.message_json(summary)  # the message as the first press carried it
    [confirm] = [b for row in summary.inline_keyboard for b in row if "Подтвердить" in b["text"]]
    await user.click("Подтвердить")
    assert fake.message_json(summary).get("reply_markup") is None

    replies = await user.send_update(
        callback_query_update(
            user.user, as_pressed, confirm["callback_data"], query_id=fake.new_callback_query_id()
        )
    )

    assert all("что-то пошло не так" not in (reply.text or "") for reply in replies)
    assert len(await db.fetchall("SELECT * FROM registrations")) == 1
