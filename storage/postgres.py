"""PostgreSQL (DATABASE_URL) behind the same `Database` and `Connection` as SQLite.

Repositories keep one SQL text, SQLite's; it is translated here, once per text (`translate`):
`?` and `:name` become `$n`, `INSERT OR IGNORE` becomes `ON CONFLICT DO NOTHING`, `IS [NOT] ?`
becomes `IS [NOT] DISTINCT FROM`, `json_group_object` becomes `json_object_agg`. SQLite's
functions the SQL calls (`casefold`, `instr`, `json_extract`) are SQL functions in the
schema (storage/migrations.py: POSTGRES_BASELINE). Times are `timestamptz` in the schema; the
repositories read and write them as `utc_iso` text, which a codec on each pooled connection
turns into and out of the binary form (no text parsing on the server or here).

SQLite has one writer; PostgreSQL's READ COMMITTED does not serialise a read-then-write across
connections or replicas. So `transaction()` takes one global transaction-scoped advisory lock:
the same guarantee, for every replica. A transaction that is safe without it says so
(`serial=False`). Single statements are atomic on their own, as on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar

import asyncpg

from storage.database import (
    Database,
    DatabaseUnavailable,
    Dialect,
    IntegrityError,
    MigrationError,
    Params,
    Row,
)
from storage.migrations import (
    LATEST_VERSION,
    POSTGRES_BASELINE,
    POSTGRES_BASELINE_VERSION,
    POSTGRES_MIGRATIONS,
)

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock keys (any two bigints distinct from others the database's users take).
# Every transaction but those with serial=False; and a registration made in one statement
# (storage/registrations.py, schema step 21's create_registration), inside the function.
SERIAL_LOCK = 0x7265_6769_7374_0001
MIGRATION_LOCK = 0x7265_6769_7374_0002  # a replica migrating; the others wait
# Connections per process. A handler holds one for a transaction's length; the global lock
# lets one writer run at a time anyway, so a few are plenty.
POOL_SIZE = 10
# An erasure's VACUUM waits this long for more erasures, so a burst vacuums once.
VACUUM_DELAY = 1.0
# The tables an erasure changes rows of (storage/erasure.py, storage/drafts.py, /forget).
ERASED_TABLES = ("registrations", "answers", "outbox", "fsm_states", "inbox", "chats", "languages")
# Translations kept: a statement built with n placeholders is a text of its own.
_CACHE_LIMIT = 4096


class PostgresIntegrityError(IntegrityError):
    """asyncpg's IntegrityConstraintViolationError, as the repositories catch it."""


# --- translation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Translated:
    sql: str
    # `:name` parameters: the name of $1, $2, ...; None for `?` ones (taken in order).
    names: tuple[str, ...] | None
    returns_rows: bool  # a SELECT, or a write with RETURNING
    is_query: bool  # a SELECT (SQLite's rowcount is -1 for those)


