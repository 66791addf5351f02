"""aiogram FSM storage on the shared SQLite database: one JSON row per conversation key."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, overload

import orjson
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import (
    BaseStorage,
    DefaultKeyBuilder,
    KeyBuilder,
    StateType,
    StorageKey,
)

from bot.domain.clock import Clock, utc_now
from storage.database import Connection, Database, utc_iso
from storage.group_commit import GroupCommit

_EMPTY_DATA = "{}"
# How many update ids a conversation remembers: more than a person can send between a
# crash and the moment Telegram delivers the unconfirmed updates again.
RECENT_UPDATES = 20


def _dump(data: Mapping[str, Any]) -> str:
    # orjson writes UTF-8 as it is (Cyrillic readable in the file, about half the size of
    # json's escapes) about 6 times faster than json (a draft: 3.4 -> 0.6 us); keys that are
    # not strings become strings, as json makes them.
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()


def _dump_ids(ids: Sequence[int]) -> str:
    return orjson.dumps(ids).decode()


def _load(text: str) -> dict[str, Any]:
    # orjson reads the same objects as json.loads, several times faster (pyproject.toml).
    data: dict[str, Any] = orjson.loads(text)
    return data


async def _prune(connection: Connection, key: str) -> None:
    # A row with no state and no data means the same as a missing row; deleting it keeps
    # the table from growing with every finished conversation.
    await connection.execute(
        "DELETE FROM fsm_states WHERE key = ? AND state IS NULL AND data = ?",
        (key, _EMPTY_DATA),
    )


async def _write_data(connection: Connection, key: str, data: Mapping[str, Any], now: str) -> None:
    await connection.execute(
        """
        INSERT INTO fsm_states (key, data, updated_at) VALUES (?, ?, ?)
        ON CONFLICT (key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at
        """,
        (key, _dump(data), now),
    )
    await _prune(connection, key)


@dataclass(frozen=True)
class _Row:
    state: str | None
    # JSON text, decoded afresh by each read, so every caller gets its own copy (as from
    # MemoryStorage).
    data: str
    recent: tuple[int, ...]
    stored: bool

    @property
    def empty(self) -> bool:
        # No state and no data means the same as a missing row (see `_prune`).
        return self.state is None and self.data == _EMPTY_DATA


_MISSING = _Row(state=None, data=_EMPTY_DATA, recent=(), stored=False)

# One round trip for all an update needs to know about its conversation before it is handled.
# handled_updates belongs to storage/updates.py; it is read here only to save that trip.
_LOAD = """
    SELECT fsm_states.state, fsm_states.data, fsm_states.recent_updates,
        EXISTS (SELECT 1 FROM handled_updates WHERE update_id = :update_id) AS handled
    FROM (SELECT :key AS key) AS wanted LEFT JOIN fsm_states ON fsm_states.key = wanted.key
"""


# Conversations written by one statement at most (SQLite and PostgreSQL allow 32,766 parameters).
_ROWS_PER_WRITE = 500


@functools.cache
def _delete(rows: int) -> str:
    return "DELETE FROM fsm_states WHERE key IN (" + ", ".join(["?"] * rows) + ")"


@functools.cache
def _upsert(rows: int) -> str:
    return (
        "INSERT INTO fsm_states (key, state, data, recent_updates, updated_at) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?)"] * rows)
        + " ON CONFLICT (key) DO UPDATE SET state = excluded.state, data = excluded.data, "
        "recent_updates = excluded.recent_updates, updated_at = excluded.updated_at"
    )


def _row(state: str | None, data: str | None, recent: str | None) -> _Row:
    if data is None:
        return _MISSING
    return _Row(state=state, data=data, recent=tuple(orjson.loads(recent or "[]")), stored=True)


@dataclass(eq=False)
class UpdateScope:
    """The update being handled and the conversation whose lock it holds.

    aiogram's event isolation lets one update of a conversation run at a time, and every
    write to its row goes through `SQLiteStorage`: while the update runs, the row in the
    database is the row here. So it is read once (when aiogram's FSM middleware asks for the
    state, together with whether the update was handled before) and every later
    get_state/get_data is answered from memory instead of a round trip to aiosqlite's thread.
    """

    update_id: int
    key: str | None
    row: _Row | None = None  # None: not read yet, or unknown after a failed write
    handled: bool = False
    storage_key: StorageKey | None = None  # whose text `key` is


_SCOPE: ContextVar[UpdateScope | None] = ContextVar("fsm_update_scope", default=None)
# A conversation's row as the caller read it just before the update (see `SQLiteStorage.known`).
_KNOWN: ContextVar[tuple[str, _Row] | None] = ContextVar("fsm_known_row", default=None)


class _Handling:
    # A class, not @contextmanager: its generator costs more, on every update.
    __slots__ = ("_scope", "_token")

    def __init__(self, scope: UpdateScope) -> None:
        self._scope = scope

    def __enter__(self) -> UpdateScope:
        self._token = _SCOPE.set(self._scope)
        return self._scope

    def __exit__(self, *exc_info: object) -> None:
        _SCOPE.reset(self._token)


class SQLiteStorage(BaseStorage):
    """Behaves like aiogram's `MemoryStorage`, but survives restarts.

    Data must be JSON-serialisable (FSM data holds JSON types only, see STYLE.md): tuples
    come back as lists, like in aiogram's Redis storage.
    """

    def __init__(
        self, db: Database, key_builder: KeyBuilder | None = None, *, clock: Clock = utc_now
    ) -> None:
        self._db = db
        # `updated_at` says when the form was last touched: drafts expire by it
        # (storage/drafts.py), so it follows the bot's clock, which tests move.
        self._clock = clock
        # MemoryStorage keys on the whole StorageKey, so the default key includes every
        # field of it: two bots or two destinies must never share a conversation.
        self._key_builder = key_builder or DefaultKeyBuilder(
            with_bot_id=True, with_business_connection_id=True, with_destiny=True
        )
        self._writes = GroupCommit(self._write_rows, name="fsm-write")

    async def _write_rows(self, rows: list[tuple[str, str | None, str | None, str]]) -> list[None]:
        """Conversations' rows written by one statement: those of updates in hand together,
        while an earlier write was on its way (PostgreSQL; on SQLite a write never is, and
        each goes alone). A row whose data is None is deleted (a conversation that ended).
        Bookkeeping (`Database.record`): a row lost with a crash of the database server
        leaves its update in the inbox, handled again."""
        now = self._now()
        if len({row[0] for row in rows}) < len(rows):
            # Never from the updates' scopes (one update of a conversation at a time); in
            # order, should it happen: one statement cannot change a row twice.
            for row in rows:
                await self._write([row], now)
        else:
            for start in range(0, len(rows), _ROWS_PER_WRITE):
                await self._write(rows[start : start + _ROWS_PER_WRITE], now)
        return [None] * len(rows)

    async def _write(self, rows: list[tuple[str, str | None, str | None, str]], now: str) -> None:
        gone = [row[0] for row in rows if row[2] is None]
        kept = [row for row in rows if row[2] is not None]
        values = tuple(value for row in kept for value in (*row, now))
        if not kept:
            await self._db.record(_delete(len(gone)), tuple(gone))
        elif not gone:
            await self._db.record(_upsert(len(kept)), values)
        elif self._db.dialect == "postgres":
            # One statement for both (the keys are distinct): a data-modifying WITH.
            await self._db.record(
                f"WITH gone AS ({_delete(len(gone))}) {_upsert(len(kept))}", (*gone, *values)
            )
        else:
            await self._db.record(_delete(len(gone)), tuple(gone))
            await self._db.record(_upsert(len(kept)), values)

    def _key(self, key: StorageKey) -> str:
        # Within an update, every call is about its own conversation, with the very StorageKey
        # the scope was opened with: its text is built once, not at each get/set.
        scope = _SCOPE.get()
        if scope is not None and key is scope.storage_key and scope.key is not None:
            return scope.key
        return self._key_builder.build(key)

    def _now(self) -> str:
        return utc_iso(self._clock())

    async def close(self) -> None:
        # The Database belongs to the application, which closes it after the dispatcher stops.
        pass

    def handling(self, update_id: int, key: StorageKey | None) -> _Handling:
        """Scope of one update (see `UpdateScope`); `key` is the conversation whose lock the
        update holds, None when it has none."""
        scope = UpdateScope(update_id, None if key is None else self._key(key), storage_key=key)
        known = _KNOWN.get()
        if known is not None and known[0] == scope.key:
            scope.row = known[1]
        return _Handling(scope)

    def key_text(self, key: StorageKey) -> str:
        """The conversation's key as fsm_states holds it."""
        return self._key_builder.build(key)

    @contextmanager
    def known(self, key: str, row: tuple[str | None, str, str] | None) -> Iterator[None]:
        """Within this block, an update of conversation `key` starts from `row` (state, data,
        recent_updates as stored; None: no row) instead of reading it, and as not handled
        before. Only for a caller that read both after the last write that could change them:
        a replica holding the chat's turn, which read the row and the update still in the
        inbox (so not handled) in the round trip that took the turn (storage/replicas.py)."""
        token = _KNOWN.set((key, _MISSING if row is None else _row(*row)))
        try:
            yield
        finally:
            _KNOWN.reset(token)

    def _scope_of(self, db_key: str) -> UpdateScope | None:
        scope = _SCOPE.get()
        return scope if scope is not None and scope.key == db_key else None

    async def _load(self, db_key: str, update_id: int) -> tuple[_Row, bool]:
        [row] = await self._db.fetchall(_LOAD, {"key": db_key, "update_id": update_id})
        return _row(row["state"], row["data"], row["recent_updates"]), bool(row["handled"])

    async def _read(self, db_key: str) -> _Row:
        scope = self._scope_of(db_key)
        if scope is None:
            rows = await self._db.fetchall(
                "SELECT state, data, recent_updates FROM fsm_states WHERE key = ?", (db_key,)
            )
            return _row(*rows[0]) if rows else _MISSING
        if scope.row is None:
            scope.row, scope.handled = await self._load(db_key, scope.update_id)
        return scope.row

    async def _store(self, scope: UpdateScope, row: _Row, *, prune: bool = False) -> None:
        """Write the conversation's row in one statement (the scope knows the rest of it)."""
        assert scope.key is not None
        try:
            if prune and row.empty:
                if row.stored:
                    await self._writes((scope.key, None, None, "[]"))
                row = _MISSING
            else:
                await self._writes((scope.key, row.state, row.data, _dump_ids(row.recent)))
                row = replace(row, stored=True)
        except BaseException:
            scope.row = None  # whatever happened, the next read asks the database
            raise
        scope.row = row

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        db_key = self._key(key)
        scope = self._scope_of(db_key)
        if scope is not None:
            row = await self._read(db_key)
            await self._store(scope, replace(row, state=value), prune=True)
            return
        async with self._db.transaction() as connection:
            await connection.execute(
                """
                INSERT INTO fsm_states (key, state, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (key) DO UPDATE
                    SET state = excluded.state, updated_at = excluded.updated_at
                """,
                (db_key, value, self._now()),
            )
            await _prune(connection, db_key)

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self._read(self._key(key))).state

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        # Same check as MemoryStorage: a Mapping that is not a dict is refused too.
        if not isinstance(data, dict):
            msg = f"Data must be a dict or dict-like object, got {type(data).__name__}"
            raise DataNotDictLikeError(msg)
        db_key = self._key(key)
        scope = self._scope_of(db_key)
        if scope is not None:
            row = await self._read(db_key)
            await self._store(scope, replace(row, data=_dump(data)), prune=True)
            return
        async with self._db.transaction() as connection:
            await _write_data(connection, db_key, data, self._now())

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return _load((await self._read(self._key(key))).data)

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        db_key = self._key(key)
        scope = self._scope_of(db_key)
        if scope is not None:
            cached = await self._read(db_key)
            current = _load(cached.data)
            current.update(data)
            await self._store(scope, replace(cached, data=_dump(current)), prune=True)
            return current
        # The base class reads and writes in two steps; two handlers updating the same key
        # between them would lose one update, so the whole merge is one transaction.
        async with self._db.transaction() as connection:
            async with connection.execute(
                "SELECT data FROM fsm_states WHERE key = ?", (db_key,)
            ) as cursor:
                row = await cursor.fetchone()
            current = {} if row is None else _load(row["data"])
            current.update(data)
            await _write_data(connection, db_key, current, self._now())
        return current

    @overload
    async def get_value(self, storage_key: StorageKey, dict_key: str) -> Any | None: ...

    @overload
    async def get_value(self, storage_key: StorageKey, dict_key: str, default: Any) -> Any: ...

    async def get_value(
        self,
        storage_key: StorageKey,
        dict_key: str,
        default: Any | None = None,
    ) -> Any | None:
        # Decoded afresh from JSON, so the caller gets its own copy, as from MemoryStorage.
        data = await self.get_data(storage_key)
        return data.get(dict_key, default)

    async def set_state_and_data(
        self, key: StorageKey, state: StateType, data: Mapping[str, Any]
    ) -> None:
        """Move a conversation in one write, stamped with the update that moved it.

        After a crash Telegram delivers unconfirmed updates again; an update whose move
        was saved must not be applied twice (a name taken again as the position), and
        one whose move was not saved must be. The stamp, written with the move, decides.
        """
        if not isinstance(data, dict):
            msg = f"Data must be a dict or dict-like object, got {type(data).__name__}"
            raise DataNotDictLikeError(msg)
        value = state.state if isinstance(state, State) else state
        db_key = self._key(key)
        current = _SCOPE.get()
        update_id = None if current is None else current.update_id
        scope = self._scope_of(db_key)
        if scope is not None:
            row = await self._read(db_key)
            recent = _stamped(row.recent, update_id)
            await self._store(scope, replace(row, state=value, data=_dump(data), recent=recent))
            return
        async with self._db.transaction() as connection:
            rows = await connection.execute_fetchall(
                "SELECT recent_updates FROM fsm_states WHERE key = ?", (db_key,)
            )
            recent = tuple(orjson.loads(next(iter(rows))[0])) if rows else ()
            await connection.execute(
                """
                INSERT INTO fsm_states (key, state, data, recent_updates, updated_at)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET state = excluded.state, data = excluded.data,
                    recent_updates = excluded.recent_updates, updated_at = excluded.updated_at
                """,
                (db_key, value, _dump(data), _dump_ids(_stamped(recent, update_id)), self._now()),
            )

    async def seen(self, key: StorageKey, update_id: int) -> tuple[bool, bool]:
        """Whether `update_id` was handled before, and whether it already moved this
        conversation: both in one round trip, none when the update's scope has read them."""
        db_key = self._key(key)
        scope = self._scope_of(db_key)
        if scope is not None and scope.update_id == update_id:
            row = await self._read(db_key)
            return scope.handled, update_id in row.recent
        row, handled = await self._load(db_key, update_id)
        return handled, update_id in row.recent

    async def clear(self, key: StorageKey) -> None:
        """End a conversation in one write (aiogram's FSMContext.clear sets the state, then
        the data: two); see `Conversation`."""
        db_key = self._key(key)
        scope = self._scope_of(db_key)
        if scope is not None:
            row = await self._read(db_key)
            await self._store(scope, replace(row, state=None, data=_EMPTY_DATA), prune=True)
            return
        await self._db.execute("DELETE FROM fsm_states WHERE key = ?", (db_key,))

    async def clear_in(self, connection: Connection, key: StorageKey) -> None:
        """End a conversation inside the caller's transaction (see `end_in`)."""
        db_key = self._key(key)
        scope = self._scope_of(db_key)
        if scope is not None:
            # Committed or rolled back with the caller's transaction: the next read asks.
            scope.row = None
        await connection.execute("DELETE FROM fsm_states WHERE key = ?", (db_key,))


