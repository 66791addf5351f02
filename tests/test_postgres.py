"""The PostgreSQL engine itself: the SQL translation, times as text, the schema beside SQLite's,
migrations under a lock, the global write lock, VACUUM after an erasure. (Every repository and
dispatcher test runs on PostgreSQL too: tests/conftest.py.)"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiogram.fsm.storage.base import StorageKey

from bot.domain.config import SettingsError, load_data_settings
from storage.database import Database, IntegrityError, open_database, utc_iso
from storage.fsm import SQLiteStorage
from storage.inbox import Arrival, Inbox, insert_arrivals
from storage.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    POSTGRES_BASELINE_VERSION,
    POSTGRES_MIGRATIONS,
)
from storage.postgres import PostgresDatabase, open_postgres, translate
from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import (
    TOKEN,
    assert_no_trace,
    bot_env,
    bot_process,
    db_file,
    register_over_http,
    upcoming_event_toml,
)
from tests.postgres_server import create_schema, drop_schema, with_schema

postgres_only = pytest.mark.postgres_only


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = $1 AND b = $2"),
        ("SELECT :a, :b, :a", "SELECT $1, $2, $1"),
        # Strings, quoted names, comments and casts are not parameters.
        (
            "SELECT '?', 'it''s :x', \"odd?\" -- ?\n, a::text FROM t WHERE c = :c",
            "SELECT '?', 'it''s :x', \"odd?\" -- ?\n, a::text FROM t WHERE c = $1",
        ),
        (
            "INSERT OR IGNORE INTO t (a) VALUES (?)",
            "INSERT   INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING",
        ),
        (
            "INSERT OR IGNORE INTO t (a) VALUES (?) RETURNING a",
            "INSERT   INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING RETURNING a",
        ),
        (
            "SELECT 1 WHERE a IS NOT ? AND b IS ?",
            "SELECT 1 WHERE a IS DISTINCT FROM  $1 AND b IS NOT DISTINCT FROM $2",
        ),
        ("SELECT a IS NOT NULL FROM t", "SELECT a IS NOT NULL FROM t"),
        (
            "SELECT json_group_object(k, v) FROM t",
            "SELECT json_object_agg(k, v) FROM t",
        ),
        # A RETURNING inside a subquery is not the statement's.
        ("UPDATE t SET a = 1", "UPDATE t SET a = 1"),
    ],
)
def test_sqlite_sql_is_translated_for_postgres(sqlite: str, postgres: str) -> None:
    assert translate(sqlite).sql == postgres


def test_translation_knows_what_returns_rows() -> None:
    assert translate("SELECT 1").returns_rows and translate("SELECT 1").is_query
    assert translate("DELETE FROM t RETURNING id").returns_rows
    assert not translate("DELETE FROM t RETURNING id").is_query
    assert not translate("UPDATE t SET a = (SELECT 1)").returns_rows
    assert translate("SELECT :a, :b").names == ("a", "b")
    assert translate("SELECT ?").names is None


def test_translation_is_linear_on_hostile_text() -> None:
    # An unterminated string or comment ends the text; nothing backtracks.
    long = "SELECT '" + "''" * 50_000
    assert translate(long).sql == long
    assert translate("SELECT 1 /* " + "*" * 100_000).sql.startswith("SELECT 1")


def test_each_step_after_the_postgres_baseline_has_a_postgres_form() -> None:
    """The rule in storage/migrations.py: a new step is written for both engines."""
    assert set(POSTGRES_MIGRATIONS) == set(range(POSTGRES_BASELINE_VERSION + 1, LATEST_VERSION + 1))
    assert len(MIGRATIONS) == LATEST_VERSION


def test_database_url_must_be_postgresql_and_is_never_repeated() -> None:
    with pytest.raises(SettingsError) as caught:
        load_data_settings(_env_file=None, database_url="mysql://user:hunter2@host/db")
    message = str(caught.value)
    assert message.startswith("DATABASE_URL: ") and "\n" not in message
    assert "hunter2" not in message
    loaded = load_data_settings(_env_file=None, database_url="postgres://u:hunter2@h/db")
    assert loaded.database_dsn == "postgres://u:hunter2@h/db"
    assert "hunter2" not in repr(loaded)
    assert load_data_settings(_env_file=None, database_url="").database_url is None


@postgres_only
async def test_times_go_in_and_come_out_as_utc_iso_text(db: Database) -> None:
    moments = [
        datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
        datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=3))),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    for number, moment in enumerate(moments):
        await db.execute(
            "INSERT INTO digests (local_date, created_at) VALUES (?, ?)",
            (f"day-{number}", utc_iso(moment)),
        )
    rows = await db.fetchall("SELECT created_at FROM digests ORDER BY local_date")
    assert [row[0] for row in rows] == [utc_iso(moment) for moment in moments]
    # Compared as times, not text: 12:00+03 is 09:00 UTC.
    [row] = await db.fetchall(
        "SELECT count(*) FROM digests WHERE created_at = ?", ("2026-11-26T12:00:00.123456+03:00",)
    )
    assert row[0] == 1


@postgres_only
async def test_postgres_schema_has_sqlites_tables_and_columns(db: Database, tmp_path: Path) -> None:
    async with open_database(tmp_path / "lite.sqlite3") as lite:
        tables = [
            row[0]
            for row in await lite.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        sqlite_columns = {
            table: sorted(row[1] for row in await lite.fetchall(f"PRAGMA table_info({table})"))
            for table in tables
        }
        sqlite_indexes = sorted(
            row[0]
            for row in await lite.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        )
    rows = await db.fetchall(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name != 'schema_version'"
    )
    postgres_columns: dict[str, list[str]] = {}
    for table, column in rows:
        postgres_columns.setdefault(table, []).append(column)
    assert {table: sorted(columns) for table, columns in postgres_columns.items()} == sqlite_columns
    indexes = await db.fetchall(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
        "AND indexname NOT LIKE '%_pkey'"
    )
    # PostgreSQL has two more: the referencing side of outbox's foreign key, and the inbox by
    # chat, which replicas read at every turn (one SQLite process never does).
    assert sorted(row[0] for row in indexes) == sorted(
        [*sqlite_indexes, "outbox_by_registration", "inbox_by_lane"]
    )


@postgres_only
async def test_constraints_hold_on_postgres_as_on_sqlite(db: Database) -> None:
    await db.execute(
        "INSERT INTO registrations (event_id, user_id, telegram_name, full_name, position, "
        "organization, phone, email, consent_at, consent_version, status, created_at, "
        "updated_at) VALUES ('forum-2026', 1, 't', 'n', 'p', 'o', '+79123456789', 'a@b.ru', "
        "?, 'v1', 'confirmed', ?, ?)",
        (utc_iso(datetime.now(UTC)),) * 3,
    )
    for bad in ("phone = '89123456789'", "email = 'no-at'", "status = 'maybe'", "source = 'a b'"):
        with pytest.raises(IntegrityError):
            await db.execute(f"UPDATE registrations SET {bad}")
    with pytest.raises(IntegrityError):  # the foreign key
        await db.execute("UPDATE registrations SET event_id = 'nowhere'")


@postgres_only
async def test_two_replicas_starting_at_once_migrate_once(postgres_server: str) -> None:
    schema = await create_schema(postgres_server)
    url = with_schema(postgres_server, schema)

    async def start() -> int:
        async with open_database(Path("unused"), url=url) as db:
            return await db.schema_version()

    try:
        assert await asyncio.gather(start(), start(), start()) == [LATEST_VERSION] * 3
    finally:
        await drop_schema(postgres_server, schema)


@postgres_only
async def test_transactions_are_serialised_across_connections(db: Database) -> None:
    """A read-then-write in one transaction is not interleaved with another's, as under
    SQLite's single writer (READ COMMITTED alone would lose one of the increments)."""
    await db.execute("INSERT INTO meta (key, value) VALUES ('counter', '0')")

    async def increment() -> None:
        async with db.transaction() as connection:
            async with connection.execute("SELECT value FROM meta WHERE key = 'counter'") as cursor:
                row = await cursor.fetchone()
            assert row is not None
            await asyncio.sleep(0.01)  # another connection's turn, were it not serialised
            await connection.execute(
                "UPDATE meta SET value = ? WHERE key = 'counter'", (str(int(row[0]) + 1),)
            )

    await asyncio.gather(*(increment() for _ in range(8)))
    [row] = await db.fetchall("SELECT value FROM meta WHERE key = 'counter'")
    assert row[0] == "8"