# One token at a time, left to right; each alternative is linear (no nested repetition).
_TOKEN = re.compile(
    r"""
    (?P<string>'(?:[^']|'')*'?)
    |(?P<ident>"(?:[^"]|"")*"?)
    |(?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    |(?P<cast>::)
    |(?P<named>:[A-Za-z_][A-Za-z0-9_]*)
    |(?P<question>\?)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<open>\()
    |(?P<close>\))
    |(?P<space>\s+)
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_QUERY_WORDS = frozenset({"SELECT", "WITH", "VALUES", "SHOW"})
_cache: dict[str, Translated] = {}


def translate(sql: str) -> Translated:
    """SQLite's SQL as PostgreSQL's; cached per text."""
    hit = _cache.get(sql)
    if hit is not None:
        return hit
    translated = _translate(sql)
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[sql] = translated
    return translated


def _translate(sql: str) -> Translated:
    out: list[str] = []
    named: dict[str, int] = {}
    positional = 0
    depth = 0
    first_word: str | None = None
    returning_at: int | None = None  # where a top-level RETURNING starts in `out`
    ignore = False  # INSERT OR IGNORE
    # The last two words and other significant tokens, with their place in `out`.
    recent: list[tuple[str, int]] = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        text = match.group()
        if kind == "space" or kind == "comment":
            out.append(text)
            continue
        if kind == "named" or kind == "question":
            if kind == "named":
                name = text[1:]
                number = named.setdefault(name, len(named) + 1)
            else:
                positional += 1
                number = positional
            # `x IS ?` / `x IS NOT ?`: SQLite's null-safe comparison.
            if recent and recent[-1][0] == "IS":
                out[recent[-1][1]] = "IS NOT DISTINCT FROM"
            elif len(recent) >= 2 and recent[-1][0] == "NOT" and recent[-2][0] == "IS":
                out[recent[-2][1]] = "IS DISTINCT FROM"
                out[recent[-1][1]] = ""
            out.append(f"${number}")
            recent = [*recent[-1:], ("$", len(out) - 1)]
            continue
        if kind == "word":
            upper = text.upper()
            if first_word is None:
                first_word = upper
            if upper == "IGNORE" and len(recent) >= 2 and recent[-1][0] == "OR":
                if recent[-2][0] == "INSERT":
                    out[recent[-1][1]] = ""
                    ignore = True
                    text = ""
            elif upper == "RETURNING" and depth == 0:
                returning_at = len(out)
            elif upper == "JSON_GROUP_OBJECT":
                text = "json_object_agg"
            out.append(text)
            recent = [*recent[-1:], (upper, len(out) - 1)]
            continue
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
        out.append(text)
        recent = [*recent[-1:], (text, len(out) - 1)]
    if positional and named:
        raise ValueError("SQL mixes ? and :name parameters")
    if ignore:
        if returning_at is not None:
            out.insert(returning_at, "ON CONFLICT DO NOTHING ")
        else:
            while out and (not out[-1].strip() or out[-1] == ";"):
                out.pop()
            out.append(" ON CONFLICT DO NOTHING")
    is_query = first_word in _QUERY_WORDS
    return Translated(
        sql="".join(out),
        names=tuple(named) if named else (None if positional else ()),
        returns_rows=is_query or returning_at is not None,
        is_query=is_query,
    )


def _arguments(translated: Translated, params: Params | None) -> Sequence[Any]:
    if params is None:
        return ()
    if translated.names is None:
        if isinstance(params, Mapping):
            raise TypeError("? parameters need a sequence")
        return params
    if not translated.names:
        return ()
    if not isinstance(params, Mapping):
        raise TypeError(":name parameters need a mapping")
    return [params[name] for name in translated.names]


def _rowcount(status: str) -> int:
    # "INSERT 0 3", "UPDATE 2", "DELETE 0": the last word counts the rows.
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else -1


# --- times ------------------------------------------------------------------------------------

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's, for its binary timestamps
_MICROSECOND = timedelta(microseconds=1)


def _encode_instant(value: str | datetime) -> tuple[int]:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise ValueError("naive time: store aware times only")
    return ((moment - _EPOCH) // _MICROSECOND,)


def _decode_instant(value: tuple[int]) -> str:
    # Exactly what storage.database.utc_iso makes of the same instant.
    return (_EPOCH + value[0] * _MICROSECOND).isoformat()


async def _set_up_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=_encode_instant,
        decoder=_decode_instant,
        format="tuple",
    )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What a connection returned to the pool needs beyond asyncpg's own rollback of an open
    transaction: nothing. The bot leaves no session state (no SET, LISTEN, cursor or session
    lock; its advisory locks end with their transactions), and asyncpg's default reset
    (pg_advisory_unlock_all, CLOSE ALL, UNLISTEN *, RESET ALL) is one more round trip after
    every statement: it doubled the server's work per update."""


# --- the connection inside a transaction ------------------------------------------------------


class _Cursor:
    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[asyncpg.Record], rowcount: int) -> None:
        self._rows: Iterator[asyncpg.Record] = iter(rows)
        self.rowcount = rowcount

    async def fetchone(self) -> Row | None:
        return next(self._rows, None)

    async def fetchall(self) -> list[Row]:
        return list(self._rows)


