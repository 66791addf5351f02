"""Fuzzing the participant's conversation (hypothesis): arbitrary Unicode, message kinds and
button clicks in every state of the form, through the production Dispatcher, in-process.

Whatever arrives, the bot never reaches its errors handler, never sends what Telegram refuses
(a text over 4096 characters, HTML that does not parse, a second answer to a callback query),
never leaves a button press unanswered, and never stores a phone, e-mail or text that its own
validator would not give back unchanged.

`make test` runs a fixed, derandomised handful; `make fuzz` runs 10,000 random examples
(FUZZ_EXAMPLES sets the number).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import unicodedata
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from aiogram import Bot, Dispatcher
from aiogram.methods import (
    AnswerCallbackQuery,
    DeleteMessage,
    EditMessageReplyMarkup,
    EditMessageText,
    GetMe,
    Response,
    SendDocument,
    SendMessage,
)
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import create_bot, create_dispatcher, open_app
from bot.domain.config import Settings, load_settings
from bot.domain.form import FIELDS, VALIDATORS
from bot.domain.texts import t
from bot.domain.validation import ValidationError, validate_text
from handlers.keyboards import (
    ConsentAction,
    ConsentCallback,
    EventChoice,
    MyAction,
    MyCallback,
    SummaryAction,
    SummaryCallback,
)
from storage.database import Database
from tests.adversarial import FAMILIES, LENGTHS
from tests.client import TelegramUser, feed_deliver
from tests.fake_telegram import (
    JSON,
    MAX_CALLBACK_DATA_BYTES,
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    FakeSession,
    FakeTelegram,
    SentMessage,
    callback_query_update,
    contact_update,
    document_update,
    location_update,
    message_update,
    photo_update,
    render_html,
    sticker_update,
    text_update,
    voice_update,
)
from tests.helpers import ADMIN_ID, EVENTS_TOML, ORGANIZER_CHAT_ID, TOKEN, Clock

# Hypothesis drives whole conversations: seconds per test.
pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# Without FUZZ_EXAMPLES (`make test`) the same examples run every time.
DERANDOMIZE = "FUZZ_EXAMPLES" not in os.environ

EVENT_ID = "forum-2026"
START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)

VALID_ANSWERS = {
    "full_name": "Иванова Мария Петровна",
    "position": "Главный специалист",
    "organization": "Министерство культуры Саратовской области",
    "phone": "+79123456789",
    "email": "Maria.Ivanova@Example.RU",
}

# --- Strategies -------------------------------------------------------------------------------

SPECIAL_CHARACTERS = (
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u200e",
    "\u200b",  # zero-width space
    "\ufeff",  # zero-width no-break space (BOM)
    "\u200d",
    "\x00",
    "\x1b",
    "\u2028",
    "\u2029",
    "\r",
    "\n",
    "\t",
    "\u00a0",
    "\u0301",  # combining acute accent
    "й",
    "ё",
    "ا",
    "ש",
    "😀",
    "\U000e0001",  # language tag
    "\U0010ffff",
)
FRAGMENTS = (
    "и\u0306",  # "й" as a letter and a combining mark, as pasted from a PDF
    "и\u00ad\u0306",  # the same with a soft hyphen between
    "👨‍👩‍👧‍👦",
    "🇷🇺",
    "🏳️‍🌈",
    "<b>",
    "</b>",
    "</i>",
    "<a href='x'>",
    "</a>",
    "<tg-spoiler>",
    "<script>",
    "<br/>",
    "&amp;",
    "&lt;",
    "&#0;",
    "&#x110000;",
    "&",
    "<",
    ">",
    '"',
    "'",
    "\\",
    "*bold*",
    "_it_",
    "`code`",
    "```",
    "[link](http://x)",
    "'; DROP TABLE registrations; --",
    "%s",
    "%(name)s",
    "{}",
    "{0}",
    "{name}",
    "\\n" * 50,
    "\n" * 50,
)
VALID_BY_FIELD: dict[str, tuple[str, ...]] = {
    "full_name": (VALID_ANSWERS["full_name"], "O'Connor Sean", "Мария-Луиза Ёлкина", "Ибн Сина"),
    "position": (VALID_ANSWERS["position"], "Директор", "Руководитель отдела по связям с НКО"),
    "organization": (VALID_ANSWERS["organization"], "ГБУК «Дом народного творчества»", "АНО «Мир»"),
    "phone": (
        VALID_ANSWERS["phone"],
        "8 (912) 345-67-89",
        "+375 29 123-45-67",
        "+1 650 253 0000",
        "+44 20 7946 0958",
        "٧٩١٢٣٤٥٦٧٨٩",  # Arabic-Indic digits
    ),
    "email": (
        VALID_ANSWERS["email"],
        "maria@example.ru",
        "пользователь@пример.рф",
        "a+b@sub.example.com",
        '"quoted"@example.com',
        "maria@xn--e1afmkfd.xn--p1ai",
    ),
}
VALID_VALUES = tuple(value for values in VALID_BY_FIELD.values() for value in values)

# Every code point UTF-8 can carry: Telegram delivers no lone surrogates.
characters = st.one_of(st.characters(codec="utf-8"), st.sampled_from(SPECIAL_CHARACTERS))
pieces = st.one_of(st.text(characters, max_size=30), st.sampled_from(FRAGMENTS))


# Composite strategies keep hypothesis's reports short (a nested strategy's repr runs to kB);
# cached, because building a strategy costs more than drawing from it.
@cache
@st.composite
def fuzz_texts(draw: st.DrawFn, *, min_size: int = 0) -> str:
    return "".join(draw(st.lists(pieces, min_size=min_size, max_size=12)))


@cache
@st.composite
def long_texts(draw: st.DrawFn) -> str:
    """Up to 5,000 characters: over Telegram's 4096 and the validators' 1000."""
    unit = draw(fuzz_texts(min_size=1).filter(bool))
    length = draw(st.integers(1000, 5000))
    return (unit * (length // len(unit) + 1))[:length]


@cache
@st.composite
def adversarial_texts(draw: st.DrawFn) -> str:
    """Runs of separators and the like, built to make a backtracking pattern explode."""
    family = FAMILIES[draw(st.sampled_from(sorted(FAMILIES)))]
    return family(draw(st.one_of(st.integers(1, 300), st.sampled_from(LENGTHS))))


Noise = tuple[tuple[int, str], ...]

# Pieces to put inside a valid answer, each at a position (wrapped around its length).
noise = st.lists(
    st.tuples(
        st.integers(0, 60), st.one_of(st.sampled_from(SPECIAL_CHARACTERS + FRAGMENTS), pieces)
    ),
    max_size=3,
).map(tuple)


def with_noise(value: str, noise: Noise) -> str:
    for position, piece in noise:
        at = position % (len(value) + 1)
        value = value[:at] + piece + value[at:]
    return value


@cache
@st.composite
def noisy_valid(draw: st.DrawFn) -> str:
    """A valid answer with noise inside: the noise must not reach the database."""
    return with_noise(draw(st.one_of(st.sampled_from(VALID_VALUES), st.emails())), draw(noise))


@cache
@st.composite
def phones(draw: st.DrawFn) -> str:
    return draw(
        st.one_of(
            st.sampled_from(VALID_BY_FIELD["phone"]),
            st.from_regex(r"\+?[0-9]{1,16}", fullmatch=True),
            noisy_valid(),
            fuzz_texts(),
            adversarial_texts(),
        )
    )


COMMANDS = (
    "/start",
    "/cancel",
    "/help",
    "/me",
    f"/start {EVENT_ID}",
    f"/start {EVENT_ID}--vk_post",
    f"/start {EVENT_ID}--bad-source!",
    "/start no-such-event",
    "/start@event_registration_test_bot",
    "/me@another_bot",
    "/export",
    "/stats",
    "/find Иванова",
    "/broadcast",
    "/digest",
    "/register",
    "/",
)


@cache
@st.composite
def commands(draw: st.DrawFn) -> str:
    return draw(
        st.one_of(
            st.sampled_from(COMMANDS),
            st.tuples(st.sampled_from(COMMANDS), fuzz_texts()).map(" ".join),
            fuzz_texts().map(lambda text: "/" + text),
        )
    )


@cache
@st.composite
def texts(draw: st.DrawFn) -> str:
    # Telegram delivers no empty text message.
    return draw(
        st.one_of(
            fuzz_texts(min_size=1), noisy_valid(), long_texts(), commands(), adversarial_texts()
        ).filter(bool)
    )


CALLBACK_WORDS = (
    "event",
    "consent",
    "summary",
    "my",
    "agree",
    "decline",
    "confirm",
    "edit",
    "cancel",
    "show",
    "change",
    "field",
    "withdraw",
    "yes",
    "no",
    EVENT_ID,
    "0",
    "1",
    "2",
    "3",
    "-1",
    "99999999999999999999",
    "",
    *FIELDS,
)


# The bot's own buttons, pressed in any state and on any message, like a stale button.
KNOWN_CALLBACKS = (
    EventChoice(event_id=EVENT_ID).pack(),
    EventChoice(event_id="no-such-event").pack(),
    *(ConsentCallback(action=action).pack() for action in ConsentAction),
    *(
        SummaryCallback(action=action, event_id=EVENT_ID, field=field).pack()
        for action in SummaryAction
        for field in (None, *FIELDS)
    ),
    *(
        MyCallback(action=action, registration_id=registration_id, field=field).pack()
        for action in MyAction
        for registration_id in (1, 2)
        for field in (None, "email")
    ),
)


@cache
@st.composite
def callback_data(draw: st.DrawFn) -> str:
    """What a button can carry (1-64 bytes): the bot's own, and near-misses of them."""
    words = st.one_of(st.sampled_from(CALLBACK_WORDS), st.text(characters, max_size=10))
    data = draw(
        st.one_of(
            st.sampled_from(KNOWN_CALLBACKS),
            st.lists(words, min_size=1, max_size=5).map(":".join),
            st.text(characters, min_size=1, max_size=64),
        )
    )
    data = data.encode()[:MAX_CALLBACK_DATA_BYTES].decode(errors="ignore")
    return data or "x"


