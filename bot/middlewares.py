from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.fsm.context import FSMContext
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.types import TelegramObject, Update, User

from bot.domain.clock import Clock
from bot.domain.texts import use_locale
from storage.fsm import SQLiteStorage
from storage.languages import Languages
from storage.updates import HandledUpdates

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How an update's handling ended, for the worker that fed it (bot/updates.py): the
    errors handler below the worker swallows exceptions, so it could not tell otherwise."""

    handled: bool = False
    failure: str | None = None


OUTCOME: ContextVar[Outcome | None] = ContextVar("OUTCOME", default=None)


def _handled() -> None:
    outcome = OUTCOME.get()
    if outcome is not None:
        outcome.handled = True


class ConversationMiddleware(FSMContextMiddleware):
    """aiogram's FSM middleware (the conversation's lock, then its state read once), inside
    the storage's scope of the update (see `UpdateScope` in storage/fsm.py): so that read is
    the only one of the update, and it also tells whether the update was handled before.

    One middleware where there were two, each resolving the conversation: every middleware
    layer and every key aiogram builds is CPU on each update (bench/ANALYSIS.md)."""

    def __init__(self, fsm: FSMContextMiddleware, storage: SQLiteStorage) -> None:
        # The dispatcher's own FSM middleware (not registered) lends its isolation, so
        # whoever locks through it locks the same conversations.
        super().__init__(storage, fsm.events_isolation, fsm.strategy)
        self._scoped = storage

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        bot = data["bot"]
        assert isinstance(bot, Bot)
        context = self.resolve_event_context(bot, data)
        # Unlike aiogram's, no "fsm_storage" keyword argument: no handler takes it, and each
        # key is copied dozens of times an update.
        with self._scoped.handling(event.update_id, None if context is None else context.key):
            if context is None:
                return await handler(event, data)
            # As in aiogram's: the state is read once the lock is held (aiogram issue 1317).
            async with self.events_isolation.lock(key=context.key):
                data["state"] = context
                data["raw_state"] = await context.get_state()
                return await handler(event, data)


class LocaleMiddleware(BaseMiddleware):
    """The update is answered in its sender's language: their /language choice, else their
    Telegram language's (English when it starts with "en", Russian otherwise). Texts read
    it from `texts.LOCALE`; an update without a person (a chat's membership) stays in the
    default."""

    def __init__(self, languages: Languages) -> None:
        self._languages = languages

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("event_from_user")
        if not isinstance(user, User) or user.is_bot:
            return await handler(event, data)
        language = await self._languages.of(user.id, user.language_code)
        with use_locale(language):
            return await handler(event, data)


class HandledUpdatesMiddleware(BaseMiddleware):
    """Skip an update handled before: Telegram delivers again whatever it was not told
    was handled, e.g. after a crash, and a second effect would answer the wrong question."""

    def __init__(
        self,
        handled: HandledUpdates,
        clock: Clock,
        on_repeat: Callable[[Update, dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self._handled = handled
        self._clock = clock
        self._on_repeat = on_repeat

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        context = data.get("state")
        if isinstance(context, FSMContext) and isinstance(context.storage, SQLiteStorage):
            handled, moved = await context.storage.seen(context.key, event.update_id)
        else:
            handled, moved = await self._handled.is_handled(event.update_id), False
        if handled:
            logger.info("Update %d was handled before; skipped", event.update_id)
            _handled()
            return None
        if moved:
            # Applied, but the process died before marking it: not again, yet the reply
            # may have died with it.
            logger.info(
                "Update %d already moved its conversation; not applied again", event.update_id
            )
            if self._on_repeat is not None:
                await self._on_repeat(event, data)
            await self._handled.mark(event.update_id, now=self._clock())
            _handled()
            return None
        try:
            result = await handler(event, data)
        except Exception as error:
            if (outcome := OUTCOME.get()) is not None:
                outcome.failure = type(error).__name__
            raise
        await self._handled.mark(event.update_id, now=self._clock())
        _handled()
        return result
