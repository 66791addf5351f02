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

from collections.abc import Iterable
from typing import Any

from aiogram.enums import ChatType
from aiogram.filters import Filter
from aiogram.filters.callback_data import CallbackData
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
        return _looks_like_command(event)


def _looks_like_command(event: TelegramObject) -> bool:
    text = getattr(event, "text", None) or getattr(event, "caption", None)
    # Command splits the text on white space and takes the first word's first character.
    return isinstance(text, str) and text.lstrip()[:1] == "/"


class AnswerIn(Filter):
    """A message in one of `states` that is no command (`IsCommand` would say no). Put on
    the form's router, it lets the form be asked first for what it alone takes, the
    answers, which nearly every update is: the routers before it cost a level and a filter
    each on every answer (bench/ANALYSIS.md). A command still reaches the commands' routers,
    and any message in another state passes the form by in this one check."""

    __slots__ = ("_states",)

    def __init__(self, states: Iterable[str]) -> None:
        self._states = frozenset(states)

    async def __call__(self, event: TelegramObject, raw_state: str | None = None) -> bool:
        return raw_state in self._states and not _looks_like_command(event)

    def __str__(self) -> str:
        return f"AnswerIn({sorted(self._states)!r})"


# What `Magic(F....)` said on every update's path, written out: a magic filter resolves its
# chain of operations generically, several calls per attribute, and the private-chat, admin
# and text checks run on nearly every update (bench/ANALYSIS.md).


class InPrivateChat(Filter):
    """A message in a private chat (`F.chat.type == "private"`), or, with `button=True`, a
    button under one (`F.message.chat.type == "private"`)."""

    __slots__ = ("_button",)

    def __init__(self, *, button: bool = False) -> None:
        self._button = button

    async def __call__(self, event: TelegramObject) -> bool:
        holder = getattr(event, "message", None) if self._button else event
        chat = getattr(holder, "chat", None)
        return chat is not None and chat.type == ChatType.PRIVATE

    def __str__(self) -> str:
        return f"InPrivateChat(button={self._button})"


class FromUsers(Filter):
    """An update from one of `user_ids` (`F.from_user.id.in_(user_ids)`)."""

    __slots__ = ("_user_ids",)

    def __init__(self, user_ids: Iterable[int]) -> None:
        self._user_ids = frozenset(user_ids)

    async def __call__(self, event: TelegramObject) -> bool:
        user = getattr(event, "from_user", None)
        return user is not None and user.id in self._user_ids

    def __str__(self) -> str:
        return f"FromUsers({sorted(self._user_ids)})"


class HasText(Filter):
    """A message with text (`F.text`); with `name`, the text is also given to the handler as
    that keyword argument (`F.text.as_(name)`)."""

    __slots__ = ("_name",)

    def __init__(self, name: str | None = None) -> None:
        self._name = name

    async def __call__(self, event: TelegramObject) -> bool | dict[str, Any]:
        text = getattr(event, "text", None)
        if not text:
            return False
        return {self._name: text} if self._name else True

    def __str__(self) -> str:
        return f"HasText({self._name!r})"


class TextStartsWith(Filter):
    """A message whose text starts with `prefix` (`F.text.startswith(prefix)`)."""

    __slots__ = ("_prefix",)

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    async def __call__(self, event: TelegramObject) -> bool:
        text = getattr(event, "text", None)
        return isinstance(text, str) and text.startswith(self._prefix)

    def __str__(self) -> str:
        return f"TextStartsWith({self._prefix!r})"


class ButtonOf(Filter):
    """A button whose callback data one of `factories` packed: its prefix, read without
    unpacking. On a router whose buttons are all of those factories, every other button
    passes it by in one check instead of one `CallbackQueryFilter` (an unpacking, and an
    exception when the prefix differs) per handler: handlers/__init__.py, `_buttons_first`."""

    __slots__ = ("_heads",)

    def __init__(self, factories: Iterable[type[CallbackData]]) -> None:
        # Separator -> the prefixes packed with it (every factory here uses ":").
        heads: dict[str, set[str]] = {}
        for factory in factories:
            heads.setdefault(factory.__separator__, set()).add(factory.__prefix__)
        self._heads = tuple(
            (separator, frozenset(prefixes)) for separator, prefixes in heads.items()
        )

    async def __call__(self, event: TelegramObject) -> bool:
        data = getattr(event, "data", None)
        if not isinstance(data, str):
            return False
        return any(data.partition(separator)[0] in prefixes for separator, prefixes in self._heads)

    @property
    def prefixes(self) -> frozenset[str]:
        return frozenset(prefix for _, group in self._heads for prefix in group)

    def __str__(self) -> str:
        return f"ButtonOf({sorted(self.prefixes)})"
