"""The database behind every repository: one interface (`Database`, `Connection`), two engines.

SQLite (the default, `SQLiteDatabase` here): one connection, PRAGMAs, migrations, serialised
transactions, checkpoints. PostgreSQL (`DATABASE_URL`, storage/postgres.py): a pool, the same
SQL text translated at its boundary. Repositories see only what is declared below.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol

import aiosqlite

from storage.migrations import MIGRATIONS

logger = logging.getLogger(__name__)

# `?` parameters in a sequence, or `:name` ones in a mapping (both engines take both).
Params = tuple[Any, ...] | list[Any] | dict[str, Any]
Dialect = Literal["sqlite", "postgres"]
# `LIMIT ?` without a limit on both engines (SQLite's -1 is an error to PostgreSQL).
NO_LIMIT = 2**62

# A checkpoint copies what the WAL holds into the database file and fsyncs both: about one
# a second keeps the WAL small (a second of writes) without an fsync per commit.
CHECKPOINT_INTERVAL = 1.0
# About 40 MB of WAL (4 KiB pages) that never started again: then a checkpoint takes the
# write lock for a moment (see _Checkpointer._checkpoint).
RESTART_AFTER_FRAMES = 10_000
# How soon a TRUNCATE checkpoint that a reader or writer kept from completing is tried again.
TRUNCATE_RETRY = 0.2
# A WAL file that grew in a burst is cut back to this at the first commit after it restarts.
WAL_SIZE_LIMIT = 8 * 1024 * 1024


# The schema version that brought erasure (storage/migrations.py, step 11).
SECURE_DELETE_SINCE = 11


class MigrationError(RuntimeError):
    pass


class DatabaseUnavailable(sqlite3.OperationalError):
    """The database cannot be reached (PostgreSQL: refused, authentication, no such database):
    start-up stops with this one line (never the URL: it may hold a password)."""


# A constraint (UNIQUE, CHECK, FOREIGN KEY) refused a write, on either engine: PostgreSQL's
# errors of that class are raised as a subclass of it (storage/postgres.py).
IntegrityError = sqlite3.IntegrityError


class Row(Protocol):
    """A result row: sqlite3.Row and asyncpg's Record both read by name and by position."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def keys(self) -> Iterable[str]: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    async def fetchone(self) -> Row | None: ...
    async def fetchall(self) -> Iterable[Row]: ...


class CursorResult(Protocol):
    """What `Connection.execute` returns: awaited, or used as `async with ... as cursor`."""

    def __await__(self) -> Generator[Any, None, Cursor]: ...
    async def __aenter__(self) -> Cursor: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> Any: ...


class Connection(Protocol):
    """The subset of aiosqlite.Connection that repositories use inside a transaction; the
    PostgreSQL engine's adapter offers the same."""

    def execute(self, sql: str, parameters: Any = None, /) -> CursorResult: ...
    def execute_fetchall(self, sql: str, parameters: Any = None, /) -> Awaitable[Iterable[Row]]: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Awaitable[Any]: ...
    @property
    def total_changes(self) -> int: ...


class Database(ABC):
    """What repositories use of the database, on either engine.

    `transaction()` is serialised with every other writer (SQLite's single writer; on
    PostgreSQL a global advisory lock, unless `serial=False` says the transaction is safe
    without it). `heavy=True` marks long work (SQLite runs it off the event loop's thread).
    """

    dialect: ClassVar[Dialect]
    # The SQLite file (None on PostgreSQL).
    path: Path | None

    @abstractmethod
    def transaction(
        self, *, heavy: bool = False, serial: bool = True
    ) -> AbstractAsyncContextManager[Connection]: ...

    @abstractmethod
    async def fetchone(
        self, sql: str, params: Params = (), *, heavy: bool = False
    ) -> Row | None: ...

    @abstractmethod
    async def fetchall(
        self, sql: str, params: Params = (), *, heavy: bool = False
    ) -> list[Row]: ...

    @abstractmethod
    async def execute(self, sql: str, params: Params = (), *, heavy: bool = False) -> int:
        """One statement, atomic on its own; returns the number of rows changed."""

    async def record(self, sql: str, params: Params = ()) -> int:
        """`execute` for the bot's own bookkeeping: a conversation's row, handled marks.
        Such a write may be lost with the last moments before a crash of the database
        server, as it may be with the bot's own crash, which the update path is built to
        survive: the update stays in the inbox and is handled again, applied once (the
        conversation's stamps, storage/fsm.py). Promises (an update acknowledged to
        Telegram, a registration) never go this way. SQLite in WAL mode with synchronous
        NORMAL commits without syncing anyway: the same as `execute` here."""
        return await self.execute(sql, params)

    @abstractmethod
    async def executemany(self, sql: str, params: Iterable[Params]) -> None: ...

    @abstractmethod
    def scrub_erased(self) -> int:
        """After an erasure: ask for the engine's own copies of the erased values to go (SQLite:
        the WAL cut to zero bytes; PostgreSQL: the tables vacuumed), as soon as it can, without
        waiting; returns a number for `erased_scrubbed`."""

    @abstractmethod
    async def erased_scrubbed(self, number: int) -> None:
        """Return once request `number` of `scrub_erased` is done."""

    @abstractmethod
    async def schema_version(self) -> int: ...


