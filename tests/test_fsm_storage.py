import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypedDict

import pytest
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.fsm.storage.memory import MemoryStorage

from storage.database import Database, open_database
from storage.fsm import Conversation, SQLiteStorage

KEY = StorageKey(bot_id=42, chat_id=-100, user_id=7)


class Form(StatesGroup):
    name = State()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.sqlite3"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    async with open_database(db_path) as database:
        yield database


# The contract tests run on both storages: MemoryStorage is the reference behaviour.
@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[BaseStorage]:
    if request.param == "memory":
        yield MemoryStorage()
        return
    async with open_database(db_path) as database:
        sqlite_storage = SQLiteStorage(database)
        yield sqlite_storage
        await sqlite_storage.close()


async def test_state_round_trips_when_set_and_cleared(storage: BaseStorage) -> None:
    assert await storage.get_state(KEY) is None

    await storage.set_state(KEY, "state")
    assert await storage.get_state(KEY) == "state"

    await storage.set_state(KEY, None)
    assert await storage.get_state(KEY) is None


async def test_state_is_stored_by_name_when_given_a_state_object(storage: BaseStorage) -> None:
    await storage.set_state(KEY, Form.name)

    assert await storage.get_state(KEY) == "Form:name"


async def test_data_round_trips_when_set_and_cleared(storage: BaseStorage) -> None:
    assert await storage.get_data(KEY) == {}
    assert await storage.get_value(KEY, "foo") is None
    assert await storage.get_value(KEY, "foo", "baz") == "baz"

    await storage.set_data(KEY, {"foo": "bar"})
    assert await storage.get_data(KEY) == {"foo": "bar"}
    assert await storage.get_value(KEY, "foo") == "bar"
    assert await storage.get_value(KEY, "foo", "baz") == "bar"

    await storage.set_data(KEY, {})
    assert await storage.get_data(KEY) == {}
    assert await storage.get_value(KEY, "foo") is None
    assert await storage.get_value(KEY, "foo", "baz") == "baz"


async def test_data_is_accepted_when_a_typed_dict(storage: BaseStorage) -> None:
    class Answers(TypedDict, total=False):
        foo: str
        bar: str

    await storage.set_data(KEY, Answers(foo="bar", bar="baz"))

    assert await storage.get_data(KEY) == {"foo": "bar", "bar": "baz"}
    assert await storage.get_value(KEY, "foo") == "bar"


@pytest.mark.parametrize("data", [(), [("foo", "bar")], "foo", None])
async def test_set_data_raises_when_data_is_not_a_dict(storage: BaseStorage, data: object) -> None:
    await storage.set_data(KEY, {"foo": "bar"})

    with pytest.raises(DataNotDictLikeError):
        await storage.set_data(KEY, data)  # type: ignore[arg-type]

    assert await storage.get_data(KEY) == {"foo": "bar"}


async def test_update_data_merges_like_dict_update(storage: BaseStorage) -> None:
    assert await storage.get_data(KEY) == {}
    assert await storage.update_data(KEY, {"foo": "bar"}) == {"foo": "bar"}
    assert await storage.update_data(KEY, {}) == {"foo": "bar"}
    assert await storage.get_data(KEY) == {"foo": "bar"}
    assert await storage.update_data(KEY, {"baz": "spam"}) == {"foo": "bar", "baz": "spam"}
    assert await storage.get_data(KEY) == {"foo": "bar", "baz": "spam"}
    assert await storage.update_data(KEY, {"baz": "test"}) == {"foo": "bar", "baz": "test"}
    assert await storage.get_data(KEY) == {"foo": "bar", "baz": "test"}


async def test_returned_data_is_a_copy_when_mutated(storage: BaseStorage) -> None:
    original = {"foo": "bar"}
    await storage.set_data(KEY, original)
    original["foo"] = "changed by caller"

    fetched = await storage.get_data(KEY)
    fetched["foo"] = "changed again"
    updated = await storage.update_data(KEY, {"baz": "spam"})
    updated["baz"] = "changed once more"

    assert await storage.get_data(KEY) == {"foo": "bar", "baz": "spam"}


async def test_value_is_a_copy_when_mutated(storage: BaseStorage) -> None:
    await storage.set_data(KEY, {"items": [1, 2]})

    items = await storage.get_value(KEY, "items")
    assert isinstance(items, list)
    items.append(3)

    assert await storage.get_value(KEY, "items") == [1, 2]


