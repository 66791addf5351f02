"""Registrations: the repository every audience reads and writes through."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import aiosqlite

from bot.domain.cells import CSV_RULE, registrant_csv
from bot.domain.validation import format_phone
from storage.database import Database, utc_iso

EDITABLE_FIELDS = ("full_name", "position", "organization", "phone", "email")
Status = Literal["confirmed", "withdrawn"]


@dataclass(frozen=True, slots=True)
class NewRegistration:
    event_id: str
    user_id: int
    username: str | None
    telegram_name: str
    full_name: str
    position: str
    organization: str
    phone: str  # E.164
    email: str
    consent_at: datetime
    consent_version: str
    # The source in the session's link (bot/domain/sources.py), already checked; not personal.
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Registration:
    id: int
    event_id: str
    user_id: int
    username: str | None
    telegram_name: str
    full_name: str
    position: str
    organization: str
    phone: str
    email: str
    consent_at: datetime
    consent_version: str
    status: Status
    created_at: datetime
    updated_at: datetime
    source: str | None = None  # the source in the session's link (bot/domain/sources.py)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Registration:
        return cls(
            id=row["id"],
            event_id=row["event_id"],
            user_id=row["user_id"],
            username=row["username"],
            telegram_name=row["telegram_name"],
            full_name=row["full_name"],
            position=row["position"],
            organization=row["organization"],
            phone=row["phone"],
            email=row["email"],
            consent_at=datetime.fromisoformat(row["consent_at"]),
            consent_version=row["consent_version"],
            status=row["status"],
            created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
            source=row["source"],
        )


@dataclass(frozen=True, slots=True)
class RegistrationChange:
    kind: Literal["created", "changed", "withdrawn", "erased", "erased_on_request"]
    id: int
    event_id: str
    # "created", "changed": the registration as it is now. The others carry none: its
    # personal data is gone (storage/erasure.py).
    registration: Registration | None = None
    before: Registration | None = None  # for "changed"
    field: str | None = None  # for "changed"


class ChangeListener(Protocol):
    """Called inside the transaction that makes the change: whatever it writes on
    `connection` (an organiser card in the outbox) commits or rolls back with it."""

    async def __call__(
        self, connection: aiosqlite.Connection, change: RegistrationChange, now: datetime
    ) -> None: ...


async def nobody(
    connection: aiosqlite.Connection, change: RegistrationChange, now: datetime
) -> None:
    return None


# What `registrant_csv` is made of, as stored.
_CSV_SOURCES = (
    "full_name",
    "position",
    "organization",
    "phone",
    "phone_display",
    "email",
    "user_id",
    "username",
)


def _registrant_csv(row: sqlite3.Row | Mapping[str, Any]) -> str:
    return registrant_csv(
        row["full_name"],
        row["position"],
        row["organization"],
        # NULL in rows older than schema 6.
        row["phone_display"] or format_phone(row["phone"]),
        row["email"],
        row["user_id"],
        row["username"],
    )


class AlreadyRegistered(Exception):
    def __init__(self, existing: Registration) -> None:
        super().__init__(f"registration {existing.id} is already active")
        self.existing = existing


class Registrations:
    def __init__(self, db: Database, listener: ChangeListener = nobody) -> None:
        self._db = db
        self._listener = listener

    async def create(self, new: NewRegistration, *, now: datetime) -> Registration:
        """Insert a confirmed registration; AlreadyRegistered if one is active.

        The partial UNIQUE index decides, not a read-then-write here: a double tap or a
        re-delivered update racing this one cannot make a second row.
        """
        stamp = utc_iso(now)
        phone_display = format_phone(new.phone)
        csv_cells = registrant_csv(
            new.full_name,
            new.position,
            new.organization,
            phone_display,
            new.email,
            new.user_id,
            new.username,
        )
        try:
            async with self._db.transaction() as connection:
                # One round trip to the database thread: the row comes back with the insert.
                rows = await connection.execute_fetchall(
                    """
                    INSERT INTO registrations (
                        event_id, user_id, username, telegram_name, full_name, position,
                        organization, phone, phone_display, email, consent_at, consent_version,
                        status, created_at, updated_at, csv_cells, csv_rule, source
                    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'confirmed', ?, ?, ?, ?, ?)
                    RETURNING *
                    """,
                    (
                        new.event_id,
                        new.user_id,
                        new.username,
                        new.telegram_name,
                        new.full_name,
                        new.position,
                        new.organization,
                        new.phone,
                        phone_display,
                        new.email,
                        utc_iso(new.consent_at),
                        new.consent_version,
                        stamp,
                        stamp,
                        csv_cells,
                        CSV_RULE,
                        new.source,
                    ),
                )
                row = next(iter(rows), None)
                assert row is not None
                registration = Registration.from_row(row)
                await self._listener(
                    connection,
                    RegistrationChange("created", registration.id, new.event_id, registration),
                    now,
                )
        except sqlite3.IntegrityError:
            existing = await self.active(new.event_id, new.user_id)
            if existing is None:
                raise
            raise AlreadyRegistered(existing) from None
        return registration

    async def get(self, registration_id: int) -> Registration | None:
        """The registration, unless its personal data was erased (then there is nothing of
        the person to show or change)."""
        row = await self._db.fetchone(
            "SELECT * FROM registrations WHERE id = ? AND erased_at IS NULL", (registration_id,)
        )
        return Registration.from_row(row) if row else None

    async def active(self, event_id: str, user_id: int) -> Registration | None:
        row = await self._db.fetchone(
            "SELECT * FROM registrations WHERE event_id = ? AND user_id = ? "
            "AND status = 'confirmed'",
            (event_id, user_id),
        )
        return Registration.from_row(row) if row else None

    async def active_for_user(self, user_id: int) -> list[Registration]:
        rows = await self._db.fetchall(
            "SELECT * FROM registrations WHERE user_id = ? AND status = 'confirmed' "
            "ORDER BY created_at, id",
            (user_id,),
        )
        return [Registration.from_row(row) for row in rows]

    async def update_field(
        self, registration_id: int, *, user_id: int, field: str, value: str, now: datetime
    ) -> tuple[Registration, Registration] | None:
        """Change one field of the user's active registration: (before, after), or None."""
        if field not in EDITABLE_FIELDS:
            raise ValueError(f"{field!r} is not editable")
        async with self._db.transaction() as connection:
            async with connection.execute(
                "SELECT * FROM registrations WHERE id = ? AND user_id = ? AND status = 'confirmed'",
                (registration_id, user_id),
            ) as cursor:
                before = await cursor.fetchone()
            if before is None:
                return None
            # `field` is one of EDITABLE_FIELDS, never user input; the phone as people read
            # it, and the CSV text, change with the value.
            values = {column: before[column] for column in _CSV_SOURCES}
            values[field] = value
            if field == "phone":
                values["phone_display"] = format_phone(value)
            async with connection.execute(
                f"UPDATE registrations SET {field} = ?, updated_at = ?, phone_display = ?, "
                "csv_cells = ?, csv_rule = ? WHERE id = ? RETURNING *",
                (
                    value,
                    utc_iso(now),
                    values["phone_display"],
                    _registrant_csv(values),
                    CSV_RULE,
                    registration_id,
                ),
            ) as cursor:
                after = await cursor.fetchone()
            assert after is not None
            old, new = Registration.from_row(before), Registration.from_row(after)
            if getattr(old, field) != getattr(new, field):
                change = RegistrationChange("changed", new.id, new.event_id, new, old, field)
                await self._listener(connection, change, now)
        return old, new

    async def fill_csv_cells(self, *, batch: int = 500) -> int:
        """Store the CSV text of every registration without one made by today's rule (rows
        older than schema 8, rows changed by hand, a changed rule); returns how many. Run at
        start-up, before polling; a batch per transaction, so none is held for long."""
        filled = last = 0
        while True:
            # Read and written in one transaction: no change slips in between. On by id, so
            # each batch reads on from where the last one stopped.
            async with self._db.transaction(heavy=True) as connection:
                rows = list(
                    await connection.execute_fetchall(
                        f"SELECT id, {', '.join(_CSV_SOURCES)} FROM registrations "
                        "WHERE id > ? AND (csv_rule IS NOT ? OR csv_cells IS NULL) "
                        "ORDER BY id LIMIT ?",
                        (last, CSV_RULE, batch),
                    )
                )
                await connection.executemany(
                    "UPDATE registrations SET csv_cells = ?, csv_rule = ? WHERE id = ?",
                    [(_registrant_csv(row), CSV_RULE, row["id"]) for row in rows],
                )
            if not rows:
                return filled
            filled += len(rows)
            last = rows[-1]["id"]
