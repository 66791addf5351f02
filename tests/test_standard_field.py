"""A sixth standard question is one entry in the form's table plus its two texts (README, "How
to add a standard field"): here `city`, added the way an engineer adds it, a `StandardField` in
the table the bot runs with and `ask_city` / `field_city` in both catalogues, then driven
through the production Dispatcher: asked after the e-mail and before the session's own
questions, refused with the reason, in the summary, changed from the summary and from /me, in
the organisers' cards, exported as a column of its own (CSV and XLSX, one session and all),
and erased with the person's other data."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiogram import Dispatcher
from openpyxl import load_workbook

from bot.app import create_dispatcher
from bot.domain import texts
from bot.domain.cells import CSV_DELIMITER, cells
from bot.domain.config import Settings
from bot.domain.events import EventCatalog, EventsFileError, parse_events
from bot.domain.form import STANDARD_FIELDS, FormFields, StandardField
from bot.retention_worker import RetentionJob
from bot.sender import Sender
from storage.audit import RETENTION, Reason, admin_actor
from storage.database import Database
from storage.erasure import PersonalData
from storage.export import export_to_file
from tests.client import TelegramUser
from tests.fake_telegram import FakeTelegram
from tests.helpers import (
    EVENTS_TOML,
    MOSCOW,
    ORGANIZER_CHAT_ID,
    QUESTIONS_TOML,
    Clock,
    assert_no_trace,
    assert_traces,
    export_source,
)

# The engineer's entry: a text question with the default check (a text of at most 300).
FORM = FormFields((*STANDARD_FIELDS, StandardField("city")))
CITY_TEXTS = {
    "ru": ("Из какого вы <b>города</b>?", "Город"),
    "en": ("Which <b>city</b> are you from?", "City"),
}
CITY, OTHER_CITY, FORMULA = "Хвалынск", "Вольск", '=HYPERLINK("http://x")'


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.toml"
    path.write_text(EVENTS_TOML + QUESTIONS_TOML, encoding="utf-8")
    return path


@pytest.fixture
def catalogues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The catalogues with the engineer's two texts added: a copy of bot/locales, each `.po`
    file with `ask_city` and `field_city` appended, read instead of the shipped ones."""
    folder = tmp_path / "locales"
    shutil.copytree(texts.LOCALES_DIR, folder)
    for locale, (ask, name) in CITY_TEXTS.items():
        with (folder / locale / "LC_MESSAGES" / "bot.po").open("a", encoding="utf-8") as po:
            po.write(f'\nmsgid "ask_city"\nmsgstr "{ask}"\n\nmsgid "field_city"\nmsgstr "{name}"\n')
    monkeypatch.setattr(texts, "LOCALES_DIR", folder)
    texts.translations.cache_clear()
    yield folder
    texts.translations.cache_clear()  # the shipped catalogues again, for the next test


@pytest.fixture
def dispatcher(
    settings: Settings, db: Database, catalog: EventCatalog, clock: Clock, catalogues: Path
) -> Dispatcher:
    return create_dispatcher(settings=settings, db=db, catalog=catalog, clock=clock, form=FORM)


async def five_answers(user: TelegramUser, name: str = "Иванова Мария Петровна") -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send(name)
    await user.send("Главный специалист")
    await user.send("Министерство культуры Саратовской области")
    await user.share_contact(f"7912345{user.chat_id % 10000:04d}")
    await user.send("maria@example.ru")


async def session_questions(user: TelegramUser) -> None:
    await user.click("НКО")
    await user.click("Да")
    await user.click("Пропустить")


async def answers_of(db: Database) -> list[tuple[int, str, str]]:
    rows = await db.fetchall(
        "SELECT registration_id, question_id, value FROM answers ORDER BY 1, 2"
    )
    return [(row[0], row[1], row[2]) for row in rows]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        return list(csv.reader(file, delimiter=CSV_DELIMITER))


def read_xlsx(path: Path) -> list[list[object]]:
    sheet = load_workbook(path).active
    assert sheet is not None
    return [["" if c.value is None else c.value for c in row] for row in sheet.iter_rows()]