@dataclass(frozen=True)
class Send:
    text: str


@dataclass(frozen=True)
class Attach:
    kind: str
    caption: str | None = None


@dataclass(frozen=True)
class ShareContact:
    phone: str
    # Whose card: the sender's own, someone else's, or a card with no Telegram account.
    owner: str


@dataclass(frozen=True)
class Click:
    # Counted from the newest message with buttons, and within its buttons; wrapped around.
    message: int
    button: int


@dataclass(frozen=True)
class Press:
    """A callback query with arbitrary data, from any message of the bot."""

    data: str
    message: int


@dataclass(frozen=True)
class Proceed:
    """What a cooperative person does next, so that the noise also lands deep in the form: the
    answer to the question asked (one of the valid ones, with noise inside), agree, confirm,
    or /start."""

    pick: int
    noise: Noise


@dataclass(frozen=True)
class Later:
    """A month passes: the registration deadline is behind."""


ATTACHMENTS = (
    "sticker",
    "photo",
    "voice",
    "document",
    "location",
    "video",
    "video_note",
    "dice",
    "edited_text",  # an earlier text edited: its new text is the caption drawn
)


# Weighted by repetition: mostly typing and clicking, rarely a month passing.
ACTION_KINDS = (
    *("proceed",) * 3,
    *("text",) * 5,
    *("command",) * 3,
    "attachment",
    "contact",
    *("click",) * 4,
    *("press",) * 2,
    "later",
)


