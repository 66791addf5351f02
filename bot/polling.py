"""Long polling that confirms an update to Telegram only after it was handled.

aiogram's `start_polling` advances the offset as soon as a handler task starts, so a crash
loses whatever was in flight, and on SIGTERM it cancels running handlers. Here a batch is
handled to the end before its offset is sent back, and a stop request lets the batch finish.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramUnauthorizedError
from aiogram.methods import GetUpdates
from aiogram.types import Update
from aiogram.utils.backoff import Backoff, BackoffConfig

logger = logging.getLogger(__name__)

BACKOFF = BackoffConfig(min_delay=1.0, max_delay=30.0, factor=1.5, jitter=0.1)


async def _handle(
    dispatcher: Dispatcher, bot: Bot, update: Update, workflow_data: dict[str, Any]
) -> None:
    try:
        await dispatcher.feed_update(bot, update, **workflow_data)
    except Exception:
        # Errors are normally turned into replies by the errors handler; this is below it.
        logger.exception("Update %d could not be handled", update.update_id)


async def poll(
    dispatcher: Dispatcher,
    bot: Bot,
    *,
    stop: asyncio.Event,
    polling_timeout: int = 25,
    **kwargs: Any,
) -> None:
    allowed_updates = dispatcher.resolve_used_update_types()
    workflow_data = {"dispatcher": dispatcher, "bots": (bot,), **kwargs}
    await dispatcher.emit_startup(bot=bot, **dispatcher.workflow_data, **workflow_data)
    offset: int | None = None
    backoff = Backoff(BACKOFF)
    try:
        while not stop.is_set():
            request = GetUpdates(
                offset=offset, timeout=polling_timeout, allowed_updates=allowed_updates
            )
            fetch = asyncio.ensure_future(bot(request, request_timeout=polling_timeout + 15))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not fetch.done():
                fetch.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await fetch
                break
            try:
                updates = fetch.result()
            except TelegramUnauthorizedError:
                raise
            except Exception as error:
                delay = next(backoff)
                logger.warning(
                    "getUpdates failed (%s: %s); retrying in %.1f s",
                    type(error).__name__,
                    error,
                    delay,
                )
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            backoff.reset()
            if not updates:
                continue
            # One person's updates stay in order: the dispatcher's event isolation holds a
            # lock per chat and user, and asyncio locks are first come, first served.
            await asyncio.gather(
                *(_handle(dispatcher, bot, update, workflow_data) for update in updates)
            )
            offset = updates[-1].update_id + 1
        if offset is not None:
            # Confirm the last batch; without this Telegram would send it again at start.
            with suppress(Exception):
                await bot(
                    GetUpdates(offset=offset, timeout=0, limit=1, allowed_updates=allowed_updates)
                )
    finally:
        await dispatcher.emit_shutdown(bot=bot, **dispatcher.workflow_data, **workflow_data)
