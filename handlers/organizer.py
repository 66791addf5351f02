"""Chats the bot writes to on its own (organiser chats, participants for broadcasts):
when the bot is removed or blocked, and when it is back."""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.filters import JOIN_TRANSITION, LEAVE_TRANSITION, ChatMemberUpdatedFilter
from aiogram.types import ChatMemberUpdated

from bot.domain.clock import Clock
from storage.outbox import Outbox

logger = logging.getLogger(__name__)


async def bot_added_back(event: ChatMemberUpdated, outbox: Outbox) -> None:
    requeued = await outbox.chat_is_back(event.chat.id)
    logger.info("Bot is back in chat %d; %d waiting messages requeued", event.chat.id, requeued)


async def bot_removed(event: ChatMemberUpdated, outbox: Outbox, clock: Clock) -> None:
    parked = await outbox.fail_chat(event.chat.id, reason="bot removed or blocked", now=clock())
    logger.info("Bot removed from chat %d; %d messages wait for its return", event.chat.id, parked)


def create_router() -> Router:
    router = Router(name="organizer")
    router.my_chat_member.register(bot_added_back, ChatMemberUpdatedFilter(JOIN_TRANSITION))
    router.my_chat_member.register(bot_removed, ChatMemberUpdatedFilter(LEAVE_TRANSITION))
    return router