@cache
@st.composite
def actions(draw: st.DrawFn) -> object:
    kind = draw(st.sampled_from(ACTION_KINDS))
    if kind == "proceed":
        return Proceed(draw(st.integers(0, 5)), draw(noise))
    if kind == "text":
        return Send(draw(texts()))
    if kind == "command":
        return Send(draw(commands()))
    if kind == "attachment":
        caption = draw(st.none() | fuzz_texts().map(lambda text: text[:MAX_CAPTION_LENGTH]))
        return Attach(draw(st.sampled_from(ATTACHMENTS)), caption)
    if kind == "contact":
        return ShareContact(draw(phones()), draw(st.sampled_from(("own", "other", "none"))))
    if kind == "click":
        return Click(draw(st.integers(0, 3)), draw(st.integers(0, 7)))
    if kind == "press":
        return Press(draw(callback_data()), draw(st.integers(0, 5)))
    return Later()


STAGES = ("idle", "consent", *FIELDS, "summary", "editing", "registered", "changing")


@cache
@st.composite
def starts(draw: st.DrawFn) -> str:
    """Where the person is when the noise begins; "editing" (from the summary) and "changing"
    (a saved registration, from /me) are followed by the field asked."""
    stage = draw(st.sampled_from(STAGES))
    if stage in ("editing", "changing"):
        return f"{stage} {draw(st.sampled_from(FIELDS))}"
    return stage


