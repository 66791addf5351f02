"""Replicas on PostgreSQL: the sender and the scheduled work run on one replica at a time.

Every replica handles updates; one, the leader, also sends the outbox (organiser cards,
digests, broadcasts, reminders, offers) and runs the scheduled jobs, so Telegram's limits per
bot hold across replicas (one sender paces every message) and a digest or a reminder is never
queued twice. Leadership is a PostgreSQL advisory lock (storage/replicas.py): when the leader
stops or dies, its connection and its lock go, and within `TRY_EVERY` another replica leads.
A leader that loses its connection to the database stops its work at the next check (within
`CHECK_EVERY`): for at most that long two replicas may send, each message still once (the
outbox marks rows sent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # asyncpg is imported on PostgreSQL only
    from storage.replicas import Leadership

logger = logging.getLogger(__name__)

TRY_EVERY = 2.0
CHECK_EVERY = 2.0


class Leader:
    def __init__(
        self,
        leadership: Leadership,
        *,
        start: Callable[[], Awaitable[None]],
        stop: Callable[[], Awaitable[None]],
        try_every: float = TRY_EVERY,
        check_every: float = CHECK_EVERY,
    ) -> None:
        self._leadership = leadership
        self._start = start
        self._stop = stop
        self._try_every = try_every
        self._check_every = check_every
        self._task: asyncio.Task[None] | None = None
        self.leading = False

    def begin(self) -> None:
        self._task = asyncio.create_task(self._run(), name="leadership")

    async def end(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self.leading:
            self.leading = False
            await self._stop()
        await self._leadership.close()

    async def _run(self) -> None:
        while True:
            try:
                if not self.leading and await self._leadership.try_lead():
                    logger.info("This replica leads: it sends and runs the scheduled work")
                    await self._start()
                    self.leading = True
                elif self.leading and not await self._leadership.still_leading():
                    logger.warning("Leadership lost with the database connection; work stopped")
                    self.leading = False
                    await self._stop()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.error("Leadership check failed: %s", type(error).__name__)
            await asyncio.sleep(self._check_every if self.leading else self._try_every)
