"""Erasure of personal data (152-FZ art. 9 §2, art. 21 §4–5): on withdrawal, on the person's
request (/forget), on an admin's or the operator's, when the purpose is achieved (retention).

One transaction per erasure: the registration's personal columns, every undelivered copy
of them (cards, digests), the record in `audit` and the organisers' card commit together or
not at all. The row stays with its session, status, times and consent record, so counts
and the record hold. After the commit the engine's copies go (`Database.scrub_erased`): on
SQLite, with `PRAGMA secure_delete`, that leaves no copy of an erased value in the file or its
WAL; on PostgreSQL the tables are vacuumed (README: what PostgreSQL keeps, and how long).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Literal

from storage.audit import PARTICIPANT, AuditEntry, Reason, record_in
from storage.database import Connection, Database, Row, utc_iso
from storage.registrations import (
    ACTIVE,
    ChangeKind,
    ChangeListener,
    RegistrationChange,
    nobody,
)

if TYPE_CHECKING:
    from storage.seats import Seats

# A registration's personal data, as stored; an erasure empties each and records which held
# a value. (phone_display, csv_cells and csv_rule are copies made of them, emptied too.)
PERSONAL_COLUMNS = (
    "full_name",
    "position",
    "organization",
    "phone",
    "email",
    "user_id",
    "username",
    "telegram_name",
)

_ERASE = f"""
    UPDATE registrations SET
        {", ".join(f"{column} = NULL" for column in PERSONAL_COLUMNS)},
        phone_display = NULL, csv_cells = NULL, csv_rule = NULL,
        erased_at = :now, updated_at = :now, offered_at = NULL, offer_expires_at = NULL,
        -- Nobody is left waiting without their data: a place in line ends with it.
        status = CASE WHEN :withdraw OR status = 'waiting' THEN 'withdrawn' ELSE status END
    WHERE id = :id AND erased_at IS NULL
"""

# An undelivered message that holds erased data is given up, its text emptied. Not deleted: the
# sender may have it in flight, and SQLite would give a new row its id, which the sender
# would then mark delivered.
_DROP_MESSAGES = (
    "UPDATE outbox SET status = 'failed', text = NULL, media_kind = NULL, "
    "media_file_id = NULL, error = 'personal data erased', failed_at = ?"
)

CardKind = Literal["withdrawn", "erased", "erased_on_request"]

# Extra work inside the erasure's transaction (ending the person's conversation).
Within = Callable[[Connection], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Erased:
    registration_id: int
    event_id: str
    status: str  # before the erasure
    fields: tuple[str, ...]  # the personal columns that held a value


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What /forget erased: registrations, an unfinished form, messages queued to the person."""

    registrations: tuple[Erased, ...]
    drafts: int
    messages: int

    @property
    def anything(self) -> bool:
        return bool(self.registrations or self.drafts or self.messages)