async def test_a_sixth_standard_field_is_asked_checked_shown_changed_exported_and_erased(
    user: TelegramUser,
    make_user: Callable[..., TelegramUser],
    fake: FakeTelegram,
    db: Database,
    catalog: EventCatalog,
    sender: Sender,
    tmp_path: Path,
) -> None:
    await five_answers(user)
    # After the e-mail, in table order, before the session's own three questions.
    assert "Шаг 6 из 9. Из какого вы города?" in user.last_text
    # Refused with the reason, and asked again.
    await user.send("х" * 301)
    assert "не больше 300" in (fake.messages_to(user.chat_id)[-2].text or "")
    assert "Из какого вы города?" in user.last_text
    await user.send(f"  {OTHER_CITY} ")
    assert "Шаг 7 из 9" in user.last_text and "Кого вы представляете?" in user.last_text
    await session_questions(user)
    summary = user.last_text
    assert f"E-mail: maria@example.ru\nГород: {OTHER_CITY}\nКого вы представляете?: НКО" in summary
    assert summary.count(OTHER_CITY) == 1

    # Changed from the summary: its current value shown, then back to the summary.
    await user.click("✏️ Город")
    assert f"Сейчас указано: {OTHER_CITY}" in user.last_text
    await user.send(CITY)
    assert f"Город: {CITY}" in user.last_text
    await user.click("Подтвердить")
    assert "Вы зарегистрированы" in user.last_message_text
    # Stored with the registration, in its transaction, under the field's id.
    assert await answers_of(db) == [
        (1, "category", "НКО"),
        (1, "city", CITY),
        (1, "speaker", "Да"),
    ]
    await sender.idle()
    card = fake.messages_to(ORGANIZER_CHAT_ID)[-1].text or ""
    assert f"E-mail: maria@example.ru\nГород: {CITY}\n" in card

    # /me: among what the bot holds; changed there, saved at once, the organisers told.
    await user.send("/me")
    [held] = [
        m.text or "" for m in fake.messages_to(user.chat_id)[-2:] if "Город" in (m.text or "")
    ]
    assert f"E-mail: maria@example.ru\nГород: {CITY}\nКого вы представляете?: НКО" in held
    await user.click("Изменить")
    await user.click("✏️ Город")
    assert f"Сейчас указано: {CITY}" in user.last_text
    await user.send(OTHER_CITY)
    assert f"Город: {OTHER_CITY}" in user.last_message_text
    assert (1, "city", OTHER_CITY) in await answers_of(db)
    await sender.idle()
    change = fake.messages_to(ORGANIZER_CHAT_ID)[-1].text or ""
    assert "Город" in change and CITY in change and OTHER_CITY in change

    # A second person, whose city reads as a formula in a spreadsheet.
    second = make_user(1002, first_name="Пётр")
    await five_answers(second, "Петров Пётр Петрович")
    await second.send(FORMULA)
    await session_questions(second)
    await second.click("Подтвердить")
    assert (2, "city", FORMULA) in await answers_of(db)

    # Exports: a column of its own after «Источник», headed by the field's name, the cell
    # made safe like every other; not in «Ответы».
    assert cells([FORMULA], for_csv=True)[0] == "'" + FORMULA
    for event_id in ("forum-2026", None):
        for fmt, read in (("csv", read_csv), ("xlsx", read_xlsx)):
            path = tmp_path / f"out.{fmt}"
            source = export_source(db)
            export_to_file(source, catalog, event_id, fmt, path, standard=FORM.in_answers)
            header, first, other = read(path)
            city = header.index("Город")
            assert header[city - 1] == "Источник", (event_id, fmt)
            assert first[city] == OTHER_CITY
            # The one cell rule: an apostrophe first in CSV; a text cell, never a formula, in
            # XLSX.
            assert other[city] == cells([FORMULA], for_csv=fmt == "csv")[0]
            if event_id is None:
                assert header[-1] == "Ответы"
                assert first[-1] == "Кого вы представляете?: НКО; Будете выступать?: Да"
            else:
                assert header[city + 1 :] == [
                    "Кого вы представляете?",
                    "Будете выступать?",
                    "Тема выступления",
                ]

    # Erased with the rest: /forget for one, withdrawal for the other; no row, no byte left.
    await assert_traces(db, OTHER_CITY)
    await user.send("/forget")
    await user.click("Да, удалить всё")
    await second.send("/me")
    await second.click("Отменить регистрацию")
    await second.click("Да, отменить")
    assert await answers_of(db) == []
    await assert_no_trace(db, (CITY, OTHER_CITY, FORMULA))
    audit = await db.fetchall("SELECT fields FROM audit WHERE action = 'erase' ORDER BY id")
    assert all("answers" in row["fields"] for row in audit)


