from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.fsm.context import FSMContext
from aiogram.types import TelegramObject, Update

from bot.clock import Clock
from storage.fsm import HANDLING_UPDATE, SQLiteStorage
from storage.updates import HandledUpdates

logger = logging.getLogger(__name__)


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
        if await self._handled.is_handled(event.update_id):
            logger.info("Update %d was handled before; skipped", event.update_id)
            return None
        context = data.get("state")
        if (
            isinstance(context, FSMContext)
            and isinstance(context.storage, SQLiteStorage)
            and await context.storage.moved_by(context.key, event.update_id)
        ):
            # Applied, but the process died before marking it: not again, yet the reply
            # may have died with it.
            logger.info(
                "Update %d already moved its conversation; not applied again", event.update_id
            )
            if self._on_repeat is not None:
                await self._on_repeat(event, data)
            await self._handled.mark(event.update_id, now=self._clock())
            return None
        token = HANDLING_UPDATE.set(event.update_id)
        try:
            result = await handler(event, data)
        finally:
            HANDLING_UPDATE.reset(token)
        await self._handled.mark(event.update_id, now=self._clock())
        return result
