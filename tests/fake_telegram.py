"""A fake Telegram Bot API: one model, served over HTTP or plugged into aiogram as a session.

The model keeps Telegram's observable rules that bots trip over (offset confirmation, "message is
not modified", editing text drops the inline keyboard, HTML must parse, callback_data <= 64 bytes,
a callback query is answered once) so tests fail here instead of in production.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html import unescape
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods.base import TelegramMethod, TelegramType
from aiohttp import web

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.types import InputFile

JSON: TypeAlias = dict[str, Any]
_Handler: TypeAlias = Callable[[JSON], Awaitable[Any]]

GROUP_CHAT_ID = -1001234567890

# Limits documented at https://core.telegram.org/bots/api#sendmessage and #sendDocument.
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
# aiohttp refuses bodies over 1 MiB by default; Telegram takes documents up to 50 MB.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024

# aiogram JSON-encodes every value that is not a str (ints, bools, objects), so these arrive as
# JSON text. Fields whose Bot API type is String are left alone: a text "123" must stay "123".
_NON_STRING_FIELDS = frozenset(
    {
        "allow_paid_broadcast",
        "allow_sending_without_reply",
        "allowed_updates",
        "cache_time",
        "caption_entities",
        "chat_id",
        "commands",
        "disable_content_type_detection",
        "disable_notification",
        "disable_web_page_preview",
        "drop_pending_updates",
        "entities",
        "from_chat_id",
        "latitude",
        "limit",
        "link_preview_options",
        "longitude",
        "media",
        "message_id",
        "message_ids",
        "message_thread_id",
        "offset",
        "protect_content",
        "reply_markup",
        "reply_parameters",
        "reply_to_message_id",
        "scope",
        "show_alert",
        "timeout",
        "user_id",
    }
)

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

_INLINE_BUTTON_ACTIONS = frozenset(
    {
        "callback_data",
        "url",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    }
)

# https://core.telegram.org/bots/api#html-style
_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "blockquote",
        "code",
        "del",
        "em",
        "i",
        "ins",
        "pre",
        "s",
        "span",
        "strike",
        "strong",
        "tg-emoji",
        "tg-spoiler",
        "u",
    }
)
_HTML_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)([^<>]*)>")
_HTML_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9A-Fa-f]+);")
_BOT_COMMAND = re.compile(r"[a-z0-9_]{1,32}")


class DroppedConnection(Exception):
    """The connection breaks before any answer; the request had no effect."""


class GarbledResponse(DroppedConnection):
    """What comes back is not HTTP (a broken proxy): aiohttp's error names the URL, token
    included. The request had no effect."""


class BotAPIError(Exception):
    """A Bot API error answer; `body()` is what Telegram puts on the wire."""

    def __init__(
        self,
        code: int,
        description: str,
        *,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(f"{code} {description}")
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        parameters: JSON = {}
        if self.retry_after is not None:
            parameters["retry_after"] = self.retry_after
        if self.migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = self.migrate_to_chat_id
        if parameters:
            body["parameters"] = parameters
        return body


def _bad_request(detail: str) -> BotAPIError:
    return BotAPIError(400, f"Bad Request: {detail}")


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content: bytes


@dataclass
class Call:
    method: str
    params: JSON
    # time.monotonic() at arrival, so benchmarks can measure latency between calls.
    time: float
    error_code: int | None = None


@dataclass
class SentMessage:
    message_id: int
    chat_id: int
    # What the user sees: HTML tags removed and entities decoded (see `source` for the raw text).
    text: str | None
    parse_mode: str | None = None
    reply_markup: JSON | None = None
    document: bytes | None = None
    filename: str | None = None
    caption: str | None = None
    deleted: bool = False
    # The text (or caption) before each edit, oldest first; one entry per edit.
    edits: list[str | None] = field(default_factory=list)
    source: str | None = None
    file_id: str | None = None
    photo: str | None = None  # the file id of a photo sent
    date: int = 0
    edit_date: int | None = None

    @property
    def inline_keyboard(self) -> list[list[JSON]]:
        if self.reply_markup is None:
            return []
        return cast(list[list[JSON]], self.reply_markup.get("inline_keyboard", []))


# Methods that post a message and so count against Telegram's send limits.
_SENDING_METHODS = frozenset({"sendMessage", "sendDocument", "sendPhoto"})


@dataclass
class _SendLimits:
    """Telegram's send limits, kept to the letter so that a sender merely close to them is
    caught: https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this"""

    private_interval: float
    burst: int
    group_per_minute: int
    overall_per_second: int
    clock: Callable[[], float]
    # Private chats: the earliest time the next message is allowed with no burst left
    # (GCRA, i.e. a token bucket of `burst` refilled every `private_interval`).
    due: dict[int, float] = field(default_factory=dict)
    group_sent: dict[int, deque[float]] = field(default_factory=dict)
    overall_sent: deque[float] = field(default_factory=deque)

    def wait(self, chat_id: int, now: float) -> float:
        """Seconds until a message to `chat_id` would be allowed (0 if it is now)."""
        waits = [self._sliding(self.overall_sent, self.overall_per_second, 1.0, now)]
        if chat_id < 0:
            sent = self.group_sent.setdefault(chat_id, deque())
            waits.append(self._sliding(sent, self.group_per_minute, 60.0, now))
        else:
            tolerance = (self.burst - 1) * self.private_interval
            waits.append(self.due.get(chat_id, now) - tolerance - now)
        return max(0.0, *waits)

    def record(self, chat_id: int, now: float) -> None:
        self.overall_sent.append(now)
        if chat_id < 0:
            self.group_sent.setdefault(chat_id, deque()).append(now)
        else:
            self.due[chat_id] = max(now, self.due.get(chat_id, now)) + self.private_interval

    @staticmethod
    def _sliding(sent: deque[float], limit: int, window: float, now: float) -> float:
        # The window is (now - window, now]: a message exactly `window` after another is fine.
        while sent and sent[0] <= now - window:
            sent.popleft()
        return sent[0] + window - now if len(sent) >= limit else 0.0


@dataclass
class Hold:
    method: str
    chat_id: int | None
    reached: asyncio.Event = field(default_factory=asyncio.Event)  # a call is waiting
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Failure:
    method: str | None
    chat_id: int | None
    error: BotAPIError
    remaining: int

    def matches(self, method: str, chat_id: int | None) -> bool:
        # getUpdates is transport, not something the bot under test does: a wildcard failure
        # landing on it would only make the polling loop back off and slow the test down.
        if self.method is None and method == "getUpdates":
            return False
        if self.method is not None and self.method != method:
            return False
        return self.chat_id is None or self.chat_id == chat_id


def _parse_error(detail: str) -> BotAPIError:
    return _bad_request(f"can't parse entities: {detail}")


def render_html(source: str) -> str:
    """Telegram's HTML parse mode: the visible text, or the 400 Telegram answers."""
    out: list[str] = []
    open_tags: list[str] = []
    pos = 0
    while pos < len(source):
        char = source[pos]
        if char == "&":
            entity = _HTML_ENTITY.match(source, pos)
            # Telegram keeps an ampersand that starts no known entity as a literal character.
            end = entity.end() if entity else pos + 1
            out.append(unescape(source[pos:end]))
            pos = end
            continue
        if char != "<":
            out.append(char)
            pos += 1
            continue
        offset = len(source[:pos].encode())
        tag = _HTML_TAG.match(source, pos)
        if tag is None:
            raise _parse_error(f"Unexpected character '<' at byte offset {offset}")
        closing, name, attributes = tag.group(1), tag.group(2).lower(), tag.group(3)
        if closing:
            if not open_tags or open_tags[-1] != name:
                expected = f'expected "</{open_tags[-1]}>", ' if open_tags else ""
                detail = f'Unmatched end tag at byte offset {offset}, {expected}found "</{name}>"'
                raise _parse_error(detail)
            open_tags.pop()
        else:
            if name not in _HTML_TAGS:
                raise _parse_error(f'Unsupported start tag "{name}" at byte offset {offset}')
            if name == "span" and "tg-spoiler" not in attributes:
                detail = f'Tag "span" must have class "tg-spoiler" at byte offset {offset}'
                raise _parse_error(detail)
            open_tags.append(name)
        pos = tag.end()
    if open_tags:
        detail = f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"'
        raise _parse_error(detail)
    return "".join(out)


