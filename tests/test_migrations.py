import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from storage.database import Database, MigrationError, open_database
from storage.migrations import LATEST_VERSION, MIGRATIONS

TABLES = {"events", "registrations", "fsm_states", "handled_updates"}
NOW = "2025-01-01T09:00:00+00:00"


async def schema_of(db: Database) -> list[tuple[str, str, str]]:
    rows = await db.fetchall(
        "SELECT type, name, sql FROM sqlite_master"
        " WHERE type IN ('table', 'index') AND sql IS NOT NULL ORDER BY type, name"
    )
    return [(row["type"], row["name"], row["sql"]) for row in rows]


async def table_names(db: Database) -> set[str]:
    rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row["name"] for row in rows}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(tmp_path / "bot.sqlite3") as database:
        await database.execute(
            "INSERT INTO events (id, title, starts_at, timezone, registration_deadline,"
            " location, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("conf", "Конференция", NOW, "Europe/Moscow", NOW, "Москва", NOW),
        )
        yield database


def registration(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": "conf",
        "user_id": 7,
        "username": None,
        "telegram_name": "Мария",
        "full_name": "Иванова Мария Петровна",
        "position": "Инженер",
        "organization": "ООО «Ромашка»",
        "phone": "+79161234567",
        "email": "maria@example.com",
        "consent_at": NOW,
        "consent_version": "1",
        "status": "confirmed",
        "created_at": NOW,
        "updated_at": NOW,
    }
    row.update(overrides)
    return row


async def insert_registration(db: Database, **overrides: Any) -> None:
    row = registration(**overrides)
    columns = ", ".join(row)
    placeholders = ", ".join(f":{name}" for name in row)
    await db.execute(f"INSERT INTO registrations ({columns}) VALUES ({placeholders})", row)


async def test_fresh_database_reaches_latest_version_with_all_tables(tmp_path: Path) -> None:
    async with open_database(tmp_path / "bot.sqlite3") as db:
        assert await db.schema_version() == LATEST_VERSION
        assert await table_names(db) >= TABLES


