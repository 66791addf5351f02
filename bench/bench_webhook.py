"""Webhook mode: how soon the real `python -m bot` acknowledges an update (HTTP 200, once it is
in the inbox), while N simulated people register through the fake Bot API's webhook delivery
(bot/sandbox/fake_telegram/webhook.py) on 127.0.0.1.

The figure is the time from the start of the fake's POST to the end of the bot's answer, for
every update, as Telegram would see it. With pauses each person waits 0.3-1.5 s between steps;
with `--no-pauses` everybody answers at once (saturation: acknowledging then competes with
handling for the one core the process uses). Also: the time from pushing an update to the
bot's first reply, and every non-2xx answer.

    python -m bench.bench_webhook [--participants 50] [--no-pauses] [--seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.client import TelegramUser
from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import TOKEN, bot_env, registration_steps, upcoming_event_toml
from tests.webhooks import free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-webhook-secret_0123456789"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def ready(port: int, fake: FakeTelegram, process: asyncio.subprocess.Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline and process.returncode is None:
        if fake.webhook is not None:
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{port}/healthz") as response,
                ):
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
        await asyncio.sleep(0.05)
    raise RuntimeError("the bot did not start in webhook mode")


async def person(fake: FakeTelegram, user_id: int, rng: random.Random, paced: bool) -> list[float]:
    """One registration; returns, per step, the time from the push to the bot's first reply."""
    replies: list[float] = []

    async def deliver(update: dict[str, object]) -> None:
        mark = fake.mark()
        started = time.monotonic()
        update_id = fake.push_update(update)
        await fake.wait_confirmed(update_id, timeout=120)
        # In memory, not by reading the bot's database: the driver must stay light.
        while not fake.touched_since(mark, user_id):  # noqa: ASYNC110 (the fake has no event)
            await asyncio.sleep(0.002)
        replies.append(time.monotonic() - started)
        # A step may answer with two messages: the next step waits for the bot to go quiet.
        seen = len(fake.touched_since(mark, user_id))
        while True:
            await asyncio.sleep(0.1)
            now_seen = len(fake.touched_since(mark, user_id))
            if now_seen == seen:
                return
            seen = now_seen

    user = TelegramUser(fake, deliver, user_id=user_id)
    steps = registration_steps(user)
    if paced:
        await asyncio.sleep(rng.uniform(0, 5))
    for step in steps:
        await step()
        if paced:
            await asyncio.sleep(rng.uniform(0.3, 1.5))
    if "зарегистрированы" not in user.last_message_text.lower():
        raise AssertionError(f"chat {user_id}: not registered: {user.last_message_text!r}")
    return replies


async def run(participants: int, paced: bool, seed: int) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as folder:
        workdir = Path(folder)
        (workdir / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
        fake = FakeTelegram(token=TOKEN)
        port = free_port()
        fake.route_webhook(f"http://127.0.0.1:{port}")
        async with serve(fake) as base_url:
            env = bot_env(
                workdir,
                TELEGRAM_API_URL=base_url,
                MODE="webhook",
                WEBHOOK_URL="https://bot.example.org/telegram",
                WEBHOOK_SECRET=SECRET,
                WEBHOOK_LISTEN=f"127.0.0.1:{port}",
                PYTHONPATH=str(ROOT),
            )
            log = (workdir / "bot.log").open("wb")
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=workdir, env=env, stdout=log, stderr=log
            )
            try:
                await ready(port, fake, process)
                # Start-up (imports, migrations) is not the updates' cost.
                cpu_at_start = _cpu_seconds(process.pid)
                began = time.monotonic()
                handled = await asyncio.gather(
                    *(
                        person(fake, 1001 + n, random.Random(rng.random()), paced)
                        for n in range(participants)
                    )
                )
                total = time.monotonic() - began
                cpu = _cpu_seconds(process.pid) - cpu_at_start
            finally:
                process.terminate()
                await process.wait()
                log.close()
    acknowledged = [(r.ended - r.started) * 1000 for r in fake.acknowledged_requests()]
    refused = [r for r in fake.webhook_requests if not r.acknowledged]
    to_handled = [seconds * 1000 for person_times in handled for seconds in person_times]
    kind = "paced (0.3-1.5 s between steps)" if paced else "no pauses (saturated)"
    print(f"## Webhook mode: acknowledgement latency, {participants} participants, {kind}")
    print()
    print("| | |")
    print("|---|---|")
    print(f"| updates acknowledged | {len(acknowledged):,} in {total:.1f} s |")
    print(f"| POST to 200, median | {statistics.median(acknowledged):.1f} ms |")
    print(f"| POST to 200, p90 | {percentile(acknowledged, 90):.1f} ms |")
    print(f"| POST to 200, p99 | {percentile(acknowledged, 99):.1f} ms |")
    print(f"| POST to 200, max | {max(acknowledged):.1f} ms |")
    print(f"| requests not answered 2xx | {len(refused)} |")
    print(f"| update pushed to first reply, median | {statistics.median(to_handled):.1f} ms |")
    print(f"| update pushed to first reply, p99 | {percentile(to_handled, 99):.1f} ms |")
    per_update = cpu / len(acknowledged) * 1000
    print(f"| bot CPU (user+system) during the run | {cpu:.2f} s, {per_update:.2f} ms per update |")
    print()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--no-pauses", action="store_true")
    parser.add_argument("--seed", type=int, default=20261206)
    args = parser.parse_args()
    asyncio.run(run(args.participants, not args.no_pauses, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
