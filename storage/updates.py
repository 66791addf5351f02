"""Update ids already handled, so an update Telegram delivers again has no second effect."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from storage.database import Database, utc_iso

# Telegram keeps unconfirmed updates for 24 hours; older ids can never come back.
KEEP_FOR = timedelta(days=2)
# Marks written by one statement at most (SQLite allows 32,766 parameters).
MAX_BATCH = 500


class HandledUpdates:
    def __init__(self, db: Database) -> None:
        self._db = db
        # Marks not written yet, each with the flag its caller waits to see set.
        self._pending: list[tuple[int, str, list[bool]]] = []
        self._writing = asyncio.Lock()

    async def is_handled(self, update_id: int) -> bool:
        row = await self._db.fetchone(
            "SELECT 1 FROM handled_updates WHERE update_id = ?", (update_id,)
        )
        return row is not None

    async def mark(self, update_id: int, *, now: datetime) -> None:
        """Written when this returns. Updates finishing while a mark is being written are
        marked together by the next statement: one round trip to aiosqlite's thread for
        all of them instead of one each."""
        written = [False]
        self._pending.append((update_id, utc_iso(now), written))
        async with self._writing:
            if written[0]:
                return
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                # Bookkeeping (`Database.record`): a mark lost with a crash of the database
                # server leaves the update in the inbox (the mark's trigger takes it out),
                # so it is handled again, applied once.
                await self._db.record(
                    "INSERT OR IGNORE INTO handled_updates (update_id, handled_at) VALUES "
                    + ", ".join(["(?, ?)"] * len(batch)),
                    tuple(value for update, at, _ in batch for value in (update, at)),
                )
            except BaseException:
                # Not written: each caller still waiting tries again in its turn.
                self._pending[:0] = [entry for entry in batch if entry[2] is not written]
                raise
            for _, _, flag in batch:
                flag[0] = True

    async def prune(self, *, now: datetime) -> int:
        return await self._db.execute(
            "DELETE FROM handled_updates WHERE handled_at < ?",
            (utc_iso(now - KEEP_FOR),),
            heavy=True,
        )
