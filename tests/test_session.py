"""bot/session.py: the bot's session prepares every value of a method as aiogram's does,
sends the fields aiogram's form would carry (as JSON, when no file goes with them), and parses
every answer as aiogram does, less a sent message's echo of what the bot sent."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from enum import Enum, StrEnum
from typing import Any

import orjson
import pytest
from aiogram import Bot
from aiogram.client.default import Default, DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
)
from aiogram.methods import (
    AnswerCallbackQuery,
    EditMessageText,
    GetUpdates,
    SendDocument,
    SendMessage,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    LinkPreviewOptions,
    ReplyKeyboardMarkup,
)
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app import _json_text
from bot.sandbox.fake_telegram.model import parse_params
from bot.session import ECHOED, BotSession, PlainValues, UnechoedAnswers

TOKEN = "42:TEST-token-for-the-session-tests-only-xxx"


class Colour(StrEnum):
    red = "red"


class Number(Enum):
    one = 1


class Aiogram(BaseSession):
    """aiogram's own `prepare_value`, with the bot's JSON writer."""

    async def close(self) -> None:
        pass

    async def make_request(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def stream_content(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise NotImplementedError


class Ours(UnechoedAnswers, PlainValues, Aiogram):
    pass


def _sessions() -> tuple[BaseSession, BaseSession]:
    theirs, ours = Aiogram(), Ours()
    theirs.json_dumps = ours.json_dumps = _json_text
    return theirs, ours


BOT = Bot(TOKEN, default=DefaultBotProperties(parse_mode=ParseMode.HTML))

# orjson, the bot's JSON writer, writes integers of 64 bits (Telegram's ids fit in 53).
integers = st.integers(min_value=-(2**63), max_value=2**64 - 1)
plain = st.recursive(
    st.none() | st.booleans() | integers | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)
special = st.sampled_from(
    [
        Colour.red,
        Number.one,
        Default("parse_mode"),
        datetime.datetime(2026, 12, 7, 9, 0, tzinfo=datetime.UTC),
        LinkPreviewOptions(is_disabled=True),
    ]
)
mixed = st.recursive(
    st.none() | integers | st.text() | special,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(value=plain | mixed, dumps=st.booleans())
def test_any_value_is_prepared_as_aiogram_prepares_it(value: Any, dumps: bool) -> None:
    theirs, ours = _sessions()
    expected = theirs.prepare_value(value, bot=BOT, files={}, _dumps_json=dumps)
    assert ours.prepare_value(value, bot=BOT, files={}, _dumps_json=dumps) == expected


def test_the_fields_of_real_methods_are_prepared_as_aiogram_prepares_them() -> None:
    theirs, ours = _sessions()
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text="Подтвердить", callback_data="summary:confirm:s1::")],
            [InlineKeyboardButton(text="Сайт", url="https://example.org")],
        ]
    )
    methods = [
        SendMessage(chat_id=1, text="<b>Иван</b>", reply_markup=keyboard),
        SendMessage(
            chat_id=-100123,
            text="x",
            reply_markup=ReplyKeyboardMarkup(
                keyboard=[[KeyboardButton(text="📞", request_contact=True)]],
                resize_keyboard=True,
            ),
            link_preview_options=LinkPreviewOptions(is_disabled=True),
        ),
        EditMessageText(chat_id=1, message_id=5, text="y", reply_markup=keyboard),
    ]
    for method in methods:
        for key, value in method.model_dump(warnings=False).items():
            expected = theirs.prepare_value(value, bot=BOT, files={})
            assert ours.prepare_value(value, bot=BOT, files={}) == expected, key


def test_a_file_goes_to_aiogram_and_is_attached() -> None:
    _, ours = _sessions()
    files: dict[str, Any] = {}
    attached = ours.prepare_value(BufferedInputFile(b"BEGIN", "a.ics"), bot=BOT, files=files)
    [key] = files
    assert attached == f"attach://{key}"


def test_the_bot_sends_through_the_plain_values_session() -> None:
    assert issubclass(BotSession, PlainValues)
    assert issubclass(BotSession, UnechoedAnswers)


SUMMARY_KEYBOARD = {
    "inline_keyboard": [
        [{"text": f"Изменить {n}", "callback_data": f"summary:edit:s1:{n}:"}] for n in range(7)
    ]
}
SENT = {
    "message_id": 7,
    "date": 1796630400,
    "chat": {"id": 42, "type": "private", "first_name": "Иван"},
    "from": {"id": 1, "is_bot": True, "first_name": "Bot", "username": "reg_bot"},
    "text": "Проверьте ответы: Иван Петров",
    "entities": [{"type": "bold", "offset": 0, "length": 17}],
    "link_preview_options": {"is_disabled": True},
    "reply_markup": SUMMARY_KEYBOARD,
}
DOCUMENT = {
    "message_id": 8,
    "date": 1796630400,
    "chat": {"id": 42, "type": "private"},
    "document": {"file_id": "f", "file_unique_id": "u", "file_name": "event.ics"},
    "caption": "Календарь",
    "caption_entities": [{"type": "italic", "offset": 0, "length": 9}],
}
ANSWERS = [
    (SendMessage(chat_id=42, text="x"), 200, {"ok": True, "result": SENT}),
    (EditMessageText(chat_id=42, message_id=7, text="x"), 200, {"ok": True, "result": SENT}),
    (EditMessageText(chat_id=42, message_id=7, text="x"), 200, {"ok": True, "result": True}),
    (SendDocument(chat_id=42, document="f"), 200, {"ok": True, "result": DOCUMENT}),
    (AnswerCallbackQuery(callback_query_id="1"), 200, {"ok": True, "result": True}),
    # Updates are not answers to the bot's sends: a message in them keeps everything.
    (GetUpdates(), 200, {"ok": True, "result": [{"update_id": 1, "message": SENT}]}),
]


@pytest.mark.parametrize(("method", "status", "answer"), ANSWERS)
def test_an_answer_parses_as_aiogram_parses_it_less_the_echo(
    method: Any, status: int, answer: dict[str, Any]
) -> None:
    theirs, ours = _sessions()
    theirs.json_loads = orjson.loads
    parsed: list[str] = []
    ours.json_loads = lambda text: parsed.append(text) or orjson.loads(text)
    content = orjson.dumps(answer).decode()
    expected = theirs.check_response(BOT, method, status, content).result
    got = ours.check_response(BOT, method, status, content).result
    assert len(parsed) == 1  # a successful answer's text parsed once
    if isinstance(answer["result"], dict):
        assert type(got) is type(expected)
        echoed = {field for field in ECHOED if getattr(expected, field, None) is not None}
        assert echoed  # each message above carries an echo, so the test can fail
        assert got.model_dump(exclude=echoed) == expected.model_dump(exclude=echoed)
        assert all(getattr(got, field, None) is None for field in echoed)
        assert got.chat.id == 42
        assert got.bot is BOT  # told its bot, as aiogram's are
    else:
        assert got == expected


FAILURES = [
    (400, '{"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}'),
    (
        429,
        '{"ok": false, "error_code": 429, "description": "Too Many", '
        '"parameters": {"retry_after": 3}}',
    ),
    (200, "<html>bad gateway</html>"),
    (200, '{"ok": true, "result": {"message_id": "not a number"}}'),
]


@pytest.mark.parametrize(("status", "content"), FAILURES)
def test_a_failed_answer_raises_what_aiogram_raises(status: int, content: str) -> None:
    theirs, ours = _sessions()
    theirs.json_loads = ours.json_loads = orjson.loads
    method = SendMessage(chat_id=42, text="x")
    with pytest.raises((TelegramBadRequest, TelegramRetryAfter, ClientDecodeError)) as expected:
        theirs.check_response(BOT, method, status, content)
    with pytest.raises(type(expected.value)) as got:
        ours.check_response(BOT, method, status, content)
    assert str(got.value) == str(expected.value)


# --- the request's body ------------------------------------------------------------------------


class Recorder:
    """A Bot API on 127.0.0.1 that keeps each request's content type and its fields as the
    fake Telegram reads them (a form's JSON-encoded fields parsed back), and answers OK, or
    400 to `sendError`, or late to `sendSlowly`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    async def endpoint(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        fields: dict[str, Any] = {}
        if request.content_type == "application/json":
            fields = await request.json()
        else:
            for key, value in (await request.post()).items():
                fields[key] = (
                    ("file", value.filename, value.file.read())
                    if isinstance(value, web.FileField)
                    else value
                )
            fields = parse_params(fields)
        self.requests.append((method, request.content_type, fields))
        if method == "sendSlowly":
            await asyncio.sleep(1.5)
        if method == "sendError":
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: no"}, status=400
            )
        result: Any = True
        if method in ("sendMessage", "editMessageText", "sendDocument"):
            result = {
                "message_id": 5,
                "date": 1765000000,
                "chat": {"id": 1, "type": "private"},
                "text": "x",
            }
        elif method == "getUpdates":
            result = []
        return web.json_response({"ok": True, "result": result})


@contextlib.asynccontextmanager
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    recording = Recorder()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", recording.endpoint)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield recording, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def bot_with(session: AiohttpSession) -> AsyncIterator[Bot]:
    session.json_dumps = _json_text  # as bot/app.py sets it
    bot = Bot(TOKEN, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    try:
        yield bot
    finally:
        await session.close()


class Refused(SendMessage):
    __api_method__ = "sendError"


class Slow(SendMessage):
    __api_method__ = "sendSlowly"


async def test_a_method_without_a_file_is_sent_as_json_with_the_fields_of_aiograms_form() -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Да ✅", callback_data="consent:yes")]]
    )
    methods = [
        SendMessage(
            chat_id=-1001234567890,
            text='<b>Иван & "Ко"</b> 📞 +7 (912) 345-67-89',
            reply_markup=keyboard,
            link_preview_options=LinkPreviewOptions(is_disabled=True),
            disable_notification=False,
        ),
        EditMessageText(chat_id=1, message_id=5, text="Готово", reply_markup=keyboard),
        AnswerCallbackQuery(callback_query_id="4382", text="", show_alert=False),
        GetUpdates(offset=17, timeout=0, allowed_updates=["message", "callback_query"]),
    ]
    async with recorder() as (recording, base):
        api = TelegramAPIServer.from_base(base)
        async with (
            bot_with(BotSession(api=api)) as ours,
            bot_with(AiohttpSession(api=api)) as theirs,
        ):
            for method in methods:
                await ours(method)
                await theirs(method)
    requests = recording.requests
    assert len(requests) == 2 * len(methods)
    for (name, kind, fields), (their_name, their_kind, their_fields) in zip(
        requests[::2], requests[1::2], strict=True
    ):
        assert (kind, their_kind) == ("application/json", "application/x-www-form-urlencoded")
        assert (name, fields) == (their_name, their_fields)
    sent = requests[0][2]
    assert sent["text"] == '<b>Иван & "Ко"</b> 📞 +7 (912) 345-67-89'
    assert sent["parse_mode"] == "HTML"  # the bot's default, filled in as in the form
    assert sent["reply_markup"] == {
        "inline_keyboard": [[{"text": "Да ✅", "callback_data": "consent:yes"}]]
    }
    assert sent["disable_notification"] is False
    assert "text" not in requests[4][2]  # empty: left out, as the form leaves it


async def test_a_method_with_a_file_is_sent_as_aiogram_sends_it() -> None:
    document = SendDocument(
        chat_id=1, document=BufferedInputFile(b"BEGIN:VCALENDAR", "event.ics"), caption="Файл"
    )
    async with recorder() as (recording, base):
        session = BotSession(api=TelegramAPIServer.from_base(base))
        async with bot_with(session) as bot:
            message = await bot(document)
    assert message.message_id == 5
    [(method, content_type, fields)] = recording.requests
    assert (method, content_type) == ("sendDocument", "multipart/form-data")
    attached = fields["document"]
    assert isinstance(attached, str) and attached.startswith("attach://")
    assert fields[attached.removeprefix("attach://")] == ("file", "event.ics", b"BEGIN:VCALENDAR")
    assert fields["caption"] == "Файл"


async def test_a_json_request_fails_as_aiograms_form_request_fails() -> None:
    async with recorder() as (recording, base):
        api = TelegramAPIServer.from_base(base)
        async with bot_with(BotSession(api=api)) as bot:
            with pytest.raises(TelegramBadRequest, match="Bad Request: no"):
                await bot(Refused(chat_id=1, text="x"))
            with pytest.raises(TelegramNetworkError, match="Request timeout error"):
                await bot(Slow(chat_id=1, text="x"), request_timeout=1)
    assert [kind for _, kind, _ in recording.requests] == ["application/json"] * 2
    # The server is gone: the port refuses.
    async with bot_with(BotSession(api=api)) as bot:
        with pytest.raises(TelegramNetworkError):
            await bot(SendMessage(chat_id=1, text="x"))