async def test_the_sixth_field_speaks_english_too(
    make_user: Callable[..., TelegramUser],
) -> None:
    user = make_user(1003, first_name="Mary", language_code="en")
    await user.send("/start")
    await user.click("I agree")
    for answer in ("Mary Smith", "Chief specialist", "Ministry of Culture", "+79123450003"):
        await user.send(answer)
    await user.send("mary@example.com")
    assert "Step 6 of 9. Which city are you from?" in user.last_text


async def test_a_form_left_at_the_sixth_question_expires_with_what_it_holds(
    user: TelegramUser, db: Database, clock: Clock, dispatcher: Dispatcher
) -> None:
    # A form at the sixth question is a form (its state is made from the table): it goes
    # after 7 days untouched, as one at any other question does.
    await five_answers(user)
    [form] = await db.fetchall("SELECT state FROM fsm_states")
    assert form["state"] == "Form:city"
    await assert_traces(db, "maria@example.ru")
    clock.advance(timedelta(days=7, minutes=1))
    retention: RetentionJob = dispatcher["retention"]
    assert (await retention.run_once()).drafts == 1
    assert await db.fetchall("SELECT * FROM fsm_states") == []
    await assert_no_trace(db, ("maria@example.ru",))


async def test_a_registration_with_the_sixth_field_loses_it_to_retention_and_to_erase(
    make_user: Callable[..., TelegramUser], db: Database, personal_data: PersonalData, clock: Clock
) -> None:
    people = [make_user(1010 + n, first_name="Мария") for n in range(2)]
    for person, city in zip(people, (CITY, OTHER_CITY), strict=True):
        await five_answers(person)
        await person.send(city)
        await session_questions(person)
        await person.click("Подтвердить")
    assert [row[1:] for row in await answers_of(db) if row[1] == "city"] == [
        ("city", CITY),
        ("city", OTHER_CITY),
    ]
    await personal_data.erase([1], reason=Reason.retention, actor=RETENTION, now=clock())
    await personal_data.erase([2], reason=Reason.admin, actor=admin_actor(500), now=clock())
    assert await answers_of(db) == []
    await assert_no_trace(db, (CITY, OTHER_CITY))


def test_an_event_question_may_not_take_a_standard_fields_id() -> None:
    toml = EVENTS_TOML + QUESTIONS_TOML.replace('id = "topic"', 'id = "city"')
    parse_events(toml, file=Path("events.toml"), default_zone=MOSCOW)  # the shipped table: fine
    with pytest.raises(EventsFileError) as error:
        parse_events(toml, file=Path("events.toml"), default_zone=MOSCOW, standard=FORM.ids)
    assert str(error.value) == (
        "events.toml: event 'forum-2026': question 'city': key 'id': a standard question of "
        "the form has this id; use another"
    )
    assert "\n" not in str(error.value)


async def test_the_dispatcher_refuses_a_catalog_whose_question_takes_a_fields_id(
    settings: Settings, db: Database, clock: Clock
) -> None:
    toml = EVENTS_TOML + QUESTIONS_TOML.replace('id = "topic"', 'id = "city"')
    catalog = parse_events(toml, file=Path("events.toml"), default_zone=MOSCOW)
    with pytest.raises(ValueError, match="question 'city': a standard question"):
        create_dispatcher(settings=settings, db=db, catalog=catalog, clock=clock, form=FORM)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ((StandardField("city"), StandardField("city")), "'city': listed twice"),
        ((StandardField("City"),), "'City': use a Latin letter"),
        ((StandardField("summary"),), "'summary': use a Latin letter"),
        ((StandardField("a" * 17),), "use a Latin letter, then up to 15"),
    ],
)
def test_a_malformed_table_is_refused(fields: tuple[StandardField, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FormFields(fields)
