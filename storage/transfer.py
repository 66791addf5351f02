"""Moving the bot from its SQLite file to PostgreSQL (`python -m bot migrate-to-postgres`).

Every table of the file, in the order its foreign keys need, is copied in ONE PostgreSQL
transaction: all of it arrives or none. Rows go by binary COPY into a temporary table, then
into the real one with `ON CONFLICT DO NOTHING` (every table has a primary or unique key), so
running it again adds nothing twice: the move is idempotent, and a move that stopped half-way
(it cannot: one transaction) or was run twice ends the same. Identity columns continue after
the highest copied id, and each session's seat counts are made from the rows. The result is
checked by counting each table on both sides.

The source is read through one read transaction (one snapshot), with the bot stopped: the
caller holds the file's lease (storage/lease.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from storage.postgres import PostgresDatabase
from storage.seats import RECOUNT

# Rows per COPY: memory stays flat for any size of file.
BATCH = 5000


class TransferError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class TableCopy:
    table: str
    source: int  # rows in the SQLite file
    added: int  # rows this run added to PostgreSQL
    target: int  # rows in PostgreSQL afterwards

    @property
    def verified(self) -> bool:
        return self.source == self.target


def _tables_in_order(connection: sqlite3.Connection) -> list[str]:
    """The file's tables, each after the tables its foreign keys refer to."""
    names = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    needs = {
        name: {
            row[2]
            for row in connection.execute(f'PRAGMA foreign_key_list("{name}")')
            if row[2] != name
        }
        for name in names
    }
    ordered: list[str] = []
    placed: set[str] = set()
    while len(ordered) < len(names):
        ready = [name for name in names if name not in placed and needs[name] <= placed]
        if not ready:
            raise TransferError(f"foreign keys in a cycle among {sorted(set(names) - placed)}")
        ordered += ready
        placed.update(ready)
    return ordered


def _columns(connection: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]


def _batches(
    connection: sqlite3.Connection, table: str, columns: list[str]
) -> Iterator[list[tuple[object, ...]]]:
    listed = ", ".join(f'"{column}"' for column in columns)
    cursor = connection.execute(f'SELECT {listed} FROM "{table}"')
    while rows := cursor.fetchmany(BATCH):
        yield [tuple(row) for row in rows]


async def copy_to_postgres(source: Path, target: PostgresDatabase) -> list[TableCopy]:
    """Copy every table of the SQLite file `source` (at the bot's schema version, as
    open_database leaves it) into `target` (migrated likewise); returns each table's counts."""
    connection = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        # One snapshot of the whole file for the whole copy.
        connection.execute("BEGIN")
        tables = _tables_in_order(connection)
        async with target.raw_transaction() as pg:
            present = {
                row[0]: row[1]
                for row in await pg.fetch(
                    "SELECT table_name, array_agg(column_name::text) "
                    "FROM information_schema.columns "
                    "WHERE table_schema = current_schema() GROUP BY table_name"
                )
            }
            # The seat counts' trigger would update a session's row once per registration
            # copied, each update slower than the last in one transaction: off for the copy,
            # the counts made once after it.
            await pg.execute("ALTER TABLE registrations DISABLE TRIGGER registrations_seats_insert")
            added: dict[str, int] = {}
            for table in tables:
                columns = _columns(connection, table)
                missing = [column for column in columns if column not in (present.get(table) or [])]
                if missing:
                    raise TransferError(
                        f"PostgreSQL's table {table!r} lacks {', '.join(missing)}: "
                        "is the bot on both sides the same version?"
                    )
                staging = f"copy_{table}"
                await pg.execute(
                    f'CREATE TEMPORARY TABLE "{staging}" (LIKE "{table}" INCLUDING DEFAULTS) '
                    "ON COMMIT DROP"
                )
                for batch in _batches(connection, table, columns):
                    await pg.copy_records_to_table(staging, records=batch, columns=columns)
                listed = ", ".join(f'"{column}"' for column in columns)
                status = await pg.execute(
                    f'INSERT INTO "{table}" ({listed}) SELECT {listed} FROM "{staging}" '
                    "ON CONFLICT DO NOTHING"
                )
                added[table] = int(status.rpartition(" ")[2])
            await pg.execute("ALTER TABLE registrations ENABLE TRIGGER registrations_seats_insert")
            await pg.execute(RECOUNT)
            # Identity columns go on after the highest id copied.
            for table, column in await pg.fetch(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND is_identity = 'YES'"
            ):
                if table in added:
                    await pg.execute(
                        f"SELECT setval(pg_get_serial_sequence($1, $2), "
                        f'(SELECT coalesce(max("{column}"), 0) + 1 FROM "{table}"), false)',
                        table,
                        column,
                    )
        counts: list[TableCopy] = []
        for table in tables:
            (source_rows,) = connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            row = await target.fetchone(f'SELECT count(*) FROM "{table}"')
            assert row is not None
            counts.append(TableCopy(table, int(source_rows), added[table], int(row[0])))
        return counts
    finally:
        connection.close()
