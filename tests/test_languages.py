"""English beside Russian (issue 14): the reader's language through the production
Dispatcher, /language in the middle of a form, what stays in the organisers' language."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiogram import Bot, Dispatcher

from bot.domain.config import Settings, SettingsError, load_settings
from bot.domain.events import EventsFileError, load_events
from bot.domain.texts import LANGUAGES, LOCALES_DIR, found_languages, use_locale
from bot.domain.timefmt import format_datetime
from handlers.menu import PARTICIPANT_COMMANDS
from storage.database import Database, IntegrityError
from storage.languages import FRESH_FOR, Languages
from tests.client import TelegramUser, feed_deliver
from tests.fake_telegram import FakeTelegram
from tests.helpers import (
    ENGLISH_FIELDS,
    EVENTS_TOML,
    TOKEN,
    Clock,
    dispatcher_for,
    event_toml,
    export_source,
)

MOSCOW = ZoneInfo("Europe/Moscow")
ENGLISH_TOML = EVENTS_TOML + "".join(
    f"{key} = {json.dumps(value, ensure_ascii=False)}\n" for key, value in ENGLISH_FIELDS.items()
)


@pytest.fixture
async def english_dispatcher(settings: Settings, db: Database, clock: Clock) -> Dispatcher:
    return await dispatcher_for(ENGLISH_TOML, settings, db, clock)


def person(
    fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot, user_id: int, language_code: str
) -> TelegramUser:
    return TelegramUser(
        fake,
        feed_deliver(dispatcher, bot),
        user_id=user_id,
        first_name="Mary",
        username="mary",
        language_code=language_code,
    )


async def cards(db: Database) -> list[str]:
    rows = await db.fetchall(
        "SELECT text FROM outbox WHERE kind = 'card' GROUP BY text ORDER BY min(id)"
    )
    return [row[0] for row in rows]


async def test_english_participant_registers_in_english_and_the_card_stays_russian(
    fake: FakeTelegram, english_dispatcher: Dispatcher, bot: Bot, db: Database
) -> None:
    mary = person(fake, english_dispatcher, bot, 2001, "en-GB")

    [greeting] = await mary.send("/start")
    text = greeting.text or ""
    assert text.startswith("Hello! Here you can register for an event.")
    assert "Strategy session “EtNik”" in text
    assert "10 December 2026, 12:00 (MSK, UTC+3)" in text
    assert "A session for NGOs & public bodies <online>" in text  # escaped, shown as written
    assert "The data is processed under Federal Law 152-FZ." in text  # informed consent
    assert "Данные" not in text and "Здравствуйте" not in text
    assert mary.buttons(greeting) == ["✅ I agree", "I do not agree"]

    await mary.click("I agree")
    assert "Consent to the processing of personal data received." in mary.last_text
    assert "Step 1 of 5. Your full name" in mary.last_text
    await mary.send("Mary Smith")
    assert "Step 2 of 5" in mary.last_text
    await mary.send("Director")
    await mary.send("Ministry of Culture")
    assert "Share my number" in str(mary.fake.last_message(2001).reply_markup)
    await mary.share_contact("447911123456")
    await mary.send("mary@example.com")
    summary = mary.last_text
    assert summary.startswith("Please check your details:")
    assert "Full name: Mary Smith" in summary
    assert "Is everything right?" in summary
    assert "✅ Confirm" in mary.buttons(mary.fake.last_message(2001))

    [confirmation, calendar] = await mary.click("Confirm")
    assert (confirmation.text or "").startswith("🎉 You are registered!")
    assert calendar.filename == "forum-2026.ics"
    assert (calendar.caption or "").startswith("📅 A calendar file")
    assert "You are registered" in mary.last_message_text

    await mary.send("/me")
    me = "\n".join(m.text or "" for m in fake.messages_to(2001)[-3:])
    assert "Registered 26 November 2026" in me
    assert "terms version “v1+en”" in me
    assert "Your personal data" in me

    [row] = await db.fetchall("SELECT consent_version, full_name FROM registrations")
    assert tuple(row) == ("v1+en", "Mary Smith")
    [card] = await cards(db)
    assert "Новая регистрация" in card
    assert "Стратегическая сессия «ЭтНик»" in card  # the organisers' language, titles too
    assert "10 декабря 2026" in card


async def test_russian_reader_of_the_same_event_gives_the_russian_version(
    fake: FakeTelegram, english_dispatcher: Dispatcher, bot: Bot, db: Database
) -> None:
    ivan = person(fake, english_dispatcher, bot, 2002, "ru")
    [greeting] = await ivan.send("/start")
    assert "Стратегическая сессия «ЭтНик»" in (greeting.text or "")
    assert "Данные обрабатываются по 152-ФЗ." in (greeting.text or "")


@pytest.mark.parametrize("code", ["de", "uk", ""])
async def test_other_telegram_languages_get_russian(
    fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot, code: str
) -> None:
    someone = person(fake, dispatcher, bot, 2003, code)
    [greeting] = await someone.send("/start")
    assert (greeting.text or "").startswith("Здравствуйте!")


async def test_language_switch_mid_form_asks_again_in_english_and_keeps_the_answers(
    fake: FakeTelegram, english_dispatcher: Dispatcher, bot: Bot, db: Database
) -> None:
    ivan = person(fake, english_dispatcher, bot, 2004, "ru")
    await ivan.send("/start")
    await ivan.click("Даю согласие")
    await ivan.send("Иванова Мария Петровна")
    await ivan.send("Главный специалист")
    assert "Шаг 3 из 5" in ivan.last_text

    [chooser] = await ivan.send("/language")
    assert (chooser.text or "").startswith("Выберите язык")
    assert ivan.buttons(chooser) == ["✓ Русский", "English"]  # each in itself, current marked
    replies = await ivan.click("English")
    assert (replies[0].text or "").startswith("Done: I now speak English.")
    assert not replies[0].inline_keyboard  # the chooser, answered
    assert replies[-1].text is not None and replies[-1].text.startswith("Step 3 of 5.")
    assert "Place of work" in replies[-1].text

    await ivan.send("Министерство культуры")
    assert "Step 4 of 5" in ivan.last_text
    assert "Share my number" in str(fake.last_message(2004).reply_markup)
    await ivan.send("/language")  # and back, at the phone question
    replies = await ivan.click("Русский")
    assert (replies[0].text or "").startswith("Готово: теперь я говорю по-русски.")
    assert "Шаг 4 из 5" in ivan.last_text
    assert "Отправить мой номер" in str(fake.last_message(2004).reply_markup)
    await ivan.send("/language")
    await ivan.click("English")
    await ivan.share_contact("79123456789")
    await ivan.send("ivanova@example.ru")

    summary = ivan.last_text
    assert summary.startswith("Please check your details:")
    for answer in ("Иванова Мария Петровна", "Главный специалист", "Министерство культуры"):
        assert answer in summary  # nothing lost on the way
    [confirmation, _calendar] = await ivan.click("Confirm")
    assert "You are registered" in (confirmation.text or "")
    [card] = await cards(db)
    assert "Новая регистрация" in card


async def test_language_choice_is_remembered_over_telegrams_language(
    fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot, db: Database
) -> None:
    mary = person(fake, dispatcher, bot, 2005, "en")
    assert (await mary.send("/help"))[0].text.startswith("I register")  # type: ignore[union-attr]
    await mary.send("/language")
    await mary.click("Русский")
    assert (await mary.send("/help"))[0].text.startswith("Я регистрирую")  # type: ignore[union-attr]
    rows = await db.fetchall("SELECT user_id, language, chosen FROM languages")
    assert [tuple(row) for row in rows] == [(2005, "ru", 1)]


async def test_summary_in_the_middle_of_a_switch_shows_english_buttons(
    fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot
) -> None:
    ivan = person(fake, dispatcher, bot, 2006, "ru")
    await ivan.send("/start")
    await ivan.click("Даю согласие")
    await ivan.send("Иванова Мария Петровна")
    await ivan.send("Главный специалист")
    await ivan.send("Министерство культуры")
    await ivan.share_contact("79123456789")
    await ivan.send("ivanova@example.ru")
    await ivan.send("/language")
    await ivan.click("English")
    assert ivan.last_text.startswith("Please check your details:")
    assert ivan.buttons(fake.last_message(2006))[0] == "✅ Confirm"


async def test_menus_are_set_per_language(
    fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot
) -> None:
    await dispatcher["admin_menus"].set_all(bot)
    russian = fake.commands_for({"type": "default"})
    english = fake.commands_for({"type": "default"}, "en")
    names = [name for name, _ in PARTICIPANT_COMMANDS]
    assert [c["command"] for c in russian] == [c["command"] for c in english] == names
    assert russian[0]["description"] == "Зарегистрироваться"
    assert english[0]["description"] == "Register"
    assert "language" in names


async def test_organizer_language_english_makes_english_cards(
    fake: FakeTelegram, settings: Settings, db: Database, clock: Clock, bot: Bot
) -> None:
    english = settings.model_copy(update={"organizer_language": "en"})
    dispatcher = await dispatcher_for(ENGLISH_TOML, english, db, clock)
    ivan = person(fake, dispatcher, bot, 2007, "ru")
    await ivan.send("/start")
    await ivan.click("Даю согласие")
    await ivan.send("Иванова Мария Петровна")
    await ivan.send("Главный специалист")
    await ivan.send("Министерство культуры")
    await ivan.share_contact("79123456789")
    await ivan.send("ivanova@example.ru")
    await ivan.click("Подтвердить")
    assert "Вы зарегистрированы" in ivan.last_message_text
    [card] = await cards(db)
    assert "New registration No." in card
    assert "Strategy session “EtNik”" in card
    assert "10 December 2026, 12:00 (MSK, UTC+3)" in card


def test_organizer_language_setting_is_checked() -> None:
    assert load_settings(_env_file=None, bot_token=TOKEN).organizer_language == "ru"
    assert (
        load_settings(_env_file=None, bot_token=TOKEN, organizer_language=" EN ").organizer_language
        == "en"
    )
    with pytest.raises(SettingsError, match="ORGANIZER_LANGUAGE"):
        load_settings(_env_file=None, bot_token=TOKEN, organizer_language="de")


@pytest.mark.parametrize(
    ("language", "zone", "expected"),
    [
        ("ru", "Europe/Moscow", "24 ноября 2026, 12:00 (МСК, UTC+3)"),
        ("en", "Europe/Moscow", "24 November 2026, 12:00 (MSK, UTC+3)"),
        ("en", "Asia/Yekaterinburg", "24 November 2026, 14:00 (MSK+2, UTC+5)"),
        ("en", "Europe/Berlin", "24 November 2026, 10:00 (Europe/Berlin, UTC+1)"),
    ],
)
def test_dates_name_month_and_zone_in_the_readers_language(
    language: str, zone: str, expected: str
) -> None:
    moment = datetime(2026, 11, 24, 12, 0, tzinfo=MOSCOW)
    with use_locale(language):
        assert format_datetime(moment, ZoneInfo(zone)) == expected


def events_with(tmp_path: Path, **fields: str) -> Path:
    start = datetime(2026, 12, 10, 12, 0, tzinfo=MOSCOW)
    path = tmp_path / "events.toml"
    path.write_text(
        event_toml(
            id="s",
            title="Сессия",
            starts_at=start,
            registration_deadline=start - timedelta(days=1),
            location="Онлайн",
            **fields,
        ),
        encoding="utf-8",
    )
    return path


def test_english_texts_fall_back_to_the_files_own(tmp_path: Path) -> None:
    catalog = load_events(events_with(tmp_path, location_en="Online"), default_zone=MOSCOW)
    with use_locale("en"):
        event = catalog.get("s")
    assert event is not None
    assert (event.title, event.location) == ("Сессия", "Online")
    russian = catalog.get("s")
    assert russian is not None and russian.location == "Онлайн"


def test_consent_versions_differ_per_language_text(tmp_path: Path) -> None:
    hashed = load_events(
        events_with(tmp_path, privacy_policy="Политика", privacy_policy_en="Policy"),
        default_zone=MOSCOW,
    )
    ru = hashed.get("s")
    with use_locale("en"):
        en = hashed.get("s")
    assert ru is not None and en is not None
    assert ru.privacy_policy_version.startswith("sha256:")
    assert en.privacy_policy_version.startswith("sha256:")
    assert ru.privacy_policy_version != en.privacy_policy_version
    assert en.privacy_policy == "Policy"
    default = load_events(events_with(tmp_path), default_zone=MOSCOW)  # the bot's own policy
    with use_locale("en"):
        en_default = default.get("s")
    ru_default = default.get("s")
    assert en_default is not None and ru_default is not None
    assert en_default.privacy_policy_version == ru_default.privacy_policy_version + "+en"


def test_english_text_too_long_stops_with_its_key(tmp_path: Path) -> None:
    with pytest.raises(EventsFileError, match=r"'title_en'.*at most 200"):
        load_events(events_with(tmp_path, title_en="x" * 201), default_zone=MOSCOW)


async def test_a_seat_freed_by_a_russian_reader_is_offered_in_english(
    fake: FakeTelegram, settings: Settings, db: Database, clock: Clock, bot: Bot
) -> None:
    dispatcher = await dispatcher_for(ENGLISH_TOML + "capacity = 1\n", settings, db, clock)
    ivan = person(fake, dispatcher, bot, 2008, "ru")
    mary = person(fake, dispatcher, bot, 2009, "en")
    for who, agree, phone in (
        (ivan, "Даю согласие", "79123456789"),
        (mary, "I agree", "447911123456"),
    ):
        await who.send("/start")
        await who.click(agree)
        await who.send("Иванова Мария Петровна")
        await who.send("Главный специалист")
        await who.send("Министерство культуры")
        await who.share_contact(phone)
        await who.send("someone@example.ru")
    await ivan.click("Подтвердить")
    await mary.click("Confirm")  # the seat went meanwhile: the database puts her in line
    assert "you are on the waiting list" in mary.last_message_text

    await ivan.send("/me")
    await ivan.click("Отменить регистрацию")
    await ivan.click("Да, отменить")

    [offer] = await db.fetchall("SELECT text, reply_markup FROM outbox WHERE kind = 'offer'")
    assert offer["text"].startswith("🎟 A seat has freed up for “Strategy session “EtNik””!")
    assert "Take the seat" in offer["reply_markup"]


async def test_each_registrant_is_reminded_in_their_own_language(
    fake: FakeTelegram, english_dispatcher: Dispatcher, bot: Bot, db: Database, clock: Clock
) -> None:
    ivan = person(fake, english_dispatcher, bot, 2010, "ru")
    mary = person(fake, english_dispatcher, bot, 2011, "en")
    for who, agree, confirm in (
        (ivan, "Даю согласие", "Подтвердить"),
        (mary, "I agree", "Confirm"),
    ):
        await who.send("/start")
        await who.click(agree)
        await who.send("Иванова Мария Петровна")
        await who.send("Главный специалист")
        await who.send("Министерство культуры")
        await who.share_contact("79123456789")
        await who.send("someone@example.ru")
        await who.click(confirm)

    clock.now = datetime(2026, 12, 9, 12, 1, tzinfo=MOSCOW)  # a day before the start
    assert await english_dispatcher["reminder_scheduler"].run_due() == 2

    rows = await db.fetchall(
        "SELECT chat_id, text FROM outbox WHERE kind = 'reminder' ORDER BY chat_id"
    )
    texts = {row["chat_id"]: row["text"] for row in rows}
    assert texts[2010].startswith("⏰ Напоминаем: через 1 день начнётся мероприятие")
    assert "Стратегическая сессия «ЭтНик»" in texts[2010]
    assert texts[2011].startswith("⏰ A reminder: the event you registered for starts in 1 day.")
    assert "Strategy session “EtNik”" in texts[2011]
    assert "10 December 2026, 12:00 (MSK, UTC+3)" in texts[2011]


async def test_digest_in_the_organizers_language(
    settings: Settings, db: Database, clock: Clock
) -> None:
    russian = await dispatcher_for(ENGLISH_TOML, settings, db, clock)
    english = await dispatcher_for(
        ENGLISH_TOML, settings.model_copy(update={"organizer_language": "en"}), db, clock
    )
    clock.now = datetime(2026, 11, 26, 9, 0, tzinfo=MOSCOW)

    ru = "\n".join(await russian["digest"].compose(clock.now))
    en = "\n".join(await english["digest"].compose(clock.now))

    # Nothing new: one line naming each session's total.
    assert ru.startswith("📊 Сводка за 26 ноября 2026: новых регистраций нет.")
    assert "«Стратегическая сессия «ЭтНик»» — 0" in ru
    assert en.startswith("📊 Digest for 26 November 2026: no new registrations.")
    assert "“Strategy session “EtNik”” — 0" in en


async def test_forget_erases_the_language_chosen(
    fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot, db: Database
) -> None:
    mary = person(fake, dispatcher, bot, 2012, "ru")
    await mary.send("/language")
    await mary.click("English")
    await mary.send("/start")
    await mary.click("I agree")
    await mary.send("/forget")
    await mary.click("Yes, delete everything")
    assert await db.fetchall("SELECT * FROM languages WHERE user_id = 2012") == []
    assert mary.last_text.startswith("Done: your data is deleted")


@pytest.mark.parametrize(("language", "column"), [("ru", "ФИО"), ("en", "Full name")])
def test_export_headers_in_the_organizers_language(
    settings: Settings, db: Database, tmp_path: Path, language: str, column: str
) -> None:
    from storage.export import export_to_file

    catalog = load_events(settings.events_file, default_zone=settings.timezone)
    output = tmp_path / "export.csv"

    export_to_file(export_source(db), catalog, None, "csv", output, language=language)

    header = output.read_text(encoding="utf-8-sig").splitlines()[0]
    assert column in header


async def test_a_language_button_no_catalogue_has_changes_nothing(
    fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot, db: Database
) -> None:
    mary = person(fake, dispatcher, bot, 2013, "ru")
    [chooser] = await mary.send("/language")
    await mary.click_data(chooser, "lang:de")  # a language since removed, or forged
    assert fake.calls_of("answerCallbackQuery")[-1].params.get("text") == (
        "Эта кнопка больше не действует."
    )
    assert await db.fetchall("SELECT * FROM languages WHERE user_id = 2013 AND chosen = 1") == []


def test_the_languages_are_the_catalogues_found(tmp_path: Path) -> None:
    for code in ("en", "ru", "de"):
        folder = tmp_path / code / "LC_MESSAGES"
        folder.mkdir(parents=True)
        (folder / "bot.po").write_text("", encoding="utf-8")
    (tmp_path / "fr").mkdir()  # a folder without a catalogue is no language
    assert found_languages(tmp_path) == ("ru", "de", "en")
    assert found_languages(LOCALES_DIR) == LANGUAGES == ("ru", "en")


async def test_a_third_languages_choice_can_be_stored(db: Database) -> None:
    # Migration 18: the table keeps any language the bot has a catalogue for ('de' once
    # bot/locales/de exists), not only ru and en; nonsense is still refused.
    languages = Languages(db)
    await languages.choose(5001, "de")
    row = await db.fetchone("SELECT language, chosen FROM languages WHERE user_id = 5001")
    assert row is not None and tuple(row) == ("de", 1)
    with pytest.raises(IntegrityError):
        await db.execute("INSERT INTO languages (user_id, language) VALUES (5002, 'x')")


async def test_a_new_persons_telegram_language_is_stored_and_a_stored_one_outlives_a_restart(
    db: Database,
) -> None:
    # A first message stores the row in one statement; a person known from before the
    # restart keeps the row they have, their choice included.
    assert await Languages(db).of(5003, "en-GB") == "en"
    await Languages(db).choose(5004, "en")
    restarted = Languages(db)
    assert await restarted.of(5003, "ru") == "en"
    assert await restarted.of(5004, "ru") == "en"
    rows = await db.fetchall("SELECT user_id, language, chosen FROM languages ORDER BY user_id")
    assert [tuple(row) for row in rows] == [(5003, "en", 0), (5004, "en", 1)]


@pytest.mark.postgres_only
async def test_a_language_chosen_on_another_replica_is_read_there_within_a_minute(
    fake: FakeTelegram, settings: Settings, db: Database, clock: Clock, bot: Bot
) -> None:
    first = await dispatcher_for(EVENTS_TOML, settings, db, clock)
    second = await dispatcher_for(EVENTS_TOML, settings, db, clock)
    mary = person(fake, second, bot, 2014, "ru")
    assert (await mary.send("/help"))[0].text.startswith("Я регистрирую")  # type: ignore[union-attr]
    mary.deliver = feed_deliver(first, bot)
    await mary.send("/language")
    await mary.click("English")
    assert (await mary.send("/help"))[0].text.startswith("I register")  # type: ignore[union-attr]

    mary.deliver = feed_deliver(second, bot)
    clock.advance(FRESH_FOR)
    assert (await mary.send("/help"))[0].text.startswith("I register")  # type: ignore[union-attr]
