"""Telegram's limit on one message's text, and the one way this bot measures a text."""

from __future__ import annotations

# https://core.telegram.org/bots/api#sendmessage: "1-4096 characters after entities parsing".
MAX_MESSAGE_LENGTH = 4096


def message_length(text: str) -> int:
    """`text`'s length in UTF-16 code units, the unit Telegram counts in.

    A stated choice: this measures the text as sent (HTML source included), while Telegram
    measures it after entity parsing, which only removes characters. So it over-counts,
    never under-counts, and a message packed to this length is never refused as too long.
    Code points would under-count: an emoji outside the Basic Multilingual Plane is one
    code point but two UTF-16 units.
    """
    return len(text.encode("utf-16-le")) // 2


def pack_blocks(blocks: list[str], separator: str = "\n\n") -> list[str]:
    """Blocks joined into as few messages as fit Telegram's limit."""
    messages: list[str] = []
    for block in blocks:
        length = message_length(messages[-1] + separator + block) if messages else 0
        if messages and length <= MAX_MESSAGE_LENGTH:
            messages[-1] += separator + block
        else:
            messages.append(block[:MAX_MESSAGE_LENGTH])
    return messages


def split_lines(text: str) -> list[str]:
    """`text` in as few messages as fit, cut between lines (each of our lines is whole HTML:
    no tag spans two). A form with many questions of its own can outgrow one message."""
    if message_length(text) <= MAX_MESSAGE_LENGTH:
        return [text]
    return pack_blocks(text.split("\n"), separator="\n")
