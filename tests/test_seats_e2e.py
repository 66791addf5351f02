"""Seats and the waiting list with the real `python -m bot` process over HTTP: a burst of
confirmations takes exactly the seats there are, and a seat freed just before a `kill -9` is
still offered after the restart, once, and taken."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.client import TelegramUser, http_deliver
from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import TOKEN, bot_process, db_file, upcoming_event_toml, wait_until

pytestmark = pytest.mark.slow


def workdir_with(tmp_path: Path, capacity: int) -> Path:
    (tmp_path / "events.toml").write_text(
        upcoming_event_toml() + f"capacity = {capacity}\n", encoding="utf-8"
    )
    return tmp_path


def person(fake: FakeTelegram, workdir: Path, user_id: int) -> TelegramUser:
    return TelegramUser(
        fake, http_deliver(fake, timeout=30, database=db_file(workdir)), user_id=user_id
    )


async def up_to_summary(user: TelegramUser) -> None:
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    await user.send("Главный специалист")
    await user.send("Министерство культуры")
    await user.send("+7 912 345-67-89")
    await user.send(f"user{user.user_id}@example.ru")


def offers(fake: FakeTelegram, chat_id: int) -> int:
    """Offers the chat received (a taken offer's message is edited into the confirmation)."""
    return sum(
        "Освободилось место" in str(call.params.get("text"))
        and str(call.params.get("chat_id")) == str(chat_id)
        and call.error_code is None
        for call in fake.calls_of("sendMessage")
    )


def rows(workdir: Path) -> list[tuple[int, str, int]]:
    with sqlite3.connect(db_file(workdir)) as db:
        return db.execute(
            "SELECT user_id, status, offered_at IS NOT NULL FROM registrations "
            "WHERE user_id IS NOT NULL ORDER BY id"
        ).fetchall()


async def test_a_burst_of_confirmations_takes_exactly_the_seats_there_are(tmp_path: Path) -> None:
    workdir = workdir_with(tmp_path, 3)
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url, bot_process(workdir, fake, base_url) as bot:
        crowd = [person(fake, workdir, 100 + n) for n in range(12)]
        await asyncio.gather(*(up_to_summary(user) for user in crowd))
        await asyncio.gather(*(user.click("Подтвердить") for user in crowd))
        seated = [user for user in crowd if "Вы зарегистрированы" in user.last_message_text]
        waiting = [user for user in crowd if "место в очереди" in user.last_message_text]
        assert (len(seated), len(waiting)) == (3, 9)
        places = sorted(
            int(user.last_message_text.split("место в очереди — ")[1][0]) for user in waiting
        )
        assert places == list(range(1, 10))
        # The first in line leaves from /me: the others move up.
        first = next(user for user in waiting if "место в очереди — 1." in user.last_message_text)
        await first.send("/me")
        await first.click("Покинуть лист ожидания")
        await first.click("Да, покинуть")
        assert "Вы покинули лист ожидания" in first.last_message_text
        second = next(user for user in waiting if "место в очереди — 2." in user.last_message_text)
        await second.send("/me")
        assert any(
            "место в очереди — 1." in (m.text or "") for m in fake.messages_to(second.chat_id)[-3:]
        )
        bot.process.send_signal(signal.SIGTERM)
        assert await bot.wait() == 0
    statuses = [status for _, status, _ in rows(workdir)]
    assert statuses.count("confirmed") == 3 and statuses.count("waiting") == 8


async def test_a_seat_freed_before_a_kill_is_offered_after_the_restart_once(
    tmp_path: Path,
) -> None:
    workdir = workdir_with(tmp_path, 1)
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url:
        async with bot_process(workdir, fake, base_url, run=0) as bot:
            seated = person(fake, workdir, 11)
            await up_to_summary(seated)
            await seated.click("Подтвердить")
            waiting = person(fake, workdir, 12)
            await up_to_summary(waiting)
            assert "Свободных мест нет" in waiting.last_message_text
            await waiting.click("Встать в лист ожидания")
            assert "место в очереди — 1" in waiting.last_message_text

            # The offer's first try never gets an answer: the seat is free, the offer
            # committed with it, not yet delivered, when the process is killed.
            fake.hang("sendMessage", chat_id=waiting.chat_id)
            tries = len(fake.calls_of("sendMessage"))
            await seated.send("/me")
            await seated.click("Отменить регистрацию")
            await seated.click("Да, отменить")
            await wait_until(
                lambda: any(
                    call.params.get("chat_id") in (waiting.chat_id, str(waiting.chat_id))
                    for call in fake.calls_of("sendMessage")[tries:]
                )
            )
            bot.process.send_signal(signal.SIGKILL)
            await bot.wait()
        assert offers(fake, waiting.chat_id) == 0
        assert rows(workdir) == [(11, "withdrawn", 0), (12, "waiting", 1)] or rows(workdir) == [
            (12, "waiting", 1)
        ]

        async with bot_process(workdir, fake, base_url, run=1) as bot:
            await wait_until(lambda: offers(fake, waiting.chat_id) == 1)
            await waiting.click("Занять место")
            assert "Место ваше, вы зарегистрированы" in waiting.last_message_text
            await asyncio.sleep(1)  # nothing more comes: the offer went once
            assert offers(fake, waiting.chat_id) == 1
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
    assert rows(workdir) == [(12, "confirmed", 0)]


async def test_a_capacity_raised_in_the_file_offers_the_new_seat_at_start(tmp_path: Path) -> None:
    workdir = workdir_with(tmp_path, 1)
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url:
        async with bot_process(workdir, fake, base_url, run=0) as bot:
            seated = person(fake, workdir, 21)
            await up_to_summary(seated)
            await seated.click("Подтвердить")
            waiting = person(fake, workdir, 22)
            await up_to_summary(waiting)
            await waiting.click("Встать в лист ожидания")
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
        workdir_with(tmp_path, 2)
        async with bot_process(workdir, fake, base_url, run=1) as bot:
            await wait_until(lambda: offers(fake, waiting.chat_id) == 1)
            await waiting.click("Занять место")
            assert "Место ваше" in waiting.last_message_text
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
    assert rows(workdir) == [(21, "confirmed", 0), (22, "confirmed", 0)]