def _render(source: str, parse_mode: str | None) -> str:
    if parse_mode is not None and parse_mode.lower() == "html":
        return render_html(source)
    # Markdown modes are not modelled: the text is kept as sent.
    return source


def _parse_params(params: Mapping[str, Any]) -> JSON:
    parsed: JSON = {}
    for key, value in params.items():
        if isinstance(value, str) and key in _NON_STRING_FIELDS:
            try:
                parsed[key] = json.loads(value)
            except json.JSONDecodeError:
                parsed[key] = value  # e.g. chat_id="@channelusername"
        else:
            parsed[key] = value
    return parsed


def _chat_id_of(params: JSON) -> int | None:
    chat_id = params.get("chat_id")
    scope = params.get("scope")
    if chat_id is None and isinstance(scope, dict):  # setMyCommands for one chat
        chat_id = scope.get("chat_id")
    return chat_id if isinstance(chat_id, int) and not isinstance(chat_id, bool) else None


def _now() -> int:
    return int(time.time())


def chat_json(chat_id: int, *, user: JSON | None = None) -> JSON:
    if chat_id > 0:
        chat: JSON = {"id": chat_id, "type": "private"}
        if user is not None:
            for key in ("first_name", "last_name", "username"):
                if key in user:
                    chat[key] = user[key]
        return chat
    return {"id": chat_id, "type": "supergroup", "title": "Test group"}


def _check_markup(markup: Any) -> JSON | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    for row in markup.get("inline_keyboard", []):
        for button in row:
            if not button.get("text"):
                raise _bad_request("can't parse inline keyboard button: Text must be non-empty")
            if not _INLINE_BUTTON_ACTIONS & button.keys():
                raise _bad_request(
                    "can't parse inline keyboard button: "
                    "Text buttons are unallowed in the inline keyboard"
                )
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise _bad_request("BUTTON_DATA_INVALID")
    return markup


