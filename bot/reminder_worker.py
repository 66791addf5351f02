"""Queues each reminder when it is due (bot/domain/reminders.py says when; storage/reminders.py
queues it once for every registrant). The outbox sender delivers them within Telegram's limits.

The times come from the events file, so a session moved in the file moves its reminders; a
reminder already queued is recorded and never queued again, also after a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.domain.clock import Clock
from bot.domain.events import EventCatalog
from bot.domain.reminders import due_reminders, next_due_after, reminder_text
from bot.domain.texts import LANGUAGES, use_locale
from storage.reminders import Reminders

logger = logging.getLogger(__name__)

# Re-check at least this often while a reminder is due (a registration that committed just
# after the reminder was queued), and so that a changed system clock cannot delay one long.
MAX_SLEEP = 60.0


class ReminderScheduler:
    def __init__(
        self,
        *,
        reminders: Reminders,
        catalog: EventCatalog,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._reminders = reminders
        self._catalog = catalog
        self._clock = clock
        self._sleep = sleep

    async def run_due(self) -> int:
        """Queue every reminder due now; returns how many messages were queued."""
        now = self._clock()
        total = 0
        for due in due_reminders(self._catalog, now):
            texts = {}
            for language in LANGUAGES:
                with use_locale(language):
                    texts[language] = reminder_text(due.event.localized(language), due.offset)
            queued = await self._reminders.queue(due.event.id, due.offset, due.at, texts, now=now)
            if queued:
                logger.info(
                    "Reminder %s before event %s queued for %d registrants",
                    due.offset,
                    due.event.id,
                    queued,
                )
            total += queued
        return total

    async def run(self) -> None:
        while True:
            try:
                await self.run_due()
            except Exception:
                logger.exception("Reminder run failed; trying again shortly")
            now = self._clock()
            upcoming = next_due_after(self._catalog, now)
            wait = MAX_SLEEP if upcoming is None else (upcoming - now).total_seconds()
            await self._sleep(min(max(wait, 0.01), MAX_SLEEP))