# --- The bot under test -----------------------------------------------------------------------


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class App:
    """What all examples share: one event loop, database and Dispatcher (building them is
    most of an example's cost). Each example gets its own people, Telegram and clock time."""

    settings: Settings
    db: Database
    dispatcher: Dispatcher
    clock: Clock
    errors: _ErrorRecords
    last_user_id: int = 100_000


@asynccontextmanager
async def fuzz_app(directory: Path) -> AsyncIterator[App]:
    events_file = directory / "events.toml"
    events_file.write_text(EVENTS_TOML, encoding="utf-8")
    app_settings = load_settings(
        _env_file=None,
        bot_token=TOKEN,
        database_path=directory / "bot.sqlite3",
        events_file=events_file,
        admin_ids=str(ADMIN_ID),
        organizer_chat_ids=str(ORGANIZER_CHAT_ID),
    )
    clock = Clock(START)
    # caplog is per test, not per example; and ERROR from any logger (handlers.common logs
    # what reaches the errors handler) is a finding.
    errors = _ErrorRecords()
    logging.getLogger().addHandler(errors)
    try:
        async with open_app(app_settings, clock=clock) as opened:
            dispatcher = create_dispatcher(
                settings=app_settings, db=opened.db, catalog=opened.catalog, clock=clock
            )
            yield App(app_settings, opened.db, dispatcher, clock, errors)
    finally:
        logging.getLogger().removeHandler(errors)


@dataclass
class Chat:
    """One example: a person (and maybe a neighbour who registered first) on a fresh fake
    Telegram; what it checks is theirs alone, so earlier examples cannot affect it."""

    app: App
    fake: FakeTelegram
    bot: Bot
    user: TelegramUser
    neighbour: TelegramUser
    # Callback queries the person sent, each of which must be answered once.
    queries: list[str]

    @property
    def db(self) -> Database:
        return self.app.db

    @property
    def people(self) -> tuple[int, int]:
        return self.user.user_id, self.neighbour.user_id


@asynccontextmanager
async def fuzz_chat(app: App) -> AsyncIterator[Chat]:
    app.clock.now = START
    app.errors.records.clear()
    # Each fake Telegram numbers its updates from 1 again.
    await app.db.execute("DELETE FROM handled_updates")
    user_id, app.last_user_id = app.last_user_id + 1, app.last_user_id + 2
    fake = FakeTelegram(token=TOKEN)
    bot = create_bot(app.settings, session=FakeSession(fake))
    deliver = feed_deliver(app.dispatcher, bot)
    try:
        yield Chat(
            app=app,
            fake=fake,
            bot=bot,
            user=TelegramUser(fake, deliver, user_id=user_id, first_name="Мария", username="m"),
            neighbour=TelegramUser(fake, deliver, user_id=user_id + 1),
            queries=[],
        )
    finally:
        await bot.session.close()


async def state_of(chat: Chat, user: TelegramUser) -> str | None:
    context = chat.app.dispatcher.fsm.get_context(
        chat.bot, chat_id=user.chat_id, user_id=user.user_id
    )
    return await context.get_state()


def edit_button(field: str) -> str:
    return t("button_edit_field", field=t(f"field_{field}"))


