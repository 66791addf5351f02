"""`python -m bot migrate-to-postgres`: a bot that ran on SQLite moves to PostgreSQL, every
table copied in one transaction, checked by counts, idempotent; refused while the bot runs."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest

from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import (
    TOKEN,
    bot_env,
    bot_process,
    db_file,
    register_over_http,
    upcoming_event_toml,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]


def migrate(workdir: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "migrate-to-postgres"],
        cwd=workdir,
        env=bot_env(workdir, DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_bot_moves_from_sqlite_to_postgres_and_goes_on_there(
    tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url:
        async with bot_process(tmp_path, fake, base_url, ORGANIZER_CHAT_IDS="-100111") as bot:
            await register_over_http(fake, tmp_path, 1001)
            await register_over_http(fake, tmp_path, 1002)
            # While the bot runs on the file, the move is refused: what the bot wrote after
            # the copy would stay behind.
            refused = migrate(tmp_path, database_url)
            assert refused.returncode == 2
            [line] = refused.stderr.strip().splitlines()
            assert "in use by another process" in line and "stop the bot" in line
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0

        with closing(sqlite3.connect(db_file(tmp_path))) as source:
            tables = [
                row[0]
                for row in source.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            ]
            counts = {
                table: source.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                for table in tables
            }
        assert counts["registrations"] == 2 and counts["outbox"] > 0 and counts["audit"] >= 0

        moved = migrate(tmp_path, database_url)
        assert moved.returncode == 0, moved.stderr
        lines = moved.stdout.strip().splitlines()
        # One line per table, each with both counts, every one verified.
        assert len(lines) == len(tables) + 1
        for table, count in counts.items():
            [line] = [line for line in lines if line.split()[0] == table]
            assert f"sqlite {count:>8}  postgres {count:>8}" in line and line.endswith("ok")
        assert database_url not in moved.stdout + moved.stderr

        # Again: nothing added twice. The session's row is kept as PostgreSQL has it (as
        # when the bot had started there before the move, counting nobody): its seat
        # counts are made from the rows all the same.
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute("UPDATE events SET seats_confirmed = 0")
            again = migrate(tmp_path, database_url)
            recounted = await connection.fetchval("SELECT seats_confirmed FROM events")
        finally:
            await connection.close()
        assert again.returncode == 0, again.stderr
        assert all("(added 0)" in line for line in again.stdout.strip().splitlines()[:-1])
        assert recounted == 2

        # The bot goes on on PostgreSQL: the next registration takes the next number.
        async with bot_process(
            tmp_path, fake, base_url, run=1, DATABASE_URL=database_url, ORGANIZER_CHAT_IDS="-100111"
        ) as bot:
            await register_over_http(fake, tmp_path, 1003, database_url=database_url)
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0, bot.output

    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT id, user_id, full_name, status FROM registrations ORDER BY id"
        )
        created = await connection.fetchval(
            "SELECT pg_typeof(created_at)::text FROM registrations LIMIT 1"
        )
        # Counted once after the copy (the trigger off meanwhile), kept by it afterwards.
        seats = await connection.fetchrow(
            "SELECT seats_confirmed, seats_waiting, seats_offered FROM events"
        )
    finally:
        await connection.close()
    assert [tuple(row) for row in rows] == [
        (1, 1001, "Иванова Мария Петровна", "confirmed"),
        (2, 1002, "Иванова Мария Петровна", "confirmed"),
        (3, 1003, "Иванова Мария Петровна", "confirmed"),
    ]
    assert created == "timestamp with time zone"
    assert tuple(seats) == (3, 0, 0)


def test_the_move_needs_a_database_url_and_a_file(tmp_path: Path) -> None:
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "bot", "migrate-to-postgres"],
        cwd=tmp_path,
        env=bot_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("error: DATABASE_URL: set it to the PostgreSQL database")
