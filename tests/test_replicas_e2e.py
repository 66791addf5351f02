"""Two replicas on one PostgreSQL database, end to end: two real `python -m bot` processes in
webhook mode behind the fake Bot API's round-robin delivery (the operator's proxy), one of
them killed with SIGKILL in the middle of a burst and started again."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import pytest

from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import (
    TOKEN,
    BotProcess,
    card_numbers,
    participant,
    upcoming_event_toml,
    wait_until,
)
from tests.webhooks import free_port, webhook_bot

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]

GROUP, PRIVATE = -100111, 600
# About 20 replies a second at their pace: under Telegram's 30 a second for the bot.
USERS = 24


@pytest.mark.timeout(400)
async def test_two_replicas_one_killed_mid_burst_lose_nothing_and_apply_nothing_twice(
    tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    fake = FakeTelegram(token=TOKEN)
    # Telegram's limits, enforced: a 429 would mean the replicas together broke them.
    fake.enforce_limits(burst=3)
    ports = [free_port(), free_port()]
    fake.route_webhook(*(f"http://127.0.0.1:{port}" for port in ports))
    fake.webhook_timeout = 10.0
    fake.webhook_backoff = (0.05, 0.5)
    env = {"DATABASE_URL": database_url, "ORGANIZER_CHAT_IDS": f"{GROUP},{PRIVATE}"}
    rng = random.Random(20261206)
    async with serve(fake) as base_url, AsyncExitStack() as stack:
        replicas: list[BotProcess] = []
        for index, port in enumerate(ports):
            replicas.append(
                await stack.enter_async_context(
                    webhook_bot(tmp_path, fake, base_url, port, run=index, **env)
                )
            )
        people = [
            asyncio.create_task(
                participant(
                    fake,
                    database_url,
                    user_id,
                    random.Random(rng.random()),
                    # Slower than a message a second: the bot's replies keep Telegram's
                    # per-chat limit.
                    start_within=3,
                    pause=(1.05, 1.5),
                )
            )
            for user_id in range(1001, 1001 + USERS)
        ]
        # Mid-burst: requests in flight on both replicas.
        await wait_until(lambda: len(fake.acknowledged_requests()) >= 60, timeout=90)
        victim = replicas[0]
        killed_at = time.monotonic()
        victim.process.send_signal(signal.SIGKILL)
        assert await victim.wait(30) == -signal.SIGKILL
        served = Counter(request.target for request in fake.acknowledged_requests())
        # Started again on its port: the proxy sends it updates again.
        await stack.enter_async_context(
            webhook_bot(tmp_path, fake, base_url, ports[0], run=2, **env)
        )
        seen = await asyncio.wait_for(asyncio.gather(*people), timeout=240)
        everything = set(range(1, USERS + 1))
        await wait_until(
            lambda: (
                set(card_numbers(fake, GROUP)) >= everything
                and set(card_numbers(fake, PRIVATE)) >= everything
            ),
            timeout=120,
        )

    # Both replicas took updates before the kill.
    assert len(served) == 2, served
    assert all("зарегистрированы" in text.lower() for text in seen), seen
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT user_id, status, position FROM registrations")
        waiting = await connection.fetchval("SELECT count(*) FROM inbox")
        handled = await connection.fetchval("SELECT count(*) FROM handled_updates")
    finally:
        await connection.close()
    # 0 lost, 0 duplicated: one registration per person, each answer where it belongs.
    assert sorted(row["user_id"] for row in rows) == list(range(1001, 1001 + USERS))
    assert {(row["status"], row["position"]) for row in rows} == {
        ("confirmed", "Главный специалист")
    }
    assert waiting == 0
    assert handled == USERS * 8
    # Every card delivered; a card is marked sent after Telegram took it, so a kill of the
    # sending replica between the two may send one again (at least once, as with one process).
    duplicates = {
        chat: sum(count - 1 for count in card_numbers(fake, chat).values())
        for chat in (GROUP, PRIVATE)
    }
    assert all(count <= 1 for count in duplicates.values()), duplicates
    # Telegram's limits held by both together (the sender runs on one replica at a time).
    refused = [
        (call.method, call.params.get("chat_id"), round(call.time - killed_at, 2))
        for call in fake.calls
        if call.error_code == 429
    ]
    assert fake.limit_violations == 0, refused
    print(
        f"requests per replica before the kill: {dict(served)}; duplicate cards: {duplicates}; "
        f"{len(fake.webhook_requests)} POSTs in all"
    )
