"""Update ids already handled, so an update Telegram delivers again has no second effect."""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.database import Database, utc_iso

# Telegram keeps unconfirmed updates for 24 hours; older ids can never come back.
KEEP_FOR = timedelta(days=2)


class HandledUpdates:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def is_handled(self, update_id: int) -> bool:
        row = await self._db.fetchone(
            "SELECT 1 FROM handled_updates WHERE update_id = ?", (update_id,)
        )
        return row is not None

    async def mark(self, update_id: int, *, now: datetime) -> None:
        await self._db.execute(
            "INSERT OR IGNORE INTO handled_updates (update_id, handled_at) VALUES (?, ?)",
            (update_id, utc_iso(now)),
        )

    async def prune(self, *, now: datetime) -> int:
        return await self._db.execute(
            "DELETE FROM handled_updates WHERE handled_at < ?", (utc_iso(now - KEEP_FOR),)
        )
