"""Registrations: the repository every audience reads and writes through."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from bot.domain.cells import CSV_RULE, registrant_csv
from bot.domain.validation import format_phone
from storage.database import Connection, Database, IntegrityError, Row, utc_iso

EDITABLE_FIELDS = ("full_name", "position", "organization", "phone", "email")
Status = Literal["confirmed", "waiting", "withdrawn"]
# A registration that holds the person's place: a seat, or a place in the waiting list.
ACTIVE = "status IN ('confirmed', 'waiting')"
# Every read of a registration for its person: the row, and its place in the waiting list.
# Those ahead are counted in two ranges of the line's index: a row value (queued_at, id)
# would bound only queued_at in SQLite's (reading the last of 100,000 in line: 8 ms, not 11).
SELECT_WITH_PLACE = """
    SELECT registrations.*, CASE WHEN registrations.status = 'waiting' THEN (
        SELECT count(*) FROM registrations AS ahead
        WHERE ahead.event_id = registrations.event_id AND ahead.status = 'waiting'
            AND ahead.queued_at < registrations.queued_at
    ) + (
        SELECT count(*) FROM registrations AS ahead
        WHERE ahead.event_id = registrations.event_id AND ahead.status = 'waiting'
            AND ahead.queued_at = registrations.queued_at AND ahead.id <= registrations.id
    ) END AS place
    FROM registrations
"""


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
    # Answers to the event's own questions: (question id, value), skipped ones left out.
    answers: tuple[tuple[str, str], ...] = ()


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
    # While waiting: the place in line (1 is next), and until when a freed seat is held for
    # it, when one is. None otherwise, and when the row was read without them.
    place: int | None = None
    offer_expires_at: datetime | None = None
    source: str | None = None  # the source in the session's link (bot/domain/sources.py)
    # Answers to the event's own questions (question id, value), as stored; empty when the
    # row was read without them.
    answers: tuple[tuple[str, str], ...] = ()

    def answer_map(self) -> dict[str, str]:
        return dict(self.answers)

    @classmethod
    def from_row(cls, row: Row) -> Registration:
        # `in` on a Row looks at its values: the columns are its keys.
        columns = set(row.keys())  # a list from sqlite3, an iterator from asyncpg
        expires = row["offer_expires_at"] if "offer_expires_at" in columns else None
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
            place=row["place"] if "place" in columns else None,
            offer_expires_at=datetime.fromisoformat(expires) if expires else None,
            source=row["source"] if "source" in columns else None,
        )


ChangeKind = Literal[
    "created",
    "changed",
    "withdrawn",
    "erased",
    "erased_on_request",
    # the waiting list (storage/seats.py): joined it, a freed seat offered, the offer taken,
    # left it (the data erased, as on withdrawal)
    "waiting",
    "offered",
    "promoted",
    "left_waitlist",
]


@dataclass(frozen=True, slots=True)
class RegistrationChange:
    kind: ChangeKind
    id: int
    event_id: str
    # "created", "changed", "waiting", "offered", "promoted": the registration as it is now.
    # The others carry none: its personal data is gone (storage/erasure.py).
    registration: Registration | None = None
    before: Registration | None = None  # for "changed"
    field: str | None = None  # for "changed"


class ChangeListener(Protocol):
    """Called inside the transaction that makes the change: whatever it writes on
    `connection` (an organiser card in the outbox) commits or rolls back with it."""

    async def __call__(
        self, connection: Connection, change: RegistrationChange, now: datetime
    ) -> None: ...


async def nobody(connection: Connection, change: RegistrationChange, now: datetime) -> None:
    return None


# In a creation's cards rendered before the insert, what stands for the registration's number
# and its place in line: PostgreSQL's `create_registration` (storage/migrations.py, step 21)
# puts them in. A person's `<` reaches a card escaped (`&lt;`), and no text has these.
CARD_ID = "<#id>"
CARD_PLACE = "<#place>"


@dataclass(frozen=True, slots=True)
class CreationCards:
    """A creation's organiser cards, rendered before the row exists (CARD_ID and CARD_PLACE
    in them), for PostgreSQL's one-statement creation; the database picks one by the seat."""

    chat_ids: tuple[int, ...]
    confirmed: str  # the card of a registration that took a seat ("created")
    waiting: str  # of one that joined the waiting list ("waiting")
    queued: Callable[[], None]  # called once they are in the outbox