class _Result:
    """Awaitable, and usable as `async with connection.execute(...) as cursor`, like
    aiosqlite's."""

    __slots__ = ("_coroutine",)

    def __init__(self, coroutine: Any) -> None:
        self._coroutine = coroutine

    def __await__(self) -> Generator[Any, None, _Cursor]:
        result: _Cursor = yield from self._coroutine.__await__()
        return result

    async def __aenter__(self) -> _Cursor:
        result: _Cursor = await self._coroutine
        return result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        return None


class PostgresConnection:
    """The subset of aiosqlite.Connection that repositories use (storage.database.Connection)."""

    __slots__ = ("_changes", "_raw")

    def __init__(self, raw: asyncpg.Connection) -> None:
        self._raw = raw
        self._changes = 0

    @property
    def total_changes(self) -> int:
        """Rows changed by `execute` in this transaction (not `executemany`'s: asyncpg does
        not count them)."""
        return self._changes

    def execute(self, sql: str, parameters: Params | None = None, /) -> _Result:
        return _Result(self._execute(sql, parameters))

    async def _execute(self, sql: str, parameters: Params | None) -> _Cursor:
        translated = translate(sql)
        arguments = _arguments(translated, parameters)
        try:
            if translated.returns_rows:
                rows = await self._raw.fetch(translated.sql, *arguments)
                count = -1 if translated.is_query else len(rows)
            else:
                rows = []
                count = _rowcount(await self._raw.execute(translated.sql, *arguments))
        except asyncpg.IntegrityConstraintViolationError as error:
            raise PostgresIntegrityError(str(error)) from error
        if count > 0:
            self._changes += count
        return _Cursor(rows, count)

    async def execute_fetchall(self, sql: str, parameters: Params | None = None, /) -> list[Row]:
        cursor = await self._execute(sql, parameters)
        return await cursor.fetchall()

    async def executemany(self, sql: str, parameters: Iterable[Params], /) -> None:
        translated = translate(sql)
        arguments = [_arguments(translated, params) for params in parameters]
        if not arguments:
            return
        try:
            await self._raw.executemany(translated.sql, arguments)
        except asyncpg.IntegrityConstraintViolationError as error:
            raise PostgresIntegrityError(str(error)) from error


# --- the database -----------------------------------------------------------------------------


def _lost(connection: asyncpg.Connection) -> bool:
    """Whether a connection kept out of the pool can no longer be used: closed, or, once its
    server connection was lost, given back to the pool by asyncpg (whose proxy then refuses
    every call, is_closed included)."""
    try:
        return bool(connection.is_closed())
    except asyncpg.InterfaceError:
        return True


async def _give_back(pool: asyncpg.Pool, connection: asyncpg.Connection) -> None:
    with suppress(asyncpg.InterfaceError):  # asyncpg took it back already
        await pool.release(connection)


