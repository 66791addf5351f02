"""Announcements to every registrant of a session, delivered through the outbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from storage.audit import AuditEntry, admin_actor, record_in
from storage.database import Connection, Database, Row, utc_iso
from storage.outbox import Media, Outbox


@dataclass(frozen=True, slots=True)
class Broadcast:
    id: int
    event_id: str
    admin_chat_id: int
    progress_message_id: int | None
    total: int

    @classmethod
    def from_row(cls, row: Row) -> Broadcast:
        return cls(
            id=row["id"],
            event_id=row["event_id"],
            admin_chat_id=row["admin_chat_id"],
            progress_message_id=row["progress_message_id"],
            total=row["total"],
        )


@dataclass(frozen=True, slots=True)
class Progress:
    total: int
    delivered: int
    blocked: int  # the registrant blocked the bot: marked unreachable
    failed: int  # Telegram refused the message itself
    pending: int

    @property
    def done(self) -> int:
        return self.delivered + self.blocked + self.failed


class Broadcasts:
    def __init__(self, db: Database, outbox: Outbox) -> None:
        self._db = db
        self._outbox = outbox

    async def recipients(self, event_id: str) -> int:
        row = await self._db.fetchone(
            "SELECT count(DISTINCT user_id) FROM registrations "
            "WHERE event_id = ? AND status = 'confirmed'",
            (event_id,),
        )
        return int(row[0]) if row else 0

    async def create(
        self,
        *,
        event_id: str,
        admin_chat_id: int,
        text: str,
        now: datetime,
        media: Media | None = None,
        alongside: Callable[[Connection], Awaitable[None]] | None = None,
    ) -> Broadcast:
        """The broadcast, one outbox row per registrant and its record in the audit (the
        admin, the session, how many it reaches), in one transaction: a restart resumes it,
        and nobody is left out or added twice. `alongside` writes in the same transaction
        (the admin's form ending with it)."""
        async with self._db.transaction(heavy=True) as connection:
            async with connection.execute(
                "SELECT count(DISTINCT user_id) FROM registrations "
                "WHERE event_id = ? AND status = 'confirmed'",
                (event_id,),
            ) as cursor:
                counted = await cursor.fetchone()
            total = int(counted[0]) if counted else 0
            async with connection.execute(
                "INSERT INTO broadcasts (event_id, admin_chat_id, total, created_at) "
                "VALUES (?, ?, ?, ?) RETURNING *",
                (event_id, admin_chat_id, total, utc_iso(now)),
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None
            broadcast = Broadcast.from_row(row)
            await self._outbox.add_for_registrants(
                connection, event_id, text, now=now, broadcast_id=broadcast.id, media=media
            )
            entry = AuditEntry(
                now, "broadcast", admin_actor(admin_chat_id), event_id=event_id, row_count=total
            )
            await record_in(connection, [entry])
            if alongside is not None:
                await alongside(connection)
        return broadcast

    async def set_progress_message(self, broadcast_id: int, message_id: int) -> None:
        await self._db.execute(
            "UPDATE broadcasts SET progress_message_id = ? WHERE id = ?",
            (message_id, broadcast_id),
        )

    async def unfinished(self) -> list[Broadcast]:
        rows = await self._db.fetchall(
            "SELECT * FROM broadcasts WHERE finished_at IS NULL ORDER BY id"
        )
        return [Broadcast.from_row(row) for row in rows]

    async def progress(self, broadcast: Broadcast) -> Progress:
        row = await self._db.fetchone(
            """
            SELECT
                count(*) FILTER (WHERE outbox.status = 'sent'),
                count(*) FILTER (WHERE outbox.status = 'failed'
                                 AND chats.unreachable IS NOT NULL),
                count(*) FILTER (WHERE outbox.status = 'failed' AND chats.unreachable IS NULL),
                count(*) FILTER (WHERE outbox.status = 'pending')
            FROM outbox LEFT JOIN chats ON chats.chat_id = outbox.chat_id
            WHERE outbox.broadcast_id = ?
            """,
            (broadcast.id,),
        )
        assert row is not None
        return Progress(broadcast.total, row[0], row[1], row[2], row[3])

    async def finish(self, broadcast_id: int, *, now: datetime) -> None:
        await self._db.execute(
            "UPDATE broadcasts SET finished_at = ? WHERE id = ?", (utc_iso(now), broadcast_id)
        )