@postgres_only
async def test_an_erasure_vacuums_the_tables_it_erased_from(db: Database) -> None:
    before = await db.fetchall(
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'registrations' "
        "AND schemaname = current_schema()"
    )
    await db.erased_scrubbed(db.scrub_erased())

    async def vacuumed() -> bool:
        rows = await db.fetchall(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'registrations' "
            "AND schemaname = current_schema()"
        )
        return bool(rows) and rows[0][0] > before[0][0]

    for _ in range(50):
        if await vacuumed():
            break
        await asyncio.sleep(0.1)
    assert await vacuumed()


@postgres_only
async def test_conversations_written_while_a_write_waits_share_the_next_statement(
    db: Database,
) -> None:
    """Updates of different people in hand together (a replica under load) write their
    conversations in one statement once the one on its way is done (storage/fsm.py)."""
    assert isinstance(db, PostgresDatabase)
    storage = SQLiteStorage(db)
    keys = [StorageKey(bot_id=42, chat_id=chat, user_id=chat) for chat in range(501, 507)]
    ended = StorageKey(bot_id=42, chat_id=500, user_id=500)
    with storage.handling(99, ended):
        await storage.set_state_and_data(ended, "Form:confirm", {"n": 99})

    async def answer(update_id: int, key: StorageKey) -> None:
        with storage.handling(update_id, key):
            await storage.set_state_and_data(key, f"Form:step{update_id}", {"n": update_id})

    async def end(update_id: int, key: StorageKey) -> None:
        with storage.handling(update_id, key):
            await storage.clear(key)

    # Another connection holds the table, as a slow write would: the first write waits.
    holder = await db.session()
    hold = holder.transaction()
    await hold.start()
    await holder.execute("LOCK TABLE fsm_states IN EXCLUSIVE MODE")
    try:
        writes = [asyncio.create_task(answer(n, key)) for n, key in enumerate(keys, start=1)]
        # A conversation that ends meanwhile: its row deleted by the same statement.
        writes.append(asyncio.create_task(end(100, ended)))
        await asyncio.sleep(0.3)
        assert not any(write.done() for write in writes)
    finally:
        await hold.rollback()
        await holder.close()
    await asyncio.gather(*writes)

    rows = await db.fetchall("SELECT key, state, data, CAST(xmin AS TEXT) FROM fsm_states")
    assert sorted((row[1], row[2]) for row in rows) == [
        (f"Form:step{n}", f'{{"n":{n}}}') for n in range(1, 7)
    ]
    # The first alone, the five that came while it waited in one statement (one transaction).
    assert len({row[3] for row in rows}) == 2
    for n, key in enumerate(keys, start=1):
        assert await storage.get_state(key) == f"Form:step{n}"
    assert await storage.get_state(ended) is None