async def drive_to(chat: Chat, user: TelegramUser, start: str) -> None:
    """Bring `user` to `start` the way a person would, and make sure it got there."""
    expected: str | None = None
    if start != "idle":
        await user.send("/start")
        expected = "Form:consent"
    if start not in ("idle", "consent"):
        await user.click(t("button_consent_agree"))
        for field in FIELDS:
            if start == field:
                break
            if field == "phone":
                await user.share_contact(VALID_ANSWERS["phone"].lstrip("+"))
            else:
                await user.send(VALID_ANSWERS[field])
        expected = f"Form:{start}" if start in FIELDS else "Form:summary"
    if start.startswith("editing "):
        field = start.split()[1]
        await user.click(edit_button(field))
        expected = f"Form:{field}"
    if start == "registered" or start.startswith("changing "):
        await user.click(t("button_confirm"))
        expected = None
    if start.startswith("changing "):
        field = start.split()[1]
        await user.send("/me")
        await user.click(t("button_change"))
        await user.click(edit_button(field))
        expected = f"Form:{field}"
    assert await state_of(chat, user) == expected, f"setup did not reach {start!r}"
    if start == "registered" or start.startswith("changing "):
        rows = await chat.db.fetchall(
            "SELECT id FROM registrations WHERE user_id = ? AND status = 'confirmed'",
            (user.user_id,),
        )
        assert len(rows) == 1, f"setup {start!r}: no registration"


# --- Actions ----------------------------------------------------------------------------------


def _attachment(user: TelegramUser, kind: str, caption: str | None) -> JSON:
    fields: dict[str, Any] = {
        "message_id": user.fake.next_message_id(user.chat_id),
        "chat_id": user.chat_id,
    }
    builders: dict[str, Callable[..., JSON]] = {
        "sticker": sticker_update,
        "photo": photo_update,
        "voice": voice_update,
        "document": document_update,
        "location": location_update,
    }
    if kind in builders:
        update = builders[kind](user.user, **fields)
    elif kind == "video":
        video = {"file_id": "v", "file_unique_id": "v", "width": 1, "height": 1, "duration": 1}
        update = message_update(user.user, **fields, video=video)
    elif kind == "video_note":
        note = {"file_id": "n", "file_unique_id": "n", "length": 1, "duration": 1}
        update = message_update(user.user, **fields, video_note=note)
    elif kind == "dice":
        update = message_update(user.user, **fields, dice={"emoji": "🎲", "value": 4})
    else:  # an edit of an earlier text message: Telegram sends it as edited_message
        message = text_update(user.user, caption or "?", **fields)["message"]
        return {"edited_message": {**message, "edit_date": message["date"]}}
    if caption and kind in ("photo", "document", "video"):
        update["message"]["caption"] = caption
    return update


def _buttons(message: SentMessage) -> list[str]:
    return [
        button["callback_data"]
        for row in message.inline_keyboard
        for button in row
        if "callback_data" in button
    ]


async def perform(chat: Chat, action: object) -> None:
    user, fake = chat.user, chat.fake
    if isinstance(action, Send):
        await user.send(action.text)
    elif isinstance(action, Attach):
        update = _attachment(user, action.kind, action.caption)
        await user.deliver({"update_id": fake.next_update_id(), **update})
    elif isinstance(action, ShareContact):
        owner = {"own": user.user_id, "other": chat.neighbour.user_id, "none": None}[action.owner]
        update = contact_update(
            user.user,
            action.phone,
            message_id=fake.next_message_id(user.chat_id),
            contact_user_id=owner,
            first_name="Мария",
        )
        await user.deliver({"update_id": fake.next_update_id(), **update})
    elif isinstance(action, Click):
        shown = [m for m in reversed(fake.messages_to(user.chat_id)) if not m.deleted]
        with_buttons = [m for m in shown if _buttons(m)]
        if with_buttons:
            message = with_buttons[action.message % len(with_buttons)]
            buttons = _buttons(message)
            await _press(chat, message, buttons[action.button % len(buttons)])
    elif isinstance(action, Press):
        shown = [m for m in reversed(fake.messages_to(user.chat_id)) if not m.deleted]
        if shown:
            await _press(chat, shown[action.message % len(shown)], action.data)
    elif isinstance(action, Proceed):
        await proceed(chat, action)
    elif isinstance(action, Later):
        chat.app.clock.advance(timedelta(days=30))
    else:
        raise TypeError(action)


