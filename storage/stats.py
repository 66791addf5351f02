"""Numbers and look-ups for admins: /stats, /find and /erase."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

from bot.domain.events import Event
from bot.domain.validation import PersonKey
from storage.database import Database, casefold, utc_iso
from storage.export.source import open_read_only
from storage.outbox import STALE_WHEN_PARKED
from storage.registrations import Registration


@dataclass(frozen=True, slots=True)
class EventStats:
    confirmed: int
    withdrawn: int
    in_progress: int  # forms started and not finished
    today: int  # confirmed today, in the event's local day
    last_7_days: int
    unreachable: int  # confirmed registrants who blocked the bot
    waiting: int = 0  # in the waiting list
    offered: int = 0  # of them, holding an offer of a freed seat
    capacity: int | None = None  # as the database holds it (None: unlimited)
    # Confirmed registrations per source of the link (None: without one), most first.
    sources: tuple[tuple[str | None, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ParkedChat:
    """A chat the sender does not write to until it is back (bot removed or blocked, no
    right to send); its cards and digests wait."""

    chat_id: int
    reason: str
    since: datetime | None
    waiting: int


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """Messages given up for good with one reason (Telegram refused the message itself)."""

    reason: str
    count: int
    last: datetime


@dataclass(frozen=True, slots=True)
class OutboxHealth:
    parked: list[ParkedChat]  # the first few, longest parked first
    parked_count: int
    failures: list[DeliveryFailure]  # most frequent reasons first
    failed_count: int


class AdminQueries:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def event_stats(self, event: Event, now: datetime) -> EventStats:
        local_today = datetime.combine(
            now.astimezone(event.timezone).date(), time(), event.timezone
        )
        row = await self._db.fetchone(
            """
            SELECT
                count(*) FILTER (WHERE status = 'confirmed'),
                count(*) FILTER (WHERE status = 'withdrawn'),
                count(*) FILTER (WHERE status = 'confirmed' AND created_at >= :today),
                count(*) FILTER (WHERE status = 'confirmed' AND created_at >= :week),
                count(*) FILTER (WHERE status = 'confirmed' AND user_id IN (
                    SELECT chat_id FROM chats WHERE unreachable IS NOT NULL)),
                count(*) FILTER (WHERE status = 'waiting'),
                count(*) FILTER (WHERE status = 'waiting' AND offered_at IS NOT NULL),
                (SELECT capacity FROM events WHERE id = :event)
            FROM registrations WHERE event_id = :event
            """,
            {
                "event": event.id,
                "today": utc_iso(local_today),
                "week": utc_iso(local_today - timedelta(days=6)),
            },
            heavy=True,
        )
        forms = await self._db.fetchone(
            "SELECT count(*) FROM fsm_states WHERE state LIKE 'Form:%' "
            "AND json_extract(data, '$.event_id') = ? "
            "AND json_extract(data, '$.registration_id') IS NULL",
            (event.id,),
            heavy=True,
        )
        sources = await self._db.fetchall(
            "SELECT source, count(*) FROM registrations "
            "WHERE event_id = ? AND status = 'confirmed' GROUP BY source ORDER BY 2 DESC, 1",
            (event.id,),
            heavy=True,
        )
        assert row is not None and forms is not None
        return EventStats(
            confirmed=row[0],
            withdrawn=row[1],
            in_progress=forms[0],
            today=row[2],
            last_7_days=row[3],
            unreachable=row[4],
            waiting=row[5],
            offered=row[6],
            capacity=row[7],
            sources=tuple((source, count) for source, count in sources),
        )

    async def find(self, query: str, *, limit: int) -> tuple[list[Registration], int]:
        """Registrations whose name, organisation, e-mail or phone contains `query`
        (any case, Cyrillic included): up to `limit` of them, newest first, and how many.

        A search reads every registration (long on a big table): through the bot's
        one connection it would hold its lock, and every other chat's reply, that long. So
        it runs in a worker thread on a read-only connection of its own, like an export.
        (PostgreSQL: on a pooled connection, which holds no lock others wait for.)"""
        where, params = _find_where(query)
        if self._db.path is None:
            [count] = await self._db.fetchall(
                f"SELECT count(*) FROM registrations WHERE {where}", params, heavy=True
            )
            rows = await self._db.fetchall(_FOUND.format(where=where), {**params, "limit": limit})
            return [Registration.from_row(row) for row in rows], count[0]
        return await asyncio.to_thread(_find, self._db.path, where, params, limit)

    async def holding(self, key: PersonKey) -> list[Registration]:
        """Registrations that still hold personal data and match `key` (an e-mail in any
        case), oldest first: what an admin's /erase would erase. Off the bot's connection,
        as `find`: a phone or an e-mail is looked for in every row."""
        if self._db.path is None:
            match = _holding_where(key)
            if match is None:
                return []
            rows = await self._db.fetchall(_HOLDING.format(where=match[0]), match[1], heavy=True)
            return [Registration.from_row(row) for row in rows]
        return await asyncio.to_thread(_holding, self._db.path, key)

    async def outbox_health(self, *, limit: int) -> OutboxHealth:
        # Groups and chats with waiting messages: a participant who blocked the bot is
        # counted per session already, and may be one of thousands.
        parked_where = (
            "chats.unreachable IS NOT NULL AND (chats.chat_id < 0 OR EXISTS ("
            "SELECT 1 FROM outbox WHERE outbox.chat_id = chats.chat_id "
            "AND outbox.status = 'failed' AND outbox.failed_at IS NULL "
            f"AND outbox.kind NOT IN {STALE_WHEN_PARKED}))"
        )
        parked = await self._db.fetchall(
            f"""
            SELECT chats.chat_id, chats.unreachable, chats.unreachable_at,
                (SELECT count(*) FROM outbox WHERE outbox.chat_id = chats.chat_id
                    AND outbox.status = 'failed' AND outbox.failed_at IS NULL
                    AND outbox.text IS NOT NULL
                    AND outbox.kind NOT IN {STALE_WHEN_PARKED})
            FROM chats WHERE {parked_where}
            ORDER BY chats.unreachable_at IS NULL, chats.unreachable_at, chats.chat_id
            LIMIT ?
            """,
            (limit,),
            heavy=True,
        )
        parked_count = await self._db.fetchone(
            f"SELECT count(*) FROM chats WHERE {parked_where}", heavy=True
        )
        failures = await self._db.fetchall(
            "SELECT coalesce(error, '?'), count(*), max(failed_at) FROM outbox "
            "WHERE status = 'failed' AND failed_at IS NOT NULL "
            "GROUP BY 1 ORDER BY 2 DESC, 3 DESC LIMIT ?",
            (limit,),
            heavy=True,
        )
        failed_count = await self._db.fetchone(
            "SELECT count(*) FROM outbox WHERE status = 'failed' AND failed_at IS NOT NULL",
            heavy=True,
        )
        assert parked_count is not None and failed_count is not None
        return OutboxHealth(
            parked=[
                ParkedChat(
                    chat_id=row[0],
                    reason=row[1],
                    since=datetime.fromisoformat(row[2]) if row[2] else None,
                    waiting=row[3],
                )
                for row in parked
            ],
            parked_count=parked_count[0],
            failures=[
                DeliveryFailure(reason=row[0], count=row[1], last=datetime.fromisoformat(row[2]))
                for row in failures
            ],
            failed_count=failed_count[0],
        )


_FOUND = "SELECT * FROM registrations WHERE {where} ORDER BY created_at DESC, id DESC LIMIT :limit"
_HOLDING = "SELECT * FROM registrations WHERE erased_at IS NULL AND {where} ORDER BY id"


def _find_where(query: str) -> tuple[str, dict[str, object]]:
    needle = query.casefold()
    digits = re.sub(r"\D", "", query)
    # "8 912 ..." is how Russians type "+7 912 ...".
    if len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    where = (
        "instr(casefold(full_name), :q) > 0 OR instr(casefold(organization), :q) > 0 "
        "OR instr(casefold(email), :q) > 0"
        + (" OR instr(phone, :digits) > 0" if len(digits) >= 4 else "")
    )
    return where, {"q": needle, "digits": digits}


def _find(
    path: Path, where: str, params: dict[str, object], limit: int
) -> tuple[list[Registration], int]:
    with open_read_only(path) as connection:
        connection.row_factory = sqlite3.Row
        connection.create_function("casefold", 1, casefold, deterministic=True)
        count = connection.execute(
            f"SELECT count(*) FROM registrations WHERE {where}", params
        ).fetchone()
        rows = connection.execute(_FOUND.format(where=where), {**params, "limit": limit}).fetchall()
    return [Registration.from_row(row) for row in rows], count[0]


def _holding_where(key: PersonKey) -> tuple[str, tuple[object, ...]] | None:
    if key.registration_id is not None:
        return "id = ?", (key.registration_id,)
    if key.phone is not None:
        return "phone = ?", (key.phone,)
    if key.email is not None:
        return "casefold(email) = ?", (key.email,)
    return None


def _holding(path: Path, key: PersonKey) -> list[Registration]:
    match = _holding_where(key)
    if match is None:
        return []
    where, params = match
    with open_read_only(path) as connection:
        connection.row_factory = sqlite3.Row
        connection.create_function("casefold", 1, casefold, deterministic=True)
        rows = connection.execute(_HOLDING.format(where=where), params).fetchall()
    return [Registration.from_row(row) for row in rows]