class PersonalData:
    """Every way personal data leaves the database."""

    def __init__(
        self, db: Database, listener: ChangeListener = nobody, seats: Seats | None = None
    ) -> None:
        self._db = db
        self._listener = listener
        # The seats an erasure frees are offered to the waiting list in its transaction.
        self._seats = seats

    async def held(self, user_id: int) -> tuple[int, int]:
        """What /forget would erase of a person, besides an unfinished form: (registrations
        holding their data, messages queued to them)."""
        row = await self._db.fetchone(
            "SELECT (SELECT count(*) FROM registrations WHERE user_id = :user), "
            "(SELECT count(*) FROM outbox WHERE chat_id = :user AND status != 'sent' "
            "AND text IS NOT NULL)",
            {"user": user_id},
        )
        assert row is not None
        return int(row[0]), int(row[1])

    async def withdraw(self, registration_id: int, *, user_id: int, now: datetime) -> Erased | None:
        """The person's own confirmed registration, or place in the waiting list, withdrawn and
        erased; None if there is none (already withdrawn, someone else's, never existed)."""
        async with self._db.transaction() as connection:
            rows = await _select(
                connection,
                f"id = ? AND user_id = ? AND {ACTIVE}",
                (registration_id, user_id),
            )
            if not rows:
                return None
            [erased] = await self._erase_in(
                connection,
                rows,
                reason=Reason.withdrawal,
                actor=PARTICIPANT,
                now=now,
                withdraw=True,
                card="withdrawn",
            )
        self._db.scrub_erased()
        return erased

    async def forget(
        self, user_id: int, *, now: datetime, within: Within | None = None
    ) -> Forgotten:
        """Everything the bot holds about a person: their registrations (withdrawn, if still
        confirmed), messages queued to them, their parked chat and set-aside updates;
        `within` ends their conversation (the unfinished form) in the same transaction."""
        async with self._db.transaction() as connection:
            rows = await _select(connection, "user_id = ?", (user_id,))
            erased = await self._erase_in(
                connection,
                rows,
                reason=Reason.forget,
                actor=PARTICIPANT,
                now=now,
                withdraw=True,
                card="erased",
            )
            drafts = 0
            if within is not None:
                before = connection.total_changes
                await within(connection)
                drafts = connection.total_changes - before
            messages = await _forget_chat(connection, user_id, now)
            if drafts and not erased:
                await record_in(
                    connection,
                    [
                        AuditEntry(
                            now, "erase", PARTICIPANT, reason=Reason.forget, fields=("draft",)
                        )
                    ],
                )
        forgotten = Forgotten(tuple(erased), drafts, messages)
        if forgotten.anything:
            self._db.scrub_erased()
        return forgotten

    async def erase(
        self, registration_ids: Sequence[int], *, reason: Reason, actor: str, now: datetime
    ) -> list[Erased]:
        """Erase the given registrations (an admin's /erase, the operator's CLI, retention);
        those erased before are skipped. On request they are withdrawn too, and organisers
        get a card; retention neither."""
        if not registration_ids:
            return []
        placeholders = ", ".join("?" * len(registration_ids))
        async with self._db.transaction() as connection:
            rows = await _select(connection, f"id IN ({placeholders})", tuple(registration_ids))
            erased = await self._erase_in(
                connection,
                rows,
                reason=reason,
                actor=actor,
                now=now,
                # On request the registration ends with its data; retention keeps the status
                # (the session is over: its counts stay as they were).
                withdraw=reason is not Reason.retention,
                card=None if reason is Reason.retention else "erased_on_request",
            )
            if reason is not Reason.retention:
                # A request to erase a person: what else the bot holds of them goes too,
                # once no registration of theirs is left (their id is known only now).
                for user_id in {row["user_id"] for row in rows}:
                    if not await _holds_registration(connection, user_id):
                        await _forget_chat(connection, user_id, now)
        if erased:
            self._db.scrub_erased()
        return erased

    async def _erase_in(
        self,
        connection: Connection,
        rows: Sequence[Row],
        *,
        reason: Reason,
        actor: str,
        now: datetime,
        withdraw: bool,
        card: CardKind | None,
    ) -> list[Erased]:
        stamp = utc_iso(now)
        erased = [
            Erased(
                row["id"],
                row["event_id"],
                row["status"],
                tuple(column for column in PERSONAL_COLUMNS if row[column] is not None),
            )
            for row in rows
        ]
        if not erased:
            return []
        await connection.executemany(
            _ERASE, [{"id": row["id"], "now": stamp, "withdraw": withdraw} for row in rows]
        )
        ids = [entry.registration_id for entry in erased]
        placeholders = ", ".join("?" * len(ids))
        # The answers to the event's own questions are the person's too.
        async with connection.execute(
            f"DELETE FROM answers WHERE registration_id IN ({placeholders}) "
            "RETURNING registration_id",
            ids,
        ) as cursor:
            answered = {row[0] for row in await cursor.fetchall()}
        erased = [
            replace(entry, fields=(*entry.fields, "answers"))
            if entry.registration_id in answered
            else entry
            for entry in erased
        ]
        # Undelivered cards about these registrations carry the very values erased.
        await connection.execute(
            f"{_DROP_MESSAGES} WHERE registration_id IN ({placeholders}) AND status != 'sent'",
            [stamp, *ids],
        )
        # A digest not yet delivered names the day's new registrants: their names go. One look
        # for such digests per erasure (there are rarely any), not two updates per row: a
        # retention batch of 500 would otherwise scan the outbox a thousand times.
        await _redact_digests(
            connection, [value for row in rows for value in (row["full_name"], row["organization"])]
        )
        await record_in(
            connection,
            [
                AuditEntry(
                    now,
                    "erase",
                    actor,
                    reason=reason,
                    registration_id=entry.registration_id,
                    event_id=entry.event_id,
                    fields=entry.fields,
                )
                for entry in erased
            ],
        )
        if card is not None:
            for entry in erased:
                kind: ChangeKind = card
                if entry.status == "waiting":
                    kind = "left_waitlist"
                elif card == "withdrawn" and entry.status != "confirmed":
                    continue
                change = RegistrationChange(kind, entry.registration_id, entry.event_id)
                await self._listener(connection, change, now)
        if withdraw and self._seats is not None:
            # The seat (or the offer held for a person in line) is free: offered to the
            # first in line in this very transaction, so it is never lost to a crash.
            freed = [entry.event_id for entry in erased if entry.status in ("confirmed", "waiting")]
            await self._seats.fill_in(connection, freed, now)
        return erased