async def proceed(chat: Chat, action: Proceed) -> None:
    current = await state_of(chat, chat.user)
    field = (current or "").removeprefix("Form:")
    if field in VALID_BY_FIELD:
        values = VALID_BY_FIELD[field]
        await chat.user.send(with_noise(values[action.pick % len(values)], action.noise))
        return
    button = {"Form:consent": "button_consent_agree", "Form:summary": "button_confirm"}
    if current in button and await _click_text(chat, t(button[current])):
        return
    await chat.user.send("/start")


async def _click_text(chat: Chat, text: str) -> bool:
    for message in reversed(chat.fake.messages_to(chat.user.chat_id)):
        for row in [] if message.deleted else message.inline_keyboard:
            for button in row:
                if button["text"] == text and "callback_data" in button:
                    await _press(chat, message, button["callback_data"])
                    return True
    return False


async def _press(chat: Chat, message: SentMessage, data: str) -> None:
    query_id = chat.fake.new_callback_query_id()
    chat.queries.append(query_id)
    update = callback_query_update(
        chat.user.user, chat.fake.message_json(message), data, query_id=query_id
    )
    await chat.user.deliver({"update_id": chat.fake.next_update_id(), **update})


# --- Properties -------------------------------------------------------------------------------


def _short(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def assert_stored_phone(value: object, where: str) -> None:
    assert isinstance(value, str), f"{where}: phone {value!r}"
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as error:
        raise AssertionError(f"{where}: phone {value!r} does not parse: {error}") from None
    assert phonenumbers.is_valid_number(number), f"{where}: invalid phone {value!r}"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    assert e164 == value, f"{where}: phone {value!r} is not E.164 ({e164!r})"


def assert_stored_email(value: object, where: str) -> None:
    assert isinstance(value, str), f"{where}: e-mail {value!r}"
    try:
        normalized = validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise AssertionError(f"{where}: e-mail {value!r} is invalid: {error}") from None
    assert normalized == value, f"{where}: e-mail {value!r} is not normalised ({normalized!r})"


def assert_stored_text(field: str, value: object, where: str) -> None:
    assert isinstance(value, str), f"{where}: {field} {value!r}"
    assert validate_text(field, value) == value, f"{where}: {field} {value!r} is not clean"


async def check(chat: Chat, after: str) -> None:
    fake = chat.fake
    # (a) The errors handler was never reached.
    for record in chat.app.errors.records:
        raise AssertionError(f"after {after}: ERROR logged:\n{logging.Formatter().format(record)}")
    failure_text = render_html(t("error_try_again"))
    assert all(m.text != failure_text for m in fake.messages), f"after {after}: error_try_again"

    # (b) Nothing Telegram would refuse, and every button press answered exactly once.
    for call in fake.calls:
        assert call.error_code is None, (
            f"after {after}: {call.method} answered {call.error_code}: {_short(call.params)}"
        )
    for message in fake.messages:
        for text in (message.text, *message.edits):
            assert text is None or len(text) <= MAX_TEXT_LENGTH, f"after {after}: long text"
        assert message.caption is None or len(message.caption) <= MAX_CAPTION_LENGTH
    answered = [
        call.params.get("callback_query_id") for call in fake.calls_of("answerCallbackQuery")
    ]
    for query_id in chat.queries:
        assert answered.count(query_id) == 1, (
            f"after {after}: callback query {query_id} answered {answered.count(query_id)} times"
        )

    # (c) Registrations hold only valid, normalised values.
    registrations = await chat.db.fetchall(
        "SELECT * FROM registrations WHERE user_id IN (?, ?)", chat.people
    )
    for row in registrations:
        where = f"after {after}: registration {row['id']}"
        assert_stored_phone(row["phone"], where)
        assert_stored_email(row["email"], where)
        for field in ("full_name", "position", "organization"):
            assert_stored_text(field, row[field], where)

    # (d) Drafts are JSON objects, and their answers are as valid as the stored ones.
    # Keys name the chat and the user: "fsm:<bot>:<chat>:<user>:…", the same in private.
    drafts = await chat.db.fetchall(
        "SELECT key, state, data FROM fsm_states WHERE instr(key, ?) OR instr(key, ?)",
        tuple(f":{person}:{person}:" for person in chat.people),
    )
    for row in drafts:
        where = f"after {after}: draft {row['key']}"
        data = json.loads(row["data"])
        assert isinstance(data, dict), f"{where}: data {_short(data)}"
        assert row["state"] is None or row["state"].startswith("Form:"), where
        if data.get("phone") is not None:
            assert_stored_phone(data["phone"], where)
        if data.get("email") is not None:
            assert_stored_email(data["email"], where)
        for field in ("full_name", "position", "organization"):
            if data.get(field) is not None:
                assert_stored_text(field, data[field], where)


async def play(app: App, start: str, neighbour: bool, steps: list[object]) -> None:
    async with fuzz_chat(app) as chat:
        if neighbour:  # someone else's registration exists: its id is a button away
            await drive_to(chat, chat.neighbour, "registered")
        await drive_to(chat, chat.user, start)
        await check(chat, f"setup {start!r}")
        for number, step in enumerate(steps, 1):
            await perform(chat, step)
            await check(chat, f"step {number} ({_short(step, 120)})")


def pin_response_types() -> list[object]:
    """aiogram reads every answer as pydantic's `Response[T]`, a generic class pydantic caches
    weakly: once garbage-collected it is built again (~20 ms). Held here for the whole run."""
    methods = (
        AnswerCallbackQuery,
        DeleteMessage,
        EditMessageReplyMarkup,
        EditMessageText,
        GetMe,
        SendDocument,
        SendMessage,
    )
    return [Response[method.__returning__] for method in methods]


@pytest.mark.timeout(60 + 2 * EXAMPLES)
def test_conversation_survives_arbitrary_input(tmp_path: Path) -> None:
    ran = 0
    pinned = pin_response_types()  # held until the end of the test
    # One event loop for all examples (the database connection is bound to it); hypothesis
    # drives a plain function, so each example runs to completion before the next.
    with asyncio.Runner() as runner:
        shared = AsyncExitStack()
        app = runner.run(shared.enter_async_context(fuzz_app(tmp_path)))

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            derandomize=DERANDOMIZE,
            database=None,
            print_blob=True,
        )
        @given(
            start=starts(),
            # Mostly alone: the neighbour's registration costs eight updates.
            neighbour=st.sampled_from((False, False, False, True)),
            steps=st.lists(actions(), min_size=1, max_size=8),
        )
        def example(start: str, neighbour: bool, steps: list[object]) -> None:
            nonlocal ran
            ran += 1
            runner.run(play(app, start, neighbour, steps))

        try:
            example()
        finally:
            runner.run(shared.aclose())
    assert pinned
    # An example that silently never ran (e.g. an un-awaited coroutine) would pass, too.
    assert ran >= EXAMPLES


