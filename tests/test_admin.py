"""Admin commands through the production Dispatcher: access, /stats, /find, /export,
/broadcast."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import timedelta

import pytest
from aiogram import Bot, Dispatcher

from bot.broadcast_worker import BroadcastReporter
from bot.domain.cells import CSV_DELIMITER
from bot.domain.events import EventCatalog
from bot.sender import Sender
from handlers.jobs import BackgroundJobs
from handlers.menu import ADMIN_COMMANDS, PARTICIPANT_COMMANDS
from storage.database import Database
from storage.erasure import PersonalData
from storage.registrations import NewRegistration, Registrations
from tests.client import TelegramUser
from tests.fake_telegram import FakeTelegram, callback_query_update
from tests.helpers import ADMIN_ID, Clock, fill_form, stop_failing
from tests.helpers import fail_writes as failing

EVENT_ID = "forum-2026"


async def add_registration(
    registrations: Registrations, clock: Clock, user_id: int, **fields: str
) -> None:
    values = {
        "full_name": f"Участник Номер {user_id}",
        "position": "Специалист",
        "organization": "НКО «Дружба»",
        "phone": f"+7912{user_id:07d}",
        "email": f"user{user_id}@example.ru",
        **fields,
    }
    await registrations.create(
        NewRegistration(
            event_id=EVENT_ID,
            user_id=user_id,
            username=None,
            telegram_name="Участник",
            consent_at=clock(),
            consent_version="v1",
            **values,
        ),
        now=clock(),
    )


@pytest.fixture
def admin(make_user) -> TelegramUser:  # type: ignore[no-untyped-def]
    user: TelegramUser = make_user(ADMIN_ID, first_name="Админ")
    return user


ADMIN_ONLY = ["/export", "/stats", "/find Иванова", "/broadcast", "/digest"]


@pytest.mark.parametrize("command", ADMIN_ONLY)
async def test_non_admins_are_refused_and_see_no_data(
    make_user, registrations: Registrations, clock: Clock, fake: FakeTelegram, command: str
) -> None:
    await add_registration(registrations, clock, 2001, full_name="Иванова Мария Петровна")
    stranger: TelegramUser = make_user(3003)
    replies = await stranger.send(command)
    assert [m.text for m in replies] == ["Эта команда доступна только администраторам бота."]
    assert fake.calls_of("sendDocument") == []
    in_group: TelegramUser = make_user(ADMIN_ID, chat_id=-100777)
    assert await in_group.send(command) == []  # even an admin: ignored in groups


async def test_stats_per_session(
    admin: TelegramUser, make_user, registrations: Registrations, clock: Clock, db: Database
) -> None:
    clock.advance(timedelta(days=-10))
    await add_registration(registrations, clock, 2001)  # 10 days ago
    clock.advance(timedelta(days=10))
    await add_registration(registrations, clock, 2002)
    await add_registration(registrations, clock, 2003)
    await PersonalData(db).withdraw(3, user_id=2003, now=clock())
    half: TelegramUser = make_user(2004)
    await half.send("/start")
    await half.click("Даю согласие")
    await db.execute("INSERT INTO chats (chat_id, unreachable) VALUES (2002, 'blocked')")
    replies = await admin.send("/stats")
    text = replies[0].text or ""
    assert "Стратегическая сессия «ЭтНик»" in text
    assert "Зарегистрированы: 2" in text
    assert "Отменили: 1" in text
    assert "Заполняют анкету: 1" in text
    assert "Сегодня: 1, за 7 дней: 1" in text
    assert "Заблокировали бота: 1" in text
    assert "До конца регистрации: 12 дней" in text


async def test_find_matches_any_case_and_phone_forms(
    admin: TelegramUser, registrations: Registrations, clock: Clock
) -> None:
    await add_registration(registrations, clock, 2001, full_name="Иванова Мария Петровна",
                           phone="+79123456789")  # fmt: skip
    await add_registration(registrations, clock, 2002, organization="<b>Газета</b> & Co")
    for query in ("иванова", "ИВАНОВА", "8 912 345-67-89", "3456789", "user2001@"):
        replies = await admin.send(f"/find {query}")
        assert "Найдено: 1" in (replies[0].text or ""), query
        assert "Иванова Мария Петровна" in (replies[0].text or "")
        assert "+7 912 345-67-89" in (replies[0].text or "")
    replies = await admin.send("/find газета")
    assert "<b>Газета</b> & Co" in (replies[0].text or "")
    replies = await admin.send("/find Петров Пётр")
    assert "Ничего не нашлось" in (replies[0].text or "")
    replies = await admin.send("/find")
    assert "Напишите, что искать" in (replies[0].text or "")


async def test_find_shows_at_most_a_screenful(
    admin: TelegramUser, registrations: Registrations, clock: Clock
) -> None:
    for user_id in range(2001, 2031):
        await add_registration(registrations, clock, user_id)
    replies = await admin.send("/find участник")
    text = replies[0].text or ""
    assert "Найдено: 30" in text
    assert len(re.findall(r"^\d+\. ", text, flags=re.MULTILINE)) == 10
    assert "…и ещё 20" in text


EXPORT_CSV = "registrations_forum-2026_2026-11-26.csv"
EXPORT_XLSX = "registrations_forum-2026_2026-11-26.xlsx"


@pytest.mark.slow  # about 1.5 s: the upload is held while the admin waits
async def test_export_answers_at_once_and_uploads_in_the_background(
    admin: TelegramUser,
    make_user,
    registrations: Registrations,
    clock: Clock,
    fake: FakeTelegram,
    dispatcher: Dispatcher,
) -> None:
    await add_registration(registrations, clock, 2001, full_name="Иванова Мария Петровна")
    await add_registration(registrations, clock, 2002, organization='=HYPERLINK("x")')
    jobs: BackgroundJobs = dispatcher["background_jobs"]
    upload = fake.hold("sendDocument", chat_id=ADMIN_ID)

    # The update is handled (feed_update returned) while the upload is still held.
    replies = await admin.send("/export")
    assert [m.text for m in replies] == ["⏳ Готовлю выгрузку…"]
    assert jobs.running("export", ADMIN_ID)
    # Nobody waits for it: a participant and the admin themselves get their replies.
    participant: TelegramUser = make_user(3001)
    assert "152-ФЗ" in (await participant.send("/start"))[0].text  # type: ignore[operator]
    replies = await admin.send("/export")
    assert [m.text for m in replies] == [
        "⏳ Выгрузка уже готовится: файлы придут сюда, как только будут готовы."
    ]
    await asyncio.wait_for(upload.reached.wait(), 10)  # the file is built, its upload started
    assert not [m for m in fake.messages_to(ADMIN_ID) if m.document]

    upload.released.set()
    await asyncio.wait_for(jobs.idle(), 10)
    assert not jobs.running("export", ADMIN_ID)
    [progress] = [m for m in fake.messages_to(ADMIN_ID) if m.edits]
    assert progress.edits == ["⏳ Готовлю выгрузку…"]
    assert progress.text == "✅ Выгрузка готова: 2 строки, файлы CSV и Excel ниже."
    documents = {m.filename: m.document for m in fake.messages_to(ADMIN_ID) if m.document}
    assert sorted(documents) == [EXPORT_CSV, EXPORT_XLSX]
    csv_bytes = documents[EXPORT_CSV]
    assert csv_bytes is not None and csv_bytes.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(csv_bytes.decode("utf-8-sig")), delimiter=CSV_DELIMITER))
    assert len(rows) == 3  # the header and the two registrations
    assert rows[1][2:5] == ["Иванова Мария Петровна", "Специалист", "НКО «Дружба»"]
    assert rows[2][4] == '\'=HYPERLINK("x")'  # the organisation, as text in a spreadsheet
    assert documents[EXPORT_XLSX] is not None and documents[EXPORT_XLSX].startswith(b"PK")

    # Done: the next /export is a new job.
    await admin.send("/export")
    await asyncio.wait_for(jobs.idle(), 10)
    assert len([m for m in fake.messages_to(ADMIN_ID) if m.document]) == 4


async def test_export_whose_upload_fails_says_so(
    admin: TelegramUser,
    registrations: Registrations,
    clock: Clock,
    fake: FakeTelegram,
    dispatcher: Dispatcher,
) -> None:
    await add_registration(registrations, clock, 2001)
    fake.fail("sendDocument", code=400, description="Bad Request: file is too big")
    replies = await admin.send("/export")
    assert [m.text for m in replies] == ["⏳ Готовлю выгрузку…"]
    await asyncio.wait_for(dispatcher["background_jobs"].idle(), 10)
    [progress] = [m for m in fake.messages_to(ADMIN_ID) if m.edits]
    assert progress.text == (
        "Не получилось подготовить выгрузку. Попробуйте ещё раз; если не выйдет — "
        "выгрузите на сервере: python -m bot export."
    )
    assert [m for m in fake.messages_to(ADMIN_ID) if m.document] == []
    assert len(fake.messages_to(ADMIN_ID)) == 1  # no second message, no traceback


async def test_export_cut_short_by_shutdown_says_so(
    admin: TelegramUser,
    registrations: Registrations,
    clock: Clock,
    fake: FakeTelegram,
    dispatcher: Dispatcher,
) -> None:
    await add_registration(registrations, clock, 2001)
    upload = fake.hold("sendDocument")  # never released: it outlives the grace period
    await admin.send("/export")
    jobs: BackgroundJobs = dispatcher["background_jobs"]
    await asyncio.wait_for(upload.reached.wait(), 10)
    await asyncio.wait_for(jobs.stop(grace=0.1), 10)
    assert not jobs.running("export", ADMIN_ID)
    assert admin.last_text == (
        "Выгрузка прервана: бот перезапускается. Через минуту отправьте /export ещё раз."
    )


async def test_broadcast_reaches_every_reachable_registrant_once_with_a_report(
    admin: TelegramUser,
    registrations: Registrations,
    personal_data: PersonalData,
    clock: Clock,
    fake: FakeTelegram,
    sender: Sender,
    bot: Bot,
    dispatcher: Dispatcher,
    catalog: EventCatalog,
) -> None:
    for user_id in range(2001, 2006):
        await add_registration(registrations, clock, user_id)
    await personal_data.withdraw(5, user_id=2005, now=clock())  # withdrawn: not a recipient
    fake.block(2002)
    fake.fail("sendMessage", code=429, description="Too Many Requests: retry after 1",
              retry_after=1, chat_id=2003)  # fmt: skip

    await admin.send("/broadcast")
    assert "получателей: 4" in admin.last_text
    replies = await admin.send("Ссылка для подключения: <https://example.org/join> & до встречи!")
    assert "Так увидят сообщение 4 получателя" in (replies[0].text or "")
    await admin.click("Отправить (4)")
    assert "отправлено 0 из 4" in admin.last_text
    await sender.idle()
    reporter = BroadcastReporter(bot, dispatcher["broadcasts"], catalog, clock)
    await reporter.report_once()

    text = "Ссылка для подключения: <https://example.org/join> & до встречи!"
    for user_id in (2001, 2003, 2004):
        assert [m.text for m in fake.messages_to(user_id)] == [text]
    assert fake.messages_to(2002) == []
    assert fake.messages_to(2005) == []
    report = admin.last_text
    assert "завершена" in report
    assert "Доставлено: 3" in report
    assert "Заблокировали бота: 1" in report
    assert "Не удалось отправить: 0" in report
    progress = fake.last_message(ADMIN_ID)
    assert progress.edits  # the progress message was edited in place, not sent anew


async def test_broadcast_can_be_cancelled_and_sends_nothing(
    admin: TelegramUser, registrations: Registrations, clock: Clock, fake: FakeTelegram,
    db: Database,
) -> None:  # fmt: skip
    await add_registration(registrations, clock, 2001)
    await admin.send("/broadcast")
    replies = await admin.send_sticker()
    assert "пришлите текст, фото или документ" in (replies[0].text or "")
    replies = await admin.send("/me")
    assert "а это команда" in (replies[0].text or "")
    await admin.send("Текст")
    await admin.click("Отменить")
    assert "Рассылка отменена" in admin.last_text
    assert await db.fetchall("SELECT * FROM outbox WHERE kind = 'broadcast'") == []
    assert fake.messages_to(2001) == []


async def test_broadcast_of_a_photo_with_a_caption_as_the_admin_wrote_it(
    admin: TelegramUser,
    registrations: Registrations,
    clock: Clock,
    fake: FakeTelegram,
    sender: Sender,
    bot: Bot,
    dispatcher: Dispatcher,
    catalog: EventCatalog,
    db: Database,
) -> None:
    for user_id in (2001, 2002, 2003):
        await add_registration(registrations, clock, user_id)
    fake.block(2002)
    fake.fail("sendPhoto", code=429, description="Too Many Requests: retry after 1",
              retry_after=1, chat_id=2003)  # fmt: skip
    caption = "Программа сессии & ссылка <внутри>"

    await admin.send("/broadcast")
    replies = await admin.send_photo(
        caption, caption_entities=[{"type": "bold", "offset": 0, "length": 9}]
    )

    assert "Так увидят сообщение 3 получателя" in (replies[0].text or "")
    preview = replies[1]
    assert preview.caption == caption
    assert preview.photo is not None and preview.photo.startswith("photo-m-file-")  # the largest
    assert preview.source == "<b>Программа</b> сессии &amp; ссылка &lt;внутри&gt;"
    await admin.click("Отправить (3)")
    await sender.idle()
    await BroadcastReporter(bot, dispatcher["broadcasts"], catalog, clock).report_once()

    for user_id in (2001, 2003):
        [received] = fake.messages_to(user_id)
        assert (received.photo, received.caption, received.source) == (
            preview.photo,
            caption,
            preview.source,
        )
    assert fake.messages_to(2002) == []
    assert "Доставлено: 2" in admin.last_text
    assert "Заблокировали бота: 1" in admin.last_text
    rows = await db.fetchall(
        "SELECT chat_id, status, media_kind, media_file_id, text FROM outbox "
        "WHERE kind = 'broadcast' ORDER BY chat_id"
    )
    assert [tuple(row) for row in rows] == [
        (2001, "sent", "photo", preview.photo, None),
        (2002, "failed", "photo", preview.photo, preview.source),
        (2003, "sent", "photo", preview.photo, None),
    ]


async def test_broadcast_of_a_document_without_caption_and_a_caption_too_long(
    admin: TelegramUser,
    registrations: Registrations,
    clock: Clock,
    fake: FakeTelegram,
    sender: Sender,
) -> None:
    await add_registration(registrations, clock, 2001)
    await admin.send("/broadcast")

    replies = await admin.send_document("д" * 1025)
    assert "Подпись длиннее 1024 символов" in (replies[0].text or "")
    replies = await admin.send_document()
    assert replies[1].document is not None and replies[1].caption is None
    await admin.click("Отправить (1)")
    await sender.idle()

    [received] = fake.messages_to(2001)
    assert received.document == replies[1].document
    assert received.caption is None


async def test_broadcast_with_nobody_registered_says_so(admin: TelegramUser) -> None:
    replies = await admin.send("/broadcast")
    assert "рассылать некому" in (replies[0].text or "")


async def test_menus_are_scoped_and_set_again_at_an_admins_first_start(
    fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot, admin: TelegramUser
) -> None:
    fake.fail("setMyCommands", code=400, description="Bad Request: chat not found",
              chat_id=ADMIN_ID)  # fmt: skip
    await dispatcher["admin_menus"].set_all(bot)
    participants = [c["command"] for c in fake.commands_for({"type": "default"})]
    assert participants == [name for name, _ in PARTICIPANT_COMMANDS]
    admin_scope = {"type": "chat", "chat_id": ADMIN_ID}
    assert fake.commands_for(admin_scope) == []  # refused: the admin never opened the bot
    await admin.send("/start")
    assert [c["command"] for c in fake.commands_for(admin_scope)] == [
        name for name, _ in PARTICIPANT_COMMANDS + ADMIN_COMMANDS
    ]
    assert "152-ФЗ" in admin.last_text  # /start still works as for everyone


async def test_admin_commands_work_in_the_middle_of_a_form(admin: TelegramUser) -> None:
    await fill_form(admin)
    replies = await admin.send("/stats")
    assert "Зарегистрированы: 0" in (replies[0].text or "")
    # The summary, where the admin pressed the button, becomes the confirmation.
    [confirmation, calendar] = await admin.click("Подтвердить")
    assert "Вы зарегистрированы" in (confirmation.text or "")
    assert calendar.filename == "forum-2026.ics"


async def test_stats_lists_parked_chats_and_refused_messages(
    admin: TelegramUser, dispatcher: Dispatcher, clock: Clock, db: Database
) -> None:
    outbox = dispatcher["outbox"]
    await outbox.enqueue([-100777, -100888], "card", "Карта", now=clock())
    await outbox.enqueue([-100888], "card", "Карта <b", now=clock())
    await outbox.fail_chat(-100777, reason="Bad Request: not enough rights <to> send", now=clock())
    [_, _, bad] = [row["id"] for row in await db.fetchall("SELECT id FROM outbox ORDER BY id")]
    await outbox.fail_message(bad, error="Bad Request: can't parse entities", now=clock())
    # A participant who blocked the bot is counted per session, not listed here.
    await outbox.fail_chat(2002, reason="Forbidden: bot was blocked by the user", now=clock())
    [*_, reply] = await admin.send("/stats")
    text = reply.text or ""
    assert "Чаты, куда бот не может писать: 1" in text
    assert "-100777 — с 26 ноября 2026, 12:00 (МСК, UTC+3), ждут сообщений: 1" in text
    assert "Bad Request: not enough rights <to> send" in text  # escaped, shown as is
    assert "2002" not in text
    assert "Не доставлены (Telegram отклонил сообщение): 1" in text
    assert "1 — Bad Request: can't parse entities (последнее 26 ноября 2026" in text


ERROR_TRY_AGAIN = (
    "Не получилось сохранить: что-то пошло не так на нашей стороне. Ваши ответы не потеряны, "
    "попробуйте ещё раз через минуту."
)


async def fail_writes(db: Database, table: str, operation: str = "INSERT") -> None:
    await failing(db, table, operation)


async def broadcast_state(db: Database) -> list[str | None]:
    return [row["state"] for row in await db.fetchall("SELECT state FROM fsm_states")]


async def test_broadcast_that_cannot_be_queued_can_be_sent_again(
    admin: TelegramUser, registrations: Registrations, clock: Clock, db: Database
) -> None:
    await add_registration(registrations, clock, 2001)
    await admin.send("/broadcast")
    await admin.send("Текст")
    await fail_writes(db, "broadcasts")

    replies = await admin.click("Отправить (1)")

    assert [m.text for m in replies] == [ERROR_TRY_AGAIN]
    assert await broadcast_state(db) == ["BroadcastForm:confirming"]
    assert await db.fetchall("SELECT * FROM outbox WHERE kind = 'broadcast'") == []
    await stop_failing(db, "broadcasts")
    await admin.click("Отправить (1)")  # the button is still there
    assert "отправлено 0 из 1" in admin.last_text
    assert await broadcast_state(db) == []
    rows = await db.fetchall("SELECT chat_id, text FROM outbox WHERE kind = 'broadcast'")
    assert [tuple(row) for row in rows] == [(2001, "Текст")]


# The process dies (a write fails) where the form ends, or after all but marking the update
# handled: either way Telegram delivers the button's update again.
@pytest.mark.parametrize(
    ("table", "operation"), [("fsm_states", "DELETE"), ("handled_updates", "INSERT")]
)
async def test_broadcast_delivered_again_after_a_crash_is_queued_once(
    table: str,
    operation: str,
    admin: TelegramUser,
    registrations: Registrations,
    clock: Clock,
    db: Database,
    fake: FakeTelegram,
    dispatcher: Dispatcher,
    bot: Bot,
) -> None:
    await add_registration(registrations, clock, 2001)
    await add_registration(registrations, clock, 2002)
    await admin.send("/broadcast")
    await admin.send("Текст")
    preview = fake.last_message(ADMIN_ID)
    [[send, _]] = preview.inline_keyboard
    update = {
        "update_id": fake.next_update_id(),
        **callback_query_update(
            admin.user,
            fake.message_json(preview),
            send["callback_data"],
            query_id=fake.new_callback_query_id(),
        ),
    }
    await fail_writes(db, table, operation)
    await dispatcher.feed_raw_update(bot, update)
    assert admin.last_text == ERROR_TRY_AGAIN
    await stop_failing(db, table)

    await dispatcher.feed_raw_update(bot, update)  # Telegram delivers it again

    assert len(await db.fetchall("SELECT * FROM broadcasts")) == 1
    rows = await db.fetchall("SELECT chat_id FROM outbox WHERE kind = 'broadcast'")
    assert sorted(row["chat_id"] for row in rows) == [2001, 2002]
    assert await broadcast_state(db) == []
    progress = [m for m in fake.messages_to(ADMIN_ID) if "отправлено 0 из 2" in (m.text or "")]
    assert len(progress) == 1
