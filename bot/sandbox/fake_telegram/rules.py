"""Telegram's rules that bots trip over: message and caption limits, HTML parsing, keyboards,
chat actions, command names, and the send limits (per chat, per group, overall)."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html import unescape
from typing import Any

from bot.sandbox.fake_telegram.model import JSON, BotAPIError, bad_request

# Limits documented at https://core.telegram.org/bots/api#sendmessage and #sendDocument.
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64

CHAT_ACTIONS = frozenset(
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
BOT_COMMAND = re.compile(r"[a-z0-9_]{1,32}")

# Methods that post a message and so count against Telegram's send limits.
SENDING_METHODS = frozenset({"sendMessage", "sendDocument", "sendPhoto"})


@dataclass
class SendLimits:
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


def _parse_error(detail: str) -> BotAPIError:
    return bad_request(f"can't parse entities: {detail}")


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


def render(source: str, parse_mode: str | None) -> str:
    if parse_mode is not None and parse_mode.lower() == "html":
        return render_html(source)
    # Markdown modes are not modelled: the text is kept as sent.
    return source


def check_markup(markup: Any) -> JSON | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    for row in markup.get("inline_keyboard", []):
        for button in row:
            if not button.get("text"):
                raise bad_request("can't parse inline keyboard button: Text must be non-empty")
            if not _INLINE_BUTTON_ACTIONS & button.keys():
                raise bad_request(
                    "can't parse inline keyboard button: "
                    "Text buttons are unallowed in the inline keyboard"
                )
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise bad_request("BUTTON_DATA_INVALID")
    return markup


def not_modified() -> BotAPIError:
    return bad_request(
        "message is not modified: specified new message content and reply markup are "
        "exactly the same as a current content and reply markup of the message"
    )


def visible_text(source: Any, parse_mode: str | None) -> str:
    """The text a user sees, or the 400 Telegram answers for it."""
    if not isinstance(source, str) or not source:
        raise bad_request("message text is empty")
    text = render(source, parse_mode)
    if not text.strip():
        raise bad_request("message text is empty")
    # Telegram counts UTF-16 code units: an emoji outside the BMP counts twice.
    if len(text.encode("utf-16-le")) // 2 > MAX_TEXT_LENGTH:
        raise bad_request("message is too long")
    return text
