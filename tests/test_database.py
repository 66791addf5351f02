"""The shared connection: transactions are serialised, a failing one leaves no trace; short
statements run on the event loop's thread, never the one write that syncs the WAL."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from storage.database import Database, _Checkpointer, open_database
from tests.helpers import set_read_only


async def test_transactions_on_the_shared_connection_never_mix(tmp_path: Path) -> None:
    async with open_database(tmp_path / "db.sqlite3") as db:
        await db.execute("CREATE TABLE t (value TEXT)")
        first_inside = asyncio.Event()

        async def failing() -> None:
            async with db.transaction() as connection:
                await connection.execute("INSERT INTO t VALUES ('half of a failed write')")
                first_inside.set()
                await asyncio.sleep(0.05)  # the other task runs meanwhile
                raise RuntimeError("disk trouble")

        async def succeeding() -> None:
            await first_inside.wait()
            async with db.transaction() as connection:
                await connection.execute("INSERT INTO t VALUES ('whole')")

        results = await asyncio.gather(failing(), succeeding(), return_exceptions=True)
        assert isinstance(results[0], RuntimeError)
        rows = await db.fetchall("SELECT value FROM t")
        # Without the lock, the second COMMIT would have committed the first half too.
        assert [row[0] for row in rows] == ["whole"]


async def test_a_read_only_database_refuses_writes_and_keeps_data(tmp_path: Path) -> None:
    async with open_database(tmp_path / "db.sqlite3") as db:
        await db.execute("CREATE TABLE t (value TEXT)")
        await db.execute("INSERT INTO t VALUES ('kept')")
        await set_read_only(db, True)
        with pytest.raises(sqlite3.OperationalError):
            await db.execute("INSERT INTO t VALUES ('lost')")
        await set_read_only(db, False)
        assert [row[0] for row in await db.fetchall("SELECT value FROM t")] == ["kept"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make_folder(path: Path, mode: int) -> Path:
    path.mkdir(exist_ok=True)
    path.chmod(mode)
    return path


async def test_missing_folders_are_created_private_and_existing_ones_left_alone(
    tmp_path: Path,
) -> None:
    # The folder of personal data: another local user must not list or open its files.
    parent = make_folder(tmp_path, 0o755)
    path = parent / "data" / "nested" / "bot.sqlite3"
    async with open_database(path):
        pass
    assert mode(parent / "data") == 0o700
    assert mode(parent / "data" / "nested") == 0o700
    assert mode(path) == 0o600
    assert mode(parent) == 0o755

    # An operator's existing folder keeps the mode they gave it.
    shared = make_folder(parent / "shared", 0o750)
    async with open_database(shared / "bot.sqlite3"):
        pass
    assert mode(shared) == 0o750


async def thread_of_each(db: Database) -> None:
    """`thread()` in SQL: the id of the thread running the statement."""
    await db._connection.create_function("thread", 0, threading.get_ident)
    await db.execute("CREATE TABLE IF NOT EXISTS ran_on (thread INTEGER)")


async def ran_on(db: Database, **kwargs: bool) -> int:
    await db.execute("INSERT INTO ran_on VALUES (thread())", **kwargs)
    row = await db.fetchone("SELECT thread FROM ran_on ORDER BY rowid DESC LIMIT 1")
    assert row is not None
    return int(row[0])


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 2 s")


async def test_short_statements_run_on_the_loop_and_heavy_ones_on_aiosqlites_thread(
    tmp_path: Path,
) -> None:
    async with open_database(tmp_path / "db.sqlite3", checkpoint_interval=60) as db:
        await thread_of_each(db)
        await ran_on(db)  # the first write may restart the WAL: aiosqlite's thread
        assert await ran_on(db) == threading.get_ident()
        assert await ran_on(db, heavy=True) != threading.get_ident()
        async with db.transaction() as connection:
            await connection.execute("DELETE FROM ran_on")
            await connection.execute("INSERT INTO ran_on VALUES (thread())")
            async with connection.execute("SELECT thread FROM ran_on") as cursor:
                assert [row[0] for row in await cursor.fetchall()] == [threading.get_ident()]


async def test_before_the_wal_restarts_the_write_goes_to_aiosqlites_thread(
    tmp_path: Path,
) -> None:
    # The first write after a checkpoint that copied the whole WAL starts the WAL again and
    # fsyncs its header: that fsync must never be the event loop's.
    path = tmp_path / "db.sqlite3"
    async with open_database(path, checkpoint_interval=60) as db:
        await thread_of_each(db)
        checkpointer = db._wal
        assert checkpointer is not None
        await ran_on(db)
        assert await ran_on(db) == threading.get_ident()
        other = sqlite3.connect(path, isolation_level=None)
        try:
            for _ in range(3):
                checkpointer._checkpoint(other)  # what its thread does every second
                assert checkpointer.pending != 0
                assert await ran_on(db) != threading.get_ident()
                assert checkpointer.pending == 0
                assert await ran_on(db) == threading.get_ident()
        finally:
            other.close()


async def test_a_checkpoint_in_progress_sends_writes_to_aiosqlites_thread(
    tmp_path: Path,
) -> None:
    async with open_database(tmp_path / "db.sqlite3", checkpoint_interval=60) as db:
        await thread_of_each(db)
        await ran_on(db)
        assert db._wal is not None
        with db._wal.gate:  # as a checkpoint waiting for a stalled disk holds it
            assert await ran_on(db) != threading.get_ident()
            async with db.transaction() as connection:
                await connection.execute("INSERT INTO ran_on VALUES (thread())")
            rows = await db.fetchall("SELECT thread FROM ran_on")
            assert threading.get_ident() not in [row[0] for row in rows]


def checkpointed(checkpointer: _Checkpointer, count: int) -> bool:
    return checkpointer.checkpoints >= count


async def test_the_wal_is_checkpointed_reused_and_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    wal = tmp_path / "db.sqlite3-wal"
    async with open_database(path, checkpoint_interval=0.02) as db:
        assert db._wal is not None
        await db.execute("CREATE TABLE t (value TEXT)")
        sizes = []
        for _ in range(10):
            await db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
            await until(partial(checkpointed, db._wal, db._wal.checkpoints + 2))
            sizes.append(wal.stat().st_size)
        # Ten bursts, each about 100 KB: the WAL starts again instead of growing by each.
        assert max(sizes) < 3 * sizes[0]
        assert db._wal.failures == 0
        thread = db._wal._thread
    assert not thread.is_alive()
    assert not wal.exists()  # the last connection copied it into the file
    async with open_database(path) as db:
        assert (await db.fetchone("SELECT count(*) FROM t"))[0] == 2000  # type: ignore[index]


@pytest.mark.parametrize("on_loop", [True, False])
async def test_a_failed_transaction_leaves_nothing_on_either_thread(
    tmp_path: Path, on_loop: bool
) -> None:
    async with open_database(tmp_path / "db.sqlite3", on_loop=on_loop) as db:
        await db.execute("CREATE TABLE t (value TEXT UNIQUE)")
        await db.execute("INSERT INTO t VALUES ('kept')")
        for heavy in (False, True):
            with pytest.raises(sqlite3.IntegrityError):
                async with db.transaction(heavy=heavy) as connection:
                    await connection.execute("INSERT INTO t VALUES ('half')")
                    await connection.execute("INSERT INTO t VALUES ('kept')")
        assert [row[0] for row in await db.fetchall("SELECT value FROM t")] == ["kept"]
        assert not db._raw.in_transaction


async def test_a_big_wal_is_copied_whole_and_starts_again(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with open_database(path, checkpoint_interval=60) as db:
        assert db._wal is not None
        db._wal._restart_after = 10  # RESTART as well as PASSIVE
        await db.execute("CREATE TABLE t (value TEXT)")
        other = sqlite3.connect(path, isolation_level=None)
        try:
            for _ in range(3):
                await db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 100)
            db._wal._checkpoint(other)
            assert db._wal.pending != 0 and db._wal.failures == 0
            await db.execute("INSERT INTO t VALUES ('next')")  # aiosqlite's thread
            busy, log, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            other.close()
        assert (busy, copied) == (0, log)
        assert log < 10  # the WAL started again from its beginning