async def _select(connection: Connection, where: str, params: tuple[object, ...]) -> list[Row]:
    columns = ", ".join(PERSONAL_COLUMNS)
    async with connection.execute(
        f"SELECT id, event_id, status, {columns} FROM registrations "
        f"WHERE erased_at IS NULL AND {where} ORDER BY id",
        params,
    ) as cursor:
        return list(await cursor.fetchall())


async def _forget_chat(connection: Connection, user_id: int, now: datetime) -> int:
    """Messages queued to a person, given up (returns how many); whether they blocked the bot,
    and any update of theirs that could not be handled (its payload is what they sent). A
    private chat's id is its user's id."""
    messages = await _changed(
        connection,
        f"{_DROP_MESSAGES} WHERE chat_id = ? AND status != 'sent' AND text IS NOT NULL",
        (utc_iso(now), user_id),
    )
    await connection.execute("DELETE FROM chats WHERE chat_id = ?", (user_id,))
    await connection.execute(
        "DELETE FROM inbox WHERE lane = ? AND set_aside IS NOT NULL", (user_id,)
    )
    return messages


async def _holds_registration(connection: Connection, user_id: int) -> bool:
    async with connection.execute(
        "SELECT 1 FROM registrations WHERE user_id = ? LIMIT 1", (user_id,)
    ) as cursor:
        return await cursor.fetchone() is not None


async def _changed(connection: Connection, sql: str, params: tuple[object, ...]) -> int:
    async with connection.execute(sql, params) as cursor:
        return cursor.rowcount


async def _redact_digests(connection: Connection, values: Sequence[str | None]) -> None:
    async with connection.execute(
        "SELECT id FROM outbox WHERE kind = 'digest' AND status != 'sent' AND text IS NOT NULL"
    ) as cursor:
        digests = [row[0] for row in await cursor.fetchall()]
    if not digests:
        return
    placeholders = ", ".join("?" * len(digests))
    for value in values:
        if not value:
            continue
        shown = escape(value, quote=False)  # as the digest shows it (bot/domain/texts.py: t)
        await connection.execute(
            "UPDATE outbox SET text = replace(text, ?, '—') "
            f"WHERE id IN ({placeholders}) AND instr(text, ?) > 0",
            (shown, *digests, shown),
        )