class FakeTelegram:
    def __init__(
        self,
        *,
        bot_id: int = 7000000001,
        bot_username: str = "event_registration_test_bot",
        token: str = "7000000001:AAtest-token-for-tests-only-xxxxxxxxxx",
    ) -> None:
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.token = token
        self.calls: list[Call] = []
        self.messages: list[SentMessage] = []
        # (scope as sorted JSON, language_code) -> commands, as set by setMyCommands.
        self.commands: dict[tuple[str, str], list[JSON]] = {}

        self._by_key: dict[tuple[int, int], SentMessage] = {}
        # Every send and every edit appends the message, so a client can ask "what changed".
        self._touched: list[SentMessage] = []
        # Telegram numbers messages per chat, the user's and the bot's alike.
        self._last_message_id: dict[int, int] = {}
        self._deleted_incoming: set[tuple[int, int]] = set()
        self._files: dict[str, UploadedFile] = {}

        self._last_update_id = 0
        self._last_queued_id = 0
        self._queue: list[JSON] = []
        # The highest getUpdates offset seen: every update below it is confirmed.
        self._acknowledged = 0
        self._dropped: set[int] = set()
        self._polling_released = False
        self._changed = asyncio.Event()

        self._failures: list[_Failure] = []
        self._limits: _SendLimits | None = None
        # 429s answered by the limit enforcer (injected failures are not counted).
        self.limit_violations = 0
        self._latency: dict[str, float] = {}
        self._storm_until = 0.0
        self._storm_rng = random.Random(0)
        self._storm_probability = 0.0
        self._storm_in_a_row: dict[tuple[str, int | None], int] = {}
        self.storm_faults: Counter[str] = Counter()
        self._hangs: list[list[Any]] = []
        self._holds: list[Hold] = []
        self._blocked: set[int] = set()
        self._garbles: list[list[Any]] = []
        self._last_query_id = 0
        self._open_queries: set[str] = set()
        self._answered_queries: set[str] = set()

        handlers: dict[str, _Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "sendChatAction": self._send_chat_action,
        }
        # Bot API method names are case-insensitive.
        self._methods = {name.lower(): (name, handler) for name, handler in handlers.items()}

    # --- the API --------------------------------------------------------------------------

    async def handle(self, method: str, params: Mapping[str, Any]) -> Any:
        name, handler = self._methods.get(method.lower(), (method, None))
        call = Call(method=name, params=_parse_params(params), time=time.monotonic())
        self.calls.append(call)
        try:
            if handler is None:
                raise BotAPIError(404, "Not Found: method not found")
            if delay := self._latency.get(name):
                await asyncio.sleep(delay)
            await self._maybe_hang(call)
            await self._maybe_hold(call)
            await self._storm(call)
            self._inject_faults(call)
            limited = self._enforce_limits(call)
            result = await handler(call.params)
            if limited is not None and self._limits is not None:
                self._limits.record(*limited)
            return result
        except BotAPIError as error:
            call.error_code = error.code
            raise

    def _inject_faults(self, call: Call) -> None:
        chat_id = _chat_id_of(call.params)
        for garble in self._garbles:
            if garble[0] == call.method and garble[1] > 0:
                garble[1] -= 1
                call.error_code = 0
                raise GarbledResponse
        for failure in self._failures:
            if failure.matches(call.method, chat_id):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                raise failure.error
        if chat_id is not None and chat_id in self._blocked:
            raise BotAPIError(403, "Forbidden: bot was blocked by the user")

    def _enforce_limits(self, call: Call) -> tuple[int, float] | None:
        """429 if this send breaks a limit; else the (chat, time) to record once it succeeds."""
        chat_id = _chat_id_of(call.params)
        if self._limits is None or call.method not in _SENDING_METHODS or chat_id is None:
            return None
        now = self._limits.clock()
        wait = self._limits.wait(chat_id, now)
        if wait > 0:
            self.limit_violations += 1
            # Telegram answers whole seconds, at least one.
            retry_after = max(1, math.ceil(wait))
            raise BotAPIError(
                429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after
            )
        return chat_id, now

    # --- fault injection ------------------------------------------------------------------

    def enforce_limits(
        self,
        *,
        private_per_second: float = 1.0,
        group_per_minute: int = 20,
        overall_per_second: int = 30,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """From now on, answer 429 to a sendMessage or sendDocument that breaks Telegram's
        limits: a private chat closer than 1/private_per_second after the previous message
        (after `burst` at once), a group (negative id) over `group_per_minute` in any sliding
        minute, or over `overall_per_second` in any sliding second. Messages refused are not
        counted. `clock` (monotonic seconds) lets the fake's own tests move time."""
        self._limits = _SendLimits(
            private_interval=1.0 / private_per_second,
            burst=burst,
            group_per_minute=group_per_minute,
            overall_per_second=overall_per_second,
            clock=clock,
        )

    def fail(
        self,
        method: str | None,
        *,
        code: int,
        description: str,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        chat_id: int | None = None,
        times: int = 1,
    ) -> None:
        if method is not None:
            if method.lower() not in self._methods:
                msg = f"the fake does not implement {method!r}, so it cannot fail it"
                raise ValueError(msg)
            method = self._methods[method.lower()][0]
        error = BotAPIError(
            code, description, retry_after=retry_after, migrate_to_chat_id=migrate_to_chat_id
        )
        self._failures.append(_Failure(method, chat_id, error, times))

    def garble(self, method: str, *, times: int = 1) -> None:
        """The next `times` calls of `method` get bytes that are not an HTTP response."""
        self._garbles.append([self._methods[method.lower()][0], times])

    def hang(self, method: str, *, chat_id: int | None = None, times: int = 1) -> None:
        """The next matching calls never get an answer and have no effect, like a request
        lost on the way: the client's timeout is all it sees."""
        self._hangs.append([self._methods[method.lower()][0], chat_id, times])

    async def _maybe_hang(self, call: Call) -> None:
        chat_id = _chat_id_of(call.params)
        for hang in self._hangs:
            if hang[0] == call.method and hang[1] in (None, chat_id) and hang[2] > 0:
                hang[2] -= 1
                call.error_code = 0
                await asyncio.Event().wait()  # until the client gives up and we are cancelled

    def hold(self, method: str, *, chat_id: int | None = None) -> Hold:
        """Matching calls wait until the test releases them, then go on as usual: an
        upload as slow as the test wants it."""
        hold = Hold(self._methods[method.lower()][0], chat_id)
        self._holds.append(hold)
        return hold

    async def _maybe_hold(self, call: Call) -> None:
        chat_id = _chat_id_of(call.params)
        for hold in self._holds:
            if hold.method == call.method and hold.chat_id in (None, chat_id):
                hold.reached.set()
                await hold.released.wait()

    def storm(
        self,
        *,
        seconds: float,
        probability: float = 0.25,
        seed: int = 0,
        max_in_a_row: int = 2,
        timeout_after: float = 1.5,
    ) -> None:
        """For `seconds`, answer calls at random with 429 (retry_after 1), 500, 502, a
        timeout (no answer for `timeout_after` s, then the connection drops) or a dropped
        connection; none of them has any effect. The same method to the same chat fails
        at most `max_in_a_row` times running: a longer run is an outage, not a storm."""
        self._storm_until = time.monotonic() + seconds
        self._storm_rng = random.Random(seed)
        self._storm_probability = probability
        self._storm_max = max_in_a_row
        self._storm_timeout = timeout_after

    async def _storm(self, call: Call) -> None:
        if time.monotonic() >= self._storm_until:
            return
        key = (call.method, _chat_id_of(call.params))
        if (
            self._storm_in_a_row.get(key, 0) >= self._storm_max
            or self._storm_rng.random() >= self._storm_probability
        ):
            self._storm_in_a_row[key] = 0
            return
        self._storm_in_a_row[key] = self._storm_in_a_row.get(key, 0) + 1
        fault = self._storm_rng.choice(("429", "500", "502", "timeout", "drop"))
        self.storm_faults[fault] += 1
        call.error_code = {"429": 429, "500": 500, "502": 502}.get(fault, 0)
        if fault == "429":
            raise BotAPIError(429, "Too Many Requests: retry after 1", retry_after=1)
        if fault in ("500", "502"):
            raise BotAPIError(
                int(fault), "Internal Server Error" if fault == "500" else "Bad Gateway"
            )
        if fault == "timeout":
            await asyncio.sleep(self._storm_timeout)
        raise DroppedConnection

    def slow(self, method: str, seconds: float) -> None:
        """Answer `method` only after `seconds`, like a slow network (0 to stop)."""
        self._latency[self._methods[method.lower()][0]] = seconds

    def block(self, chat_id: int) -> None:
        self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self._blocked.discard(chat_id)

    # --- updates --------------------------------------------------------------------------

    def next_update_id(self) -> int:
        self._last_update_id += 1
        return self._last_update_id

    def push_update(self, payload: JSON) -> int:
        update = dict(payload)
        if "update_id" not in update:
            update["update_id"] = self.next_update_id()
        update_id = update["update_id"]
        if update_id <= self._last_queued_id:
            msg = f"update_id {update_id} is not above the last queued {self._last_queued_id}"
            raise ValueError(msg)
        self._last_queued_id = update_id
        self._last_update_id = max(self._last_update_id, update_id)
        self._queue.append(update)
        self._pulse()
        return cast(int, update_id)

    # The explicit timeout is the point: it turns "the bot never handled it" into a clear failure.
    async def wait_confirmed(self, update_id: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._acknowledged <= update_id:
            if update_id in self._dropped:
                msg = f"update {update_id} was dropped by deleteWebhook(drop_pending_updates)"
                raise AssertionError(msg)
            if not await self._wait_change(deadline - loop.time()):
                msg = (
                    f"update {update_id} was not confirmed within {timeout} s: the last "
                    f"getUpdates offset was {self._acknowledged} (is the bot polling with "
                    "handle_as_tasks=False, or did a handler hang?)"
                )
                raise AssertionError(msg)

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, seconds: float) -> bool:
        if seconds <= 0:
            return False
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            # "Negative offset ... All previous updates will be forgotten."
            self._queue = self._queue[offset:]
            return
        self._queue = [update for update in self._queue if update["update_id"] >= offset]
        if offset > self._acknowledged:
            self._acknowledged = offset
            self._pulse()

    def _release_polling(self, released: bool) -> None:
        self._polling_released = released
        self._pulse()

    # --- inspection -----------------------------------------------------------------------

    @property
    def bot_user(self) -> JSON:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Event Registration",
            "username": self.bot_username,
        }

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        return [message for message in self.messages if message.chat_id == chat_id]

    def last_message(self, chat_id: int) -> SentMessage:
        for message in reversed(self.messages):
            if message.chat_id == chat_id and not message.deleted:
                return message
        msg = f"the bot has no visible message in chat {chat_id}"
        raise AssertionError(msg)

    def commands_for(self, scope: JSON | None = None, language_code: str = "") -> list[JSON]:
        return self.commands.get((self._scope_key(scope), language_code), [])

    def mark(self) -> int:
        return len(self._touched)

    def touched_since(self, mark: int, chat_id: int) -> list[SentMessage]:
        """Messages sent or edited in `chat_id` after `mark()`, each once, in first-touch order."""
        seen: dict[int, SentMessage] = {}
        for message in self._touched[mark:]:
            if message.chat_id == chat_id:
                seen.setdefault(id(message), message)
        return list(seen.values())

    def message_json(self, message: SentMessage) -> JSON:
        data: JSON = {
            "message_id": message.message_id,
            "from": self.bot_user,
            "chat": chat_json(message.chat_id),
            "date": message.date,
        }
        if message.edit_date is not None:
            data["edit_date"] = message.edit_date
        if message.text is not None:
            data["text"] = message.text
        if message.file_id is not None:
            data["document"] = {
                "file_id": message.file_id,
                "file_unique_id": f"unique-{message.file_id}",
                "file_name": message.filename,
                "file_size": len(message.document or b""),
            }
        if message.caption is not None:
            data["caption"] = message.caption
        # Telegram echoes only inline keyboards: Message.reply_markup is InlineKeyboardMarkup.
        if message.reply_markup is not None and "inline_keyboard" in message.reply_markup:
            data["reply_markup"] = message.reply_markup
        return data

    def next_message_id(self, chat_id: int) -> int:
        message_id = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = message_id
        return message_id

    def new_callback_query_id(self) -> str:
        self._last_query_id += 1
        query_id = f"{self.bot_id}{self._last_query_id:08d}"
        self._open_queries.add(query_id)
        return query_id

    # --- methods --------------------------------------------------------------------------

    async def _get_me(self, params: JSON) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: JSON) -> list[JSON]:
        offset = params.get("offset")
        limit = int(params.get("limit", 100))
        timeout = float(params.get("timeout", 0))
        if offset is not None:
            self._confirm(int(offset))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._queue and not self._polling_released:
            if not await self._wait_change(deadline - loop.time()):
                break
        return [dict(update) for update in self._queue[: max(1, min(limit, 100))]]

    async def _delete_webhook(self, params: JSON) -> bool:
        if params.get("drop_pending_updates") is True:
            self._dropped.update(update["update_id"] for update in self._queue)
            self._queue.clear()
            self._pulse()
        return True

    async def _send_message(self, params: JSON) -> JSON:
        chat_id = self._target_chat(params)
        source = params.get("text")
        parse_mode = params.get("parse_mode")
        text = self._visible_text(source, parse_mode)
        message = SentMessage(
            message_id=self.next_message_id(chat_id),
            chat_id=chat_id,
            text=text,
            parse_mode=parse_mode,
            reply_markup=_check_markup(params.get("reply_markup")),
            source=source,
            date=_now(),
        )
        self._store(message)
        return self.message_json(message)

    async def _edit_message_text(self, params: JSON) -> JSON:
        message = self._editable(params)
        if message.text is None:
            raise _bad_request("there is no text in the message to edit")
        source = params.get("text")
        parse_mode = params.get("parse_mode")
        text = self._visible_text(source, parse_mode)
        markup = _check_markup(params.get("reply_markup"))
        # Editing text without reply_markup removes the inline keyboard; a reply keyboard
        # lives on the client and is untouched.
        if markup is None and not message.inline_keyboard:
            markup = message.reply_markup
        if text == message.text and source == message.source and markup == message.reply_markup:
            raise self._not_modified()
        self._record_edit(message)
        message.text, message.source, message.parse_mode = text, source, parse_mode
        message.reply_markup = markup
        return self.message_json(message)

    async def _edit_message_reply_markup(self, params: JSON) -> JSON:
        message = self._editable(params)
        markup = _check_markup(params.get("reply_markup"))
        if markup == message.reply_markup:
            raise self._not_modified()
        self._record_edit(message)
        message.reply_markup = markup
        return self.message_json(message)

    async def _delete_message(self, params: JSON) -> bool:
        chat_id = self._target_chat(params)
        message_id = params.get("message_id")
        key = (chat_id, message_id) if isinstance(message_id, int) else None
        message = self._by_key.get(key) if key else None
        if message is not None and not message.deleted:
            message.deleted = True
            return True
        # A message id we never saw sent by the bot but already allocated in this chat belongs
        # to the user; bots may delete those in private chats.
        if (
            key is not None
            and message is None
            and key[1] <= self._last_message_id.get(chat_id, 0)
            and key not in self._deleted_incoming
        ):
            self._deleted_incoming.add(key)
            return True
        raise _bad_request("message to delete not found")

    async def _answer_callback_query(self, params: JSON) -> bool:
        query_id = params.get("callback_query_id")
        if not query_id:
            raise _bad_request("query_id is empty")
        if query_id in self._answered_queries:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        if query_id in self._open_queries:
            self._open_queries.remove(query_id)
            self._answered_queries.add(query_id)
        return True

    async def _set_my_commands(self, params: JSON) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request('field "commands" must be an Array')
        for command in commands:
            if not _BOT_COMMAND.fullmatch(str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad_request("command description must be 1-256 characters")
        key = (self._scope_key(params.get("scope")), params.get("language_code", ""))
        self.commands[key] = commands
        return True

    async def _delete_my_commands(self, params: JSON) -> bool:
        key = (self._scope_key(params.get("scope")), params.get("language_code", ""))
        self.commands.pop(key, None)
        return True

    async def _send_document(self, params: JSON) -> JSON:
        chat_id = self._target_chat(params)
        upload = self._resolve_document(params)
        file_id = f"fake-document-{len(self._files) + 1}"
        self._files[file_id] = upload
        return self._send_media(
            chat_id, params, document=upload.content, filename=upload.filename, file_id=file_id
        )

    async def _send_photo(self, params: JSON) -> JSON:
        """A photo by the file id of one a user sent (uploads are not needed here)."""
        chat_id = self._target_chat(params)
        photo = params.get("photo")
        if not isinstance(photo, str) or not _INCOMING_FILE.fullmatch(photo):
            raise _bad_request("wrong file identifier/HTTP URL specified")
        return self._send_media(chat_id, params, photo=photo)

    def _send_media(self, chat_id: int, params: JSON, **media: Any) -> JSON:
        source = params.get("caption")
        parse_mode = params.get("parse_mode")
        caption = _render(source, parse_mode) if source else None
        if caption is not None and len(caption) > MAX_CAPTION_LENGTH:
            raise _bad_request("message caption is too long")
        message = SentMessage(
            message_id=self.next_message_id(chat_id),
            chat_id=chat_id,
            text=None,
            parse_mode=parse_mode,
            reply_markup=_check_markup(params.get("reply_markup")),
            caption=caption,
            source=source,
            date=_now(),
            **media,
        )
        self._store(message)
        return self.message_json(message)

    async def _send_chat_action(self, params: JSON) -> bool:
        self._target_chat(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _scope_key(scope: Any) -> str:
        return json.dumps(scope or {"type": "default"}, sort_keys=True)

    @staticmethod
    def _not_modified() -> BotAPIError:
        return _bad_request(
            "message is not modified: specified new message content and reply markup are "
            "exactly the same as a current content and reply markup of the message"
        )

    @staticmethod
    def _visible_text(source: Any, parse_mode: str | None) -> str:
        if not isinstance(source, str) or not source:
            raise _bad_request("message text is empty")
        text = _render(source, parse_mode)
        if not text.strip():
            raise _bad_request("message text is empty")
        # Telegram counts UTF-16 code units: an emoji outside the BMP counts twice.
        if len(text.encode("utf-16-le")) // 2 > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return text

    def _target_chat(self, params: JSON) -> int:
        if "chat_id" not in params:
            raise _bad_request("chat_id is empty")
        chat_id = _chat_id_of(params)
        if chat_id is None:
            raise _bad_request("chat not found")
        return chat_id

    def _editable(self, params: JSON) -> SentMessage:
        if "inline_message_id" in params:
            raise _bad_request("inline messages are not modelled by the fake")
        chat_id = self._target_chat(params)
        message_id = params.get("message_id")
        if not isinstance(message_id, int):
            raise _bad_request("message to edit not found")
        message = self._by_key.get((chat_id, message_id))
        if message is not None and not message.deleted:
            return message
        if (
            message is None
            and 0 < message_id <= self._last_message_id.get(chat_id, 0)
            and (chat_id, message_id) not in self._deleted_incoming
        ):
            raise _bad_request("message can't be edited")
        raise _bad_request("message to edit not found")

    def _resolve_document(self, params: JSON) -> UploadedFile:
        document = params.get("document")
        if isinstance(document, UploadedFile):
            upload = document
        elif isinstance(document, str) and document.startswith("attach://"):
            attached = params.get(document.removeprefix("attach://"))
            if not isinstance(attached, UploadedFile):
                raise _bad_request("wrong file identifier/HTTP URL specified")
            upload = attached
        elif isinstance(document, str) and document in self._files:
            upload = self._files[document]
        elif isinstance(document, str) and _INCOMING_FILE.fullmatch(document):
            upload = UploadedFile(filename="incoming", content=document.encode())
        elif document is None:
            raise _bad_request("there is no document in the request")
        else:
            raise _bad_request("wrong file identifier/HTTP URL specified")
        if not upload.content:
            raise _bad_request("file must be non-empty")
        return upload

    def _store(self, message: SentMessage) -> None:
        self.messages.append(message)
        self._by_key[message.chat_id, message.message_id] = message
        self._touched.append(message)

    def _record_edit(self, message: SentMessage) -> None:
        message.edits.append(message.text if message.text is not None else message.caption)
        message.edit_date = _now()
        self._touched.append(message)


# --- over HTTP --------------------------------------------------------------------------------


async def _read_params(request: web.Request) -> JSON:
    params: JSON = dict(request.query)
    if request.method != "POST":
        return params
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
        return params
    form = await request.post()
    for key, value in form.items():
        if isinstance(value, web.FileField):
            params[key] = UploadedFile(filename=value.filename, content=value.file.read())
        else:
            params[key] = value
    return params


@asynccontextmanager
async def serve(fake: FakeTelegram) -> AsyncIterator[str]:
    async def endpoint(request: web.Request) -> web.Response:
        if request.match_info["token"] != fake.token:
            return web.json_response(BotAPIError(401, "Unauthorized").body(), status=401)
        params = await _read_params(request)
        try:
            result = await fake.handle(request.match_info["method"], params)
        except BotAPIError as error:
            return web.json_response(error.body(), status=error.code)
        except GarbledResponse:
            if request.transport is not None:
                request.transport.write(b"HTTP/1.1 2OO NOT OK\r\nGarbage\r\n\r\n")
                request.transport.close()
            return web.Response(status=500)  # never reaches the client
        except DroppedConnection:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches the client
        return web.json_response({"ok": True, "result": result})

    app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
    app.router.add_get("/bot{token}/{method}", endpoint)
    app.router.add_post("/bot{token}/{method}", endpoint)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        # A long-polling getUpdates would otherwise hold the shutdown for its whole timeout.
        fake._release_polling(released=True)
        await runner.cleanup()
        fake._release_polling(released=False)


# --- in-process -------------------------------------------------------------------------------


class FakeSession(BaseSession):
    """An aiogram session that answers from the model and can never reach the network."""

    def __init__(self, fake: FakeTelegram) -> None:
        super().__init__()
        self.fake = fake

    async def build_params(self, bot: Bot, method: TelegramMethod[Any]) -> JSON:
        # Mirrors AiohttpSession.build_form_data so both modes see byte-identical parameters.
        files: dict[str, InputFile] = {}
        params: JSON = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files)
            if not prepared:
                continue
            params[key] = prepared
        for key, input_file in files.items():
            content = b"".join([chunk async for chunk in input_file.read(bot)])
            params[key] = UploadedFile(filename=input_file.filename or key, content=content)
        return params

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 (aiogram's signature)
    ) -> TelegramType:
        try:
            status_code, body = await asyncio.wait_for(
                self._answer(bot, method), timeout or self.timeout
            )
        except TimeoutError:
            # What aiogram's aiohttp session raises when a request times out.
            raise TelegramNetworkError(method=method, message="Request timeout error") from None
        response = self.check_response(
            bot=bot,
            method=method,
            status_code=status_code,
            content=self.json_dumps(body),
        )
        return cast(TelegramType, response.result)

    async def _answer(self, bot: Bot, method: TelegramMethod[Any]) -> tuple[int, JSON]:
        if bot.token != self.fake.token:
            return 401, BotAPIError(401, "Unauthorized").body()
        params = await self.build_params(bot, method)
        try:
            result = await self.fake.handle(method.__api_method__, params)
        except BotAPIError as error:
            return error.code, error.body()
        except DroppedConnection:
            raise TelegramNetworkError(method=method, message="Connection dropped") from None
        return 200, {"ok": True, "result": result}

    def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        msg = "file downloads are not modelled by the fake Bot API"
        raise NotImplementedError(msg)

    async def close(self) -> None:
        pass


# --- incoming updates (Bot API JSON) ----------------------------------------------------------


def user_json(
    user_id: int,
    *,
    first_name: str = "Иван",
    last_name: str | None = None,
    username: str | None = None,
    language_code: str = "ru",
) -> JSON:
    user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
    if last_name is not None:
        user["last_name"] = last_name
    if username is not None:
        user["username"] = username
    user["language_code"] = language_code
    return user


def message_update(
    user: JSON, *, message_id: int, chat_id: int | None = None, **content: Any
) -> JSON:
    chat = chat_json(user["id"] if chat_id is None else chat_id, user=user)
    message: JSON = {
        "message_id": message_id,
        "from": user,
        "chat": chat,
        "date": _now(),
        **content,
    }
    return {"message": message}


def text_update(user: JSON, text: str, *, message_id: int, chat_id: int | None = None) -> JSON:
    content: JSON = {"text": text}
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        # Entity offsets and lengths are counted in UTF-16 code units.
        length = len(command.encode("utf-16-le")) // 2
        content["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    return message_update(user, message_id=message_id, chat_id=chat_id, **content)


def contact_update(
    user: JSON,
    phone_number: str,
    *,
    message_id: int,
    contact_user_id: int | None,
    first_name: str | None = None,
    last_name: str | None = None,
    chat_id: int | None = None,
) -> JSON:
    contact: JSON = {
        "phone_number": phone_number,
        "first_name": first_name if first_name is not None else user["first_name"],
    }
    if last_name is not None:
        contact["last_name"] = last_name
    if contact_user_id is not None:
        contact["user_id"] = contact_user_id
    return message_update(user, message_id=message_id, chat_id=chat_id, contact=contact)


# File ids of what users send in these updates: the bot may send them on.
_INCOMING_FILE = re.compile(r"(?:photo-[sm]|document)-file-[0-9]+")


def _file(kind: str, message_id: int, **fields: Any) -> JSON:
    return {
        "file_id": f"{kind}-file-{message_id}",
        "file_unique_id": f"{kind}-unique-{message_id}",
        **fields,
    }


def sticker_update(user: JSON, *, message_id: int, chat_id: int | None = None) -> JSON:
    sticker = _file(
        "sticker",
        message_id,
        type="regular",
        width=512,
        height=512,
        is_animated=False,
        is_video=False,
        emoji="👍",
    )
    return message_update(user, message_id=message_id, chat_id=chat_id, sticker=sticker)


def photo_update(
    user: JSON,
    *,
    message_id: int,
    chat_id: int | None = None,
    caption: str | None = None,
    caption_entities: list[JSON] | None = None,
) -> JSON:
    photo = [
        _file("photo-s", message_id, width=90, height=90, file_size=1024),
        _file("photo-m", message_id, width=800, height=800, file_size=65536),
    ]
    return message_update(
        user,
        message_id=message_id,
        chat_id=chat_id,
        photo=photo,
        **_caption(caption, caption_entities),
    )


def _caption(caption: str | None, entities: list[JSON] | None) -> JSON:
    fields: JSON = {}
    if caption is not None:
        fields["caption"] = caption
    if entities:
        fields["caption_entities"] = entities
    return fields


def document_update(
    user: JSON,
    *,
    message_id: int,
    file_name: str = "resume.pdf",
    mime_type: str = "application/pdf",
    chat_id: int | None = None,
    caption: str | None = None,
    caption_entities: list[JSON] | None = None,
) -> JSON:
    document = _file(
        "document", message_id, file_name=file_name, mime_type=mime_type, file_size=2048
    )
    return message_update(
        user,
        message_id=message_id,
        chat_id=chat_id,
        document=document,
        **_caption(caption, caption_entities),
    )


def voice_update(user: JSON, *, message_id: int, chat_id: int | None = None) -> JSON:
    voice = _file("voice", message_id, duration=3, mime_type="audio/ogg", file_size=4096)
    return message_update(user, message_id=message_id, chat_id=chat_id, voice=voice)


def location_update(
    user: JSON,
    *,
    message_id: int,
    latitude: float = 55.7558,
    longitude: float = 37.6173,
    chat_id: int | None = None,
) -> JSON:
    location = {"latitude": latitude, "longitude": longitude}
    return message_update(user, message_id=message_id, chat_id=chat_id, location=location)


def callback_query_update(user: JSON, message: JSON, data: str, *, query_id: str) -> JSON:
    return {
        "callback_query": {
            "id": query_id,
            "from": user,
            "message": message,
            # Opaque and stable per chat in Telegram; any stable string will do.
            "chat_instance": str(abs(message["chat"]["id"]) * 7919),
            "data": data,
        }
    }


def _chat_member(status: str, user: JSON) -> JSON:
    member: JSON = {"status": status, "user": user}
    if status == "kicked":
        member["until_date"] = 0
    elif status == "administrator":
        member |= dict.fromkeys(
            (
                "can_be_edited",
                "is_anonymous",
                "can_manage_chat",
                "can_delete_messages",
                "can_manage_video_chats",
                "can_restrict_members",
                "can_promote_members",
                "can_change_info",
                "can_invite_users",
                "can_post_stories",
                "can_edit_stories",
                "can_delete_stories",
                "can_send_welcome_messages",
            ),
            False,
        )
    elif status not in {"member", "left"}:
        msg = f"chat member status {status!r} is not modelled"
        raise ValueError(msg)
    return member


def my_chat_member_update(
    user: JSON,
    bot_user: JSON,
    *,
    old_status: str,
    new_status: str,
    chat_id: int | None = None,
) -> JSON:
    """The bot's own membership changed: "kicked" in a private chat means the user blocked it."""
    return {
        "my_chat_member": {
            "chat": chat_json(user["id"] if chat_id is None else chat_id, user=user),
            "from": user,
            "date": _now(),
            "old_chat_member": _chat_member(old_status, bot_user),
            "new_chat_member": _chat_member(new_status, bot_user),
        }
    }
