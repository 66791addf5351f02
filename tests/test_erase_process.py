"""Erasure by real processes: the operator's `python -m bot erase` and `audit` on the server,
and an admin's /erase over HTTP with the real `python -m bot` (withdrawal and /forget over
HTTP: tests/test_personal_data_e2e.py). Each ends with a look at the bytes of the database
file and its WAL."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app import open_app
from bot.domain.config import load_settings
from bot.domain.events import load_events
from storage.audit import AuditEntry, AuditLog
from storage.cards import CardPublisher
from storage.database import open_database
from storage.outbox import Outbox
from storage.registrations import NewRegistration, Registrations
from tests.client import TelegramUser, http_deliver
from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import (
    ADMIN_ID,
    EVENTS_TOML,
    ORGANIZER_CHAT_ID,
    TOKEN,
    assert_no_trace_in,
    bot_process,
    database_bytes,
    db_file,
    register_over_http,
    upcoming_event_toml,
    wait_until,
)

# Every test here starts real processes (`make test-fast` leaves them out).
pytestmark = pytest.mark.slow

# The participant's answers as stored (and shown: the phone as people read it).
PARTICIPANT = (
    "Иванова Мария Петровна",
    "Главный специалист",
    "Министерство культуры Саратовской области",
    "79123456789",
    "+7 912 345-67-89",
    "Maria.Ivanova@example.ru",
    "maria_iv",
)


# --- python -m bot erase / audit / export ------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Path:
    """A server folder: the events file and a database with one registration, as the bot
    left it (its organisers' card still queued). No .env, no token."""
    (tmp_path / "events.toml").write_text(EVENTS_TOML, encoding="utf-8")
    settings = load_settings(
        _env_file=None,
        bot_token=TOKEN,
        database_path=tmp_path / "data" / "bot.sqlite3",
        events_file=tmp_path / "events.toml",
        organizer_chat_ids=str(ORGANIZER_CHAT_ID),
    )
    now = datetime.now(UTC)

    async def create() -> None:
        async with open_app(settings, clock=lambda: now) as app:
            catalog = load_events(settings.events_file, default_zone=settings.timezone)
            cards = CardPublisher(Outbox(app.db), settings.organizer_chat_ids, catalog)
            full_name, position, organization, _, _, email, username = PARTICIPANT
            await Registrations(app.db, cards).create(
                NewRegistration(
                    event_id="forum-2026",
                    user_id=1001,
                    username=username,
                    telegram_name="Мария",
                    full_name=full_name,
                    position=position,
                    organization=organization,
                    phone="+79123456789",
                    email=email,
                    consent_at=now,
                    consent_version="v1",
                ),
                now=now,
            )

    asyncio.run(create())
    return tmp_path


def run(
    server: Path, *args: str, answer: str = "", **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"BOT_TOKEN", "DATABASE_PATH", "EVENTS_FILE", "TIMEZONE"}
    }
    env.update(
        DATABASE_PATH=str(db_file(server)),
        EVENTS_FILE=str(server / "events.toml"),
        ORGANIZER_CHAT_IDS=str(ORGANIZER_CHAT_ID),
    )
    env.update(extra)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=server,
        env=env,
        input=answer,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def stored(path: Path, sql: str) -> list[tuple[object, ...]]:
    async with open_database(path) as db:
        return [tuple(row) for row in await db.fetchall(sql)]


def test_cli_erase_lists_asks_and_erases_with_the_organisers_card(server: Path) -> None:
    path = db_file(server)
    assert any(PARTICIPANT[0].encode() in data for data in database_bytes(path).values())

    declined = run(server, "erase", "8 (912) 345-67-89", answer="n\n")
    assert declined.returncode == 0, declined.stderr
    assert declined.stdout.splitlines() == [
        "1 registration(s) holding personal data:",
        "  #1  Стратегическая сессия «ЭтНик»  Иванова Мария Петровна  confirmed",
        "erase their personal data? this cannot be undone [y/N] nothing erased",
    ]
    assert asyncio.run(stored(path, "SELECT full_name FROM registrations")) == [
        ("Иванова Мария Петровна",)
    ]

    erased = run(server, "erase", "MARIA.IVANOVA@EXAMPLE.RU", answer="y\n")

    assert erased.returncode == 0, erased.stderr
    assert erased.stderr == ""
    assert erased.stdout.splitlines()[-2:] == [
        "erase their personal data? this cannot be undone [y/N] erased the personal data of "
        "1 registration(s): #1",
        "the organisers' cards are queued: they go out when the bot runs",
    ]
    assert asyncio.run(
        stored(path, "SELECT action, reason, actor, registration_id FROM audit")
    ) == [("erase", "admin", "operator", 1)]
    cards = asyncio.run(stored(path, "SELECT chat_id, status, text FROM outbox ORDER BY id"))
    # The card of the registration, never delivered, is given up with its text; the new
    # one waits for the bot.
    assert [card[:2] for card in cards] == [
        (ORGANIZER_CHAT_ID, "failed"),
        (ORGANIZER_CHAT_ID, "pending"),
    ]
    assert cards[0][2] is None
    assert "Данные участника удалены по его запросу: регистрация №1" in str(cards[1][2])
    assert_no_trace_in(path, PARTICIPANT)

    again = run(server, "erase", "1", "--yes")
    assert (again.returncode, again.stdout) == (
        0,
        "nothing to erase: no registration holding personal data matches\n",
    )
    assert len(asyncio.run(stored(path, "SELECT * FROM audit"))) == 1

    unclear = run(server, "erase", "Иванова")
    assert unclear.returncode == 2
    assert unclear.stdout == ""
    assert unclear.stderr == (
        "error: 'Иванова' is neither a phone, an e-mail nor a registration number\n"
    )


