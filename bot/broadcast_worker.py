"""Keeps each broadcast's progress message up to date, and sends the final report."""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter

from bot.domain.clock import Clock
from bot.domain.events import EventCatalog
from bot.domain.texts import DEFAULT_LOCALE, t, use_locale
from storage.broadcasts import Broadcast, Broadcasts, Progress
from storage.languages import Languages

logger = logging.getLogger(__name__)


class BroadcastReporter:
    def __init__(
        self,
        bot: Bot,
        broadcasts: Broadcasts,
        catalog: EventCatalog,
        clock: Clock,
        *,
        every: float = 3.0,
        languages: Languages | None = None,
    ) -> None:
        self._languages = languages
        self._bot = bot
        self._broadcasts = broadcasts
        self._catalog = catalog
        self._clock = clock
        # Edits count against the admin chat's limit too: one every few seconds at most.
        self._every = every
        self._shown: dict[int, int] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.report_once()
            except Exception:
                logger.exception("Broadcast progress update failed")
            await asyncio.sleep(self._every)

    async def report_once(self) -> None:
        for broadcast in await self._broadcasts.unfinished():
            # Outside the admin's update: in the admin's language (a private chat's id is its
            # user's).
            language = (
                await self._languages.of(broadcast.admin_chat_id)
                if self._languages is not None
                else DEFAULT_LOCALE
            )
            with use_locale(language):
                await self._report_one(broadcast)

    async def _report_one(self, broadcast: Broadcast) -> None:
        progress = await self._broadcasts.progress(broadcast)
        if progress.pending == 0:
            await self._show(broadcast, self._report(broadcast, progress))
            await self._broadcasts.finish(broadcast.id, now=self._clock())
            logger.info(
                "Broadcast %d finished: %d delivered, %d blocked, %d failed",
                broadcast.id,
                progress.delivered,
                progress.blocked,
                progress.failed,
            )
        elif self._shown.get(broadcast.id) != progress.done:
            title = self._title(broadcast)
            text = t("broadcast_progress", title=title, done=progress.done, total=progress.total)
            await self._show(broadcast, text)
            self._shown[broadcast.id] = progress.done

    def _title(self, broadcast: Broadcast) -> str:
        event = self._catalog.get(broadcast.event_id)
        return event.title if event else broadcast.event_id

    def _report(self, broadcast: Broadcast, progress: Progress) -> str:
        return t(
            "broadcast_report",
            title=self._title(broadcast),
            delivered=progress.delivered,
            blocked=progress.blocked,
            failed=progress.failed,
        )

    async def _show(self, broadcast: Broadcast, text: str) -> None:
        try:
            if broadcast.progress_message_id is None:
                await self._bot.send_message(broadcast.admin_chat_id, text)
            else:
                await self._bot.edit_message_text(
                    text, chat_id=broadcast.admin_chat_id, message_id=broadcast.progress_message_id
                )
        except TelegramRetryAfter as error:
            await asyncio.sleep(error.retry_after)
        except TelegramAPIError as error:
            # "message is not modified", or the admin deleted the message: nothing to do.
            logger.info("Broadcast %d progress not shown: %s", broadcast.id, error.message)