async def test_opening_twice_changes_nothing_when_already_latest(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    async with open_database(path) as db:
        first = await schema_of(db)

    async with open_database(path) as db:
        assert await db.schema_version() == LATEST_VERSION
        assert await schema_of(db) == first


@pytest.mark.parametrize("version", range(LATEST_VERSION))
async def test_upgrade_matches_fresh_schema_when_starting_from_older_version(
    tmp_path: Path, version: int
) -> None:
    async with open_database(tmp_path / "fresh.sqlite3") as db:
        fresh = await schema_of(db)

    old_path = tmp_path / "old.sqlite3"
    async with open_database(old_path, migrate_to=version) as db:
        assert await db.schema_version() == version

    async with open_database(old_path) as db:
        assert await db.schema_version() == LATEST_VERSION
        assert await schema_of(db) == fresh


async def test_open_raises_when_file_schema_is_newer_than_known(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    async with open_database(path) as db:
        await db.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")

    with pytest.raises(MigrationError, match=r"version \d+ is newer than this bot knows"):
        async with open_database(path):
            pass


async def test_file_is_private_when_created_in_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "data" / "nested" / "bot.sqlite3"

    async with open_database(path) as db:
        await db.execute("INSERT INTO handled_updates VALUES (1, ?)", (NOW,))
        wal = path.with_name(path.name + "-wal")
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_pragmas_are_on_when_opened(db: Database) -> None:
    journal_mode = await db.fetchone("PRAGMA journal_mode")
    foreign_keys = await db.fetchone("PRAGMA foreign_keys")

    assert journal_mode is not None and journal_mode[0] == "wal"
    assert foreign_keys is not None and foreign_keys[0] == 1


async def test_registration_is_stored_when_valid(db: Database) -> None:
    await insert_registration(db)

    row = await db.fetchone("SELECT full_name, status FROM registrations")
    assert row is not None
    assert tuple(row) == ("Иванова Мария Петровна", "confirmed")


@pytest.mark.parametrize(
    "overrides",
    [
        {"event_id": "no-such-event"},
        {"full_name": ""},
        {"full_name": "я" * 201},
        {"position": ""},
        {"organization": "я" * 301},
        {"phone": "89161234567"},
        {"phone": "+0123"},
        {"phone": "+7916123456789012"},
        {"email": "maria.example.com"},
        {"email": "@example.com"},
        {"email": "m@" + "e" * 253},
        {"status": "pending"},
        {"telegram_name": None},
        {"consent_at": None},
    ],
    ids=repr,
)
async def test_registration_is_refused_when_constraint_is_broken(
    db: Database, overrides: dict[str, Any]
) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await insert_registration(db, **overrides)

    assert await db.fetchall("SELECT id FROM registrations") == []


async def test_second_confirmed_registration_is_refused_when_same_event_and_user(
    db: Database,
) -> None:
    await insert_registration(db)

    with pytest.raises(sqlite3.IntegrityError):
        await insert_registration(db)

    await insert_registration(db, user_id=8)
    await insert_registration(db, status="withdrawn")
    await insert_registration(db, status="withdrawn")
    rows = await db.fetchall("SELECT user_id, status FROM registrations ORDER BY id")
    assert [tuple(row) for row in rows] == [
        (7, "confirmed"),
        (8, "confirmed"),
        (7, "withdrawn"),
        (7, "withdrawn"),
    ]


async def test_new_confirmed_registration_is_accepted_when_old_one_withdrawn(
    db: Database,
) -> None:
    await insert_registration(db)
    await db.execute("UPDATE registrations SET status = 'withdrawn' WHERE user_id = 7")

    await insert_registration(db)

    rows = await db.fetchall("SELECT status FROM registrations ORDER BY id")
    assert [row["status"] for row in rows] == ["withdrawn", "confirmed"]


async def test_failed_step_keeps_previous_version_when_script_breaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bot.sqlite3"
    async with open_database(path) as db:
        fresh = await schema_of(db)
    broken_step = "CREATE TABLE half_done (id INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr("storage.database.MIGRATIONS", (*MIGRATIONS, broken_step))

    with pytest.raises(MigrationError, match=f"schema version {LATEST_VERSION + 1} failed"):
        async with open_database(path):
            pass

    monkeypatch.undo()
    async with open_database(path) as db:
        assert await db.schema_version() == LATEST_VERSION
        assert await schema_of(db) == fresh


async def test_refused_cards_are_told_from_parked_ones_when_upgrading(tmp_path: Path) -> None:
    # Before `failed_at`, a failed card in a chat that is not parked was refused for good
    # (a parked chat's cards are requeued when it is back); in a parked chat it waits.
    step = next(i for i, sql in enumerate(MIGRATIONS) if "ADD COLUMN failed_at" in sql)
    path = tmp_path / "bot.sqlite3"
    async with open_database(path, migrate_to=step) as db:
        await db.execute("INSERT INTO chats (chat_id, unreachable) VALUES (-2, 'Forbidden')")
        await db.executemany(
            "INSERT INTO outbox (chat_id, kind, text, status, created_at, error) "
            "VALUES (?, ?, 'Карта', ?, ?, ?)",
            [
                (-1, "card", "failed", NOW, "Bad Request: can't parse entities"),
                (-2, "card", "failed", NOW, "Forbidden"),
                (-1, "card", "pending", NOW, None),
            ],
        )
    async with open_database(path) as db:
        rows = await db.fetchall("SELECT chat_id, status, failed_at FROM outbox ORDER BY id")
        assert [tuple(row) for row in rows] == [
            (-1, "failed", NOW),
            (-2, "failed", None),
            (-1, "pending", None),
        ]


async def test_upgrade_erases_registrations_withdrawn_before_and_leaves_no_trace(
    tmp_path: Path,
) -> None:
    # Before schema 11 a withdrawal kept the data, though the bot said it would be removed.
    path = tmp_path / "bot.sqlite3"
    async with open_database(path, migrate_to=10) as db:
        await db.execute("PRAGMA secure_delete = OFF")  # as older versions wrote the file
        await db.execute(
            "INSERT INTO events (id, title, starts_at, timezone, registration_deadline,"
            " location, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("conf", "Конференция", NOW, "Europe/Moscow", NOW, "Москва", NOW),
        )
        await insert_registration(db)
        gone = registration(
            user_id=8,
            full_name="Петров Пётр Петрович",
            email="petrov@example.com",
            phone="+79167654321",
            status="withdrawn",
        )
        await insert_registration(db, **gone)
        await db.execute(
            "INSERT INTO outbox (chat_id, kind, registration_id, text, status, created_at, "
            "failed_at) VALUES (-1, 'card', 2, 'Петров Пётр Петрович', 'failed', ?, ?)",
            (NOW, NOW),
        )
        # A card delivered long ago: its text was emptied, in a file without secure_delete.
        await db.execute(
            "INSERT INTO outbox (chat_id, kind, registration_id, text, status, created_at) "
            "VALUES (-1, 'card', 2, 'Петров Пётр Петрович, petrov@example.com', 'pending', ?)",
            (NOW,),
        )
        await db.execute("UPDATE outbox SET status = 'sent', text = NULL WHERE status = 'pending'")
        # A form abandoned long ago, deleted in a file without secure_delete.
        await db.execute(
            "INSERT INTO fsm_states (key, data, updated_at) VALUES ('k', ?, ?)",
            ('{"full_name": "Сидоров Сидор Сидорович"}', NOW),
        )
        await db.execute("DELETE FROM fsm_states")

    async with open_database(path) as db:
        rows = await db.fetchall(
            "SELECT id, status, full_name, email, user_id, erased_at IS NOT NULL AS erased "
            "FROM registrations ORDER BY id"
        )
        assert [tuple(row) for row in rows] == [
            (1, "confirmed", "Иванова Мария Петровна", "maria@example.com", 7, 0),
            (2, "withdrawn", None, None, None, 1),
        ]
        audit = await db.fetchall("SELECT reason, actor, registration_id, fields FROM audit")
        assert [tuple(row) for row in audit] == [
            (
                "withdrawal",
                "upgrade",
                2,
                "full_name,position,organization,phone,email,user_id,telegram_name",
            )
        ]
        outbox = await db.fetchall("SELECT status FROM outbox ORDER BY id")
        assert [row["status"] for row in outbox] == ["sent"]
        assert await db.fetchone("SELECT value FROM meta WHERE key = 'retention_since'")
    content = path.read_bytes()
    for value in ("Петров Пётр Петрович", "petrov@example.com", "79167654321", "Сидоров"):
        assert value.encode() not in content
    assert "Иванова Мария Петровна".encode() in content


async def test_seats_step_keeps_registrations_and_messages_when_upgrading(tmp_path: Path) -> None:
    # The step that brings seats makes registrations and the outbox anew: every row, and
    # the one-active rule, survive it; a session without capacity is unlimited.
    step = next(i for i, sql in enumerate(MIGRATIONS) if "offer_expires_at" in sql)
    path = tmp_path / "bot.sqlite3"
    async with open_database(path, migrate_to=step) as db:
        await db.execute(
            "INSERT INTO events (id, title, starts_at, timezone, registration_deadline,"
            " location, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("conf", "Конференция", NOW, "Europe/Moscow", NOW, "Москва", NOW),
        )
        await insert_registration(db)
        await insert_registration(db, user_id=8)
        await db.execute(
            "UPDATE registrations SET status = 'withdrawn', erased_at = ?, user_id = NULL, "
            "telegram_name = NULL, full_name = NULL, position = NULL, organization = NULL, "
            "phone = NULL, email = NULL WHERE user_id = 8",
            (NOW,),
        )
        await db.execute(
            "INSERT INTO outbox (chat_id, kind, registration_id, text, status, created_at) "
            "VALUES (-1, 'card', 1, 'Карта', 'pending', ?)",
            (NOW,),
        )
    async with open_database(path) as db:
        rows = await db.fetchall(
            "SELECT id, user_id, status, erased_at IS NOT NULL, queued_at FROM registrations"
        )
        assert [tuple(row) for row in rows] == [
            (1, 7, "confirmed", 0, None),
            (2, None, "withdrawn", 1, None),
        ]
        outbox = await db.fetchall("SELECT registration_id, text, reply_markup FROM outbox")
        assert [tuple(row) for row in outbox] == [(1, "Карта", None)]
        event = await db.fetchone("SELECT capacity, offer_hours FROM events")
        assert event is not None and tuple(event) == (None, 24)
        with pytest.raises(sqlite3.IntegrityError):
            await insert_registration(db, status="waiting", queued_at=NOW)
        with pytest.raises(sqlite3.IntegrityError):
            await insert_registration(db, user_id=9, status="waiting")  # no place in line


async def test_seat_counts_step_counts_the_rows_already_there(tmp_path: Path) -> None:
    # Step 22 keeps each session's seat counts in its row: counted from the rows on the
    # upgrade, then kept by the triggers.
    path = tmp_path / "bot.sqlite3"
    async with open_database(path, migrate_to=21) as db:
        for event_id in ("conf", "other"):
            await db.execute(
                "INSERT INTO events (id, title, starts_at, timezone, registration_deadline,"
                " location, synced_at, capacity) VALUES (?, ?, ?, ?, ?, ?, ?, 2)",
                (event_id, "Конференция", NOW, "Europe/Moscow", NOW, "Москва", NOW),
            )
        await insert_registration(db, user_id=1)
        await insert_registration(db, user_id=2)
        await insert_registration(
            db, user_id=3, status="waiting", queued_at=NOW, offered_at=NOW, offer_expires_at=NOW
        )
        await insert_registration(db, user_id=4, status="waiting", queued_at=NOW)
        await insert_registration(db, user_id=5, status="withdrawn")
        await insert_registration(db, user_id=1, event_id="other")
    async with open_database(path) as db:
        counts = await db.fetchall(
            "SELECT id, seats_confirmed, seats_waiting, seats_offered FROM events ORDER BY id"
        )
        assert [tuple(row) for row in counts] == [("conf", 2, 2, 1), ("other", 1, 0, 0)]
        await db.execute(
            "UPDATE registrations SET status = 'confirmed', queued_at = NULL, offered_at = NULL, "
            "offer_expires_at = NULL WHERE user_id = 3"
        )
        await db.execute("UPDATE registrations SET status = 'withdrawn' WHERE user_id = 1")
        counts = await db.fetchall(
            "SELECT id, seats_confirmed, seats_waiting, seats_offered FROM events ORDER BY id"
        )
        assert [tuple(row) for row in counts] == [("conf", 2, 1, 0), ("other", 0, 0, 0)]
