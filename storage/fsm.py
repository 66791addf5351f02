"""aiogram FSM storage on the shared SQLite database: one JSON row per conversation key."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, overload

import aiosqlite
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

from storage.database import Database

_EMPTY_DATA = "{}"
# How many update ids a conversation remembers: more than a person can send between a
# crash and the moment Telegram delivers the unconfirmed updates again.
RECENT_UPDATES = 20

# The update being handled, set by the dispatcher's middleware (bot/middlewares.py).
HANDLING_UPDATE: ContextVar[int | None] = ContextVar("HANDLING_UPDATE", default=None)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dump(data: Mapping[str, Any]) -> str:
    # ensure_ascii=False keeps Cyrillic readable in the file and about half the size.
    return json.dumps(data, ensure_ascii=False)


def _load(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    return data


async def _prune(connection: aiosqlite.Connection, key: str) -> None:
    # A row with no state and no data means the same as a missing row; deleting it keeps
    # the table from growing with every finished conversation.
    await connection.execute(
        "DELETE FROM fsm_states WHERE key = ? AND state IS NULL AND data = ?",
        (key, _EMPTY_DATA),
    )


async def _write_data(connection: aiosqlite.Connection, key: str, data: Mapping[str, Any]) -> None:
    await connection.execute(
        """
        INSERT INTO fsm_states (key, data, updated_at) VALUES (?, ?, ?)
        ON CONFLICT (key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at
        """,
        (key, _dump(data), _now()),
    )
    await _prune(connection, key)


class SQLiteStorage(BaseStorage):
    """Behaves like aiogram's `MemoryStorage`, but survives restarts.

    Data must be JSON-serialisable (FSM data holds JSON types only, see STYLE.md): tuples
    come back as lists, like in aiogram's Redis storage.
    """

    def __init__(self, db: Database, key_builder: KeyBuilder | None = None) -> None:
        self._db = db
        # MemoryStorage keys on the whole StorageKey, so the default key includes every
        # field of it: two bots or two destinies must never share a conversation.
        self._key_builder = key_builder or DefaultKeyBuilder(
            with_bot_id=True, with_business_connection_id=True, with_destiny=True
        )

    def _key(self, key: StorageKey) -> str:
        return self._key_builder.build(key)

    async def close(self) -> None:
        # The Database belongs to the application, which closes it after the dispatcher stops.
        pass

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        db_key = self._key(key)
        async with self._db.transaction() as connection:
            await connection.execute(
                """
                INSERT INTO fsm_states (key, state, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (key) DO UPDATE
                    SET state = excluded.state, updated_at = excluded.updated_at
                """,
                (db_key, value, _now()),
            )
            await _prune(connection, db_key)

    async def get_state(self, key: StorageKey) -> str | None:
        row = await self._db.fetchone(
            "SELECT state FROM fsm_states WHERE key = ?", (self._key(key),)
        )
        if row is None:
            return None
        state: str | None = row["state"]
        return state

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        # Same check as MemoryStorage: a Mapping that is not a dict is refused too.
        if not isinstance(data, dict):
            msg = f"Data must be a dict or dict-like object, got {type(data).__name__}"
            raise DataNotDictLikeError(msg)
        db_key = self._key(key)
        async with self._db.transaction() as connection:
            await _write_data(connection, db_key, data)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        row = await self._db.fetchone(
            "SELECT data FROM fsm_states WHERE key = ?", (self._key(key),)
        )
        return {} if row is None else _load(row["data"])

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        # The base class reads and writes in two steps; two handlers updating the same key
        # between them would lose one update, so the whole merge is one transaction.
        db_key = self._key(key)
        async with self._db.transaction() as connection:
            async with connection.execute(
                "SELECT data FROM fsm_states WHERE key = ?", (db_key,)
            ) as cursor:
                row = await cursor.fetchone()
            current = {} if row is None else _load(row["data"])
            current.update(data)
            await _write_data(connection, db_key, current)
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
        update_id = HANDLING_UPDATE.get()
        async with self._db.transaction() as connection:
            rows = await connection.execute_fetchall(
                "SELECT recent_updates FROM fsm_states WHERE key = ?", (db_key,)
            )
            recent: list[int] = json.loads(next(iter(rows))[0]) if rows else []
            if update_id is not None and update_id not in recent:
                recent = [*recent, update_id][-RECENT_UPDATES:]
            await connection.execute(
                """
                INSERT INTO fsm_states (key, state, data, recent_updates, updated_at)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET state = excluded.state, data = excluded.data,
                    recent_updates = excluded.recent_updates, updated_at = excluded.updated_at
                """,
                (db_key, value, _dump(data), json.dumps(recent), _now()),
            )

    async def moved_by(self, key: StorageKey, update_id: int) -> bool:
        """Whether `update_id` already moved this conversation."""
        row = await self._db.fetchone(
            "SELECT 1 FROM fsm_states, json_each(fsm_states.recent_updates) "
            "WHERE fsm_states.key = ? AND json_each.value = ?",
            (self._key(key), update_id),
        )
        return row is not None


async def transition(context: FSMContext, state: State, data: Mapping[str, Any]) -> None:
    """Set the next state and its data at once (stamped, on SQLite; see above)."""
    if isinstance(context.storage, SQLiteStorage):
        await context.storage.set_state_and_data(context.key, state, data)
    else:
        # Data first: a crash between the two writes leaves the old state, so the update,
        # delivered again, is simply answered again.
        await context.set_data(data)
        await context.set_state(state)
