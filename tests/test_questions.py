"""The event's own questions (`[[events.questions]]`, issue 14) through the production
Dispatcher: asked after the e-mail, answered by button and by typing, skipped, refused with a
reason, edited from the summary and from /me, stored with the registration, in the organisers'
card, exported (CSV and XLSX, one session and all) and erased with the person's other data."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from bot.domain.cells import CSV_DELIMITER, cells, csv_line
from bot.domain.config import Settings
from bot.domain.events import EventCatalog, EventsFileError, parse_events
from bot.domain.form import FORM, Draft, Question, question_text, validate_answer
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length, split_lines
from bot.domain.validation import ValidationError
from bot.sender import Sender
from handlers.replies import summary_text
from storage.database import Database
from storage.erasure import PersonalData
from storage.export import export_to_file
from storage.export.columns import columns_for, export_rows, session_questions
from storage.export.csv import csv_lines
from storage.export.source import open_read_only
from tests.client import TelegramUser
from tests.fake_telegram import FakeTelegram
from tests.helpers import (
    EVENTS_TOML,
    ORGANIZER_CHAT_ID,
    QUESTIONS_TOML,
    TRACES,
    Clock,
    assert_no_trace,
    assert_traces,
    dispatcher_for,
    expected_rows,
    export_source,
    header,
)

MOSCOW = ZoneInfo("Europe/Moscow")
TOPIC = "Этнокультурное просвещение молодёжи"


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.toml"
    path.write_text(EVENTS_TOML + QUESTIONS_TOML, encoding="utf-8")
    return path


async def standard_answers(user: TelegramUser) -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    await user.send("Главный специалист")
    await user.send("Министерство культуры Саратовской области")
    await user.share_contact("79123456789")
    await user.send("Maria.Ivanova@Example.RU")


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


async def test_event_questions_asked_answered_edited_stored_exported_and_erased(
    user: TelegramUser,
    fake: FakeTelegram,
    db: Database,
    catalog: EventCatalog,
    sender: Sender,
    personal_data: PersonalData,
    tmp_path: Path,
) -> None:
    await standard_answers(user)
    # After the e-mail, the event's first question, with its options as buttons.
    asked = fake.last_message(user.chat_id)
    assert "Шаг 6 из 8" in (asked.text or "") and "Кого вы представляете?" in (asked.text or "")
    assert user.buttons(asked) == ["Орган власти", "СМИ", "НКО", "Другое"]
    # Typed, something else: refused, the options again.
    await user.send("Министерство")
    assert "Такого варианта нет" in fake.messages_to(user.chat_id)[-2].text  # type: ignore[operator]
    assert user.buttons(fake.last_message(user.chat_id)) == ["Орган власти", "СМИ", "НКО", "Другое"]
    # Typed, an option in another case: it counts, stored as the option's text.
    await user.send("нко")
    assert "Будете выступать?" in user.last_text
    assert user.buttons(fake.last_message(user.chat_id)) == ["Да", "Нет"]  # required: no skip
    await user.click("Да")
    assert "Тема выступления" in user.last_text and "Пропустить" in user.buttons(
        fake.last_message(user.chat_id)
    )
    await user.click("Пропустить")
    summary = user.last_text
    assert "Кого вы представляете?: НКО" in summary
    assert "Будете выступать?: Да" in summary and "Тема выступления: —" in summary

    # From the summary: change the category by button, the topic by typing (too long first).
    await user.click("✏️ Кого вы представляете?")
    question = fake.last_message(user.chat_id)
    await user.click("СМИ")
    assert "Кого вы представляете?: СМИ" in user.last_text
    # A double tap on the old question's button changes nothing.
    messages = len(fake.messages_to(user.chat_id))
    await user.click_data(question, "q:a:0:0")
    assert len(fake.messages_to(user.chat_id)) == messages
    assert fake.calls_of("answerCallbackQuery")[-1].params.get("text") == (
        "Эта кнопка уже не действует."
    )
    await user.click("✏️ Тема выступления")
    await user.send("а" * 101)
    assert "не больше 100" in fake.messages_to(user.chat_id)[-2].text  # type: ignore[operator]
    await user.send(TOPIC)
    assert f"Тема выступления: {TOPIC}" in user.last_text
    await user.click("Подтвердить")
    assert "Вы зарегистрированы" in user.last_message_text
    assert await answers_of(db) == [
        (1, "category", "СМИ"),
        (1, "speaker", "Да"),
        (1, "topic", TOPIC),
    ]
    await sender.idle()
    card = fake.messages_to(ORGANIZER_CHAT_ID)[-1].text or ""
    assert "Кого вы представляете?: СМИ" in card
    assert TOPIC in card

    # From /me: the yes/no question, by button; the organisers get the change.
    await user.send("/me")
    await user.click("Изменить")
    await user.click("✏️ Будете выступать?")
    assert "Сейчас указано: Да" in user.last_text
    await user.click("Нет")
    assert "Будете выступать?: Нет" in user.last_message_text
    assert (1, "speaker", "Нет") in await answers_of(db)
    await sender.idle()
    change = fake.messages_to(ORGANIZER_CHAT_ID)[-1].text or ""
    assert "Будете выступать?" in change and "Да" in change and "Нет" in change

    # Exports: a column per question for the session, «Ответы» for all; CSV and XLSX agree.
    for event_id in ("forum-2026", None):
        for fmt, read in (("csv", read_csv), ("xlsx", read_xlsx)):
            path = tmp_path / f"out.{fmt}"
            export_to_file(export_source(db), catalog, event_id, fmt, path)  # type: ignore[arg-type]
            rows = read(path)
            if event_id is None:
                assert rows[0][-1] == "Ответы"
                assert rows[1][-1] == (
                    f"Кого вы представляете?: СМИ; Будете выступать?: Нет; "
                    f"Тема выступления: {TOPIC}"
                )
                assert rows == [
                    header(None),
                    *expected_rows(export_source(db), None, for_csv=fmt == "csv"),
                ]
            else:
                assert rows[0][-3:] == [
                    "Кого вы представляете?",
                    "Будете выступать?",
                    "Тема выступления",
                ]
                assert rows[1][-3:] == ["СМИ", "Нет", TOPIC]

    # Erased with the rest: no byte of the answers left in the file or its WAL.
    await assert_traces(db, TOPIC)
    await user.send("/forget")
    await user.click("Да, удалить всё")
    assert await answers_of(db) == []
    await assert_no_trace(db, (*TRACES, TOPIC))


async def test_a_required_question_cannot_be_skipped(
    user: TelegramUser, fake: FakeTelegram, db: Database
) -> None:
    await standard_answers(user)
    await user.click("Другое")
    question = fake.last_message(user.chat_id)
    # A forged "skip" under the required yes/no question: refused with the reason.
    await user.click_data(question, "q:s:1:0")
    answer = fake.calls_of("answerCallbackQuery")[-1]
    assert answer.params.get("text") == "Этот вопрос обязательный: пропустить его нельзя."
    assert "Будете выступать?" in user.last_text
    # An option out of range: the question again, nothing stored.
    await user.click_data(question, "q:a:1:7")
    assert "Будете выступать?" in user.last_text
    await user.send("да")
    assert "Тема выступления" in user.last_text
    assert await answers_of(db) == []


async def test_a_form_with_twenty_long_questions_splits_its_summary_cleanly() -> None:
    text = "Вопрос " + "о" * 290
    questions = tuple(Question(id=f"q{n}", text=f"{n}. {text}", max_length=1000) for n in range(20))
    catalog = parse_events(EVENTS_TOML, file=Path("events.toml"), default_zone=MOSCOW)
    event = replace(catalog.events[0], questions=questions)
    draft = Draft(
        event_id=event.id,
        full_name="Иванова Мария Петровна",
        position="Главный специалист",
        organization="Министерство",
        phone="+79123456789",
        email="a@example.ru",
        extra={question.id: "ж" * 1000 for question in questions},
    )
    parts = split_lines(summary_text(draft, event, FORM))
    assert len(parts) > 1
    assert all(message_length(part) <= MAX_MESSAGE_LENGTH for part in parts)
    # Cut between lines: every answer's line whole in one message, tags balanced.
    for part in parts:
        assert part.count("<b>") == part.count("</b>")
    assert "\n".join(parts) == summary_text(draft, event, FORM)


def test_question_text_picks_english_only_when_given() -> None:
    question = Question(id="x", text="Кого?", text_en="Whom?")
    assert question_text(question) == "Кого?"
    assert question_text(question, "en") == "Whom?"
    assert question_text(replace(question, text_en=None), "en") == "Кого?"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("СМИ", "СМИ"), ("  сми ", "СМИ"), ("Media", "СМИ"), ("2", "СМИ"), ("ngo", "НКО")],
)
def test_a_typed_option_counts_and_is_stored_in_russian(typed: str, stored: str) -> None:
    question = Question(
        id="c",
        text="Кто?",
        kind="choice",
        options=("Орган власти", "СМИ", "НКО", "Другое"),
        options_en=("Government", "Media", "NGO", "Other"),
    )
    assert validate_answer(question, typed) == stored


@pytest.mark.parametrize("typed", ["5", "0", "Министерство", "СМИ и НКО"])
def test_a_typed_choice_that_is_no_option_is_refused(typed: str) -> None:
    question = Question(id="c", text="Кто?", kind="choice", options=("СМИ", "НКО"))
    with pytest.raises(ValidationError) as error:
        validate_answer(question, typed)
    assert error.value.reason == "not_an_option"


def event_with(questions: str) -> str:
    return EVENTS_TOML + questions


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[events.questions]]\nid = "Bad-Id"\ntext = "?"\n', "question 'Bad-Id': key 'id'"),
        ('[[events.questions]]\nid = "a"\n', "question 'a': key 'text': is required"),
        (
            '[[events.questions]]\nid = "a"\ntext = "?"\nkind = "number"\n',
            "question 'a': key 'kind'",
        ),
        (
            '[[events.questions]]\nid = "a"\ntext = "?"\nkind = "choice"\n',
            "question 'a': key 'options': is required",
        ),
        (
            '[[events.questions]]\nid = "a"\ntext = "?"\nkind = "choice"\n'
            'options = ["x", "y"]\noptions_en = ["x"]\n',
            "question 'a': key 'options_en'",
        ),
        (
            '[[events.questions]]\nid = "a"\ntext = "?"\nrequired = "yes"\n',
            "question 'a': key 'required'",
        ),
        (
            '[[events.questions]]\nid = "a"\ntext = "?"\nmax_length = 0\n',
            "question 'a': key 'max_length'",
        ),
        (
            '[[events.questions]]\nid = "a"\ntext = "?"\ncolour = 1\n',
            "question 'a': key 'colour': is not a known key",
        ),
        (
            '[[events.questions]]\nid = "a"\ntext = "?"\n[[events.questions]]\nid = "a"\n'
            'text = "!"\n',
            "question 'a': key 'id': used twice",
        ),
    ],
)
def test_question_mistakes_stop_with_one_line_naming_file_event_question_key(
    toml: str, message: str
) -> None:
    with pytest.raises(EventsFileError) as error:
        parse_events(event_with(toml), file=Path("events.toml"), default_zone=MOSCOW)
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith("events.toml: event 'forum-2026': ")
    assert message in text


def test_the_shipped_events_file_asks_the_seeds_audiences() -> None:
    path = Path(__file__).parent.parent / "events.toml"
    catalog = parse_events(path.read_text(encoding="utf-8"), file=path, default_zone=MOSCOW)
    [category] = [q for q in catalog.events[0].questions if q.id == "category"]
    assert category.kind == "choice"
    assert category.options == ("Орган власти", "СМИ", "НКО", "Другое")
    assert len(category.options_en) == 4 and category.text_en


def test_english_keys_are_kept_on_the_question() -> None:
    catalog = parse_events(event_with(QUESTIONS_TOML), file=Path("e.toml"), default_zone=MOSCOW)
    category = catalog.events[0].questions[0]
    assert category.text_en == "Whom do you represent?"
    assert category.options_en == ("Government", "Media", "NGO", "Other")
    assert [q.kind for q in catalog.events[0].questions] == ["choice", "yes_no", "text"]
    assert catalog.events[0].questions[2].required is False
    assert catalog.events[0].questions[2].max_length == 100


async def test_a_question_removed_from_the_file_keeps_its_answers_in_the_export(
    user: TelegramUser,
    db: Database,
    settings: Settings,
    clock: Clock,
    tmp_path: Path,
) -> None:
    await standard_answers(user)
    await user.click("СМИ")
    await user.click("Да")
    await user.send(TOPIC)
    await user.click("Подтвердить")
    # The organisers drop the yes/no question and add another; the bot restarts.
    added = '\n[[events.questions]]\nid = "district"\ntext = "Район"\nrequired = false\n'
    without_speaker = QUESTIONS_TOML.replace(
        '[[events.questions]]\nid = "speaker"\ntext = "Будете выступать?"\nkind = "yes_no"\n', ""
    )
    dispatcher = await dispatcher_for(EVENTS_TOML + without_speaker + added, settings, db, clock)
    catalog: EventCatalog = dispatcher["catalog"]
    path = tmp_path / "out.csv"
    export_to_file(export_source(db), catalog, "forum-2026", "csv", path)
    rows = read_csv(path)
    assert rows[0][-4:] == ["Кого вы представляете?", "Тема выступления", "Район", "speaker"]
    assert rows[1][-4:] == ["СМИ", TOPIC, "", "Да"]
    export_to_file(export_source(db), catalog, None, "csv", path)
    assert read_csv(path)[1][-1] == (
        f"Кого вы представляете?: СМИ; Тема выступления: {TOPIC}; speaker: Да"
    )


def test_a_question_written_on_several_lines_is_one_line() -> None:
    toml = '[[events.questions]]\nid = "a"\ntext = """\nКого вы\n  представляете?"""\n'
    catalog = parse_events(event_with(toml), file=Path("e.toml"), default_zone=MOSCOW)
    assert catalog.events[0].questions[0].text == "Кого вы представляете?"


async def test_answers_go_through_the_cell_rule_and_the_csv_fast_way_agrees(
    make_user, db: Database, catalog: EventCatalog
) -> None:
    answers = ['=HYPERLINK("x"); тема', "+7 тема", "Тема;с точкой с запятой", None]
    for n, topic in enumerate(answers):
        user = make_user(3000 + n)
        await standard_answers(user)
        await user.click(["СМИ", "НКО"][n % 2])
        await user.click("Нет")
        if topic is None:
            await user.click("Пропустить")
        else:
            await user.send(topic)
        await user.click("Подтвердить")
    for event_id in ("forum-2026", None):
        with open_read_only(export_source(db)) as connection:
            questions = [] if event_id is None else session_questions(connection, catalog, event_id)
            columns = columns_for(event_id, questions)
            batches = csv_lines(connection, catalog, event_id, columns)
            fast = [line for batch in batches for line in batch]
            slow = [
                csv_line(cells(row, for_csv=True)).encode()
                for row in export_rows(connection, catalog, event_id, columns)
            ]
        assert fast == slow and len(fast) == len(answers)
        if event_id is not None:  # a cell of its own: neutralised as a formula
            assert fast[0].endswith(';"\'=HYPERLINK(""x""); тема"'.encode())


async def test_an_english_reader_is_asked_in_english_and_the_choice_is_stored_in_russian(
    make_user, fake: FakeTelegram, db: Database
) -> None:
    user: TelegramUser = make_user(1001, first_name="Mary", language_code="en")
    await user.send("/start")
    await user.click("I agree")
    await user.send("Mary Smith")
    await user.send("Director")
    await user.send("Ministry of Culture")
    await user.share_contact("79123456789")
    await user.send("mary@example.com")

    asked = fake.last_message(user.chat_id)
    assert "Step 6 of 8" in (asked.text or "") and "Whom do you represent?" in (asked.text or "")
    assert user.buttons(asked) == ["Government", "Media", "NGO", "Other"]
    await user.click("Media")
    # A question without an English text is asked as written; its buttons are English.
    assert "Будете выступать?" in user.last_text
    assert user.buttons(fake.last_message(user.chat_id)) == ["Yes", "No"]
    await user.send("yes")
    await user.click("Skip")
    assert "Whom do you represent?: Media" in user.last_text
    await user.click("Confirm")

    # Stored as the options' Russian text, whatever the person saw, so exports and counts agree.
    assert await answers_of(db) == [(1, "category", "СМИ"), (1, "speaker", "Да")]