def test_cli_erase_with_a_missing_database_or_a_bad_setting_says_so_in_one_line(
    server: Path,
) -> None:
    elsewhere = server / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "events.toml").write_text(EVENTS_TOML, encoding="utf-8")

    missing = run(elsewhere, "erase", "1", "--yes")
    bad_chats = run(server, "erase", "1", "--yes", ORGANIZER_CHAT_IDS="organisers")

    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr.startswith("error: DATABASE_PATH: ")
    assert missing.stderr.count("\n") == 1
    assert not db_file(elsewhere).exists()  # never created by the operator's command
    assert (bad_chats.returncode, bad_chats.stdout) == (2, "")
    assert bad_chats.stderr.startswith("error: ORGANIZER_CHAT_IDS: 'organisers' is not an")
    assert bad_chats.stderr.count("\n") == 1


def test_cli_audit_prints_the_record_since_a_day_and_export_is_recorded(server: Path) -> None:
    path = db_file(server)
    now = datetime.now(UTC)

    async def record() -> None:
        async with open_database(path) as db:
            audit = AuditLog(db)
            await audit.record(
                AuditEntry(now - timedelta(days=400), "find", "admin 7", row_count=3)
            )
            await audit.record(AuditEntry(now - timedelta(days=2), "find", "admin 7", row_count=1))

    asyncio.run(record())
    exported = run(server, "export", "--event", "forum-2026", "--output", "out.csv")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == "1 rows written to out.csv\n"

    since = (now - timedelta(days=30)).date().isoformat()
    result = run(server, "audit", "--since", since)

    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout), delimiter=";"))
    assert rows[0] == ["at", "action", "reason", "actor", "registration", "event", "fields", "rows"]
    assert [row[1:] for row in rows[1:]] == [
        ["find", "", "admin 7", "", "", "", "1"],
        ["export", "", "operator", "", "forum-2026", "", "1"],
    ]
    assert datetime.fromisoformat(rows[2][0]) >= now

    bad = run(server, "audit", "--since", "yesterday")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == "error: --since 'yesterday' is not a date in YYYY-MM-DD\n"


# --- the real bot over HTTP --------------------------------------------------------------------


def holds(path: Path, value: str) -> bool:
    return any(value.encode() in content for content in database_bytes(path).values())


def organisers(fake: FakeTelegram) -> str:
    return "\n".join(message.text or "" for message in fake.messages_to(ORGANIZER_CHAT_ID))


async def test_erase_by_an_admin_over_http_leaves_no_trace_in_the_files(tmp_path: Path) -> None:
    """The admin's own messages pass through the inbox too: "/erase <e-mail>", and the
    button's update, which carries the listing with the participant's name."""
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    fake = FakeTelegram(token=TOKEN)
    database = db_file(tmp_path)
    traces = (
        "Иванова Мария Петровна",
        "Главный специалист",
        "Министерство культуры",
        "79123456789",
        "+7 912 345-67-89",
        "user1001@example.ru",
        "USER1001@Example.RU",
    )
    async with (
        serve(fake) as base_url,
        bot_process(tmp_path, fake, base_url, ORGANIZER_CHAT_IDS=str(ORGANIZER_CHAT_ID)) as bot,
    ):
        await register_over_http(fake, tmp_path, 1001)
        assert all(holds(database, value) for value in traces[:-1])  # the look can fail
        admin = TelegramUser(
            fake, http_deliver(fake, timeout=20, database=database), user_id=ADMIN_ID
        )
        await admin.send("/erase USER1001@Example.RU")
        assert "№1 · Сессия «ЭтНик» · Иванова Мария Петровна" in admin.last_text
        await admin.click("Да, удалить")
        assert admin.last_text == "Готово: персональные данные удалены, регистраций: 1 (1)."

        # The WAL is cut on the bot's checkpoint thread, soon after the erasure.
        await wait_until(lambda: not any(holds(database, value) for value in traces), timeout=10)
        await wait_until(lambda: "по его запросу: регистрация №1" in organisers(fake))
        bot.process.send_signal(signal.SIGTERM)
        assert await bot.wait() == 0
        output = bot.output

    assert_no_trace_in(database, traces)
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT action, reason, actor, registration_id FROM audit ORDER BY id"
        ).fetchall()
    assert rows == [("erase", "admin", f"admin {ADMIN_ID}", 1)]
    for value in traces:
        assert value not in output, f"personal data in the log: {value}"
