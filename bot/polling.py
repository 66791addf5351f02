"""Long polling into the inbox (bot/updates.py).

A batch is confirmed to Telegram (the next getUpdates offset) as soon as it is written to the
inbox, never before: a crash in between makes Telegram send it again, and the inbox keeps the
second copy out. aiogram's `start_polling` confirms as soon as a handler task starts, so a
crash would lose what was in flight, and on SIGTERM it cancels running handlers; here a stop
lets each chat's worker finish the update in hand, and the rest wait in the inbox.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any, cast

import orjson
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramUnauthorizedError
from aiogram.methods import GetUpdates, Response
from aiogram.types import Update
from aiogram.utils.backoff import Backoff, BackoffConfig

from bot.updates import Intake

logger = logging.getLogger(__name__)

BACKOFF = BackoffConfig(min_delay=1.0, max_delay=30.0, factor=1.5, jitter=0.1)


class RawGetUpdates(GetUpdates):
    """getUpdates answered as JSON objects: each is made an Update here and written to the
    inbox as it came, instead of being written again from its model (pydantic's
    model_dump_json, 20-40 µs an update)."""

    __returning__ = list[dict[str, Any]]


# Held, as bot/app.py holds the others: pydantic caches its generic classes only weakly.
_RAW_RESPONSE = Response[list[dict[str, Any]]]


async def _wait_or_stop(stop: asyncio.Event, delay: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


async def poll(
    dispatcher: Dispatcher,
    bot: Bot,
    intake: Intake,
    *,
    stop: asyncio.Event,
    polling_timeout: int = 25,
) -> None:
    allowed_updates = dispatcher.resolve_used_update_types()
    workflow_data = {"dispatcher": dispatcher, "bots": (bot,)}
    await dispatcher.emit_startup(bot=bot, **dispatcher.workflow_data, **workflow_data)
    offset: int | None = None
    backoff = Backoff(BACKOFF)
    try:
        await intake.start()
        while not stop.is_set():
            request = RawGetUpdates(
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
                batch = cast(list[dict[str, Any]], fetch.result())
                updates = [Update.model_validate(item, context={"bot": bot}) for item in batch]
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
                await _wait_or_stop(stop, delay)
                continue
            if not updates:
                backoff.reset()
                continue
            try:
                await intake.accept(updates, [orjson.dumps(item).decode() for item in batch])
            except Exception as error:
                # Not confirmed: Telegram sends the batch again with the next poll.
                delay = next(backoff)
                logger.error(
                    "Could not write %d updates to the inbox (%s: %s); retrying in %.1f s",
                    len(updates),
                    type(error).__name__,
                    error,
                    delay,
                )
                await _wait_or_stop(stop, delay)
                continue
            backoff.reset()
            offset = updates[-1].update_id + 1
        if offset is not None:
            # Confirm the last batch; without this Telegram would send it again at start
            # (harmless, the inbox keeps it out, but wasted).
            with suppress(Exception):
                await bot(
                    GetUpdates(offset=offset, timeout=0, limit=1, allowed_updates=allowed_updates)
                )
    finally:
        await intake.close()
        await dispatcher.emit_shutdown(bot=bot, **dispatcher.workflow_data, **workflow_data)
