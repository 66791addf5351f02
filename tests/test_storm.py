"""Storms: Telegram answers at random with 429, 500, 502, timeouts and dropped connections
for a while, then heals. Nothing is lost, nothing is duplicated, retries stay bounded."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

import pytest

from tests.client import TelegramUser, http_deliver
from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import TOKEN, bot_process, card_numbers, db_file, upcoming_event_toml, wait_until

# Runs the real bot process through a 20-second storm.
pytestmark = pytest.mark.slow

SEED = 7
USERS = 12
STORM_SECONDS = 20.0
GROUP, PRIVATE = -100111, 600


async def registers(fake: FakeTelegram, database: Path, user_id: int, rng: random.Random) -> str:
    user = TelegramUser(fake, http_deliver(fake, timeout=90, database=database), user_id=user_id)
    await asyncio.sleep(rng.uniform(0, 5))
    await user.send("/start")
    await user.click("Даю согласие")
    for answer in ("Петров Пётр", "Журналист", "Газета", "89123456789", f"p{user_id}@example.ru"):
        await user.send(answer)
    await user.click("Подтвердить")
    return user.last_message_text


@pytest.mark.timeout(300)
async def test_a_storm_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    rng = random.Random(SEED)
    fake = FakeTelegram(token=TOKEN)
    async with (
        serve(fake) as base_url,
        bot_process(tmp_path, fake, base_url, ORGANIZER_CHAT_IDS=f"{GROUP},{PRIVATE}") as bot,
    ):
        fake.storm(seconds=STORM_SECONDS, probability=0.25, seed=SEED)
        started = time.monotonic()
        seen = await asyncio.gather(
            *(
                registers(fake, db_file(tmp_path), uid, random.Random(rng.random()))
                for uid in range(1, USERS + 1)
            )
        )
        everything = set(range(1, USERS + 1))
        await wait_until(
            lambda: (
                set(card_numbers(fake, GROUP)) == everything
                and set(card_numbers(fake, PRIVATE)) == everything
            ),
            timeout=120,
        )
        print(f"storm faults: {dict(fake.storm_faults)}; all done after "
              f"{time.monotonic() - started:.1f} s")  # fmt: skip
        assert sum(fake.storm_faults.values()) >= 20  # it was a storm
        bot.process.terminate()
        assert await bot.wait() == 0

    assert all("Вы зарегистрированы" in text for text in seen)
    with sqlite3.connect(db_file(tmp_path)) as db:
        users = sorted(row[0] for row in db.execute("SELECT user_id FROM registrations"))
        pending = db.execute("SELECT count(*) FROM outbox WHERE status != 'sent'").fetchone()
    assert users == list(range(1, USERS + 1))
    assert pending == (0,)
    # Every fault had no effect, so every retry made exactly one: no duplicates anywhere.
    for chat in (GROUP, PRIVATE):
        assert set(card_numbers(fake, chat).values()) == {1}
    for user_id in range(1, USERS + 1):
        confirmations = [m for m in fake.messages_to(user_id)
                         if "Вы зарегистрированы" in (m.text or "")]  # fmt: skip
        assert len(confirmations) == 1
    # No runaway retries: calls that failed stay within a small multiple of the faults.
    sends = fake.calls_of("sendMessage")
    failed = [call for call in sends if call.error_code is not None]
    assert len(failed) <= sum(fake.storm_faults.values())
    assert len(sends) <= 2 * len(fake.messages) + len(failed)
