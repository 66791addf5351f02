"""The daily digest worker: once a day, for certain, each organiser chat gets the digest.

The day is marked done in the same transaction that queues the digest in the outbox, so a
restart never sends it twice, and a bot that was down at DIGEST_TIME sends it on return.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, time
from zoneinfo import ZoneInfo

from bot.domain.clock import Clock
from bot.domain.digest import due_digest_date, latest_run_at_or_before, next_run_after
from bot.domain.events import EventCatalog
from bot.domain.texts import DEFAULT_LOCALE, use_locale
from storage.database import Connection, Database
from storage.digests import Digests
from storage.outbox import Outbox

logger = logging.getLogger(__name__)

# Re-check at least this often, so a changed system clock cannot delay a digest for long.
MAX_SLEEP = 60.0


class DigestScheduler:
    def __init__(
        self,
        *,
        db: Database,
        outbox: Outbox,
        catalog: EventCatalog,
        chat_ids: Sequence[int],
        at: time,
        zone: ZoneInfo,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        language: str = DEFAULT_LOCALE,
    ) -> None:
        self._language = language
        self._db = db
        self._digests = Digests(db)
        self._outbox = outbox
        self._catalog = catalog
        self._chat_ids = tuple(chat_ids)
        self._at = at
        self._zone = zone
        self._clock = clock
        self._sleep = sleep

    async def compose(self, now: datetime, *, connection: Connection | None = None) -> list[str]:
        # In the organisers' language, also when an admin's /digest asks for it.
        with use_locale(self._language):
            return await self._digests.compose(
                self._catalog, self._zone, now, connection=connection
            )

    async def run_due(self) -> bool:
        """Queue the digest if one is due now; True when it did."""
        now = self._clock()
        last = await self._digests.last()
        if last is None:
            # A new installation: start counting from now instead of greeting the
            # organisers with a digest of nothing the moment the bot first starts.
            baseline = latest_run_at_or_before(now, self._at, self._zone)
            async with self._db.transaction() as connection:
                await self._digests.record(connection, baseline.astimezone(self._zone).date(), now)
            return False
        due = due_digest_date(now, self._at, self._zone, last[0])
        if due is None:
            return False
        async with self._db.transaction(heavy=True) as connection:
            # Read and marked in one transaction: the numbers are one snapshot.
            messages = await self.compose(now, connection=connection)
            if not await self._digests.record(connection, due, now):
                return False
            for text in messages:
                await self._outbox.add(connection, self._chat_ids, "digest", text, now=now)
        logger.info("Digest for %s queued: %d messages per chat", due, len(messages))
        return True

    async def run(self) -> None:
        while True:
            try:
                await self.run_due()
            except Exception:
                logger.exception("Digest run failed; trying again shortly")
            now = self._clock()
            wait = (next_run_after(now, self._at, self._zone) - now).total_seconds()
            await self._sleep(min(max(wait, 0.0), MAX_SLEEP))