def utc_iso(moment: datetime) -> str:
    """How every time is stored: ISO 8601 in UTC, so text order is time order."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: store aware datetimes only")
    return moment.astimezone(UTC).isoformat()


class _OnLoop(aiosqlite.Connection):
    """aiosqlite's API over the bot's sqlite3 connection, run on the calling thread (the
    event loop's). Every aiosqlite method and cursor goes through `_execute`, which here
    calls at once: no queue, no future, no hand-off to another thread. The callers of a
    transaction keep their code and their `aiosqlite.Connection` annotations."""

    def __init__(self, connection: sqlite3.Connection) -> None:  # no thread of its own
        self._running = True
        self._connection = connection
        self._iter_chunk_size = 64

    def __del__(self) -> None:
        pass  # the connection belongs to the aiosqlite.Connection that opened it

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    async def close(self) -> None:
        raise RuntimeError("the bot's connection is closed by open_database")


class _Checkpointer:
    """Checkpoints of the WAL on a thread and a connection of their own, so that the event
    loop's thread never waits for the disk.

    In WAL mode with synchronous=NORMAL a commit writes to the WAL (the page cache) and
    does not fsync; a checkpoint fsyncs the WAL and the database file. One more fsync is
    hidden in SQLite: the first write after a checkpoint has copied the whole WAL restarts
    it from the beginning, and syncs the new WAL header first (sqlite.org ticket
    ff5be73dee). `gate` and `pending` keep that write off the loop: the loop writes only
    when it holds `gate` (never waiting for it) and no restart is pending; otherwise the
    write goes to aiosqlite's thread, as every write did before.
    """

    def __init__(
        self,
        path: Path,
        *,
        interval: float = CHECKPOINT_INTERVAL,
        restart_after: int = RESTART_AFTER_FRAMES,
    ) -> None:
        self.gate = threading.Lock()
        # An epoch (> 0) while the next write may restart the WAL; 0 when it cannot. At
        # start-up the WAL may be empty: its first write syncs the header.
        self.pending = 1
        self._epoch = 1
        self._path = path
        self._interval = interval
        self._restart_after = restart_after
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self.checkpoints = 0
        self.failures = 0
        # TRUNCATE requests (after an erasure): numbered; `_truncated` is the highest number
        # a completed TRUNCATE covers. Waiters are woken on their loop.
        self._requested = 0
        self._truncated = 0
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        # Joined off the loop: a checkpoint may be waiting for a slow disk.
        await asyncio.to_thread(self._thread.join)

    def enter(self) -> bool:
        """Whether a write may run on the loop's thread now; if so, `leave` after it."""
        if not self.gate.acquire(blocking=False):
            return False  # a checkpoint is running: it may end with the WAL copied whole
        if self.pending:
            self.gate.release()
            return False
        return True

    def leave(self) -> None:
        self.gate.release()

    def wrote(self, epoch: int) -> None:
        """A write that changed rows committed on aiosqlite's thread while restart `epoch`
        was pending: it restarted the WAL (or appended to a WAL still in use)."""
        if epoch and self.gate.acquire(blocking=False):
            if self.pending == epoch:
                self.pending = 0
            self.gate.release()

    def request_truncate(self) -> int:
        """Ask for a TRUNCATE checkpoint as soon as one can complete; returns the request's
        number for `truncated`."""
        with self._waiters_lock:
            self._requested += 1
            number = self._requested
        self._wake.set()
        return number

    async def truncated(self, number: int) -> None:
        """Return once a TRUNCATE checkpoint that began after request `number` completed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._waiters_lock:
            if self._truncated >= number:
                return
            self._waiters.append((number, loop, future))
        await future

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        delay = self._interval
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                if connection is None:
                    # timeout=0: RESTART and TRUNCATE never wait for readers while they
                    # hold the lock that writers need.
                    connection = sqlite3.connect(self._path, timeout=0, isolation_level=None)
                if self._requested > self._truncated:
                    # A reader holding an old snapshot (an export) keeps the WAL in use: try
                    # again every TRUNCATE_RETRY seconds until it completes.
                    delay = self._interval if self._truncate(connection) else TRUNCATE_RETRY
                    continue
                delay = self._interval
                self._checkpoint(connection)
            except sqlite3.Error as error:
                if self._requested > self._truncated:
                    delay = TRUNCATE_RETRY
                self.failures += 1
                logger.warning(
                    "WAL checkpoint failed (%s); trying again in %.0f s",
                    error.sqlite_errorname,
                    self._interval,
                )
        if connection is not None:
            connection.close()

    def _truncate(self, connection: sqlite3.Connection) -> bool:
        """Copy the whole WAL into the file and cut the WAL to zero bytes, so that no page
        image of an erased row survives in it (PRAGMA secure_delete clears the file's own
        copies). False when a reader or a writer kept it from completing."""
        with self._waiters_lock:
            number = self._requested
        with self.gate:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                return False
            self.checkpoints += 1
            # The next write starts a new WAL and syncs its header: off the loop's thread.
            self._epoch += 1
            self.pending = self._epoch
        with self._waiters_lock:
            self._truncated = max(self._truncated, number)
            ready = [waiter for waiter in self._waiters if waiter[0] <= self._truncated]
            self._waiters = [waiter for waiter in self._waiters if waiter[0] > self._truncated]
        for _, loop, future in ready:
            loop.call_soon_threadsafe(_resolve, future)
        return True

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        with self.gate:
            # PASSIVE takes no lock that writers need: commits go on while it copies.
            busy, log, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if log >= self._restart_after:
                # The WAL never started again: each checkpoint found new writes after it
                # (a restart needs a write that comes after a complete copy), or readers
                # held old snapshots. RESTART takes the write lock (waiting for no one, with
                # timeout=0; then writes go to aiosqlite's thread, through the gate) so the
                # next write starts the WAL again. Rare: at about 40 MB of WAL.
                busy, log, copied = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            self.checkpoints += 1
            if not busy and log == copied and not self.pending:
                self._epoch += 1
                self.pending = self._epoch


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _reads_only(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "SELECT"


class SQLiteDatabase(Database):
    """A single SQLite connection shared by the whole bot.

    The connection has no notion of per-task transactions: two handlers interleaving
    BEGIN … COMMIT on it would commit each other's halves. So every statement and every
    transaction takes `_lock`, which makes a transaction atomic with respect to all other
    users of the connection, and keeps the two threads that may use the connection (the
    event loop's and aiosqlite's) from ever using it at once.

    Short statements and transactions (point reads, single-row writes, an update's marks,
    a registration with its cards) run on the event loop's thread: a round trip to
    aiosqlite's thread costs more CPU than most of them. Long ones (`heavy=True`: start-up
    work, a broadcast's recipients, aggregates for /stats and digests, pruning) run on
    aiosqlite's thread. Nothing on the loop's thread waits for the disk: see `_Checkpointer`.
    """

    dialect: ClassVar[Dialect] = "sqlite"

    def __init__(
        self,
        connection: aiosqlite.Connection,
        path: Path,
        *,
        checkpointer: _Checkpointer | None = None,
    ) -> None:
        self._connection = connection
        self._lock = asyncio.Lock()
        self.path: Path = path
        # None: everything on aiosqlite's thread, SQLite checkpointing on its own (as
        # before the loop took the short statements; kept for A/B benchmarks).
        self._wal = checkpointer
        self._raw: sqlite3.Connection = connection._conn
        self._on_loop = _OnLoop(self._raw)
        self._scrubs = 0

    def _enter(self, sql: str | None) -> bool:
        """Whether to run on the loop's thread (a write: holding the gate until `_leave`)."""
        if self._wal is None:
            return False
        if sql is not None and _reads_only(sql):
            return True
        return self._wal.enter()

    @asynccontextmanager
    async def transaction(
        self, *, heavy: bool = False, serial: bool = True
    ) -> AsyncIterator[Connection]:
        # The single writer serialises every transaction: `serial` is PostgreSQL's.
        # IMMEDIATE takes the write lock up front, so a transaction never fails half-way
        # with SQLITE_BUSY on upgrade from a read lock.
        async with self._lock:
            if not heavy and self._enter(None):
                assert self._wal is not None
                try:
                    self._raw.execute("BEGIN IMMEDIATE")
                    try:
                        yield self._on_loop
                    except BaseException:
                        self._raw.rollback()
                        raise
                    else:
                        self._raw.commit()
                finally:
                    self._wal.leave()
                return
            epoch, changes = self._before_thread()
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                await self._connection.rollback()
                raise
            else:
                await self._connection.commit()
            self._after_thread(epoch, changes)

    def _before_thread(self) -> tuple[int, int]:
        return (0 if self._wal is None else self._wal.pending), self._raw.total_changes

    def _after_thread(self, epoch: int, changes: int) -> None:
        if self._wal is not None and epoch and self._raw.total_changes != changes:
            self._wal.wrote(epoch)

    async def fetchone(self, sql: str, params: Params = (), *, heavy: bool = False) -> Row | None:
        rows = await self.fetchall(sql, params, heavy=heavy)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = (), *, heavy: bool = False) -> list[Row]:
        # A statement on the loop's thread runs to its end without yielding: when nobody
        # holds the lock, nobody can take it meanwhile, so it need not be taken.
        if not heavy and not self._lock.locked() and self._enter(sql):
            try:
                return self._raw.execute(sql, params).fetchall()
            finally:
                self._leave(sql)
        async with self._lock:
            if not heavy and self._enter(sql):
                try:
                    return self._raw.execute(sql, params).fetchall()
                finally:
                    self._leave(sql)
            epoch, changes = self._before_thread()
            rows: list[Row] = list(await self._connection.execute_fetchall(sql, params))
            self._after_thread(epoch, changes)
            return rows

    async def execute(self, sql: str, params: Params = (), *, heavy: bool = False) -> int:
        """One statement, atomic on its own (the connection is in autocommit mode);
        returns the number of rows changed."""
        if not heavy and not self._lock.locked() and self._enter(sql):  # as in fetchall
            try:
                return self._raw.execute(sql, params).rowcount
            finally:
                self._leave(sql)
        async with self._lock:
            if not heavy and self._enter(sql):
                try:
                    return self._raw.execute(sql, params).rowcount
                finally:
                    self._leave(sql)
            epoch, changes = self._before_thread()
            cursor = await self._connection.execute(sql, params)
            self._after_thread(epoch, changes)
            return cursor.rowcount

    def _leave(self, sql: str) -> None:
        if self._wal is not None and not _reads_only(sql):
            self._wal.leave()

    async def executemany(self, sql: str, params: Iterable[Params]) -> None:
        async with self.transaction() as connection:
            await connection.executemany(sql, params)

    def scrub_erased(self) -> int:
        return self.scrub_wal()

    async def erased_scrubbed(self, number: int) -> None:
        await self.wal_scrubbed(number)

    def scrub_wal(self) -> int:
        """Ask for the WAL to be copied into the file and cut to zero bytes as soon as no
        reader holds an old snapshot: after an erasure, the WAL's page images still hold the
        erased values. Does not wait; `wal_scrubbed` does."""
        if self._wal is not None:
            return self._wal.request_truncate()
        self._scrubs += 1
        return self._scrubs

    async def wal_scrubbed(self, number: int) -> None:
        """Return once the WAL was cut after request `number` (see `scrub_wal`)."""
        if self._wal is not None:
            await self._wal.truncated(number)
            return
        # Without the checkpointer's thread (A/B benchmarks): here, retried the same way.
        while True:
            row = await self.fetchone("PRAGMA wal_checkpoint(TRUNCATE)", heavy=True)
            if row is not None and not row[0]:
                return
            await asyncio.sleep(TRUNCATE_RETRY)

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        assert row is not None
        return int(row[0])


