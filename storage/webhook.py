"""What the bot last told Telegram in setWebhook, as a fingerprint in the meta table.

getWebhookInfo does not show the secret, so only a fingerprint kept here can tell that a new
secret (or allowed_updates, or max_connections) needs a setWebhook; the same settings at the
next start need none.
"""

from __future__ import annotations

from storage.database import Database

_KEY = "webhook_fingerprint"


class WebhookRecord:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def fingerprint(self) -> str | None:
        row = await self._db.fetchone("SELECT value FROM meta WHERE key = ?", (_KEY,))
        return None if row is None else str(row["value"])

    async def remember(self, fingerprint: str) -> None:
        await self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_KEY, fingerprint),
        )

    async def forget(self) -> None:
        await self._db.execute("DELETE FROM meta WHERE key = ?", (_KEY,))
