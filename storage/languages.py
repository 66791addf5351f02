"""The language each person reads: chosen with /language, else their Telegram language's."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.domain.clock import Clock, utc_now
from bot.domain.texts import DEFAULT_LOCALE, language_of
from storage.database import Connection, Database

# Known people's languages, so that an update costs no read.
_CACHE_LIMIT = 100_000
# On PostgreSQL another replica may change a person's row (/language, /forget there): a
# language known here is read again once it is this old. A minute keeps a form's steps
# (seconds apart) to one read, and a choice made elsewhere shows within a minute. SQLite
# has one process, whose writes all go through this object: its languages never go stale.
FRESH_FOR = timedelta(minutes=1)
_SELECT = "SELECT language FROM languages WHERE user_id = ?"


class Languages:
    def __init__(self, db: Database, *, clock: Clock = utc_now) -> None:
        self._db = db
        self._clock = clock
        self._shared = db.dialect == "postgres"
        # user id -> (language, read again after; None: never)
        self._known: dict[int, tuple[str, datetime | None]] = {}

    async def of(self, user_id: int, telegram_code: str | None = None) -> str:
        """The person's language; at their first message, their Telegram language's,
        which is remembered (reminders and notices reach them outside an update)."""
        known = self._known.get(user_id)
        if known is not None:
            language, stale_at = known
            if stale_at is None or self._clock() < stale_at:
                return language
            row = await self._db.fetchone(_SELECT, (user_id,))
            if row is not None:
                return self._remember(user_id, str(row[0]))
        # One statement for a new person (most first messages are theirs): the row made
        # unless one is there, then read only if it was.
        rows = await self._db.fetchall(
            "INSERT INTO languages (user_id, language) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO NOTHING RETURNING language",
            (user_id, language_of(telegram_code)),
        )
        if not rows:
            rows = await self._db.fetchall(_SELECT, (user_id,))
            if not rows:  # forgotten (/forget) between the two: stored at the next message
                return language_of(telegram_code)
        return self._remember(user_id, str(rows[0][0]))

    def knows(self, user_id: int) -> bool:
        """Whether `of` would answer without a statement now."""
        known = self._known.get(user_id)
        return known is not None and (known[1] is None or self._clock() < known[1])

    def read_just_now(self, user_id: int, language: str | None) -> None:
        """The person's language as another statement read it just now (a chat's turn on
        PostgreSQL, storage/replicas.py); None: they have none stored (forgotten). `of`
        answers as if it had read it itself: with it until it is FRESH_FOR old; with none,
        by storing their Telegram's."""
        if language is None:
            self._known.pop(user_id, None)
        else:
            self._remember(user_id, language)

    async def stored(self, user_id: int) -> str | None:
        row = await self._db.fetchone(_SELECT, (user_id,))
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

    def _remember(self, user_id: int, language: str) -> str:
        if len(self._known) >= _CACHE_LIMIT:
            self._known.clear()
        self._known[user_id] = (language, self._clock() + FRESH_FOR if self._shared else None)
        return language


async def reader_language(connection: Connection, user_id: int) -> str:
    """The language a person reads, inside a transaction that writes to them outside their
    own update (an offer made by someone else's withdrawal, the waiting list's clock)."""
    async with connection.execute(_SELECT, (user_id,)) as cursor:
        row = await cursor.fetchone()
    return DEFAULT_LOCALE if row is None else str(row[0])
