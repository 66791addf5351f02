"""Reminders to 10,000 registrants while participants register, over real HTTP.

The real `python -m bot` process polls the fake Bot API on 127.0.0.1, which answers 429 to
anything over Telegram's limits (1 a second per chat, 20 a minute per group, 30 a second
overall). The database holds N registrants of a session whose reminder falls due a few
seconds after the bot starts; while the outbox sender delivers them, participants keep
registering (a few at a time, 1–3 s between steps). Goals: the reminders go out at ≥ 0.9 of
the sender's configured overall rate (`Limits().overall_per_second`), no 429, each registrant
reminded once, and the participants' reply latency p99 ≤ 250 ms.

    python -m bench.bench_reminders [--registrants 10000] [--participants 4] [--seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.bench_http import (
    GOAL_P99_MS,
    Person,
    TimedTelegram,
    bot_process,
    calibrate,
    participate,
    process_cpu,
)
from bench.bench_throughput import FIRST_USER_ID, our_buttons
from bot.sender import Limits
from tests.helpers import MOSCOW, event_toml

FIRST_REGISTRANT = 2_000_000_000
GOAL_RATE = 0.9
LEAD = timedelta(seconds=25)  # from writing the file to the reminder falling due
REMINDER = "Напоминаем"


def events_toml(starts: datetime) -> str:
    return (
        event_toml(
            id="reminded",
            title="Стратегическая сессия «ЭтНик»",
            starts_at=starts,
            timezone="Europe/Moscow",
            registration_deadline=starts,
            location="Онлайн",
            join_url="https://example.org/join",
            contact="org@example.ru",
            privacy_policy="Данные обрабатываются по 152-ФЗ.",
            privacy_policy_version="v1",
        )
        + 'reminders = ["1h"]\n'
    )


async def create_registrants(directory: Path, count: int) -> None:
    """The bot's own start-up makes the schema and the session; the registrants go in bulk."""
    from bot.app import open_app
    from bot.domain.config import load_settings

    settings = load_settings(
        _env_file=None,
        bot_token="7000000001:AAbench-token-for-benchmarks-onlyxxxx",
        database_path=directory / "data" / "bot.sqlite3",
        events_file=directory / "events.toml",
    )
    async with open_app(settings):
        pass
    registered = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    with sqlite3.connect(settings.database_path) as connection:
        connection.executemany(
            """
            INSERT INTO registrations (event_id, user_id, telegram_name, full_name, position,
                organization, phone, email, consent_at, consent_version, status, created_at,
                updated_at)
            VALUES ('reminded', ?, 'Участник', 'Иванова Мария Петровна', 'Специалист',
                'Министерство культуры', '+79123456789', ?, ?, 'v1', 'confirmed', ?, ?)
            """,
            [
                (FIRST_REGISTRANT + n, f"r{n}@example.ru", registered, registered, registered)
                for n in range(count)
            ],
        )
    connection.close()


@dataclass
class Outcome:
    registrants: int
    reminded: Counter[int]
    first: float
    last: float
    latencies: list[float]
    registered: int
    violations: int
    bot_cpu: float
    exit_code: int | None
    finished: bool


