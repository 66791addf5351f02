"""Telegram's errors sorted by what they mean, before anyone acts on one: the message (refused
as it is), the chat (the bot may not write there now), the bot (its token or its setup), or a
passing fault (retry later)."""

from __future__ import annotations

from enum import StrEnum

from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramUnauthorizedError,
)


class Blame(StrEnum):
    """What a Telegram error is about, which decides what the sender does with it."""

    MESSAGE = "message"  # this text or file is refused anywhere: fail it (alone) for good
    CHAT = "chat"  # this chat refuses the bot: park the chat, keep its messages
    BOT = "bot"  # the token or the request: no chat or message is at fault; back off
    TRANSIENT = "transient"  # network, 5xx: back off and try again


# Descriptions Telegram gives with a 400 (and some 403s), matched lower-cased as substrings.
# About the chat: the bot may not (or no longer) write there; an admin can fix it, and
# Telegram sends the bot no update when a group's permissions change.
_CHAT_ERRORS = (
    "chat not found",
    "not enough rights",  # "...to send text messages to the chat", "...to send photos"...
    "have no rights to send",
    "need administrator rights",
    "chat_admin_required",
    "chat_write_forbidden",
    "chat_restricted",
    "chat_send_",  # CHAT_SEND_PLAIN_FORBIDDEN, CHAT_SEND_PHOTOS_FORBIDDEN, ...
    "bot was kicked",
    "bot was blocked",
    "bot is not a member",
    "not a member of the",
    "chat was deactivated",
    "group chat was deactivated",
    "user is deactivated",
    "bot can't initiate conversation",
    "peer_id_invalid",
    "channel_private",
    "topic_closed",
    "topic_deleted",
    "message thread not found",
)
# About the message: the same text or file would be refused in any chat.
_MESSAGE_ERRORS = (
    "message is too long",
    "message caption is too long",
    "media_caption_too_long",
    "entities_too_long",
    "can't parse entities",
    "message text is empty",
    "text must be non-empty",
    "wrong file identifier",
    "wrong remote file identifier",
    "wrong type of the web page content",
    "failed to get http url content",
    "file is too big",
    "photo_invalid_dimensions",
    "button_",
)


def blame(error: TelegramAPIError | TimeoutError) -> Blame:
    if isinstance(error, TimeoutError):
        return Blame.TRANSIENT
    if isinstance(error, TelegramEntityTooLarge):  # 413, before its base class
        return Blame.MESSAGE
    if isinstance(error, TelegramForbiddenError):  # 403: blocked, kicked, deactivated
        return Blame.CHAT
    # 401 (token revoked), 404 (wrong token or method: "chat not found" is a 400), 409.
    if isinstance(error, TelegramUnauthorizedError | TelegramNotFound | TelegramConflictError):
        return Blame.BOT
    if not isinstance(error, TelegramBadRequest):
        return Blame.TRANSIENT  # 5xx, network errors, anything else that is not a 4xx
    description = error.message.lower()
    if any(marker in description for marker in _CHAT_ERRORS):
        return Blame.CHAT
    if any(marker in description for marker in _MESSAGE_ERRORS):
        return Blame.MESSAGE
    # A 400 we do not know: parking keeps the messages and shows the reason in /stats; taken
    # for a message error, a chat's refusal would lose every card sent to it for good.
    return Blame.CHAT
