"""Crash anywhere: registrations keep coming while the real bot process is killed (SIGKILL)
at 20 random moments and restarted. Nothing a person did is lost or applied twice."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import (
    TOKEN,
    bot_env,
    card_numbers,
    db_file,
    participant,
    upcoming_event_toml,
    wait_until,
)

# Starts and kills the real bot process for a minute or more.
pytestmark = pytest.mark.slow

SEED = int(os.environ.get("CRASH_SEED", "20261126"))
KILLS = 20
USERS = 30
GROUP, PRIVATE = -100111, 600


@pytest.mark.timeout(600)
async def test_registrations_survive_twenty_kills_exactly_once(tmp_path: Path) -> None:
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    rng = random.Random(SEED)
    database = db_file(tmp_path)
    fake = FakeTelegram(token=TOKEN)
    env = bot_env(tmp_path, ORGANIZER_CHAT_IDS=f"{GROUP},{PRIVATE}")
    log = (tmp_path / "bot.log").open("ab")

    async def spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=log, stderr=log
        )

    async with serve(fake) as base_url:
        env["TELEGRAM_API_URL"] = base_url
        people = [
            asyncio.create_task(
                participant(
                    fake,
                    database,
                    user_id,
                    random.Random(rng.random()),
                    start_within=40,
                    pause=(0.05, 1.0),
                    patience=180,
                )
            )
            for user_id in range(1001, 1001 + USERS)
        ]
        moments = []
        for _ in range(KILLS):
            process = await spawn()
            # From process start: some kills land in start-up, most while it works.
            moment = round(rng.uniform(0.5, 4.0), 2)
            moments.append(moment)
            await asyncio.sleep(moment)
            process.kill()
            await process.wait()
        print(f"seed {SEED}: killed after {moments} s")

        polls = len(fake.calls_of("getUpdates"))
        process = await spawn()
        try:
            seen = await asyncio.wait_for(asyncio.gather(*people), timeout=240)
            everything = set(range(1, USERS + 1))
            await wait_until(
                lambda: (
                    set(card_numbers(fake, GROUP)) >= everything
                    and set(card_numbers(fake, PRIVATE)) >= everything
                ),
                timeout=120,
            )
            # The killed processes may have finished everything: then the last one is still
            # starting, and a SIGTERM before it runs is Python's default (-15), not its stop.
            await wait_until(lambda: len(fake.calls_of("getUpdates")) > polls)
        finally:
            process.terminate()
            assert await asyncio.wait_for(process.wait(), 30) == 0
    log.close()

    # Every person saw their registration confirmed (or, after a redelivery, shown).
    assert all("Вы зарегистрированы" in text or "Вы уже зарегистрированы" in text
               or "Зарегистрированы" in text for text in seen), seen  # fmt: skip
    with sqlite3.connect(db_file(tmp_path)) as db:
        rows = db.execute("SELECT user_id, status, position FROM registrations").fetchall()
        forms = db.execute("SELECT count(*) FROM fsm_states WHERE state IS NOT NULL").fetchone()
    # Exactly one registration per person, every answer where it belongs.
    assert sorted(user_id for user_id, _, _ in rows) == list(range(1001, 1001 + USERS))
    assert {(status, position) for _, status, position in rows} == {
        ("confirmed", "Главный специалист")
    }
    assert forms == (0,)
    duplicates = {
        chat: sum(count - 1 for count in card_numbers(fake, chat).values())
        for chat in (GROUP, PRIVATE)
    }
    print(f"duplicate cards per chat after {KILLS} kills: {duplicates}")
    assert all(count <= KILLS for count in duplicates.values())
    # A reply to every step: a new message, or an edit of the one whose button was pressed.
    replies = Counter()
    for message in fake.messages:
        replies[message.chat_id] += 1 + len(message.edits)
    assert all(replies[user_id] >= 8 for user_id in range(1001, 1001 + USERS))
