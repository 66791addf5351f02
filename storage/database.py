"""The one SQLite connection: PRAGMAs, migrations, serialised transactions."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from storage.migrations import MIGRATIONS

logger = logging.getLogger(__name__)

Params = tuple[Any, ...] | dict[str, Any]


class MigrationError(RuntimeError):
    pass


def utc_iso(moment: datetime) -> str:
    """How every time is stored: ISO 8601 in UTC, so text order is time order."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: store aware datetimes only")
    return moment.astimezone(UTC).isoformat()


class Database:
    """A single aiosqlite connection shared by the whole bot.

    aiosqlite runs every call on one thread but has no notion of per-task transactions:
    two handlers interleaving BEGIN … COMMIT on one connection would commit each other's
    halves. So every statement and every transaction takes `_lock`, which makes a
    transaction atomic with respect to all other users of the connection.
    """

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self._connection = connection
        self._lock = asyncio.Lock()
        self.path = path

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        # IMMEDIATE takes the write lock up front, so a transaction never fails half-way
        # with SQLITE_BUSY on upgrade from a read lock.
        async with self._lock:
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                await self._connection.rollback()
                raise
            else:
                await self._connection.commit()

    # Each aiosqlite call is a round trip to its thread: these take one each.

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        async with self._lock:
            return list(await self._connection.execute_fetchall(sql, params))

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One statement, atomic on its own (the connection is in autocommit mode);
        returns the number of rows changed."""
        async with self._lock:
            cursor = await self._connection.execute(sql, params)
            return cursor.rowcount

    async def executemany(self, sql: str, params: Iterable[Params]) -> None:
        async with self.transaction() as connection:
            await connection.executemany(sql, params)

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        assert row is not None
        return int(row[0])


async def _migrate(connection: aiosqlite.Connection, target: int) -> None:
    async with connection.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    current = int(row[0]) if row else 0
    if current > len(MIGRATIONS):
        raise MigrationError(
            f"database schema version {current} is newer than this bot knows "
            f"({len(MIGRATIONS)}); upgrade the bot"
        )
    for version in range(current + 1, target + 1):
        script = MIGRATIONS[version - 1]
        # executescript() commits first, so BEGIN/COMMIT live inside the script itself:
        # a failing step leaves the previous version intact.
        try:
            await connection.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;"
            )
        except sqlite3.Error as error:
            await connection.rollback()
            raise MigrationError(
                f"migration to schema version {version} failed: {error}"
            ) from error
        logger.info("Database schema migrated to version %d", version)


def casefold(value: object) -> str | None:
    return value.casefold() if isinstance(value, str) else None


def _create_private_folders(folder: Path) -> None:
    # The folder holds the database and its -wal file: private like them. Only the folders
    # made here: an existing one (/tmp, a home directory) is the operator's business.
    # (Path.mkdir(parents=True) would give the parents the umask's mode; the chmod, because
    # mkdir's own mode goes through the umask too.)
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=0o700)
        except FileExistsError:
            continue
        created.chmod(0o700)


def _create_private_file(path: Path) -> None:
    # Personal data (152-FZ): the file must be readable by its owner only, from birth,
    # not chmod-ed after SQLite created it with the umask's mode.
    _create_private_folders(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    path.chmod(0o600)


@asynccontextmanager
async def open_database(
    path: Path | str, *, migrate_to: int | None = None, busy_timeout_ms: int = 5000
) -> AsyncIterator[Database]:
    """Open (creating if needed) and migrate the database; close it on exit.

    `migrate_to` stops at an older schema version: tests use it to check upgrades.
    """
    path = Path(path)
    _create_private_file(path)
    # WAL and SHM side files inherit the main file's permissions in SQLite.
    connection = await aiosqlite.connect(path, isolation_level=None)
    try:
        connection.row_factory = sqlite3.Row
        await connection.execute("PRAGMA journal_mode = WAL")
        await connection.execute("PRAGMA synchronous = NORMAL")
        await connection.execute("PRAGMA foreign_keys = ON")
        # Another process (a backup, an operator's sqlite3 shell) may hold the write lock
        # for a moment: wait that long before giving up.
        await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # SQLite's lower() and LIKE fold ASCII only; searches in Cyrillic need Python's.
        await connection.create_function("casefold", 1, casefold, deterministic=True)
        await _migrate(connection, len(MIGRATIONS) if migrate_to is None else migrate_to)
        yield Database(connection, path)
    finally:
        await connection.close()