class PostgresDatabase(Database):
    dialect: ClassVar[Dialect] = "postgres"

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self.path = None
        # DATABASE_URL, for the export's own read-only connection (never logged).
        self.dsn = dsn
        # A connection of the pool's kept for single statements while no other uses it: the
        # pool's acquire and release cost about as much CPU as the statement itself.
        self._direct: asyncpg.Connection | None = None
        self._direct_busy = False
        # Another, for `record`: its commits do not wait for the WAL's flush
        # (synchronous_commit off), which took about 130 µs of the server's CPU a commit
        # here, most of a short write's cost. Such a commit is visible at once; it is lost
        # only if the server crashes within about 0.6 s (3 × wal_writer_delay), and a later
        # synchronous commit (an inbox write, a registration) flushes it with its own.
        self._relaxed: asyncpg.Connection | None = None
        self._relaxed_busy = False
        # Erasures waiting for a VACUUM: numbered like SQLite's WAL scrubs.
        self._requested = 0
        self._vacuumed = 0
        self._vacuum: asyncio.Task[None] | None = None
        self._vacuum_done = asyncio.Condition()

    @asynccontextmanager
    async def transaction(
        self, *, heavy: bool = False, serial: bool = True
    ) -> AsyncIterator[PostgresConnection]:
        async with self._pool.acquire() as raw:
            # One round trip for both (the simple protocol takes several statements).
            await raw.execute(
                f"BEGIN; SELECT pg_advisory_xact_lock({SERIAL_LOCK})" if serial else "BEGIN"
            )
            try:
                yield PostgresConnection(raw)
            except BaseException:
                # A broken connection: the pool closes it, and the first error stands.
                with suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    if not raw.is_closed():
                        await raw.execute("ROLLBACK")
                raise
            try:
                await raw.execute("COMMIT")
            except asyncpg.IntegrityConstraintViolationError as error:
                raise PostgresIntegrityError(str(error)) from error

    async def fetchone(self, sql: str, params: Params = (), *, heavy: bool = False) -> Row | None:
        rows = await self.fetchall(sql, params, heavy=heavy)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = (), *, heavy: bool = False) -> list[Row]:
        translated = translate(sql)
        rows: list[Row] = await self._statement(
            "fetch", translated.sql, _arguments(translated, params)
        )
        return rows

    async def execute(self, sql: str, params: Params = (), *, heavy: bool = False) -> int:
        translated = translate(sql)
        arguments = _arguments(translated, params)
        if translated.returns_rows:
            rows = await self._statement("fetch", translated.sql, arguments)
            return -1 if translated.is_query else len(rows)
        return _rowcount(await self._statement("execute", translated.sql, arguments))

    async def _statement(self, method: str, sql: str, arguments: Sequence[Any]) -> Any:
        """One statement in autocommit: on the kept connection when it is free, else on
        any of the pool's."""
        direct = self._direct
        if direct is not None and not self._direct_busy and _lost(direct):
            await self._replace_direct(direct)  # lost while idle (the server restarted)
            direct = self._direct
        try:
            if direct is None or self._direct_busy:
                return await getattr(self._pool, method)(sql, *arguments)
            self._direct_busy = True
            try:
                return await getattr(direct, method)(sql, *arguments)
            finally:
                self._direct_busy = False
                if self._direct is direct and _lost(direct):
                    await self._replace_direct(direct)  # lost with this statement
        except asyncpg.IntegrityConstraintViolationError as error:
            raise PostgresIntegrityError(str(error)) from error

    async def record(self, sql: str, params: Params = ()) -> int:
        relaxed = self._relaxed
        if relaxed is not None and not self._relaxed_busy and _lost(relaxed):
            await self._replace_relaxed(relaxed)  # lost while idle (the server restarted)
            relaxed = self._relaxed
        if relaxed is None or self._relaxed_busy:
            return await self.execute(sql, params)
        translated = translate(sql)
        arguments = _arguments(translated, params)
        self._relaxed_busy = True
        try:
            if translated.returns_rows:
                return len(await relaxed.fetch(translated.sql, *arguments))
            return _rowcount(await relaxed.execute(translated.sql, *arguments))
        except asyncpg.IntegrityConstraintViolationError as error:
            raise PostgresIntegrityError(str(error)) from error
        finally:
            self._relaxed_busy = False
            if self._relaxed is relaxed and _lost(relaxed):
                await self._replace_relaxed(relaxed)  # lost with this write

    async def _replace_direct(self, lost: asyncpg.Connection) -> None:
        """A kept connection gone with its server connection (asyncpg may have taken it back
        already): a new one from the pool; None meanwhile, so statements use the pool's."""
        self._direct = None
        await _give_back(self._pool, lost)
        self._direct = await self._pool.acquire()

    async def _replace_relaxed(self, lost: asyncpg.Connection) -> None:
        """As `_replace_direct`, for the bookkeeping connection."""
        self._relaxed = None
        await _give_back(self._pool, lost)
        self._relaxed = await self._relaxed_connection()

    async def executemany(self, sql: str, params: Iterable[Params]) -> None:
        # Callers' statements are keyed updates of one row each (outbox marks): atomic
        # together, and nothing read first, so no need for the global lock.
        async with self.transaction(serial=False) as connection:
            await connection.executemany(sql, params)

    @asynccontextmanager
    async def raw_transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """asyncpg's own connection inside a transaction, for what the common interface has
        no word for (COPY: storage/transfer.py)."""
        async with self._pool.acquire() as raw, raw.transaction():
            yield raw

    async def session(self) -> asyncpg.Connection:
        """A connection of its own, outside the pool, for session-level advisory locks that
        live as long as it does (storage/replicas.py); the caller closes it."""
        connection: asyncpg.Connection = await asyncpg.connect(
            self.dsn, server_settings={"TimeZone": "UTC"}
        )
        return connection

    async def schema_version(self) -> int:
        row = await self.fetchone("SELECT version FROM schema_version")
        return 0 if row is None else int(row[0])

    def scrub_erased(self) -> int:
        """An erasure leaves the old row versions in the table's pages until VACUUM makes
        their space free (reused, not zeroed: see README on what PostgreSQL keeps and how
        long). Vacuumed soon after, once for a burst, off the update's path."""
        self._requested += 1
        if self._vacuum is None or self._vacuum.done():
            self._vacuum = asyncio.create_task(self._vacuum_soon(), name="postgres-vacuum")
        return self._requested

    async def erased_scrubbed(self, number: int) -> None:
        async with self._vacuum_done:
            await self._vacuum_done.wait_for(lambda: self._vacuumed >= number)

    async def _vacuum_soon(self) -> None:
        while self._vacuumed < self._requested:
            await asyncio.sleep(VACUUM_DELAY)
            number = self._requested
            try:
                # VACUUM cannot run inside a transaction: a pooled connection in autocommit.
                await self._pool.execute(f"VACUUM {', '.join(ERASED_TABLES)}")
            except (asyncpg.PostgresError, OSError) as error:
                logger.warning("VACUUM after an erasure failed (%s)", type(error).__name__)
                await asyncio.sleep(VACUUM_DELAY)
                continue
            async with self._vacuum_done:
                self._vacuumed = number
                self._vacuum_done.notify_all()

    async def keep_a_connection(self) -> None:
        self._direct = await self._pool.acquire()
        if self._pool.get_max_size() < 4:
            return  # a pool this small is for tests of the pool itself: none kept
        self._relaxed = await self._relaxed_connection()

    async def _relaxed_connection(self) -> asyncpg.Connection:
        relaxed: asyncpg.Connection = await self._pool.acquire()
        try:
            await relaxed.execute("SET synchronous_commit = off")
        except BaseException:
            await self._pool.release(relaxed)
            raise
        return relaxed

    async def close(self) -> None:
        if self._vacuum is not None and not self._vacuum.done():
            # An erasure's VACUUM is not given up at a stop: it takes a moment at most.
            await self._vacuum
        if self._direct is not None:
            direct, self._direct = self._direct, None
            await self._pool.release(direct)
        if self._relaxed is not None:
            relaxed, self._relaxed = self._relaxed, None
            with suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await relaxed.execute("RESET synchronous_commit")
            await self._pool.release(relaxed)
        await self._pool.close()


