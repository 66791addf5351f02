"""The outbox: messages the bot owes to chats, written in the same transaction as the change
they report, and delivered by the sender (bot/sender.py) at least once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from storage.database import NO_LIMIT, Connection, Database, Row, utc_iso

# offer: a freed seat offered to a person on the waiting list, with its button; waitlist:
# another message to a person on it (storage/seats.py); reminder: a reminder or the notice
# of a changed session, to a registrant (storage/reminders.py).
Kind = Literal["card", "digest", "broadcast", "offer", "waitlist", "reminder"]
MediaKind = Literal["photo", "document"]
# Kinds that are stale once their chat was parked: given up, never requeued nor used as a probe
# (an announcement or a reminder read days later, after the session, helps no one).
STALE_WHEN_PARKED = "('broadcast', 'reminder')"


@dataclass(frozen=True, slots=True)
class Media:
    """A photo or document Telegram already holds, sent again by its file id."""

    kind: MediaKind
    file_id: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file made by the bot (a calendar file), uploaded with the row's text as caption."""

    name: str
    content: bytes


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    chat_id: int
    kind: Kind
    registration_id: int | None
    text: str  # with media, its caption ("" for none)
    attempts: int
    media: Media | None = None
    reply_markup: str | None = None  # an inline keyboard, Bot API JSON
    attachment: Attachment | None = None

    @classmethod
    def from_row(cls, row: Row) -> OutboxMessage:
        kind = row["media_kind"]
        return cls(
            id=row["id"],
            chat_id=row["chat_id"],
            kind=row["kind"],
            registration_id=row["registration_id"],
            text=row["text"],
            attempts=row["attempts"],
            media=Media(kind, row["media_file_id"]) if kind is not None else None,
            reply_markup=row["reply_markup"],
            attachment=(
                Attachment(row["attachment_name"], row["attachment"])
                if row["attachment_name"] is not None
                else None
            ),
        )


