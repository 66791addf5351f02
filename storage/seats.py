"""Seats and the waiting list: who holds a seat is decided by the database.

A registration takes a seat when it is made (`Registrations.create`, one statement) or waits
in line. Each session's row in `events` holds its counts (`seats_confirmed`, `seats_waiting`,
`seats_offered`), kept by triggers on `registrations` (storage/migrations.py, step 22): a
decision reads one row, however many people registered.

A seat that frees (a withdrawal, /forget, an erasure on request, a raised capacity, an offer
let run out) is offered to the first in line *in the same transaction* that freed it:
the offer is a row in the outbox with its button, so a crash after the commit still sends it,
once (the sender marks it sent), and a crash before it leaves the seat taken, as before.

While an offer is open the seat is held for it: a newcomer counts everyone waiting as taking
a seat (see `Registrations.create`), so nobody goes ahead of the line. An offer is open for
the session's `offer_hours` or until its registration deadline, whichever comes first; taken,
the registration is confirmed; let run out, the person goes to the end of the line and the
seat passes on (`tick`). Once the deadline passes no offer is made, and the people still in
line are told, once, that no seat freed (`waitlist_closed_at`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bot.domain.events import EventCatalog
from bot.domain.texts import t, use_locale
from bot.domain.timefmt import format_datetime
from storage.database import NO_LIMIT, Connection, Database, Row, utc_iso
from storage.languages import reader_language
from storage.outbox import Outbox
from storage.registrations import (
    SELECT_WITH_PLACE,
    ChangeListener,
    Registration,
    RegistrationChange,
    nobody,
)

logger = logging.getLogger(__name__)

# Offers made in one transaction at most. A capacity raised by thousands is offered in
# transactions of this many, one after another: each holds the writer (SQLite) or the serial
# lock (PostgreSQL) only so long, and PostgreSQL walks every version of the session's row
# updated again in one transaction (storage/migrations.py, step 22).
OFFERS_AT_ONCE = 500

# The offer's inline keyboard for a registration, as Bot API JSON (the handlers' callback
# data: storage does not build keyboards, the wiring passes this in).
OfferMarkup = Callable[[int], str]


# Every session's counts made anew from its registrations (the move from SQLite copies rows
# with the triggers off: storage/transfer.py).
RECOUNT = """
    UPDATE events SET
        seats_confirmed = (SELECT count(*) FROM registrations
            WHERE event_id = events.id AND status = 'confirmed'),
        seats_waiting = (SELECT count(*) FROM registrations
            WHERE event_id = events.id AND status = 'waiting'),
        seats_offered = (SELECT count(*) FROM registrations
            WHERE event_id = events.id AND status = 'waiting' AND offered_at IS NOT NULL)
"""


def no_markup(registration_id: int) -> str:
    return json.dumps({"inline_keyboard": []})


@dataclass(frozen=True, slots=True)
class SeatCount:
    """A session's seats now: confirmed registrations, the capacity (None: unlimited), people
    waiting, and how many of them hold an offer of a freed seat."""

    confirmed: int
    capacity: int | None
    waiting: int
    offered: int

    @property
    def left(self) -> int | None:
        """Seats a newcomer could still take (None: unlimited)."""
        if self.capacity is None:
            return None
        return max(0, self.capacity - self.confirmed - self.waiting)

    @property
    def full(self) -> bool:
        return self.left == 0


async def seat_count(db: Database, event_id: str) -> SeatCount:
    """A session's seats now: for any reader that has the database (the digest)."""
    row = await db.fetchone(
        "SELECT seats_confirmed, capacity, seats_waiting, seats_offered FROM events WHERE id = ?",
        (event_id,),
    )
    if row is None:
        return SeatCount(0, None, 0, 0)
    return SeatCount(int(row[0]), row[1], int(row[2]), int(row[3]))


