"""What a person is told about their data (Federal Law 152-FZ, art. 14): /me shows everything
stored in each registration and, once, who processes it, why, who receives it, how long it is
kept and how to erase it; the consent and withdrawal texts say when it is erased."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiogram import Bot, Dispatcher

from bot.domain.config import Settings
from bot.domain.events import MAX_LENGTHS, EventCatalog
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length
from bot.domain.timefmt import format_datetime
from storage.database import Database
from storage.registrations import NewRegistration, Registrations
from tests.client import TelegramUser, feed_deliver
from tests.fake_telegram import FakeTelegram
from tests.helpers import EVENTS_TOML, MOSCOW, Clock, dispatcher_for, event_toml, fill_form

SAMARA = ZoneInfo("Europe/Samara")
OPERATOR = "АНО «Этнический НИК» & <партнёры>, 410012, г. Саратов, ул. Московская, д. 1"
# A session of its own: its end, its operator, no policy of its own (the default text).
PANEL_TOML = event_toml(
    id="panel-2026",
    title="Панельная дискуссия",
    starts_at=datetime(2026, 12, 20, 15, 0, tzinfo=SAMARA),
    ends_at=datetime(2026, 12, 21, 18, 30, tzinfo=SAMARA),
    timezone="Europe/Samara",
    registration_deadline=datetime(2026, 12, 19, 18, 0, tzinfo=SAMARA),
    location="Самара",
    contact="panel@example.ru",
    operator=OPERATOR,
)


def participant(dispatcher: Dispatcher, bot: Bot, fake: FakeTelegram) -> TelegramUser:
    return TelegramUser(
        fake, feed_deliver(dispatcher, bot), user_id=1001, first_name="Мария", username="maria"
    )


def texts(replies: list[object]) -> list[str]:
    return [getattr(reply, "text", None) or "" for reply in replies]


async def test_me_shows_everything_stored_in_the_registration_and_what_is_done_with_it(
    user: TelegramUser, db: Database
) -> None:
    await fill_form(user)
    await user.click("Подтвердить")

    card, notice = texts(await user.send("/me"))

    [row] = await db.fetchall("SELECT * FROM registrations")
    created = format_datetime(datetime.fromisoformat(row["created_at"]), MOSCOW)
    consented = format_datetime(datetime.fromisoformat(row["consent_at"]), MOSCOW)
    for stored in (
        row["full_name"],
        row["position"],
        row["organization"],
        "+7 912 345-67-89",
        row["email"],
        f"id {row['user_id']}",
        f"@{row['username']}",
        f"имя {row['telegram_name']}",
        f"Согласие на обработку данных: {consented}, редакция условий «{row['consent_version']}»",
        f"Зарегистрированы {created}.",
    ):
        assert stored in card, stored
    assert (row["user_id"], row["username"], row["telegram_name"]) == (1001, "maria", "Мария")
    # The session ends two hours after its start (10 December, 12:00): kept 30 days more.
    assert "хранятся до 9 января 2027 включительно (МСК, UTC+3), затем удаляются" in card

    assert notice.startswith("ℹ️ Ваши персональные данные (ст. 14 Федерального закона № 152-ФЗ)")
    assert "Оператор: org@example.ru" in notice  # no `operator` in the file: its contact
    assert "Цель: регистрация на мероприятие и связь с вами по нему." in notice
    assert "организаторы мероприятия" in notice and "администраторы бота" in notice
    assert "удаляются автоматически через 30 дней после окончания мероприятия" in notice
    assert "«Отменить регистрацию» под регистрацией сразу удаляет её данные" in notice
    assert "/forget удаляет все ваши данные" in notice
    assert "незаконченн" in notice  # what /forget erases, not a form of theirs
    assert "Хранится ваша незаконченная анкета" not in notice


async def test_me_names_the_sessions_operator_end_and_retention_days(
    settings: Settings, fake: FakeTelegram, bot: Bot, clock: Clock, db: Database
) -> None:
    dispatcher = await dispatcher_for(PANEL_TOML, settings, db, clock, retention_days=1)
    user = participant(dispatcher, bot, fake)
    await fill_form(user)
    await user.click("Подтвердить")

    card, notice = texts(await user.send("/me"))

    # Ends 21 December, 18:30 in Samara; one day more.
    assert "хранятся до 22 декабря 2026 включительно (МСК+1, UTC+4)" in card
    assert "@maria" in card
    assert f"Оператор: {OPERATOR}" in notice
    assert "panel@example.ru" not in notice
    assert "удаляются автоматически через 1 день после окончания мероприятия" in notice
    [row] = await db.fetchall("SELECT ends_at FROM events WHERE id = 'panel-2026'")
    assert row["ends_at"] == "2026-12-21T14:30:00+00:00"


async def test_sessions_of_one_operator_name_it_once_and_one_without_names_its_organisers(
    settings: Settings, fake: FakeTelegram, bot: Bot, clock: Clock, db: Database
) -> None:
    again = PANEL_TOML.replace('"panel-2026"', '"panel-2"').replace("Панельная", "Вторая")
    bare = event_toml(
        id="bare",
        title="Без контактов",
        starts_at=datetime(2026, 12, 22, 10, 0, tzinfo=MOSCOW),
        registration_deadline=datetime(2026, 12, 21, 10, 0, tzinfo=MOSCOW),
        location="Москва",
    )
    dispatcher = await dispatcher_for(PANEL_TOML + again, settings, db, clock)
    user = participant(dispatcher, bot, fake)
    for event_id in ("panel-2026", "panel-2"):
        await user.send(f"/start {event_id}")
        await user.click("Даю согласие")
        await fill_form_for_current(user)
        await user.click("Подтвердить")

    *_, notice = texts(await user.send("/me"))
    assert f"Оператор: {OPERATOR}" in notice
    assert notice.count("Оператор") == 1

    # A session with neither `operator` nor `contact`: its organisers, with the file's contacts.
    dispatcher = await dispatcher_for(PANEL_TOML + again + bare, settings, db, clock)
    user = participant(dispatcher, bot, fake)
    await user.send("/start bare")
    await user.click("Даю согласие")
    await fill_form_for_current(user)
    await user.click("Подтвердить")
    *_, notice = texts(await user.send("/me"))
    assert f"Оператор для «Панельная дискуссия», «Вторая дискуссия»: {OPERATOR}\n" in notice
    assert (
        "Оператор для «Без контактов»: организаторы мероприятия (связаться: panel@example.ru)\n"
        in notice
    )

    # Sessions gone from the file keep no operator (the database mirrors no texts).
    dispatcher = await dispatcher_for(bare, settings, db, clock)
    user = participant(dispatcher, bot, fake)
    *_, notice = texts(await user.send("/me"))
    assert "Оператор: организаторы мероприятия\n" in notice


async def test_me_with_retention_zero_keeps_the_data_to_the_day_the_session_ends(
    settings: Settings, fake: FakeTelegram, bot: Bot, clock: Clock, db: Database
) -> None:
    dispatcher = await dispatcher_for(PANEL_TOML, settings, db, clock, retention_days=0)
    user = participant(dispatcher, bot, fake)
    await fill_form(user)
    await user.click("Подтвердить")

    card, notice = texts(await user.send("/me"))

    assert "хранятся до 21 декабря 2026 включительно (МСК+1, UTC+4)" in card
    assert "удаляются автоматически на следующий день после окончания мероприятия" in notice


async def test_me_without_a_registration_says_so_and_names_an_unfinished_form(
    user: TelegramUser, db: Database
) -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")

    replies = texts(await user.send("/me"))

    assert replies[0].startswith("Мы не храним ни одной вашей регистрации.")
    assert "Хранится ваша незаконченная анкета" in replies[0]
    assert "не трогать 7 дней" in replies[0] and "/cancel" in replies[0]
    assert "Шаг 2 из 5" in replies[-1]  # then the form's question again
    assert await db.fetchall("SELECT * FROM registrations") == []
    [form] = await db.fetchall("SELECT state FROM fsm_states")
    assert form["state"] == "Form:position"

    await user.send("/cancel")
    assert texts(await user.send("/me")) == [
        "Мы не храним ни одной вашей регистрации. Зарегистрироваться — /start."
    ]


async def test_me_with_a_registration_and_a_form_names_both(
    settings: Settings, fake: FakeTelegram, bot: Bot, clock: Clock, db: Database
) -> None:
    dispatcher = await dispatcher_for(EVENTS_TOML + PANEL_TOML, settings, db, clock)
    user = participant(dispatcher, bot, fake)
    await user.send("/start forum-2026")
    await user.click("Даю согласие")
    await fill_form_for_current(user)
    await user.click("Подтвердить")
    await user.send("/start panel-2026")
    await user.click("Даю согласие")

    card, notice, question = texts(await user.send("/me"))

    assert "Стратегическая сессия «ЭтНик»" in card
    assert "Хранится ваша незаконченная анкета" in notice
    assert "Шаг 1 из 5" in question
    # The operator of the registration's session; the form's session is not a registration.
    assert "Оператор: org@example.ru" in notice
    assert OPERATOR not in notice


async def fill_form_for_current(user: TelegramUser) -> None:
    await user.send("Иванова Мария Петровна")
    await user.send("Главный специалист")
    await user.send("Министерство культуры Саратовской области")
    await user.share_contact("79123456789")
    await user.send("maria@example.ru")


def longest(key: str, seed: str) -> str:
    """As long as the events file allows, full of characters HTML escaping lengthens."""
    return (f"{seed}&<" * MAX_LENGTHS[key])[: MAX_LENGTHS[key]]


async def test_many_registrations_each_get_a_card_and_every_message_fits(
    settings: Settings, fake: FakeTelegram, bot: Bot, clock: Clock, db: Database
) -> None:
    sessions = 40
    starts = datetime(2026, 12, 10, 12, 0, tzinfo=MOSCOW)
    events_toml = "".join(
        event_toml(
            id=f"s{number}",
            title=longest("title", f"Сессия {number} "),
            starts_at=starts + timedelta(days=number),
            timezone="Europe/Moscow",
            registration_deadline=starts,
            location="Онлайн",
            operator=longest("operator", f"Оператор {number} "),
        )
        for number in range(sessions)
    )
    dispatcher = await dispatcher_for(events_toml, settings, db, clock)
    catalog: EventCatalog = dispatcher["catalog"]
    registrations = Registrations(db)
    for event in catalog:
        await registrations.create(
            NewRegistration(
                event_id=event.id,
                user_id=1001,
                username="maria",
                telegram_name="Мария & <Co>",
                full_name="Иванова Мария Петровна",
                position=("Главный & <специалист> " * 20)[:200],
                organization=("Министерство & <культуры> " * 20)[:300],
                phone="+79123456789",
                email="maria@example.ru",
                consent_at=clock(),
                consent_version="v" * MAX_LENGTHS["privacy_policy_version"],
            ),
            now=clock(),
        )
    user = participant(dispatcher, bot, fake)

    replies = await user.send("/me")

    assert [call for call in fake.calls if call.error_code] == []
    cards, notice = replies[:sessions], replies[sessions:]
    assert all(user.buttons(card)[-1] == "Отменить регистрацию" for card in cards)
    assert all(event.title in (card.text or "") for event, card in zip(catalog, cards, strict=True))
    assert len(notice) > 1  # forty long operators do not fit one message
    assert all(user.buttons(message) == [] for message in notice)
    assert all(message_length(m.source or "") <= MAX_MESSAGE_LENGTH for m in replies)
    told = "\n".join(texts(notice))
    assert told.startswith("ℹ️ Ваши персональные данные")
    for event in catalog:
        assert f"Оператор для «{event.title}»: {event.operator}" in told
    assert told.count("Цель:") == 1 and told.count("Как удалить:") == 1
    assert told.endswith("сообщения, ожидающие отправки вам.")


async def test_the_default_policy_says_when_the_data_is_erased_and_how_to_erase_it(
    settings: Settings, fake: FakeTelegram, bot: Bot, clock: Clock, db: Database
) -> None:
    for days, said in [
        (30, "через 30 дней после окончания мероприятия"),
        (21, "через 21 день после окончания мероприятия"),
        (3, "через 3 дня после окончания мероприятия"),
        (0, "на следующий день после окончания мероприятия"),
    ]:
        dispatcher = await dispatcher_for(PANEL_TOML, settings, db, clock, retention_days=days)
        user = participant(dispatcher, bot, fake)
        await user.send("/cancel")
        await user.send("/start")

        policy = user.last_text
        assert f"Данные регистрации удаляются автоматически {said}." in policy
        assert "отмена регистрации в /me сразу удаляет её данные" in policy
        assert "/forget — все ваши данные в боте" in policy
        assert "Федеральный закон № 152-ФЗ" in policy
        # Asked again (a message instead of the button): the same text.
        await user.send("ага")
        assert f"удаляются автоматически {said}." in user.last_text


async def test_withdrawal_says_the_data_is_erased_at_once(user: TelegramUser, db: Database) -> None:
    await fill_form(user)
    await user.click("Подтвердить")
    await user.send("/me")

    await user.click("Отменить регистрацию")
    assert user.last_text == (
        "Отменить регистрацию на «Стратегическая сессия «ЭтНик»»? Ваши данные в ней (ФИО, "
        "должность, место работы, телефон, e-mail и данные Telegram) будут сразу удалены; "
        "организаторы получат только уведомление об отмене с номером регистрации."
    )
    await user.click("Да, отменить")
    assert user.last_text.startswith(
        "Регистрация на «Стратегическая сессия «ЭтНик»» отменена, ваши персональные данные в "
        "ней удалены."
    )
    [row] = await db.fetchall("SELECT status FROM registrations")
    assert row["status"] == "withdrawn"
    assert texts(await user.send("/me")) == [
        "Мы не храним ни одной вашей регистрации. Зарегистрироваться — /start."
    ]