class Outbox:
    def __init__(self, db: Database) -> None:
        self._db = db
        # Set whenever rows are added, so the sender need not poll.
        self.added = asyncio.Event()

    async def add(
        self,
        connection: Connection,
        chat_ids: Iterable[int],
        kind: Kind,
        text: str,
        *,
        now: datetime,
        registration_id: int | None = None,
        broadcast_id: int | None = None,
        media: Media | None = None,
        reply_markup: str | None = None,
    ) -> None:
        """Queue `text` (with media, its caption; with `reply_markup`, its buttons) for each
        chat inside the caller's transaction."""
        # One statement for all the chats, one round trip to aiosqlite's thread: a chat
        # that became a supergroup gets the message at its new id, and a chat that refused
        # the bot is not tried again until the bot is back in it: its new messages wait,
        # parked, with the others.
        await connection.executemany(
            """
            INSERT INTO outbox (chat_id, kind, registration_id, broadcast_id, text, media_kind,
                media_file_id, reply_markup, created_at, status, error)
            SELECT target.chat_id, :kind, :registration_id, :broadcast_id, :text, :media_kind,
                :media_file_id, :reply_markup, :created_at,
                CASE WHEN chats.unreachable IS NULL THEN 'pending' ELSE 'failed' END,
                chats.unreachable
            FROM (
                SELECT COALESCE(
                    (SELECT moved_to FROM chats WHERE chat_id = :chat_id AND moved_to IS NOT NULL),
                    :chat_id
                ) AS chat_id
            ) AS target
            LEFT JOIN chats ON chats.chat_id = target.chat_id
            """,
            [
                {
                    "chat_id": chat_id,
                    "kind": kind,
                    "registration_id": registration_id,
                    "broadcast_id": broadcast_id,
                    "text": text,
                    "media_kind": media.kind if media else None,
                    "media_file_id": media.file_id if media else None,
                    "reply_markup": reply_markup,
                    "created_at": utc_iso(now),
                }
                for chat_id in chat_ids
            ],
        )
        self.added.set()

    async def add_for_registrants(
        self,
        connection: Connection,
        event_id: str,
        text: str,
        *,
        now: datetime,
        broadcast_id: int,
        media: Media | None = None,
    ) -> None:
        """`add` for every person registered for `event_id` (a private chat's id is its
        user's), as one statement: tens of thousands of rows are SQLite's work alone, so the
        transaction holding the connection stays short."""
        await connection.execute(
            """
            INSERT INTO outbox (chat_id, kind, registration_id, broadcast_id, text, media_kind,
                media_file_id, created_at, status, error)
            SELECT target.chat_id, 'broadcast', NULL, :broadcast_id, :text, :media_kind,
                :media_file_id, :created_at,
                CASE WHEN chats.unreachable IS NULL THEN 'pending' ELSE 'failed' END,
                chats.unreachable
            FROM (
                SELECT COALESCE(moved.moved_to, users.user_id) AS chat_id
                FROM (
                    -- An erased registration has no one to write to (user_id is NULL).
                    SELECT DISTINCT user_id FROM registrations
                    WHERE event_id = :event_id AND status = 'confirmed' AND user_id IS NOT NULL
                ) AS users
                LEFT JOIN chats AS moved
                    ON moved.chat_id = users.user_id AND moved.moved_to IS NOT NULL
                ORDER BY users.user_id
            ) AS target
            LEFT JOIN chats ON chats.chat_id = target.chat_id
            """,
            {
                "event_id": event_id,
                "broadcast_id": broadcast_id,
                "text": text,
                "media_kind": media.kind if media else None,
                "media_file_id": media.file_id if media else None,
                "created_at": utc_iso(now),
            },
        )
        self.added.set()

    async def enqueue(
        self,
        chat_ids: Iterable[int],
        kind: Kind,
        text: str,
        *,
        now: datetime,
        registration_id: int | None = None,
    ) -> None:
        # One INSERT ... SELECT per chat, nothing read before it: safe without PostgreSQL's
        # global write lock.
        async with self._db.transaction(serial=False) as connection:
            await self.add(
                connection, chat_ids, kind, text, now=now, registration_id=registration_id
            )

    async def pending_chats(self, *, limit: int = NO_LIMIT) -> list[int]:
        """Chats with messages waiting, at most `limit`, in the order they should be served:
        those with a card or a digest first (organisers are not kept waiting behind ten
        thousand reminders), then by their oldest waiting message."""
        rows = await self._db.fetchall(
            "SELECT chat_id FROM outbox WHERE status = 'pending' GROUP BY chat_id "
            f"ORDER BY min(CASE WHEN kind IN {STALE_WHEN_PARKED} THEN 1 ELSE 0 END), min(id) "
            "LIMIT ?",
            (limit,),
        )
        return [row[0] for row in rows]

    async def pending(self, chat_id: int, *, limit: int = 50) -> list[OutboxMessage]:
        rows = await self._db.fetchall(
            "SELECT * FROM outbox WHERE chat_id = ? AND status = 'pending' ORDER BY id LIMIT ?",
            (chat_id, limit),
        )
        return [OutboxMessage.from_row(row) for row in rows]

    async def mark_sent(self, ids: Iterable[int], *, message_id: int, now: datetime) -> None:
        # The text goes: a delivered card keeps its ids, not the person's data. Any status
        # but 'sent': Telegram accepted it, so it is delivered even if its chat was parked
        # while it was in flight, or it was a parked chat's probe.
        await self._db.executemany(
            "UPDATE outbox SET status = 'sent', text = NULL, attachment_name = NULL, "
            "attachment = NULL, sent_at = ?, message_id = ?, "
            "attempts = attempts + 1, error = NULL, failed_at = NULL "
            "WHERE id = ? AND status != 'sent'",
            [(utc_iso(now), message_id, id_) for id_ in ids],
        )

    async def count_attempt(self, ids: Iterable[int], *, error: str) -> None:
        await self._db.executemany(
            "UPDATE outbox SET attempts = attempts + 1, error = ? WHERE id = ?",
            [(error, id_) for id_ in ids],
        )

    async def fail_message(self, id_: int, *, error: str, now: datetime) -> None:
        """Give up on this message for good (Telegram refuses it, not the chat); `error`
        is what an admin sees in /stats."""
        await self._db.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, error = ?, "
            "failed_at = ? WHERE id = ? AND status != 'sent'",
            (error, utc_iso(now), id_),
        )

    async def fail_chat(self, chat_id: int, *, reason: str, now: datetime) -> int:
        """The chat cannot be written to (bot blocked, removed or without the right to
        send): park all its messages until it is back."""
        async with self._db.transaction() as connection:
            # A chat parked again (a probe that failed) keeps the time it was first parked.
            await connection.execute(
                "INSERT INTO chats (chat_id, unreachable, unreachable_at) VALUES (?, ?, ?) "
                "ON CONFLICT (chat_id) DO UPDATE SET unreachable = excluded.unreachable, "
                "unreachable_at = COALESCE(chats.unreachable_at, excluded.unreachable_at)",
                (chat_id, reason, utc_iso(now)),
            )
            cursor = await connection.execute(
                "UPDATE outbox SET status = 'failed', error = ? "
                "WHERE chat_id = ? AND status = 'pending'",
                (reason, chat_id),
            )
            return cursor.rowcount

    async def chat_is_back(self, chat_id: int) -> int:
        """The bot was added back (or unblocked): its parked messages go out again.

        Not announcements: one a person missed while they had blocked the bot is stale
        by the time they come back, and the broadcast's report has counted it."""
        async with self._db.transaction() as connection:
            await connection.execute(
                "UPDATE chats SET unreachable = NULL, unreachable_at = NULL WHERE chat_id = ?",
                (chat_id,),
            )
            cursor = await connection.execute(
                "UPDATE outbox SET status = 'pending', error = NULL "
                "WHERE chat_id = ? AND status = 'failed' AND failed_at IS NULL "
                f"AND text IS NOT NULL AND kind NOT IN {STALE_WHEN_PARKED}",
                (chat_id,),
            )
            requeued = cursor.rowcount
        if requeued:
            self.added.set()
        return requeued

    async def chat_moved(self, old_id: int, new_id: int) -> None:
        """A group became a supergroup with a new id: follow it, now and from now on."""
        async with self._db.transaction() as connection:
            await connection.execute(
                "INSERT INTO chats (chat_id, moved_to) VALUES (?, ?) "
                "ON CONFLICT (chat_id) DO UPDATE SET moved_to = excluded.moved_to",
                (old_id, new_id),
            )
            await connection.execute(
                "UPDATE chats SET moved_to = ? WHERE moved_to = ?", (new_id, old_id)
            )
            # Messages parked with the old chat are tried at the new one: a new chat, and
            # nothing else would unpark them (the old id is gone).
            await connection.execute(
                "UPDATE outbox SET chat_id = ?, status = CASE WHEN status = 'failed' "
                f"AND failed_at IS NULL AND text IS NOT NULL AND kind NOT IN {STALE_WHEN_PARKED} "
                "THEN 'pending' ELSE status END WHERE chat_id = ? AND status != 'sent'",
                (new_id, old_id),
            )
        self.added.set()

    async def unreachable_chats(self) -> dict[int, str]:
        rows = await self._db.fetchall(
            "SELECT chat_id, unreachable FROM chats WHERE unreachable IS NOT NULL"
        )
        return {row[0]: row[1] for row in rows}

    async def probes(self, *, parked_before: datetime) -> list[OutboxMessage]:
        """For each chat parked before `parked_before`, the message that goes out first
        when it is back: sending it again is the probe."""
        rows = await self._db.fetchall(
            f"""
            SELECT outbox.* FROM chats
            JOIN outbox ON outbox.id = (
                SELECT id FROM outbox
                WHERE outbox.chat_id = chats.chat_id AND status = 'failed'
                    AND failed_at IS NULL AND text IS NOT NULL
                    AND kind NOT IN {STALE_WHEN_PARKED}
                ORDER BY id LIMIT 1)
            WHERE chats.unreachable IS NOT NULL AND chats.unreachable_at <= ?
            ORDER BY chats.chat_id
            """,
            (utc_iso(parked_before),),
        )
        return [OutboxMessage.from_row(row) for row in rows]

    async def delete_sent(self, *, before: datetime) -> int:
        """Delete messages delivered before `before`: kept until then for diagnosis.

        Not those of a broadcast still running: its progress counts them."""
        return await self._db.execute(
            "DELETE FROM outbox WHERE status = 'sent' AND sent_at < ? AND ("
            "broadcast_id IS NULL OR broadcast_id IN ("
            "SELECT id FROM broadcasts WHERE finished_at IS NOT NULL))",
            (utc_iso(before),),
            heavy=True,
        )
