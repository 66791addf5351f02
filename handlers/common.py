"""Fallbacks, after every audience's router: groups, messages no one else took, stale buttons,
errors."""

from __future__ import annotations

import logging
from contextlib import suppress

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.types import CallbackQuery, ErrorEvent, Message
from aiogram.utils.deep_linking import create_start_link

from bot.domain.clock import Clock
from bot.domain.events import EventCatalog
from bot.domain.texts import t
from handlers.filters import InPrivateChat, Magic

logger = logging.getLogger(__name__)


async def start_in_group(message: Message, bot: Bot, catalog: EventCatalog, clock: Clock) -> None:
    """In a group the form would expose answers to everyone: point to the private chat,
    with the session's deep link when exactly one is open."""
    open_events = catalog.open_events(clock())
    payload = open_events[0].id if len(open_events) == 1 else ""
    link = (
        await create_start_link(bot, payload)
        if payload
        else f"https://t.me/{(await bot.me()).username}"
    )
    await message.reply(t("group_pointer", link=link))


async def not_understood(message: Message) -> None:
    await message.answer(t("not_understood"))


async def button_expired(callback: CallbackQuery) -> None:
    await callback.answer(t("button_expired"))


async def on_error(event: ErrorEvent, bot: Bot) -> None:
    """The last resort: log the update id (never its content) and tell the person."""
    update = event.update
    logger.error(
        "Update %d failed: %s",
        update.update_id,
        type(event.exception).__name__,
        exc_info=event.exception,
    )
    chat_id = None
    if update.message and update.message.chat.type == ChatType.PRIVATE:
        chat_id = update.message.chat.id
    elif update.callback_query:
        chat_id = update.callback_query.from_user.id
        with suppress(TelegramAPIError):
            await update.callback_query.answer()
    if chat_id is not None:
        try:
            await bot.send_message(chat_id, t("error_try_again"))
        except TelegramAPIError as error:
            logger.warning("Could not tell chat %d about a failure: %s", chat_id, error)


def create_router() -> Router:
    router = Router(name="common")
    router.message.register(
        start_in_group,
        Command("start"),
        Magic(F.chat.type.in_({ChatType.GROUP, ChatType.SUPERGROUP})),
    )
    # Other group messages are none of the bot's business: it stays silent there.
    router.message.register(not_understood, InPrivateChat())
    router.callback_query.register(button_expired)
    return router
