"""The shared connection: transactions are serialised, a failing one leaves no trace."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import pytest

from storage.database import open_database
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
