"""Telegram's message limit and how the bot measures a text and blames an error."""

from __future__ import annotations

import pytest
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage

from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length
from bot.sender import pack
from bot.telegram_errors import Blame, blame
from storage.outbox import OutboxMessage


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("", 0),
        ("Иванова", 7),
        ("😀", 2),  # outside the BMP: one code point, two UTF-16 units
        ("👨‍👩‍👧", 8),  # three emoji joined by two zero-width joiners
        ("e\u0301", 2),  # a combining accent is a unit of its own
        ("<b>Мария</b>", 12),  # the HTML source: over-counts what Telegram counts
    ],
)
def test_message_length_counts_utf16_units(text: str, length: int) -> None:
    assert message_length(text) == length


def card(id_: int, text: str) -> OutboxMessage:
    return OutboxMessage(
        id=id_, chat_id=-1, kind="card", registration_id=None, text=text, attempts=0
    )


def test_cards_are_packed_within_the_limit_in_utf16_units() -> None:
    rows = [card(n, "😀" * 1000) for n in range(1, 5)]  # 2,000 units each
    assert [row.id for row in pack(rows)] == [1, 2]  # 4,002 units with the separator
    assert message_length("\n\n".join(row.text for row in pack(rows))) <= MAX_MESSAGE_LENGTH
    assert [row.id for row in pack([card(1, "😀" * 1400), card(2, "😀" * 1400)])] == [1]


CALL = SendMessage(chat_id=-1, text="x")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TelegramBadRequest(CALL, "Bad Request: " + detail), expected)
        for detail, expected in [
            ("not enough rights to send text messages to the chat", Blame.CHAT),
            ("not enough rights to send photos to the chat", Blame.CHAT),
            ("chat not found", Blame.CHAT),
            ("have no rights to send a message", Blame.CHAT),
            ("need administrator rights in the channel chat", Blame.CHAT),
            ("CHAT_WRITE_FORBIDDEN", Blame.CHAT),
            ("CHAT_SEND_PLAIN_FORBIDDEN", Blame.CHAT),
            ("TOPIC_CLOSED", Blame.CHAT),
            ("PEER_ID_INVALID", Blame.CHAT),
            ("message is too long", Blame.MESSAGE),
            ("can't parse entities: Unexpected end tag at byte offset 3", Blame.MESSAGE),
            ("message text is empty", Blame.MESSAGE),
            ("wrong file identifier/HTTP URL specified", Blame.MESSAGE),
            ("BUTTON_DATA_INVALID", Blame.MESSAGE),
            # Unknown: parked with its messages (and shown in /stats), never failed.
            ("SOMETHING_NEW_FROM_TELEGRAM", Blame.CHAT),
        ]
    ]
    + [
        (TelegramForbiddenError(CALL, "Forbidden: bot was kicked from the group chat"), Blame.CHAT),
        (TelegramForbiddenError(CALL, "Forbidden: group chat was deactivated"), Blame.CHAT),
        (TelegramForbiddenError(CALL, "Forbidden: bot was blocked by the user"), Blame.CHAT),
        (TelegramEntityTooLarge(CALL, "Request Entity Too Large"), Blame.MESSAGE),
        (TelegramUnauthorizedError(CALL, "Unauthorized"), Blame.BOT),
        (TelegramNotFound(CALL, "Not Found"), Blame.BOT),
        (TelegramServerError(CALL, "Internal Server Error"), Blame.TRANSIENT),
        (TelegramNetworkError(CALL, "connection reset"), Blame.TRANSIENT),
        (TimeoutError(), Blame.TRANSIENT),
    ],
)
def test_telegram_errors_are_blamed_on_what_they_are_about(
    error: TelegramAPIError | TimeoutError, expected: Blame
) -> None:
    assert blame(error) is expected