# --- migrations -------------------------------------------------------------------------------


async def _migrate(connection: asyncpg.Connection, target: int) -> int:
    """Bring the schema to `target` under a session advisory lock (two replicas starting at
    once: one migrates, the other waits and finds it done); returns the version it had."""
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), version INTEGER NOT NULL)"
        )
        current = await connection.fetchval("SELECT version FROM schema_version") or 0
        if current > LATEST_VERSION:
            raise MigrationError(
                f"database schema version {current} is newer than this bot knows "
                f"({LATEST_VERSION}); upgrade the bot"
            )
        if current == 0 and target < POSTGRES_BASELINE_VERSION:
            raise MigrationError(
                f"PostgreSQL starts at schema version {POSTGRES_BASELINE_VERSION}, not {target}"
            )
        version = current
        while version < target:
            step = version + 1 if version else POSTGRES_BASELINE_VERSION
            script = POSTGRES_BASELINE if not version else POSTGRES_MIGRATIONS[step]
            try:
                async with connection.transaction():
                    await connection.execute(script)
                    await connection.execute(
                        "INSERT INTO schema_version (version) VALUES ($1) "
                        "ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                        step,
                    )
            except asyncpg.PostgresError as error:
                raise MigrationError(
                    f"migration to schema version {step} failed: {error}"
                ) from error
            logger.info("Database schema migrated to version %d", step)
            version = step
        return int(current)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