async def run(registrants: int, participants: int, seed: int) -> Outcome:
    buttons = our_buttons()
    with tempfile.TemporaryDirectory(prefix="bench-reminders-") as tmp:
        directory = Path(tmp)
        starts = (datetime.now(MOSCOW) + timedelta(hours=1) + LEAD).replace(microsecond=0)
        (directory / "events.toml").write_text(events_toml(starts), encoding="utf-8")
        await create_registrants(directory, registrants)
        due = starts - timedelta(hours=1)
        fake = TimedTelegram()
        from tests.fake_telegram import serve

        async with serve(fake) as base_url, bot_process("ours", directory, fake, base_url) as bot:
            # Calibration answers each step half a second after the last reply, faster than
            # a private chat may be written to: the limits apply from the measurement on.
            replies = await calibrate(fake, buttons)
            fake.enforce_limits()
            bot_before, _ = process_cpu(bot.pid)

            def reminded() -> Counter[int]:
                return Counter(
                    call.params["chat_id"]
                    for call in fake.calls_of("sendMessage")
                    if call.error_code is None
                    and int(call.params.get("chat_id", 0)) >= FIRST_REGISTRANT
                )

            wait = (due - datetime.now(MOSCOW)).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            print(f"reminders due; {registrants} to send", file=sys.stderr, flush=True)
            latencies: list[float] = []
            registered = 0
            done = asyncio.Event()
            next_id = FIRST_USER_ID

            async def keep_registering(lane: int) -> None:
                nonlocal next_id, registered
                rng = random.Random(seed * 1_000_003 + lane)
                while not done.is_set():
                    person = Person(fake, next_id, next_id - FIRST_USER_ID, buttons)
                    next_id += 1
                    await participate(person, replies, rng, latencies)
                    registered += 1

            lanes = [asyncio.create_task(keep_registering(lane)) for lane in range(participants)]
            limit = registrants / Limits().overall_per_second * 2 + 120
            began = time.monotonic()
            finished = True
            while len(reminded()) < registrants:
                if time.monotonic() - began > limit:
                    finished = False
                    break
                await asyncio.sleep(1.0)
                print(
                    f"[{time.monotonic() - began:5.0f} s] reminded {len(reminded())}, "
                    f"participants registered {registered}, 429s {fake.limit_violations}",
                    file=sys.stderr,
                    flush=True,
                )
            done.set()
            await asyncio.gather(*lanes)
            await asyncio.sleep(2.0)  # a reminder sent twice would show up now
            bot_after, _ = process_cpu(bot.pid)
            times = [
                call.time
                for call in fake.calls_of("sendMessage")
                if call.error_code is None
                and int(call.params.get("chat_id", 0)) >= FIRST_REGISTRANT
            ]
            for call in fake.calls:
                if call.error_code == 429:
                    print(
                        f"429: {call.method} to {call.params.get('chat_id')} at "
                        f"{call.time - began:.2f} s",
                        file=sys.stderr,
                    )
            bot.send_signal(signal.SIGTERM)
            exit_code = await asyncio.wait_for(bot.wait(), 120)
    return Outcome(
        registrants=registrants,
        reminded=reminded(),
        first=min(times, default=0.0),
        last=max(times, default=0.0),
        latencies=latencies,
        registered=registered,
        violations=fake.limit_violations,
        bot_cpu=bot_after - bot_before,
        exit_code=exit_code,
        finished=finished,
    )


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] * 1000


def report(outcome: Outcome, participants: int) -> bool:
    n = outcome.registrants
    configured = Limits().overall_per_second
    sent = sum(outcome.reminded.values())
    seconds = max(outcome.last - outcome.first, 1e-9)
    rate = (sent - 1) / seconds  # n messages span n - 1 intervals
    ratio = rate / configured
    once = len(outcome.reminded) == n and sent == n
    p99 = percentile(outcome.latencies, 99)
    verdict = {True: "met", False: "MISSED"}
    print(
        f"## Reminders: {n:,} registrants while participants register ({participants} at a "
        "time, 1–3 s between steps), over HTTP against a fake that enforces Telegram's limits\n"
    )
    print("| | ours | goal |")
    print("|---|---:|---|")
    print(f"| reminders delivered / registrants | {len(outcome.reminded):,} / {n:,} | all |")
    print(f"| reminders sent twice | {sent - len(outcome.reminded)} | 0 |")
    print(f"| time from first to last reminder, s | {seconds:,.1f} | |")
    print(
        f"| reminder rate, messages/s (of the sender's configured {configured:g}/s) | "
        f"{rate:.1f} ({ratio:.2f}) | ≥ {GOAL_RATE} ({verdict[ratio >= GOAL_RATE]}) |"
    )
    print(
        f"| 429s answered by the fake | {outcome.violations} | "
        f"0 ({verdict[outcome.violations == 0]}) |"
    )
    cells = " / ".join(f"{percentile(outcome.latencies, q):,.0f}" for q in (50, 95, 99))
    print(
        f"| participants' reply latency p50 / p95 / p99, ms ({len(outcome.latencies)} replies) "
        f"| {cells} | p99 ≤ {GOAL_P99_MS:g} ({verdict[p99 <= GOAL_P99_MS]}) |"
    )
    print(f"| participants registered meanwhile | {outcome.registered} | |")
    print(f"| bot CPU during the run, s | {outcome.bot_cpu:,.1f} | |")
    print(f"| exit code on SIGTERM | {outcome.exit_code} | 0 |")
    state = "" if outcome.finished else " NOT all delivered before the time limit;"
    print(
        f"\n-{state} Baseline: the sender's configured overall rate, "
        f"{configured:g} messages a second ({n / configured:,.0f} s for {n:,} reminders); "
        "Telegram allows 30, the rest is left to replies. The participants' organiser cards "
        "go through the same sender and count against the same rate."
    )
    return once and outcome.finished and outcome.exit_code == 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--registrants", type=int, default=10_000, metavar="N")
    parser.add_argument("--participants", type=int, default=4, metavar="N")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    outcome = asyncio.run(run(args.registrants, args.participants, args.seed))
    return 0 if report(outcome, args.participants) else 1


if __name__ == "__main__":
    sys.exit(main())