async def _migrate(connection: aiosqlite.Connection, target: int) -> int:
    """Apply the steps past the file's version; returns the version it had."""
    async with connection.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    current = int(row[0]) if row else 0
    if current > len(MIGRATIONS):
        raise MigrationError(
            f"database schema version {current} is newer than this bot knows "
            f"({len(MIGRATIONS)}); upgrade the bot"
        )
    # A step may make a table anew (SQLite cannot drop NOT NULL in place): with foreign keys
    # on, dropping the old table would fail on the rows that refer to it. So they are off
    # during the steps (the pragma is ignored inside a transaction) and checked before each
    # commit, as sqlite.org/lang_altertable.html describes.
    await connection.execute("PRAGMA foreign_keys = OFF")
    try:
        for version in range(current + 1, target + 1):
            await _step(connection, version)
    finally:
        await connection.execute("PRAGMA foreign_keys = ON")
    return current


async def _step(connection: aiosqlite.Connection, version: int) -> None:
    try:
        # executescript() commits first, then runs the script, whose BEGIN leaves the
        # transaction open: the check and the version go in the same transaction.
        await connection.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[version - 1]}")
        async with connection.execute("PRAGMA foreign_key_check") as cursor:
            broken = await cursor.fetchone()
        if broken is not None:
            raise MigrationError(
                f"migration to schema version {version} failed: a row of {broken[0]} "
                f"refers to a missing row of {broken[2]}"
            )
        await connection.execute(f"PRAGMA user_version = {version}")
        await connection.commit()
    except (sqlite3.Error, MigrationError) as error:
        await connection.rollback()
        if isinstance(error, MigrationError):
            raise
        raise MigrationError(f"migration to schema version {version} failed: {error}") from error
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
    path: Path | str,
    *,
    url: str | None = None,
    migrate_to: int | None = None,
    busy_timeout_ms: int = 5000,
    on_loop: bool = True,
    checkpoint_interval: float = CHECKPOINT_INTERVAL,
) -> AsyncIterator[Database]:
    """The configured engine, opened and migrated: PostgreSQL at `url` (DATABASE_URL) when
    given, else the SQLite file at `path`; closed on exit. Everything that opens the
    database goes through here."""
    if url is not None:
        # Imported only when asked for: the SQLite default never loads asyncpg.
        from storage.postgres import open_postgres

        async with open_postgres(url, migrate_to=migrate_to) as postgres:
            yield postgres
        return
    async with open_sqlite(
        path,
        migrate_to=migrate_to,
        busy_timeout_ms=busy_timeout_ms,
        on_loop=on_loop,
        checkpoint_interval=checkpoint_interval,
    ) as sqlite:
        yield sqlite