# The validators alone are fast: more examples in `make test`, for what the conversation stores.
@pytest.mark.timeout(60 + EXAMPLES // 10)
@settings(
    max_examples=max(EXAMPLES, 500),
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    print_blob=True,
)
@given(field=st.sampled_from(FIELDS), text=st.one_of(texts(), noisy_valid(), phones()))
def test_an_accepted_answer_is_stored_as_its_validator_would_give_it_back(
    field: str, text: str
) -> None:
    try:
        value = VALIDATORS[field](text)
    except ValidationError:
        return
    where = f"{field} from {text!r}"
    if field == "phone":
        assert_stored_phone(value, where)
    elif field == "email":
        assert_stored_email(value, where)
    else:
        assert_stored_text(field, value, where)
    assert VALIDATORS[field](value) == value, where


# --- Regressions found by the fuzzer ----------------------------------------------------------


async def test_letter_and_combining_mark_split_by_a_soft_hyphen_are_stored_composed(
    user: TelegramUser, db: Database
) -> None:
    # "й" pasted from a PDF as "и", a soft hyphen and a combining breve: dropping the hyphen
    # brings the two together, and the stored text must still be NFC ("й", one character).
    await user.send("/start")
    await user.click(t("button_consent_agree"))
    await user.send("Иванова Мария Петровна")
    await user.send("Главный специалист")
    await user.send("ГБУК «Тверскои\u00ad\u0306 областной дом народного творчества»")
    [row] = await db.fetchall("SELECT data FROM fsm_states")
    organization = json.loads(row["data"])["organization"]
    assert organization == "ГБУК «Тверской областной дом народного творчества»"
    assert unicodedata.is_normalized("NFC", organization)
