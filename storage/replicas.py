"""What replicas on one PostgreSQL database agree on: whose turn a chat is, and who sends.

Both are PostgreSQL advisory locks held by a session (a connection) of their own: a replica
that dies, `kill -9` included, loses its connection and with it every lock it held, so
another replica takes over without a lease to wait out. Session locks, not transaction
locks: a chat's turn lasts as long as its updates take to handle, which may include waiting
out Telegram's flood limits, and no transaction should stay open that long.

Advisory locks belong to the database, not to a schema: two bots (or two test runs) in two
schemas of one database must not share them. So every key carries the schema's oid: a chat's
turn is the two-int key (schema, chat id folded to 32 bits: two chats that fold alike merely
take turns with each other), the leader the one-bigint key LEADER_BASE + schema (PostgreSQL
keeps the two key spaces apart; storage/postgres.py holds its own one-bigint keys).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import asyncpg

from storage.inbox import Waiting

logger = logging.getLogger(__name__)

LEADER_BASE = 0x7265_6769_0000_0000
# Requests for turns asked by one statement at most.
MAX_ASKS = 200


def _int4(value: int) -> int:
    """The low 32 bits as PostgreSQL's signed int4."""
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def fold(chat_id: int) -> int:
    """A chat id (up to 52 bits, negative for groups) as an int4 key half."""
    return _int4(chat_id ^ (chat_id >> 32))


Connect = Callable[[], Awaitable[asyncpg.Connection]]


