"""Whether the database can take an update now: what GET /healthz reports (bot/webhook.py)."""

from __future__ import annotations

from storage.database import Database


class Health:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def probe(self) -> None:
        """Take the write lock and let it go, changing nothing; raises when the database
        cannot. A read would answer even while another process (an operator's sqlite3
        shell, a backup) holds the write lock, yet the inbox could not be written: the
        readiness that matters is the write. Off the event loop's thread (heavy), so a
        locked file never stalls the loop for SQLite's busy timeout."""
        async with self._db.transaction(heavy=True):
            pass