class Conversation(FSMContext):
    """aiogram's FSMContext, with `clear()` one write on SQLiteStorage (the form's end, /cancel:
    each statement is CPU on the update, bench/ANALYSIS.md)."""

    async def clear(self) -> None:
        if isinstance(self.storage, SQLiteStorage):
            await self.storage.clear(self.key)
        else:
            await super().clear()


def _stamped(recent: tuple[int, ...], update_id: int | None) -> tuple[int, ...]:
    if update_id is None or update_id in recent:
        return recent
    return (*recent, update_id)[-RECENT_UPDATES:]


async def end_in(connection: Connection, context: FSMContext) -> None:
    """End the conversation in the same transaction as the write it led to: neither happens
    without the other, so a failed write leaves the conversation to try again, and an update
    delivered again after the write finds it ended (no second write)."""
    if isinstance(context.storage, SQLiteStorage):
        await context.storage.clear_in(connection, context.key)
    else:
        await context.clear()


async def transition(context: FSMContext, state: State, data: Mapping[str, Any]) -> None:
    """Set the next state and its data at once (stamped, on SQLite; see above)."""
    if isinstance(context.storage, SQLiteStorage):
        await context.storage.set_state_and_data(context.key, state, data)
    else:
        # Data first: a crash between the two writes leaves the old state, so the update,
        # delivered again, is simply answered again.
        await context.set_data(data)
        await context.set_state(state)
