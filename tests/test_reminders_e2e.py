"""Reminders and the calendar file with the real `python -m bot` process over HTTP: the
reminder goes once across a kill -9 in the middle of sending it, and a session changed in
the events file is announced with its new calendar file after a restart."""

from __future__ import annotations

import re
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import (
    MOSCOW,
    TOKEN,
    bot_process,
    db_file,
    event_toml,
    register_over_http,
    upcoming_event_toml,
    wait_until,
)

pytestmark = pytest.mark.slow

USER = 1001
REMINDER = "Напоминаем"


def ics_properties(content: bytes) -> dict[str, str]:
    """The VEVENT's properties, read by unfolding (RFC 5545 §3.1) without the writer's library."""
    unfolded = re.sub(rb"\r\n[ \t]", b"", content).decode()
    lines = unfolded.split("\r\n")
    start, end = lines.index("BEGIN:VEVENT"), lines.index("END:VEVENT")
    return dict(line.split(":", 1) for line in lines[start + 1 : end])


def instant(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def reminders_to(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.text or "" for m in fake.messages_to(chat_id) if REMINDER in (m.text or "")]


def stored_reminders(workdir: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(f"file:{db_file(workdir)}?mode=ro", uri=True) as db:
        return db.execute("SELECT registration_id, offset_minutes FROM reminders").fetchall()


async def test_a_reminder_goes_once_across_a_kill_while_sending_it(tmp_path: Path) -> None:
    starts = datetime.now(MOSCOW).replace(microsecond=0) + timedelta(minutes=2, seconds=30)
    (tmp_path / "events.toml").write_text(
        event_toml(
            id="soon",
            title="Сессия «Скоро»",
            starts_at=starts,
            timezone="Europe/Moscow",
            registration_deadline=starts,
            location="Онлайн",
            join_url="https://example.org/join",
            contact="org@example.ru",
        )
        + 'reminders = ["2m"]\n',  # due 30 s from now
        encoding="utf-8",
    )
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url:
        async with bot_process(tmp_path, fake, base_url, run=1) as bot:
            await register_over_http(fake, tmp_path, USER)
            calendar = fake.messages_to(USER)[-1]
            assert calendar.filename == "soon.ics" and calendar.document is not None
            properties = ics_properties(calendar.document)
            assert instant(properties["DTSTART"]) == starts
            assert instant(properties["DTEND"]) == starts + timedelta(hours=2)
            # The reminder's first send never gets an answer: the bot is killed meanwhile.
            fake.hang("sendMessage", chat_id=USER, times=1)
            await wait_until(
                lambda: any(
                    call.error_code == 0 and call.params.get("chat_id") == USER
                    for call in fake.calls_of("sendMessage")
                ),
                timeout=60,
            )
            bot.process.kill()
            assert await bot.wait() == -signal.SIGKILL
        assert reminders_to(fake, USER) == []

        async with bot_process(tmp_path, fake, base_url, run=2) as bot:
            await wait_until(lambda: bool(reminders_to(fake, USER)), timeout=30)
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
    [text] = reminders_to(fake, USER)
    assert "через 2 минуты" in text and "Сессия «Скоро»" in text
    assert "https://example.org/join" in text and "МСК, UTC+3" in text
    assert stored_reminders(tmp_path) == [(1, 2)]


async def test_a_session_moved_in_the_file_is_announced_with_a_new_calendar_file(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.toml"
    events.write_text(upcoming_event_toml(), encoding="utf-8")
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url:
        async with bot_process(tmp_path, fake, base_url, run=1) as bot:
            await register_over_http(fake, tmp_path, USER)
            [first] = [m for m in fake.messages_to(USER) if m.document is not None]
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
        before = len(fake.messages_to(USER))
        old = ics_properties(first.document or b"")

        text = events.read_text(encoding="utf-8")
        events.write_text(
            text.replace("T12:00:00", "T14:00:00", 1).replace("Онлайн", "Саратов"),
            encoding="utf-8",
        )
        async with bot_process(tmp_path, fake, base_url, run=2) as bot:
            await wait_until(lambda: len(fake.messages_to(USER)) >= before + 2, timeout=30)
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
            assert "Traceback" not in bot.output

    notice, calendar = fake.messages_to(USER)[before:]
    assert "Изменения в мероприятии" in (notice.text or "")
    assert "было «Онлайн», стало «Саратов»" in (notice.text or "")
    assert calendar.filename == "forum.ics" and calendar.document is not None
    new = ics_properties(calendar.document)
    assert new["UID"] == old["UID"]
    assert (old["SEQUENCE"], new["SEQUENCE"]) == ("0", "1")
    assert instant(new["DTSTART"]) - instant(old["DTSTART"]) == timedelta(hours=2)
    assert new["LOCATION"] == "Саратов"
