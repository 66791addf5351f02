"""One bot process per SQLite file (storage/lease.py): an flock on the file that SQLite's own
locks never meet."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from storage.database import open_database
from storage.lease import DatabaseInUse, hold_lease, holder


def test_a_second_holder_is_refused_with_one_line_naming_the_first(tmp_path: Path) -> None:
    path = tmp_path / "data" / "bot.sqlite3"
    with hold_lease(path):
        assert holder(path) == os.getpid()
        with pytest.raises(DatabaseInUse) as refused, hold_lease(path):
            pass
    assert str(refused.value) == (
        f"DATABASE_PATH: {path} is in use by another process (pid {os.getpid()}?); "
        "replicas need PostgreSQL: see README"
    )
    # Let go at the end of the block: the next process may start.
    with hold_lease(path):
        pass
    assert holder(path) is None
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


async def test_sqlite_reads_and_writes_beside_the_lease_and_after_it(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    with hold_lease(path):
        async with open_database(path) as db:
            await db.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            # Another connection (an operator's command) reads and writes as before.
            with closing(sqlite3.connect(path, timeout=5)) as other:
                assert other.execute("SELECT value FROM meta WHERE key = 'k'").fetchone() == ("v",)
                with other:
                    other.execute("INSERT INTO meta (key, value) VALUES ('o', 'w')")
            assert await db.fetchone("SELECT value FROM meta WHERE key = 'o'") is not None
    with closing(sqlite3.connect(path)) as after:
        assert after.execute("SELECT count(*) FROM meta WHERE key IN ('k', 'o')").fetchone() == (2,)
