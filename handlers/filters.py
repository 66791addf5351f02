"""Magic filters checked on the event loop.

aiogram 3.31 runs every filter that is not a coroutine function through `asyncio.to_thread`
(`CallableObject.call` in aiogram/dispatcher/event/handler.py), magic `F` filters included:
a thread hop for what is a few attribute reads. Wrapped in an async `Filter`, the same
expression is checked in place. Measured in bench/ (the framework-floor benchmark).

The same goes for a `State` used as a filter (`register(handler, Form.consent)`): `State`
is a plain callable, so the routers wrap states in `StateFilter`, which is async.
tests/test_router_filters.py walks the production routers and fails on any synchronous one.
"""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import TelegramObject
from magic_filter import MagicFilter


class Magic(Filter):
    __slots__ = ("_magic",)

    def __init__(self, magic: MagicFilter) -> None:
        self._magic = magic

    async def __call__(self, event: TelegramObject) -> Any:
        # The value itself, not bool(): `.as_("name")` resolves to {"name": value}, which
        # aiogram passes on to the handler.
        return self._magic.resolve(event)

    def __str__(self) -> str:
        return f"Magic({self._magic!r})"


class IsCommand(Filter):
    """A message that `Command` could take: its text (or caption) starts with "/" after
    white space. Put on a router whose messages are all commands, it lets every other message
    pass it by in one check instead of one `Command` per handler."""

    __slots__ = ()

    async def __call__(self, event: TelegramObject) -> bool:
        text = getattr(event, "text", None) or getattr(event, "caption", None)
        # Command splits the text on white space and takes the first word's first character.
        return isinstance(text, str) and text.lstrip()[:1] == "/"
