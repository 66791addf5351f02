"""What the fake keeps and answers: calls, messages, files, errors, and Bot API JSON for chats."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

JSON: TypeAlias = dict[str, Any]

GROUP_CHAT_ID = -1001234567890

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
        "max_connections",
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


def bad_request(detail: str) -> BotAPIError:
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


def parse_params(params: Mapping[str, Any]) -> JSON:
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


def chat_id_of(params: JSON) -> int | None:
    chat_id = params.get("chat_id")
    scope = params.get("scope")
    if chat_id is None and isinstance(scope, dict):  # setMyCommands for one chat
        chat_id = scope.get("chat_id")
    return chat_id if isinstance(chat_id, int) and not isinstance(chat_id, bool) else None


def now() -> int:
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