@postgres_only
async def test_bookkeeping_commits_without_waiting_for_the_flush_and_promises_wait(
    database_url: str,
) -> None:
    """`record` (conversations' rows, handled marks) commits with synchronous_commit off;
    every other write (an inbox write, a registration's transaction) waits for its flush."""
    # The tests' URL turns the flush off everywhere (their data need not survive a crash).
    durable = database_url.replace("synchronous_commit=off", "synchronous_commit=on")
    assert durable != database_url
    only_if_relaxed = (
        "INSERT INTO handled_updates (update_id, handled_at) SELECT ?, now() "
        "WHERE current_setting('synchronous_commit') = 'off'"
    )
    async with open_postgres(durable) as db:
        assert await db.record(only_if_relaxed, (1,)) == 1
        assert await db.execute(only_if_relaxed, (2,)) == 0
        async with (
            db.transaction() as connection,
            connection.execute(only_if_relaxed, (3,)) as cursor,
        ):
            assert cursor.rowcount == 0
        rows = await db.fetchall("SELECT update_id FROM handled_updates")
        assert [row[0] for row in rows] == [1]


@postgres_only
async def test_kept_connections_lost_with_the_server_are_opened_again(database_url: str) -> None:
    """The connections kept out of the pool (single statements, bookkeeping) are given back
    to the pool by asyncpg when the server drops them, after which their proxies refuse every
    call: each is replaced, or no statement could run again until a restart."""
    durable = database_url.replace("synchronous_commit=off", "synchronous_commit=on")
    only_if_relaxed = (
        "INSERT INTO handled_updates (update_id, handled_at) SELECT ?, now() "
        "WHERE current_setting('synchronous_commit') = 'off'"
    )
    async with open_postgres(durable) as db:
        assert isinstance(db, PostgresDatabase)
        await db.record(
            "INSERT INTO handled_updates (update_id, handled_at) SELECT pg_backend_pid(), now()"
        )
        [kept] = await db.fetchall("SELECT pg_backend_pid()")
        [bookkeeping] = await db.fetchall("SELECT update_id FROM handled_updates")
        other = await db.session()
        try:
            for pid in (kept[0], bookkeeping[0]):
                assert await other.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await other.close()
        await asyncio.sleep(0.3)  # the client sees both connections closed
        for attempt in range(3):
            assert len(await db.fetchall("SELECT 1")) == 1
            assert await db.record(only_if_relaxed, (attempt + 10,)) == 1