class _Session:
    """One connection of its own, one statement at a time, opened again when it was lost
    (the locks it held are gone then: `generation` tells holders so)."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._connection: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self.generation = 0
        self.schema = 0  # the oid of the connection's current schema

    async def fetchval(
        self, sql: str, *args: object, keyed: Callable[[int], tuple[object, ...]] | None = None
    ) -> object:
        """One statement; `keyed` makes its arguments from the schema's oid."""
        rows, _ = await self.fetch(sql, *args, keyed=keyed)
        return rows[0][0] if rows else None

    async def fetch(
        self, sql: str, *args: object, keyed: Callable[[int], tuple[object, ...]] | None = None
    ) -> tuple[list[asyncpg.Record], int]:
        """One statement's rows, with the generation of the connection that ran it."""
        async with self._lock:
            if self._connection is None or self._connection.is_closed():
                self._connection = await self._connect()
                self.generation += 1
                self.schema = int(
                    await self._connection.fetchval(
                        "SELECT oid::bigint FROM pg_namespace WHERE nspname = current_schema()"
                    )
                )
            if keyed is not None:
                args = keyed(self.schema)
            try:
                rows: list[asyncpg.Record] = await self._connection.fetch(sql, *args)
                return rows, self.generation
            except (
                OSError,
                asyncpg.exceptions.ConnectionDoesNotExistError,
                asyncpg.exceptions.InterfaceError,
            ):
                # The session and its locks are gone; the next call opens a new one.
                await self._drop()
                raise

    def alive(self, generation: int) -> bool:
        """Whether the connection of `generation` is still the open one (a lock it took is
        still held)."""
        connection = self._connection
        return (
            connection is not None and not connection.is_closed() and self.generation == generation
        )

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    async def close(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await self._connection.close()
                self._connection = None


@dataclass(frozen=True)
class Turn:
    """A chat's turn, held: what waited for it when it was taken."""

    generation: int  # of the connection holding it (see `ChatTurns.still_held`)
    waiting: list[Waiting]  # the chat's updates not yet handled, in order
    # The row of the conversation asked for, as fsm_states holds it: (state, data,
    # recent_updates), or None when it has no row.
    conversation: tuple[str | None, str, str] | None
    # A private chat's person's language as stored (storage/languages.py), or None when
    # they have none (a group's turn has none either).
    language: str | None = None


@dataclass(eq=False)
class _Ask:
    """A request for a chat's turn (passing: given back first), waiting for its answer."""

    passing: bool
    chat_id: int
    conversation: str | None
    received: list[int]
    language: str | None  # the person's, to store if they have none (private chats)
    done: bool = False
    turn: Turn | None = None
    error: BaseException | None = None


class ChatTurns:
    """Whose turn each chat is: one replica at a time handles a chat's updates, so they keep
    their order across replicas (bot/updates.py: SharedIntake).

    The rule that keeps an update from waiting with no replica on it: a replica that holds a
    chat's turn looks at the chat's updates again each time it gives the turn back
    (`pass_on`), and takes the turn again if any wait. So a replica that received an update
    and found the turn taken need not ask again: it wrote the update before asking, the
    holder gives the turn back after that, and then sees it. One round trip each way, which
    also brings the waiting updates, the conversation's row and, in a private chat, the
    person's language (storage/migrations.py, steps 19 and 20)."""

    def __init__(self, connect: Connect) -> None:
        self._session = _Session(connect)
        self._asks: list[_Ask] = []
        self._asking = asyncio.Lock()

    async def take(
        self,
        chat_id: int,
        *,
        conversation: str | None = None,
        received: Collection[int] = (),
        language: str | None = None,
    ) -> Turn | None:
        """Take the chat's turn if no replica has it (never waits), with the chat's waiting
        updates, the row of `conversation` and, for a private chat, the person's language;
        `received`: the ids this replica received (not counted as attempts); `language`:
        the one to store for the person if they have none, taken or not (their first
        message, received here)."""
        return await self._turn(False, chat_id, conversation, received, language)

    async def pass_on(
        self,
        chat_id: int,
        *,
        conversation: str | None = None,
        received: Collection[int] = (),
        language: str | None = None,
    ) -> Turn | None:
        """Give the turn back; then, if updates of the chat wait (received by any replica
        meanwhile), take it again as `take` does. None: nothing waits, or another replica
        took the chat."""
        return await self._turn(True, chat_id, conversation, received, language)

    async def _turn(
        self,
        passing: bool,
        chat_id: int,
        conversation: str | None,
        received: Collection[int],
        language: str | None,
    ) -> Turn | None:
        # Asked while a statement is on its way are asked together by the next one (one round
        # trip for the turns of many chats when a replica is busy; at once when it is not).
        ask = _Ask(passing, chat_id, conversation, list(received), language)
        self._asks.append(ask)
        async with self._asking:
            if not ask.done:
                batch, self._asks = self._asks[:MAX_ASKS], self._asks[MAX_ASKS:]
                try:
                    await self._ask(batch)
                except BaseException as error:
                    for other in batch:
                        other.done, other.error = True, error
                    raise
        if ask.error is not None:
            raise ask.error
        return ask.turn

    async def _ask(self, batch: list[_Ask]) -> None:
        rows, generation = await self._session.fetch(
            "SELECT * FROM turns($1, $2, $3, $4, $5, $6, $7, $8)",
            keyed=lambda schema: (
                _int4(schema),
                [ask.passing for ask in batch],
                [ask.chat_id for ask in batch],
                [fold(ask.chat_id) for ask in batch],
                [ask.conversation for ask in batch],
                [ask.chat_id for ask in batch for _ in ask.received],
                [update_id for ask in batch for update_id in ask.received],
                [ask.language for ask in batch],
            ),
        )
        answers: dict[int, list[asyncpg.Record]] = {}
        for row in rows:
            answers.setdefault(row["request"], []).append(row)
        for position, ask in enumerate(batch, start=1):
            ask.done = True
            answer = answers.get(position)
            if not answer or not answer[0]["taken"]:
                continue
            first = answer[0]
            ask.turn = Turn(
                generation=generation,
                waiting=[
                    Waiting(
                        row["waiting_id"],
                        ask.chat_id,
                        row["waiting_payload"],
                        row["waiting_attempts"],
                    )
                    for row in answer
                    if row["waiting_id"] is not None
                ],
                conversation=None
                if first["fsm_data"] is None
                else (first["fsm_state"], first["fsm_data"], first["fsm_recent"]),
                language=first["language"],
            )

    @property
    def generation(self) -> int:
        """Which connection the turns taken now are held by (see `still_held`)."""
        return self._session.generation

    def still_held(self, generation: int) -> bool:
        """False once the connection that held the turns of `generation` is gone: PostgreSQL
        let go of them, and another replica may take any of those chats."""
        return self._session.alive(generation)

    async def give_back(self, chat_id: int) -> None:
        try:
            await self._session.fetchval(
                "SELECT pg_advisory_unlock($1, $2)",
                keyed=lambda schema: (_int4(schema), fold(chat_id)),
            )
        except (OSError, asyncpg.PostgresError, asyncpg.exceptions.InterfaceError) as error:
            # The session is gone, and the turn with it.
            logger.warning("Could not give back chat %d's turn: %s", chat_id, type(error).__name__)

    async def close(self) -> None:
        await self._session.close()


class Leadership:
    """One replica at a time runs the sender and the scheduled work (digest, reminders,
    waiting lists, retention, broadcasts' reports), so Telegram's limits per bot hold across
    replicas and nothing scheduled runs twice."""

    def __init__(self, connect: Connect) -> None:
        self._session = _Session(connect)
        self._held_in: int | None = None

    async def try_lead(self) -> bool:
        held = bool(
            await self._session.fetchval(
                "SELECT pg_try_advisory_lock($1)", keyed=lambda schema: (LEADER_BASE + schema,)
            )
        )
        if held:
            self._held_in = self._session.generation
        return held

    async def still_leading(self) -> bool:
        """False once the session that took the lock is gone (the lock went with it)."""
        if self._held_in is None:
            return False
        try:
            await self._session.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.exceptions.InterfaceError):
            self._held_in = None
            return False
        if self._session.generation != self._held_in:
            self._held_in = None
            return False
        return True

    async def close(self) -> None:
        self._held_in = None
        await self._session.close()
