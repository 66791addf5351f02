"""Webhook mode end to end: the real `python -m bot` process listening on 127.0.0.1, the fake
Bot API delivering to it by POST as Telegram does (its TLS proxy played by `route_webhook`),
a real SQLite file. Also the lease: one process per SQLite file."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import sqlite3
import statistics
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from tests.fake_telegram import SECRET_HEADER, FakeTelegram, serve
from tests.helpers import (
    TOKEN,
    bot_env,
    bot_process,
    card_numbers,
    db_file,
    participant,
    register_over_http,
    upcoming_event_toml,
    wait_until,
)
from tests.webhooks import PATH, SECRET, URL, free_port, healthz, webhook_bot, webhook_env

# Every test here starts the real bot process.
pytestmark = pytest.mark.slow

GROUP, PRIVATE = -100111, 600


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    return tmp_path


def fast_delivery(fake: FakeTelegram, port: int) -> None:
    fake.route_webhook(f"http://127.0.0.1:{port}")
    fake.webhook_timeout = 10.0
    fake.webhook_backoff = (0.05, 0.5)


async def raw_status(port: int, head: str) -> tuple[bytes, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    return line.split()[1], loop.time() - started


def huge_post(secret: str | None) -> str:
    header = f"{SECRET_HEADER}: {secret}\r\n" if secret is not None else ""
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
        f"Content-Length: 2000000000\r\n{header}\r\n"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def test_participant_registers_in_webhook_mode_and_the_bot_stops_cleanly(
    workdir: Path,
) -> None:
    fake = FakeTelegram(token=TOKEN)
    port = free_port()
    fast_delivery(fake, port)
    async with serve(fake) as base_url, webhook_bot(workdir, fake, base_url, port) as bot:
        await register_over_http(fake, workdir, 1001)

        [call] = fake.calls_of("setWebhook")
        assert call.params["url"] == URL
        assert call.params["secret_token"] == SECRET
        assert call.params.get("drop_pending_updates") in (None, False)
        assert "message" in call.params["allowed_updates"]
        assert "callback_query" in call.params["allowed_updates"]
        assert not fake.calls_of("getUpdates")
        assert all(request.status == 200 for request in fake.webhook_requests)

        # Without the secret, 401 at once: a body announced as 2 GB is never waited for.
        for secret in (None, "wrong"):
            status, took = await raw_status(port, huge_post(secret))
            assert (status, took < 1.0) == (b"401", True)
        status, took = await raw_status(port, huge_post(SECRET))
        assert (status, took < 1.0) == (b"413", True)

        # /healthz: 200, and 503 while another process holds the database's write lock.
        assert await healthz(port) == 200
        with closing(sqlite3.connect(db_file(workdir), isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            assert await healthz(port) == 503
            other.execute("ROLLBACK")
        for _ in range(100):
            if await healthz(port) == 200:
                break
            await asyncio.sleep(0.1)
        assert await healthz(port) == 200

        bot.process.send_signal(signal.SIGTERM)
        assert await bot.wait() == 0
        output = bot.output

    with closing(sqlite3.connect(db_file(workdir))) as db:
        rows = db.execute("SELECT user_id, status FROM registrations").fetchall()
    assert rows == [(1001, "confirmed")]
    assert "Stopped cleanly" in output
    assert "Traceback" not in output
    for secret_or_personal in (SECRET, "Иванова", "79123456789", "user1001@example.ru"):
        assert secret_or_personal not in output


async def test_set_webhook_once_per_settings_and_polling_removes_it(workdir: Path) -> None:
    fake = FakeTelegram(token=TOKEN)
    port = free_port()
    fast_delivery(fake, port)
    async with serve(fake) as base_url:
        for run, secret in enumerate((SECRET, SECRET, "a-new-secret")):
            async with webhook_bot(
                workdir, fake, base_url, port, run=run, WEBHOOK_SECRET=secret
            ) as bot:
                await register_over_http(fake, workdir, 1001 + run)
                bot.process.send_signal(signal.SIGTERM)
                assert await bot.wait() == 0
        calls = fake.calls_of("setWebhook")
        # Once for the first two starts (same settings), again for the new secret.
        assert [call.params["secret_token"] for call in calls] == [SECRET, "a-new-secret"]
        assert all(call.params.get("drop_pending_updates") in (None, False) for call in calls)
        assert fake.webhook is not None and fake.webhook.secret == "a-new-secret"

        # An update arrives while no process runs; then the bot starts in polling mode.
        async with bot_process(workdir, fake, base_url, run=9) as bot:
            [delete] = fake.calls_of("deleteWebhook")
            assert delete.params.get("drop_pending_updates") is False
            assert fake.webhook is None
            await register_over_http(fake, workdir, 1009)
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
        assert "Removed the webhook" in bot.output

        # Back to webhook mode: the fingerprint was forgotten, so Telegram is told again.
        async with webhook_bot(workdir, fake, base_url, port, run=10) as bot:
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0
        assert len(fake.calls_of("setWebhook")) == 3

    with closing(sqlite3.connect(db_file(workdir))) as db:
        users = [row[0] for row in db.execute("SELECT user_id FROM registrations ORDER BY 1")]
    assert users == [1001, 1002, 1003, 1009]


USERS = 30


async def burst_interrupted(workdir: Path, how: signal.Signals) -> FakeTelegram:
    """30 people register while the bot is stopped (`how`) mid-burst and started again;
    returns the fake once every registration and every card is through."""
    fake = FakeTelegram(token=TOKEN)
    port = free_port()
    fast_delivery(fake, port)
    rng = random.Random(20261206)
    database = db_file(workdir)
    chats = {"ORGANIZER_CHAT_IDS": f"{GROUP},{PRIVATE}"}
    async with serve(fake) as base_url:
        async with webhook_bot(workdir, fake, base_url, port, run=1, **chats) as bot:
            people = [
                asyncio.create_task(
                    participant(
                        fake,
                        database,
                        user_id,
                        random.Random(rng.random()),
                        start_within=4,
                        pause=(0.05, 0.6),
                    )
                )
                for user_id in range(1001, 1001 + USERS)
            ]
            # Mid-burst: some people done with a few steps, requests in flight.
            await wait_until(lambda: len(fake.acknowledged_requests()) >= 60, timeout=60)
            bot.process.send_signal(how)
            code = await bot.wait(30)
            assert code == (0 if how == signal.SIGTERM else -signal.SIGKILL), bot.output
        stopped_at = len(fake.webhook_requests)
        async with webhook_bot(workdir, fake, base_url, port, run=2, **chats) as bot:
            seen = await asyncio.wait_for(asyncio.gather(*people), timeout=180)
            everything = set(range(1, USERS + 1))
            await wait_until(
                lambda: (
                    set(card_numbers(fake, GROUP)) >= everything
                    and set(card_numbers(fake, PRIVATE)) >= everything
                ),
                timeout=60,
            )
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait(30) == 0
    assert all("зарегистрированы" in text.lower() for text in seen), seen
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT user_id, status, position FROM registrations").fetchall()
        waiting = db.execute("SELECT count(*) FROM inbox").fetchone()
    # Exactly one registration per person, every answer where it belongs.
    assert sorted(user_id for user_id, _, _ in rows) == list(range(1001, 1001 + USERS))
    assert {(status, position) for _, status, position in rows} == {
        ("confirmed", "Главный специалист")
    }
    assert waiting == (0,)
    # The fake had to send again what the stopped process did not acknowledge.
    unacknowledged = [r for r in fake.webhook_requests[:stopped_at] if not r.acknowledged]
    later = {r.update_id for r in fake.webhook_requests[stopped_at:] if r.acknowledged}
    assert {r.update_id for r in unacknowledged} <= later | {
        r.update_id for r in fake.webhook_requests[:stopped_at] if r.acknowledged
    }
    durations = [(r.ended - r.started) * 1000 for r in fake.acknowledged_requests()]
    print(
        f"{how.name}: {len(fake.webhook_requests)} requests, {len(unacknowledged)} not "
        f"acknowledged before the stop; POST to 200: median {statistics.median(durations):.1f} "
        f"ms, p99 {percentile(durations, 99):.1f} ms"
    )
    return fake


def duplicates(fake: FakeTelegram) -> dict[int, int]:
    return {
        chat: sum(count - 1 for count in card_numbers(fake, chat).values())
        for chat in (GROUP, PRIVATE)
    }


@pytest.mark.timeout(400)
async def test_kill_9_mid_burst_then_restart_loses_nothing_and_applies_nothing_twice(
    workdir: Path,
) -> None:
    fake = await burst_interrupted(workdir, signal.SIGKILL)
    # A card is marked sent after Telegram took it: a kill in between sends it again, at
    # most once per chat for one kill (bot/sender.py).
    assert all(count <= 1 for count in duplicates(fake).values()), duplicates(fake)
    replies = Counter(message.chat_id for message in fake.messages)
    assert all(replies[user_id] >= 2 for user_id in range(1001, 1001 + USERS))


@pytest.mark.timeout(400)
async def test_sigterm_mid_burst_loses_nothing_and_sends_every_card_once(workdir: Path) -> None:
    fake = await burst_interrupted(workdir, signal.SIGTERM)
    assert duplicates(fake) == {GROUP: 0, PRIVATE: 0}


async def test_a_second_process_on_the_same_file_is_refused_and_operator_commands_work(
    workdir: Path,
) -> None:
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url, bot_process(workdir, fake, base_url) as bot:
        await register_over_http(fake, workdir, 1001)
        env = bot_env(workdir, TELEGRAM_API_URL=base_url)

        async def run(*arguments: str) -> tuple[int, str]:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", *arguments, cwd=workdir, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            output, _ = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode is not None
            return process.returncode, output.decode()

        code, output = await run()
        assert code == 2
        [line] = output.strip().splitlines()
        assert line == (
            f"error: DATABASE_PATH: {db_file(workdir)} is in use by another process "
            f"(pid {bot.process.pid}?); replicas need PostgreSQL: see README"
        )
        # The operator's commands take no lease: they work beside the running bot.
        code, output = await run("export", "--output", str(workdir / "out.csv"))
        assert (code, output.strip()) == (0, f"1 rows written to {workdir / 'out.csv'}")
        code, output = await run("audit", "--since", "2020-01-01")
        assert code == 0 and "export" in output
        code, output = await run("erase", "user1001@example.ru", "--yes")
        assert code == 0, output
        # ...and the bot still works after them (SQLite's own locks were not disturbed).
        await register_over_http(fake, workdir, 1002)
        bot.process.send_signal(signal.SIGTERM)
        assert await bot.wait() == 0

    with closing(sqlite3.connect(db_file(workdir))) as db:
        rows = db.execute("SELECT user_id, full_name IS NULL FROM registrations ORDER BY 1")
        assert rows.fetchall() == [(None, 1), (1002, 0)]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MODE": "webhook"}, "error: WEBHOOK_URL is required when MODE=webhook"),
        (
            {"MODE": "webhook", "WEBHOOK_URL": URL, "WEBHOOK_SECRET": "not secret enough!"},
            "error: WEBHOOK_SECRET: must be 1 to 256 characters",
        ),
        ({"WEBHOOK_LISTEN": "localhost"}, "error: WEBHOOK_LISTEN: 'localhost' is not host:port"),
    ],
)
async def test_webhook_setting_mistakes_stop_the_bot_with_one_line(
    workdir: Path, env: dict[str, str], expected: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=workdir,
        env=bot_env(workdir, TELEGRAM_API_URL="http://127.0.0.1:9", **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    [line] = output.decode().strip().splitlines()
    assert line.startswith(expected), line
    assert "not secret enough" not in line


async def test_a_listen_address_in_use_stops_the_bot_with_one_line(workdir: Path) -> None:
    fake = FakeTelegram(token=TOKEN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with serve(fake) as base_url:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=workdir,
                env=bot_env(workdir, TELEGRAM_API_URL=base_url, **webhook_env(port)),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    lines = output.decode().strip().splitlines()
    assert lines[-1].startswith(f"error: WEBHOOK_LISTEN: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in output.decode()
    assert not fake.calls_of("setWebhook")


KILLS = 10


@pytest.mark.timeout(600)
async def test_registrations_survive_ten_kills_in_webhook_mode_exactly_once(
    workdir: Path,
) -> None:
    """test_crash.py's twenty kills, in webhook mode: kills land in start-up (before the
    server listens, around setWebhook) and mid-request alike."""
    fake = FakeTelegram(token=TOKEN)
    port = free_port()
    fast_delivery(fake, port)
    rng = random.Random(20261207)
    database = db_file(workdir)
    env = bot_env(workdir, ORGANIZER_CHAT_IDS=f"{GROUP},{PRIVATE}", **webhook_env(port))
    log = (workdir / "bot.log").open("ab")

    async def spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=workdir, env=env, stdout=log, stderr=log
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
                    start_within=4,
                    pause=(0.05, 0.6),
                )
            )
            for user_id in range(1001, 1001 + USERS)
        ]
        moments = []
        for _ in range(KILLS):
            process = await spawn()
            moment = round(rng.uniform(0.5, 4.0), 2)
            moments.append(moment)
            await asyncio.sleep(moment)
            process.kill()
            await process.wait()
        print(f"killed after {moments} s")

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
            while await healthz(port) != 200:
                assert process.returncode is None
                await asyncio.sleep(0.05)
        finally:
            process.terminate()
            assert await asyncio.wait_for(process.wait(), 30) == 0
    log.close()

    assert all("зарегистрированы" in text.lower() for text in seen), seen
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT user_id, status, position FROM registrations").fetchall()
    assert sorted(user_id for user_id, _, _ in rows) == list(range(1001, 1001 + USERS))
    assert {(status, position) for _, status, position in rows} == {
        ("confirmed", "Главный специалист")
    }
    print(f"duplicate cards per chat after {KILLS} kills: {duplicates(fake)}")
    assert all(count <= KILLS for count in duplicates(fake).values())
    # The same settings at every start: set once, unless a kill fell between Telegram's
    # answer and the fingerprint's write; never dropping what Telegram holds.
    calls = fake.calls_of("setWebhook")
    print(f"setWebhook calls over {KILLS + 1} starts: {len(calls)}")
    assert calls and all(call.params.get("drop_pending_updates") in (None, False) for call in calls)