async def _in_line(connection: Connection) -> list[str]:
    """Sessions with someone in line who holds no offer."""
    async with connection.execute(
        "SELECT id FROM events WHERE seats_waiting > seats_offered"
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


TakeOutcome = Literal["taken", "already", "expired", "gone"]


@dataclass(frozen=True, slots=True)
class Taken:
    outcome: TakeOutcome
    registration: Registration | None = None  # taken, already, expired: as it is now


class Seats:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        catalog: EventCatalog,
        listener: ChangeListener = nobody,
        *,
        offer_markup: OfferMarkup = no_markup,
        offers_at_once: int = OFFERS_AT_ONCE,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._catalog = catalog
        self._listener = listener
        self._offer_markup = offer_markup
        self._offers_at_once = offers_at_once

    async def seats(self, event_id: str) -> SeatCount:
        """The session's seats (the greeting, the summary, /stats, the digest)."""
        return await seat_count(self._db, event_id)

    async def take(self, registration_id: int, *, user_id: int, now: datetime) -> Taken:
        """The person takes the seat offered to them: confirmed as if they had just confirmed.
        Pressed twice, or after the offer ran out, it changes nothing and says so."""
        async with self._db.transaction() as connection:
            async with connection.execute(
                f"{SELECT_WITH_PLACE} WHERE id = ? AND user_id = ? AND erased_at IS NULL",
                (registration_id, user_id),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None or row["status"] == "withdrawn":
                return Taken("gone")
            registration = Registration.from_row(row)
            if registration.status == "confirmed":
                return Taken("already", registration)
            expires = registration.offer_expires_at
            if expires is None or now > expires:
                return Taken("expired", registration)
            async with connection.execute(
                "UPDATE registrations SET status = 'confirmed', queued_at = NULL, "
                "offered_at = NULL, offer_expires_at = NULL, updated_at = ? "
                "WHERE id = ? RETURNING *",
                (utc_iso(now), registration_id),
            ) as cursor:
                promoted = await cursor.fetchone()
            assert promoted is not None
            taken = Registration.from_row(promoted)
            await self._listener(
                connection,
                RegistrationChange("promoted", taken.id, taken.event_id, taken),
                now,
            )
        logger.info("Registration %d took an offered seat", registration_id)
        return Taken("taken", taken)

    async def tick(self, now: datetime) -> None:
        """The waiting lists' clock: offers run out pass on, free seats (a raised capacity)
        are offered, and lists whose deadline passed are told once that no seat freed."""
        async with self._db.transaction(heavy=True) as connection:
            stamp = utc_iso(now)
            # Let run out: to the end of the line, so the seat goes to the next person. Told
            # so, unless the deadline ended it (then the list is told it is over).
            async with connection.execute(
                "SELECT id, user_id, event_id, offer_expires_at < (SELECT registration_deadline "
                "FROM events WHERE events.id = registrations.event_id) AS before_deadline "
                "FROM registrations WHERE status = 'waiting' AND offer_expires_at < ? "
                "ORDER BY queued_at, id",
                (stamp,),
            ) as cursor:
                ran_out = list(await cursor.fetchall())
            await connection.executemany(
                "UPDATE registrations SET offered_at = NULL, offer_expires_at = NULL, "
                "queued_at = ? WHERE id = ?",
                [(stamp, row["id"]) for row in ran_out],
            )
            for row in ran_out:
                if not row["before_deadline"]:
                    continue
                with use_locale(await reader_language(connection, row["user_id"])):
                    event = self._catalog.get(row["event_id"])
                    title = event.title if event else row["event_id"]
                    text = t("offer_ran_out", title=title)
                await self._outbox.add(
                    connection,
                    [row["user_id"]],
                    "waitlist",
                    text,
                    now=now,
                    registration_id=row["id"],
                )
            offered = await self.fill_in(connection, await _in_line(connection), now)
            await self._close_lists(connection, now)
        # The rest of a large batch of free seats, in transactions of their own.
        while offered == self._offers_at_once:
            async with self._db.transaction(heavy=True) as connection:
                offered = await self.fill_in(connection, await _in_line(connection), now)

    async def fill_in(self, connection: Connection, event_ids: Iterable[str], now: datetime) -> int:
        """Offer each session's free seats to the first in line, inside the caller's
        transaction (the one that freed them); returns how many were offered, at most
        `offers_at_once` (the next tick offers the rest)."""
        offered = 0
        for event_id in dict.fromkeys(event_ids):
            if offered == self._offers_at_once:
                break
            async with connection.execute(
                """
                SELECT capacity, offer_hours, registration_deadline, in_file,
                    seats_confirmed AS confirmed, seats_offered AS offered
                FROM events WHERE id = ?
                """,
                (event_id,),
            ) as cursor:
                event_row = await cursor.fetchone()
            if event_row is None or not event_row["in_file"]:
                continue
            deadline = datetime.fromisoformat(event_row["registration_deadline"])
            if now > deadline:
                continue
            capacity = event_row["capacity"]
            # An unlimited session offers a seat to everyone in line.
            free = NO_LIMIT
            if capacity is not None:
                free = capacity - event_row["confirmed"] - event_row["offered"]
                if free <= 0:  # full, or over a lowered capacity
                    continue
            async with connection.execute(
                f"{SELECT_WITH_PLACE} WHERE event_id = ? AND status = 'waiting' "
                "AND offered_at IS NULL ORDER BY queued_at, id LIMIT ?",
                (event_id, min(free, self._offers_at_once - offered)),
            ) as cursor:
                rows = list(await cursor.fetchall())
            expires = min(now + timedelta(hours=event_row["offer_hours"]), deadline)
            for row in rows:
                await self._offer(connection, row, now, expires)
            offered += len(rows)
        return offered

    async def _offer(
        self, connection: Connection, row: Row, now: datetime, expires: datetime
    ) -> None:
        async with connection.execute(
            "UPDATE registrations SET offered_at = ?, offer_expires_at = ? WHERE id = ? "
            "RETURNING *",
            (utc_iso(now), utc_iso(expires), row["id"]),
        ) as cursor:
            updated = await cursor.fetchone()
        assert updated is not None
        registration = Registration.from_row(updated)
        # In the language of the person offered, not of whoever freed the seat.
        with use_locale(await reader_language(connection, registration.user_id)):
            event = self._catalog.get(registration.event_id)
            title = event.title if event else registration.event_id
            zone = event.timezone if event else None
            text = t("offer_message", title=title, until=format_datetime(expires, zone))
            markup = self._offer_markup(registration.id)
        await self._outbox.add(
            connection,
            [registration.user_id],
            "offer",
            text,
            now=now,
            registration_id=registration.id,
            reply_markup=markup,
        )
        await self._listener(
            connection,
            RegistrationChange("offered", registration.id, registration.event_id, registration),
            now,
        )
        logger.info("Registration %d: a freed seat offered", registration.id)

    async def _close_lists(self, connection: Connection, now: datetime) -> None:
        stamp = utc_iso(now)
        async with connection.execute(
            "SELECT id FROM events WHERE waitlist_closed_at IS NULL AND registration_deadline < ?",
            (stamp,),
        ) as cursor:
            closing = [row[0] for row in await cursor.fetchall()]
        for event_id in closing:
            async with connection.execute(
                "SELECT id, user_id FROM registrations WHERE event_id = ? AND status = 'waiting' "
                "ORDER BY queued_at, id",
                (event_id,),
            ) as cursor:
                rows = list(await cursor.fetchall())
            for row in rows:
                with use_locale(await reader_language(connection, row["user_id"])):
                    event = self._catalog.get(event_id)
                    text = t("waitlist_closed", title=event.title if event else event_id)
                await self._outbox.add(
                    connection,
                    [row["user_id"]],
                    "waitlist",
                    text,
                    now=now,
                    registration_id=row["id"],
                )
            await connection.execute(
                "UPDATE events SET waitlist_closed_at = ? WHERE id = ?", (stamp, event_id)
            )
            if rows:
                logger.info("Event %s: %d people in line told no seat freed", event_id, len(rows))