@postgres_only
async def test_an_inbox_write_looks_up_handled_ids_by_key_not_all_of_them(db: Database) -> None:
    """handled_updates holds two days of ids; each inbox write must look up its own ids
    (NOT IN made PostgreSQL read the whole table into a hash at every write: 5 ms at 20,000)."""
    await db.execute(
        "INSERT INTO handled_updates (update_id, handled_at) "
        "SELECT g, now() FROM generate_series(1, 20000) AS g"
    )
    await db.execute("ANALYZE handled_updates")
    now = utc_iso(datetime.now(UTC))
    for rows in (1, 3):
        params = tuple(v for n in range(rows) for v in (30_000 + n, 7, "{}", now))
        plan = "\n".join(
            row[0] for row in await db.fetchall("EXPLAIN " + insert_arrivals(rows), params)
        )
        assert "handled_updates_pkey" in plan, plan
        assert "Seq Scan on handled_updates" not in plan, plan
    # And it still refuses what was handled, and what waits already.
    fresh = await Inbox(db).accept(
        [Arrival(5, 7, "{}"), Arrival(30_000, 7, "{}")], [], now=datetime.now(UTC)
    )
    assert fresh == {30_000}
    again = await Inbox(db).accept([Arrival(30_000, 7, "{}")], [], now=datetime.now(UTC))
    assert again == set()


# --- the real processes on PostgreSQL -------------------------------------------------------


@pytest.mark.slow
@postgres_only
async def test_the_bot_process_registers_on_postgres_and_the_operator_erases_there(
    tmp_path: Path, database_url: str
) -> None:
    """`python -m bot` with DATABASE_URL over HTTP: a registration stored in PostgreSQL (no
    SQLite file made); then `python -m bot export`, `erase --yes` and `audit` on it."""
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    fake = FakeTelegram(token=TOKEN)
    async with (
        serve(fake) as base_url,
        bot_process(tmp_path, fake, base_url, DATABASE_URL=database_url) as bot,
    ):
        await register_over_http(fake, tmp_path, 1001, database_url=database_url)
        bot.process.send_signal(signal.SIGTERM)
        assert await bot.wait() == 0, bot.output
    assert not db_file(tmp_path).exists()
    assert database_url not in bot.output

    async with open_database(tmp_path / "unused", url=database_url) as db:
        [row] = await db.fetchall("SELECT full_name, status FROM registrations")
        assert tuple(row) == ("Иванова Мария Петровна", "confirmed")

    def operator(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            cwd=tmp_path,
            env=bot_env(tmp_path, DATABASE_URL=database_url),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    exported = operator("export", "--event", "all", "--output", str(tmp_path / "out.csv"))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == f"1 rows written to {tmp_path / 'out.csv'}"
    assert "Иванова Мария Петровна" in (tmp_path / "out.csv").read_text(encoding="utf-8-sig")

    erased = operator("erase", "+7 912 345-67-89", "--yes")
    assert erased.returncode == 0, erased.stderr
    assert "erased the personal data of 1 registration(s): #1" in erased.stdout
    async with open_database(tmp_path / "unused", url=database_url) as db:
        [row] = await db.fetchall("SELECT full_name, erased_at IS NOT NULL FROM registrations")
        assert tuple(row) == (None, True)
        await assert_no_trace(db)
    audit = operator("audit", "--since", "2020-01-01")
    assert audit.returncode == 0, audit.stderr
    assert "erase" in audit.stdout and "export" in audit.stdout and "operator" in audit.stdout
    assert "Иванова" not in audit.stdout
    assert database_url not in erased.stdout + erased.stderr + audit.stdout + audit.stderr


@pytest.mark.slow
def test_an_unreachable_database_url_stops_the_bot_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    url = "postgresql://someone:hunter2@127.0.0.1:1/nowhere"
    completed = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env=bot_env(tmp_path, DATABASE_URL=url, TELEGRAM_API_URL="http://127.0.0.1:1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("error: DATABASE_URL: cannot connect to PostgreSQL")
    assert "hunter2" not in completed.stderr
