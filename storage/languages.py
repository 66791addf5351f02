"""The language each person reads: chosen with /language, else their Telegram language's."""

from __future__ import annotations

from bot.domain.texts import DEFAULT_LOCALE, language_of
from storage.database import Connection, Database

# Known people's languages, so that an update costs no read; a person's row changes only
# through this object (and /forget, which calls `forget`).
_CACHE_LIMIT = 100_000


class Languages:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._known: dict[int, str] = {}

    async def of(self, user_id: int, telegram_code: str | None = None) -> str:
        """The person's language; at their first message, their Telegram language's,
        which is remembered (reminders and notices reach them outside an update)."""
        known = self._known.get(user_id)
        if known is not None:
            return known
        row = await self._db.fetchone(
            "SELECT language FROM languages WHERE user_id = ?", (user_id,)
        )
        if row is not None:
            language = str(row[0])
        else:
            language = language_of(telegram_code)
            await self._db.execute(
                "INSERT OR IGNORE INTO languages (user_id, language) VALUES (?, ?)",
                (user_id, language),
            )
        self._remember(user_id, language)
        return language

    async def stored(self, user_id: int) -> str | None:
        row = await self._db.fetchone(
            "SELECT language FROM languages WHERE user_id = ?", (user_id,)
        )
        return None if row is None else str(row[0])

    async def choose(self, user_id: int, language: str) -> None:
        await self._db.execute(
            "INSERT INTO languages (user_id, language, chosen) VALUES (?, ?, 1) "
            "ON CONFLICT (user_id) DO UPDATE SET language = excluded.language, chosen = 1",
            (user_id, language),
        )
        self._remember(user_id, language)

    async def forget(self, user_id: int) -> None:
        await self._db.execute("DELETE FROM languages WHERE user_id = ?", (user_id,))
        self._known.pop(user_id, None)

    def _remember(self, user_id: int, language: str) -> None:
        if len(self._known) >= _CACHE_LIMIT:
            self._known.clear()
        self._known[user_id] = language


async def reader_language(connection: Connection, user_id: int) -> str:
    """The language a person reads, inside a transaction that writes to them outside their
    own update (an offer made by someone else's withdrawal, the waiting list's clock)."""
    async with connection.execute(
        "SELECT language FROM languages WHERE user_id = ?", (user_id,)
    ) as cursor:
        row = await cursor.fetchone()
    return DEFAULT_LOCALE if row is None else str(row[0])
