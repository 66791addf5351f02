"""Erasure by the real `python -m bot` process over HTTP: what a person erases is gone from
the bytes of the database file and its WAL while the bot runs, and after it stops."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.client import TelegramUser, http_deliver
from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import (
    TOKEN,
    assert_no_trace_in,
    bot_process,
    database_bytes,
    db_file,
    upcoming_event_toml,
    wait_until,
)

pytestmark = pytest.mark.slow

ORGANIZERS = -1001500


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    return tmp_path


def person(user_id: int) -> tuple[str, str, str]:
    """A name, a phone and an e-mail of one person, unlike anyone else's."""
    surname = ("Петрова", "Сидорова", "Кузнецова")[user_id % 3]
    phone = f"+7 912 555-{user_id:02d}-{user_id:02d}"
    return f"{surname} Анна Сергеевна", phone, f"anna{user_id}@example.org"


async def register(fake: FakeTelegram, workdir: Path, user_id: int) -> TelegramUser:
    user = TelegramUser(
        fake, http_deliver(fake, timeout=20, database=db_file(workdir)), user_id=user_id
    )
    name, phone, email = person(user_id)
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send(name)
    await user.send("Главный специалист")
    await user.send("Министерство культуры")
    await user.send(phone)
    await user.send(email)
    replies = await user.click("Подтвердить")
    assert "Вы зарегистрированы" in (replies[0].text or "")
    return user


def traces(user_id: int) -> tuple[str, ...]:
    name, phone, email = person(user_id)
    digits = "".join(c for c in phone if c.isdigit())
    return name, phone, digits, email


def holds(path: Path, value: str) -> bool:
    return any(value.encode() in content for content in database_bytes(path).values())


async def test_withdrawal_and_forget_leave_no_trace_in_the_file_of_the_running_bot(
    workdir: Path,
) -> None:
    fake = FakeTelegram(token=TOKEN)
    path = db_file(workdir)
    async with (
        serve(fake) as base_url,
        bot_process(workdir, fake, base_url, ORGANIZER_CHAT_IDS=str(ORGANIZERS)) as bot,
    ):
        withdrawing = await register(fake, workdir, 11)
        forgetting = await register(fake, workdir, 12)
        await register(fake, workdir, 13)  # stays
        assert all(holds(path, value) for value in traces(11) + traces(12))

        await withdrawing.send("/me")
        await withdrawing.click("Отменить регистрацию")
        await withdrawing.click("Да, отменить")
        assert "удалены" in withdrawing.last_text
        await forgetting.send("/forget")
        await forgetting.click("Да, удалить всё")
        assert "ваши данные удалены" in forgetting.last_text

        # The WAL is cut on the bot's checkpoint thread, soon after each erasure.
        await wait_until(
            lambda: not any(holds(path, value) for value in traces(11) + traces(12)), timeout=10
        )
        assert holds(path, person(13)[0])  # the look at the bytes finds what is there
        await wait_until(
            lambda: sum("удалил" in (m.text or "") for m in fake.messages_to(ORGANIZERS)) == 1
        )
        bot.process.send_signal(signal.SIGTERM)
        assert await bot.wait() == 0
        output = bot.output

    assert_no_trace_in(path, traces(11) + traces(12))
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT id, status, full_name IS NULL, erased_at IS NOT NULL FROM registrations "
            "ORDER BY id"
        ).fetchall()
        audit = db.execute("SELECT reason, registration_id FROM audit ORDER BY id").fetchall()
    assert rows == [(1, "withdrawn", 1, 1), (2, "withdrawn", 1, 1), (3, "confirmed", 0, 0)]
    assert audit == [("withdrawal", 1), ("forget", 2)]
    for value in traces(11) + traces(12) + traces(13):
        assert value not in output, f"personal data in the log: {value}"