async def test_state_and_data_are_independent_when_one_is_cleared(storage: BaseStorage) -> None:
    await storage.set_state(KEY, "state")
    await storage.set_data(KEY, {"foo": "bar"})

    await storage.set_state(KEY, None)
    assert await storage.get_data(KEY) == {"foo": "bar"}

    await storage.set_state(KEY, "state")
    await storage.set_data(KEY, {})
    assert await storage.get_state(KEY) == "state"


@pytest.mark.parametrize(
    "other",
    [
        StorageKey(bot_id=43, chat_id=-100, user_id=7),
        StorageKey(bot_id=42, chat_id=-101, user_id=7),
        StorageKey(bot_id=42, chat_id=-100, user_id=8),
        StorageKey(bot_id=42, chat_id=-100, user_id=7, thread_id=5),
        StorageKey(bot_id=42, chat_id=-100, user_id=7, business_connection_id="biz"),
        StorageKey(bot_id=42, chat_id=-100, user_id=7, destiny="other"),
    ],
    ids=["bot", "chat", "user", "thread", "business_connection", "destiny"],
)
async def test_keys_are_isolated_when_any_field_differs(
    storage: BaseStorage, other: StorageKey
) -> None:
    await storage.set_state(KEY, "mine")
    await storage.set_data(KEY, {"owner": "mine"})
    await storage.set_state(other, "theirs")
    await storage.set_data(other, {"owner": "theirs"})

    assert await storage.get_state(KEY) == "mine"
    assert await storage.get_data(KEY) == {"owner": "mine"}
    assert await storage.get_state(other) == "theirs"
    assert await storage.get_data(other) == {"owner": "theirs"}


async def test_unicode_round_trips_when_cyrillic_and_emoji(storage: BaseStorage) -> None:
    data = {"full_name": "Иванова Мария Петровна", "note": "Привет 👋🏽 ✨", "ключ": "ё"}

    await storage.set_data(KEY, data)

    assert await storage.get_data(KEY) == data


async def test_update_data_loses_nothing_when_concurrent(storage: BaseStorage) -> None:
    await asyncio.gather(*(storage.update_data(KEY, {f"answer_{i}": i}) for i in range(50)))

    assert await storage.get_data(KEY) == {f"answer_{i}": i for i in range(50)}


async def test_state_and_data_survive_when_file_is_reopened(db_path: Path) -> None:
    async with open_database(db_path) as database:
        storage = SQLiteStorage(database)
        await storage.set_state(KEY, Form.name)
        await storage.set_data(KEY, {"full_name": "Иванова Мария", "step": 2})
        await storage.close()

    async with open_database(db_path) as database:
        storage = SQLiteStorage(database)
        assert await storage.get_state(KEY) == "Form:name"
        assert await storage.get_data(KEY) == {"full_name": "Иванова Мария", "step": 2}


async def test_close_leaves_database_open_when_storage_closed(db: Database) -> None:
    storage = SQLiteStorage(db)

    await storage.close()

    assert await db.schema_version() > 0


async def test_row_is_deleted_when_state_and_data_are_cleared(db: Database) -> None:
    storage = SQLiteStorage(db)
    await storage.set_state(KEY, "state")
    await storage.update_data(KEY, {"foo": "bar"})
    assert len(await db.fetchall("SELECT key FROM fsm_states")) == 1

    await storage.set_state(KEY, None)
    assert len(await db.fetchall("SELECT key FROM fsm_states")) == 1
    await storage.set_data(KEY, {})

    assert await db.fetchall("SELECT key FROM fsm_states") == []


async def test_row_holds_readable_json_when_data_is_cyrillic(db: Database) -> None:
    storage = SQLiteStorage(db)

    await storage.set_data(KEY, {"city": "Казань"})

    row = await db.fetchone("SELECT data, updated_at FROM fsm_states")
    assert row is not None
    assert row["data"] == '{"city":"Казань"}'
    assert row["updated_at"].endswith("+00:00")


async def test_data_is_unchanged_when_not_json_serialisable(db: Database) -> None:
    storage = SQLiteStorage(db)
    await storage.set_data(KEY, {"foo": "bar"})

    with pytest.raises(TypeError):
        await storage.update_data(KEY, {"when": object()})

    assert await storage.get_data(KEY) == {"foo": "bar"}


# --- Inside an update's scope (the dispatcher opens one per update, see bot/middlewares.py) ---


