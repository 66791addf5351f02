"""The waiting lists' clock: runs `Seats.tick` every little while (offers that ran out pass
on, a raised capacity's seats are offered, lists past their deadline are told once)."""

from __future__ import annotations

import asyncio
import logging

from bot.domain.clock import Clock
from storage.seats import Seats

logger = logging.getLogger(__name__)

# An offer outlives its hour by at most this long; a tick is one indexed query when idle.
TICK_EVERY = 30.0


async def run_waitlists(seats: Seats, clock: Clock, *, every: float = TICK_EVERY) -> None:
    while True:
        try:
            await seats.tick(clock())
        except Exception:
            logger.exception("Waiting lists: tick failed; next in %.0f s", every)
        await asyncio.sleep(every)
