"""The command menu: participants see their commands; each admin also sees theirs. One menu
per language: Telegram shows a user the menu of their app's language (`language_code`), and
the one without a language to everyone else, so that one is the default language's."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault

from bot.domain.texts import DEFAULT_LOCALE, LANGUAGES, t, use_locale

logger = logging.getLogger(__name__)

# (command, key of its description in the texts catalogue), in the menu's order.
PARTICIPANT_COMMANDS = (
    ("start", "command_start"),
    ("me", "command_me"),
    ("cancel", "command_cancel"),
    ("forget", "command_forget"),
    ("language", "command_language"),
    ("help", "command_help"),
)
ADMIN_COMMANDS = (
    ("export", "command_export"),
    ("stats", "command_stats"),
    ("find", "command_find"),
    ("broadcast", "command_broadcast"),
    ("digest", "command_digest"),
    ("erase", "command_erase"),
    ("audit", "command_audit"),
)


def _commands(pairs: Iterable[tuple[str, str]], language: str) -> list[BotCommand]:
    with use_locale(language):
        return [BotCommand(command=name, description=t(key)) for name, key in pairs]


def _language_code(language: str) -> str | None:
    return None if language == DEFAULT_LOCALE else language


class AdminMenus:
    """Per-admin menus. Telegram refuses a chat scope for a user who never opened the
    bot; such admins stay pending and get their menu at their first /start."""

    def __init__(self, admin_ids: Iterable[int]) -> None:
        self._pending = set(admin_ids)

    async def set_all(self, bot: Bot) -> None:
        for language in LANGUAGES:
            try:
                await bot.set_my_commands(
                    _commands(PARTICIPANT_COMMANDS, language),
                    scope=BotCommandScopeDefault(),
                    language_code=_language_code(language),
                )
            except TelegramAPIError as error:
                logger.warning("Could not set the %s command menu: %s", language, error)
        for admin_id in sorted(self._pending):
            await self.ensure(bot, admin_id)

    async def ensure(self, bot: Bot, admin_id: int) -> None:
        if admin_id not in self._pending:
            return
        try:
            for language in LANGUAGES:
                await bot.set_my_commands(
                    _commands(PARTICIPANT_COMMANDS + ADMIN_COMMANDS, language),
                    scope=BotCommandScopeChat(chat_id=admin_id),
                    language_code=_language_code(language),
                )
        except TelegramAPIError as error:
            logger.warning(
                "Could not set the admin menu for %d (%s); will retry at their /start",
                admin_id,
                error,
            )
            return
        self._pending.discard(admin_id)