@asynccontextmanager
async def open_postgres(
    url: str, *, migrate_to: int | None = None, pool_size: int = POOL_SIZE
) -> AsyncIterator[PostgresDatabase]:
    """Connect a pool to DATABASE_URL and migrate; closed on exit. Errors never carry the
    URL (it may hold a password)."""
    target = LATEST_VERSION if migrate_to is None else migrate_to
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=pool_size,
            init=_set_up_connection,
            reset=_keep_session,
            # now() and dates in SQL are UTC whatever the server's default zone.
            server_settings={"TimeZone": "UTC"},
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # asyncpg's messages name the host and the user, never the password.
        raise DatabaseUnavailable(
            f"DATABASE_URL: cannot connect to PostgreSQL ({type(error).__name__}: {error})"
        ) from None
    assert pool is not None
    db = PostgresDatabase(pool, url)
    try:
        async with pool.acquire() as connection:
            await _migrate(connection, target)
        await db.keep_a_connection()
        yield db
    finally:
        await db.close()


# --- the export's snapshot --------------------------------------------------------------------


class SnapshotCursor:
    """A sqlite3.Cursor-like reader over a server-side cursor of `Snapshot`'s transaction."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.connection = snapshot
        self._cursor: Any = None

    def execute(self, sql: str, parameters: Params = (), /) -> SnapshotCursor:
        if sql.strip().upper() in ("BEGIN", "ROLLBACK"):
            # The whole snapshot is one transaction already, ended when it closes.
            self._cursor = None
            return self
        translated = translate(sql)
        arguments = _arguments(translated, parameters)
        connection = self.connection.raw

        async def open_cursor() -> Any:
            return await connection.cursor(translated.sql, *arguments)

        self._cursor = self.connection.run(open_cursor())
        return self

    def fetchmany(self, size: int = 1000) -> list[tuple[Any, ...]]:
        if self._cursor is None:
            return []
        rows = self.connection.run(self._cursor.fetch(size))
        return [tuple(row) for row in rows]

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self.fetchmany(1)
        return rows[0] if rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        while batch := self.fetchmany(1000):
            rows.extend(batch)
        return rows

    def close(self) -> None:
        self._cursor = None


class Snapshot:
    """The subset of a read-only sqlite3.Connection that the export uses (storage/export/),
    over one REPEATABLE READ READ ONLY transaction: every query sees the same rows however
    long the export takes, and rows come from server-side cursors a batch at a time. The
    export is synchronous code in a child process: asyncpg runs on a loop in a thread here."""

    dialect: ClassVar[Dialect] = "postgres"

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.raw: asyncpg.Connection = self.run(self._open(url))

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _open(self, url: str) -> asyncpg.Connection:
        try:
            connection = await asyncpg.connect(url, server_settings={"TimeZone": "UTC"})
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise DatabaseUnavailable(
                f"DATABASE_URL: cannot connect to PostgreSQL ({type(error).__name__}: {error})"
            ) from None
        await _set_up_connection(connection)
        await connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return connection

    def cursor(self) -> SnapshotCursor:
        return SnapshotCursor(self)

    def execute(self, sql: str, parameters: Params = (), /) -> SnapshotCursor:
        return SnapshotCursor(self).execute(sql, parameters)

    def close(self) -> None:
        try:
            self.run(self.raw.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