class CountingDatabase:
    """The database, counting round trips."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.trips = 0

    def __getattr__(self, name: str) -> object:
        self.trips += 1
        return getattr(self._db, name)


async def test_scope_reads_the_row_once_when_asked_many_times(db: Database) -> None:
    await SQLiteStorage(db).set_state_and_data(KEY, "Form:name", {"step": 1})
    counting = CountingDatabase(db)
    storage = SQLiteStorage(counting)  # type: ignore[arg-type]

    with storage.handling(7, KEY):
        assert await storage.get_state(KEY) == "Form:name"
        assert await storage.get_data(KEY) == {"step": 1}
        assert await storage.seen(KEY, 7) == (False, False)
        assert await storage.get_value(KEY, "step") == 1

    assert counting.trips == 1


async def test_scope_writes_in_one_statement_and_matches_the_database(db: Database) -> None:
    counting = CountingDatabase(db)
    storage = SQLiteStorage(counting)  # type: ignore[arg-type]

    with storage.handling(7, KEY):
        await storage.get_state(KEY)
        trips = counting.trips
        await storage.set_state_and_data(KEY, Form.name, {"step": 1})
        assert await storage.update_data(KEY, {"extra": True}) == {"step": 1, "extra": True}
        await storage.set_state(KEY, "Form:other")
        assert counting.trips == trips + 3
        assert await storage.get_state(KEY) == "Form:other"
        assert await storage.seen(KEY, 7) == (False, True)  # moved, not yet marked handled

    fresh = SQLiteStorage(db)
    assert await fresh.get_state(KEY) == "Form:other"
    assert await fresh.get_data(KEY) == {"step": 1, "extra": True}
    assert await fresh.seen(KEY, 7) == (False, True)


async def test_scope_deletes_the_row_when_cleared(db: Database) -> None:
    storage = SQLiteStorage(db)
    await storage.set_state_and_data(KEY, "Form:name", {"step": 1})

    with storage.handling(8, KEY):
        await storage.set_state(KEY, None)
        await storage.set_data(KEY, {})
        assert await storage.get_state(KEY) is None
        assert await storage.get_data(KEY) == {}

    assert await db.fetchall("SELECT key FROM fsm_states") == []


async def test_a_conversation_is_cleared_in_one_write_in_and_out_of_a_scope(db: Database) -> None:
    counting = CountingDatabase(db)
    storage = SQLiteStorage(counting)  # type: ignore[arg-type]
    await storage.set_state_and_data(KEY, "Form:name", {"step": 1})

    with storage.handling(8, KEY):
        assert await storage.get_state(KEY) == "Form:name"
        trips = counting.trips
        await Conversation(storage, KEY).clear()
        assert counting.trips == trips + 1
        assert await storage.get_state(KEY) is None
        assert await storage.get_data(KEY) == {}
    assert await db.fetchall("SELECT key FROM fsm_states") == []

    await storage.set_state_and_data(KEY, "Form:name", {"step": 2})
    trips = counting.trips
    await Conversation(storage, KEY).clear()
    assert counting.trips == trips + 1
    assert await db.fetchall("SELECT key FROM fsm_states") == []


async def test_scope_reads_again_when_a_write_failed(db: Database) -> None:
    storage = SQLiteStorage(db)
    await storage.set_data(KEY, {"foo": "bar"})

    async def locked(sql: str, params: object = ()) -> int:
        raise sqlite3.OperationalError("database is locked")

    with storage.handling(9, KEY):
        assert await storage.get_data(KEY) == {"foo": "bar"}
        with pytest.raises(TypeError):  # refused before any write: the scope stays right
            await storage.update_data(KEY, {"when": object()})
        execute = db.execute
        db.execute = locked  # type: ignore[method-assign]
        try:
            with pytest.raises(sqlite3.OperationalError):
                await storage.set_state_and_data(KEY, "Form:name", {"foo": "lost"})
        finally:
            db.execute = execute  # type: ignore[method-assign]
        # Whatever the failed write did, only the database knows: it is asked again.
        await db.execute("""UPDATE fsm_states SET data = '{"foo": "baz"}'""")
        assert await storage.get_data(KEY) == {"foo": "baz"}
        assert await storage.get_state(KEY) is None


async def test_scope_leaves_other_conversations_to_the_database(db: Database) -> None:
    other = StorageKey(bot_id=42, chat_id=-100, user_id=8)
    storage = SQLiteStorage(db)

    with storage.handling(10, KEY):
        await storage.set_state(other, "state")
        await db.execute("UPDATE fsm_states SET state = 'changed'")
        assert await storage.get_state(other) == "changed"


async def test_scope_tells_an_update_handled_before(db: Database) -> None:
    storage = SQLiteStorage(db)
    await db.execute("INSERT INTO handled_updates VALUES (11, '2026-11-26T00:00:00+00:00')")

    with storage.handling(11, KEY):
        assert await storage.seen(KEY, 11) == (True, False)
    with storage.handling(12, KEY):
        assert await storage.seen(KEY, 12) == (False, False)
