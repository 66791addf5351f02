from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.fsm.storage.base import DEFAULT_DESTINY, StorageKey
from aiogram.fsm.storage.memory import DisabledEventIsolation
from aiogram.fsm.strategy import FSMStrategy
from aiogram.types import TelegramObject, Update, User

from bot.domain.clock import Clock
from bot.domain.texts import LOCALE
from storage.fsm import Conversation, SQLiteStorage
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


class ConversationLocks:
    """One update of a conversation at a time: a lock per conversation while it has an update
    in hand or waiting, dropped when it has none.

    aiogram's SimpleEventIsolation keeps a lock for every conversation ever seen (a map that
    only grows) and costs a generator-based context manager and a StorageKey hash per update;
    this is keyed by the conversation's key text, which the update's scope builds anyway."""

    def __init__(self) -> None:
        # key -> [lock, updates holding or waiting for it]
        self._held: dict[str, list[Any]] = {}

    async def acquire(self, key: str) -> None:
        entry = self._held.get(key)
        if entry is None:
            entry = self._held[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            await entry[0].acquire()
        except BaseException:
            self._forget(key, entry)
            raise

    def release(self, key: str) -> None:
        entry = self._held[key]
        entry[0].release()
        self._forget(key, entry)

    def _forget(self, key: str, entry: list[Any]) -> None:
        entry[1] -= 1
        if entry[1] == 0:
            del self._held[key]

    def __len__(self) -> int:
        return len(self._held)


class ConversationMiddleware(FSMContextMiddleware):
    """Everything an update goes through before the routers, in one middleware (each
    middleware layer is CPU on every update, bench/ANALYSIS.md):

    1. the update's scope in the storage (see `UpdateScope` in storage/fsm.py) and aiogram's
       FSM: the conversation's lock, then its state read once, which also tells whether the
       update was handled before; the context is a `Conversation` (one write to clear);
    2. the sender's language: their /language choice, else their Telegram language's
       (English when it starts with "en", Russian otherwise); texts read it from
       `texts.LOCALE`; an update without a person (a chat's membership) stays in the default;
    3. the guard against updates handled before: Telegram delivers again whatever it was not
       told was handled, e.g. after a crash, and a second effect would answer the wrong
       question. A handled update's id is marked once its handler returns.
    """

    def __init__(
        self,
        storage: SQLiteStorage,
        *,
        strategy: FSMStrategy,
        languages: Languages,
        handled: HandledUpdates,
        clock: Clock,
        on_repeat: Callable[[Update, dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.locks = ConversationLocks()
        super().__init__(storage, DisabledEventIsolation(), strategy)
        self._scoped = storage
        self._languages = languages
        self._handled = handled
        self._clock = clock
        self._on_repeat = on_repeat

    def get_context(
        self,
        bot: Bot,
        chat_id: int,
        user_id: int,
        thread_id: int | None = None,
        business_connection_id: str | None = None,
        destiny: str = DEFAULT_DESTINY,
    ) -> FSMContext:
        return Conversation(
            storage=self.storage,
            key=StorageKey(
                user_id=user_id,
                chat_id=chat_id,
                bot_id=bot.id,
                thread_id=thread_id,
                business_connection_id=business_connection_id,
                destiny=destiny,
            ),
        )

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
        with self._scoped.handling(
            event.update_id, None if context is None else context.key
        ) as scope:
            if context is None or scope.key is None:
                return await self._in_language(handler, event, data, None)
            key = scope.key
            await self.locks.acquire(key)
            try:
                # As in aiogram's: the state is read once the lock is held (aiogram issue 1317).
                data["state"] = context
                data["raw_state"] = await context.get_state()
                return await self._in_language(handler, event, data, context)
            finally:
                self.locks.release(key)

    async def _in_language(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: Update,
        data: dict[str, Any],
        context: FSMContext | None,
    ) -> Any:
        user = data.get("event_from_user")
        if not isinstance(user, User) or user.is_bot:
            return await self._guarded(handler, event, data, context)
        token = LOCALE.set(await self._languages.of(user.id, user.language_code))
        try:
            return await self._guarded(handler, event, data, context)
        finally:
            LOCALE.reset(token)

    async def _guarded(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: Update,
        data: dict[str, Any],
        context: FSMContext | None,
    ) -> Any:
        if context is not None:
            handled, moved = await self._scoped.seen(context.key, event.update_id)
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