@runtime_checkable
class RendersCreationCards(Protocol):
    """A change listener that can also render a creation's cards ahead of the insert."""

    def creation_cards(self, registration: Registration, now: datetime) -> CreationCards | None:
        """The cards of `registration` (its id and place not known yet: any values stand
        there), or None when they cannot be made ahead (the creation then takes the
        transaction, and the listener is called as for any change)."""
        ...


def _no_cards(registration: Registration, now: datetime) -> CreationCards:
    return CreationCards((), "", "", lambda: None)


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


def _registrant_csv(row: Row | Mapping[str, Any]) -> str:
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


async def _answers(connection: Connection, registration: Registration) -> Registration:
    async with connection.execute(
        "SELECT question_id, value FROM answers WHERE registration_id = ? ORDER BY question_id",
        (registration.id,),
    ) as cursor:
        rows = await cursor.fetchall()
    return replace(registration, answers=tuple((row[0], row[1]) for row in rows))


async def _newcomer_place(
    connection: Connection, registration: Registration, queued_at: str
) -> int:
    """The place in line of a registration just put there: everyone waiting (the session's
    count, storage/seats.py) less those behind it, whom there are none of unless the clock
    of another writer ran ahead. Counting those ahead instead would read the whole line."""
    async with connection.execute(
        """
        SELECT events.seats_waiting - (
            SELECT count(*) FROM registrations
            WHERE event_id = :event AND status = 'waiting'
                AND queued_at > CAST(:queued_at AS utc_text)
        ) - (
            -- Apart, as in SELECT_WITH_PLACE.
            SELECT count(*) FROM registrations
            WHERE event_id = :event AND status = 'waiting'
                AND queued_at = CAST(:queued_at AS utc_text) AND id > :id
        ) FROM events WHERE events.id = :event
        """,
        {
            "event": registration.event_id,
            "queued_at": queued_at,
            "id": registration.id,
        },
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


class AlreadyRegistered(Exception):
    def __init__(self, existing: Registration) -> None:
        super().__init__(f"registration {existing.id} is already active")
        self.existing = existing


class Registrations:
    def __init__(self, db: Database, listener: ChangeListener = nobody) -> None:
        self._db = db
        self._listener = listener
        # PostgreSQL: a creation in one round trip when its cards can be rendered ahead
        # (`_create_in_one_statement`). SQLite's transaction runs in-process and costs little.
        self._creation_cards: Callable[[Registration, datetime], CreationCards | None] | None
        self._creation_cards = None
        if db.dialect == "postgres":
            # Here, not at the top: it imports asyncpg, which SQLite never needs.
            from storage.postgres import SERIAL_LOCK

            self._serial_lock = SERIAL_LOCK
            if listener is nobody:
                self._creation_cards = _no_cards
            elif isinstance(listener, RendersCreationCards):
                self._creation_cards = listener.creation_cards

    async def create(self, new: NewRegistration, *, now: datetime) -> Registration:
        """Insert a registration: confirmed when a seat is free, else waiting (its `place`
        set); AlreadyRegistered if one is active.

        The database decides both, never a read-then-write here. The partial UNIQUE index
        keeps a double tap or a re-delivered update from making a second row. The seat is
        taken by the INSERT itself: one statement counts the seats and writes the status,
        inside a write transaction, so two people confirming the last seat at once cannot
        both get it (a count, then an insert, oversold 50 of 50 with capacity 5). On
        PostgreSQL, when the listener renders the cards ahead, the whole transaction is one
        statement (`_create_in_one_statement`).
        """
        stamp = utc_iso(now)
        phone_display = format_phone(new.phone)
        # The row's values, as both ways of creating it write them.
        values = {
            "event_id": new.event_id,
            "user_id": new.user_id,
            "username": new.username,
            "telegram_name": new.telegram_name,
            "full_name": new.full_name,
            "position": new.position,
            "organization": new.organization,
            "phone": new.phone,
            "phone_display": phone_display,
            "email": new.email,
            "consent_at": utc_iso(new.consent_at),
            "consent_version": new.consent_version,
            "now": stamp,
            "csv_cells": registrant_csv(
                new.full_name,
                new.position,
                new.organization,
                phone_display,
                new.email,
                new.user_id,
                new.username,
            ),
            "csv_rule": CSV_RULE,
            "source": new.source,
        }
        if self._creation_cards is not None:
            answers = tuple((key, value) for key, value in new.answers if value)
            # As the transaction below would return it, but for what only the insert knows.
            draft = Registration(
                id=0,
                event_id=new.event_id,
                user_id=new.user_id,
                username=new.username,
                telegram_name=new.telegram_name,
                full_name=new.full_name,
                position=new.position,
                organization=new.organization,
                phone=new.phone,
                email=new.email,
                consent_at=new.consent_at,
                consent_version=new.consent_version,
                status="confirmed",
                created_at=now,
                updated_at=now,
                source=new.source,
                answers=answers,
            )
            cards = self._creation_cards(draft, now)
            if cards is not None:
                return await self._create_in_one_statement(new, answers, cards, values)
        try:
            async with self._db.transaction() as connection:
                # One round trip to the database thread: the row comes back with the insert.
                rows = await connection.execute_fetchall(
                    """
                    INSERT INTO registrations (
                        event_id, user_id, username, telegram_name, full_name, position,
                        organization, phone, phone_display, email, consent_at, consent_version,
                        status, created_at, updated_at, csv_cells, csv_rule, queued_at, source
                    )
                    SELECT :event_id, :user_id, :username, :telegram_name, :full_name,
                        :position, :organization, :phone, :phone_display, :email, :consent_at,
                        :consent_version, seat.status, :now, :now, :csv_cells, :csv_rule,
                        -- (the CAST is for PostgreSQL: storage/migrations.py, utc_text)
                        CASE WHEN seat.status = 'waiting' THEN CAST(:queued_at AS utc_text) END,
                        :source
                    FROM (
                        -- Everyone waiting counts as taking a seat: one holds a freed seat
                        -- while its offer is open, and no newcomer goes ahead of the line.
                        SELECT CASE WHEN events.capacity IS NULL
                            OR events.seats_confirmed + events.seats_waiting < events.capacity
                            THEN 'confirmed' ELSE 'waiting' END AS status
                        FROM events WHERE events.id = :event_id
                    ) AS seat
                    RETURNING *
                    """,
                    {**values, "queued_at": stamp},
                )
                row = next(iter(rows), None)
                if row is None:
                    raise LookupError(f"event {new.event_id!r} is not in the database")
                registration = Registration.from_row(row)
                if new.answers:
                    await connection.executemany(
                        "INSERT INTO answers (registration_id, question_id, value) "
                        "VALUES (?, ?, ?)",
                        [(registration.id, key, value) for key, value in new.answers if value],
                    )
                    registration = replace(
                        registration,
                        answers=tuple((key, value) for key, value in new.answers if value),
                    )
                if registration.status == "waiting":
                    place = await _newcomer_place(connection, registration, stamp)
                    registration = replace(registration, place=place)
                kind: ChangeKind = "created" if registration.status == "confirmed" else "waiting"
                await self._listener(
                    connection,
                    RegistrationChange(kind, registration.id, new.event_id, registration),
                    now,
                )
        except IntegrityError:
            existing = await self.active(new.event_id, new.user_id)
            if existing is None:
                raise
            raise AlreadyRegistered(existing) from None
        return registration

    async def _create_in_one_statement(
        self,
        new: NewRegistration,
        answers: tuple[tuple[str, str], ...],
        cards: CreationCards,
        values: dict[str, object],
    ) -> Registration:
        """`create` on PostgreSQL as one statement in autocommit: the same rows, seat and
        cards, in one round trip, with the global serial lock held only while the server
        runs it (storage/migrations.py, step 21: `create_registration`)."""
        try:
            rows = await self._db.fetchall(
                """
                SELECT (created.registration).*, created.place
                FROM create_registration(
                    :serial_lock, :event_id, :user_id, :username, :telegram_name, :full_name,
                    :position, :organization, :phone, :phone_display, :email, :consent_at,
                    :consent_version, :now, :csv_cells, :csv_rule, :source, :question_ids,
                    :answer_values, :card_chats, :card_confirmed, :card_waiting
                ) AS created
                """,
                {
                    **values,
                    "serial_lock": self._serial_lock,
                    "question_ids": [key for key, _ in answers],
                    "answer_values": [value for _, value in answers],
                    "card_chats": list(cards.chat_ids),
                    "card_confirmed": cards.confirmed,
                    "card_waiting": cards.waiting,
                },
            )
        except IntegrityError:
            existing = await self.active(new.event_id, new.user_id)
            if existing is None:
                raise
            raise AlreadyRegistered(existing) from None
        if not rows:
            raise LookupError(f"event {new.event_id!r} is not in the database")
        if cards.chat_ids:
            cards.queued()
        return replace(Registration.from_row(rows[0]), answers=answers)

    async def get(self, registration_id: int) -> Registration | None:
        """The registration, unless its personal data was erased (then there is nothing of
        the person to show or change)."""
        row = await self._db.fetchone(
            f"{SELECT_WITH_PLACE} WHERE id = ? AND erased_at IS NULL", (registration_id,)
        )
        return await self._with_answers(Registration.from_row(row)) if row else None

    async def _with_answers(self, registration: Registration) -> Registration:
        rows = await self._db.fetchall(
            "SELECT question_id, value FROM answers WHERE registration_id = ? ORDER BY question_id",
            (registration.id,),
        )
        return replace(registration, answers=tuple((row[0], row[1]) for row in rows))

    async def active(self, event_id: str, user_id: int) -> Registration | None:
        """The person's registration for the session: confirmed, or waiting for a seat."""
        row = await self._db.fetchone(
            f"{SELECT_WITH_PLACE} WHERE event_id = ? AND user_id = ? AND {ACTIVE}",
            (event_id, user_id),
        )
        return await self._with_answers(Registration.from_row(row)) if row else None

    async def active_for_user(self, user_id: int) -> list[Registration]:
        rows = await self._db.fetchall(
            f"{SELECT_WITH_PLACE} WHERE user_id = ? AND {ACTIVE} ORDER BY created_at, id",
            (user_id,),
        )
        return [await self._with_answers(Registration.from_row(row)) for row in rows]

    async def update_answer(
        self, registration_id: int, *, user_id: int, question_id: str, value: str, now: datetime
    ) -> tuple[Registration, Registration] | None:
        """Change (or, with "", clear) one answer to an event question of the user's active
        registration: (before, after), or None. The same value twice changes nothing."""
        async with self._db.transaction() as connection:
            async with connection.execute(
                f"SELECT * FROM registrations WHERE id = ? AND user_id = ? AND {ACTIVE}",
                (registration_id, user_id),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return None
            old = await _answers(connection, Registration.from_row(row))
            if old.answer_map().get(question_id, "") == value:
                return old, old
            if value:
                await connection.execute(
                    "INSERT INTO answers (registration_id, question_id, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (registration_id, question_id) "
                    "DO UPDATE SET value = excluded.value",
                    (registration_id, question_id, value),
                )
            else:
                await connection.execute(
                    "DELETE FROM answers WHERE registration_id = ? AND question_id = ?",
                    (registration_id, question_id),
                )
            async with connection.execute(
                "UPDATE registrations SET updated_at = ? WHERE id = ? RETURNING *",
                (utc_iso(now), registration_id),
            ) as cursor:
                after = await cursor.fetchone()
            assert after is not None
            new = await _answers(connection, Registration.from_row(after))
            change = RegistrationChange("changed", new.id, new.event_id, new, old, question_id)
            await self._listener(connection, change, now)
        return old, new

    async def update_field(
        self, registration_id: int, *, user_id: int, field: str, value: str, now: datetime
    ) -> tuple[Registration, Registration] | None:
        """Change one field of the user's active registration: (before, after), or None."""
        if field not in EDITABLE_FIELDS:
            raise ValueError(f"{field!r} is not editable")
        async with self._db.transaction() as connection:
            async with connection.execute(
                f"SELECT * FROM registrations WHERE id = ? AND user_id = ? AND {ACTIVE}",
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
                        # Not erased rows: they have no values to make a text of (and a
                        # CHECK keeps their text empty).
                        "WHERE id > ? AND erased_at IS NULL "
                        "AND (csv_rule IS NOT ? OR csv_cells IS NULL) "
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