@asynccontextmanager
async def open_sqlite(
    path: Path | str,
    *,
    migrate_to: int | None = None,
    busy_timeout_ms: int = 5000,
    on_loop: bool = True,
    checkpoint_interval: float = CHECKPOINT_INTERVAL,
) -> AsyncIterator[SQLiteDatabase]:
    """Open (creating if needed) and migrate the SQLite file; close it on exit.

    `migrate_to` stops at an older schema version: tests use it to check upgrades.
    `on_loop=False` puts every statement on aiosqlite's thread and leaves checkpoints to
    SQLite (how the bot worked before; benchmarks compare the two).
    """
    path = Path(path)
    _create_private_file(path)
    # WAL and SHM side files inherit the main file's permissions in SQLite.
    # check_same_thread=False: the event loop's thread uses the connection too, never at
    # the same time as aiosqlite's (Database._lock).
    connection = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
    checkpointer: _Checkpointer | None = None
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
        # Deleted and overwritten values are zeroed in the file, not left in free space:
        # an erasure (152-FZ) must leave no copy that a look at the file's bytes would find.
        await connection.execute("PRAGMA secure_delete = ON")
        target = len(MIGRATIONS) if migrate_to is None else migrate_to
        was = await _migrate(connection, target)
        if 0 < was < SECURE_DELETE_SINCE <= target:
            # The file was written before secure_delete: its free space may still hold what
            # was deleted (withdrawn people's data, delivered cards). VACUUM writes the file
            # anew without it; TRUNCATE empties the WAL that VACUUM went through. Once.
            await connection.execute("VACUUM")
            await connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            logger.info("Database rewritten once, without the free space of older versions")
        if on_loop:
            # No checkpoint inside a commit: they run on the checkpointer's thread.
            await connection.execute("PRAGMA wal_autocheckpoint = 0")
            await connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            checkpointer = _Checkpointer(path, interval=checkpoint_interval)
            checkpointer.start()
        yield SQLiteDatabase(connection, path, checkpointer=checkpointer)
    finally:
        if checkpointer is not None:
            await checkpointer.stop()
        # The last connection to close copies the WAL into the file (on aiosqlite's thread).
        await connection.close()
