"""A burst of people confirming a session with few seats, all at once.

1. Through the production Dispatcher (the fake Bot API in-process): N people reach the summary,
   then all press "confirm" at the same moment; the database must seat exactly the capacity
   and put everyone else in line, each told their place. The baseline is the same burst for a
   session without a capacity (every confirmation an INSERT, no seat to decide).
2. A probe across several SQLite connections (threads, as separate processes would be):
   the bot's one-statement seat decision against the naive count-then-insert, which oversells.

    python -m bench.bench_seats [--people N] [--capacity C] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.app import create_bot, create_dispatcher, open_app
from bot.domain.config import load_settings
from bot.domain.events import parse_events
from storage.database import open_database
from storage.registrations import NewRegistration, Registrations
from tests.client import TelegramUser, feed_deliver
from tests.fake_telegram import FakeSession, FakeTelegram

TOKEN = "7000000001:AAbench-token-for-benchmarks-onlyxxxx"
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
EVENTS_TOML = """
[[events]]
id = "forum"
title = "Стратегическая сессия"
starts_at = 2026-12-10T12:00:00
timezone = "Europe/Moscow"
registration_deadline = 2026-12-08T23:59:00
location = "Онлайн"
"""


@dataclass(frozen=True, slots=True)
class Burst:
    seconds: float
    confirmed: int
    waiting: int
    distinct_places: int
    latencies: list[float]  # each press until its reply, seconds


async def burst(people: int, capacity: int | None, folder: Path) -> Burst:
    toml = EVENTS_TOML + (f"capacity = {capacity}\n" if capacity is not None else "")
    settings = load_settings(
        _env_file=None,
        bot_token=TOKEN,
        database_path=folder / "bot.sqlite3",
        events_file=folder / "events.toml",
    )
    catalog = parse_events(toml, file=Path("events.toml"), default_zone=settings.timezone)
    fake = FakeTelegram(token=TOKEN)
    async with open_app(settings, catalog=catalog, clock=lambda: NOW) as opened:
        dispatcher = create_dispatcher(
            settings=settings, db=opened.db, catalog=opened.catalog, clock=lambda: NOW
        )
        bot = create_bot(settings, session=FakeSession(fake))
        deliver = feed_deliver(dispatcher, bot)
        crowd = [TelegramUser(fake, deliver, user_id=10_000 + n) for n in range(people)]

        async def to_summary(user: TelegramUser) -> None:
            await user.send("/start")
            await user.click("Даю согласие")
            await user.send("Иванова Мария Петровна")
            await user.send("Главный специалист")
            await user.send("Министерство культуры")
            await user.send("+7 912 345-67-89")
            await user.send(f"user{user.user_id}@example.ru")

        for start in range(0, people, 100):
            await asyncio.gather(*(to_summary(user) for user in crowd[start : start + 100]))

        latencies: list[float] = []

        async def confirm(user: TelegramUser) -> None:
            began = time.perf_counter()
            await user.click("Подтвердить")
            latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(confirm(user) for user in crowd))
        seconds = time.perf_counter() - began
        rows = await opened.db.fetchall(
            "SELECT status, count(*) FROM registrations GROUP BY status"
        )
        counts = {row[0]: row[1] for row in rows}
        places = {
            user.last_text.split("место в очереди — ")[1].split(".")[0]
            for user in crowd
            if "место в очереди — " in user.last_text
        }
        await bot.session.close()
    return Burst(
        seconds, counts.get("confirmed", 0), counts.get("waiting", 0), len(places), latencies
    )


def newcomer(n: int) -> NewRegistration:
    return NewRegistration(
        event_id="forum",
        user_id=50_000 + n,
        username=None,
        telegram_name="Участник",
        full_name="Иванова Мария Петровна",
        position="Специалист",
        organization="Министерство",
        phone="+79123456789",
        email=f"p{n}@example.ru",
        consent_at=NOW,
        consent_version="v1",
    )


def probe(path: Path, connections: int, each: int, capacity: int, *, naive: bool) -> int:
    """Confirmations from `connections` threads with a connection each; returns how many
    got a seat."""
    start = threading.Barrier(connections)
    seated = [0] * connections

    def ours(index: int) -> None:
        async def go() -> None:
            async with open_database(path, busy_timeout_ms=60_000) as db:
                repository = Registrations(db)
                start.wait()
                for n in range(each):
                    made = await repository.create(newcomer(index * each + n), now=NOW)
                    seated[index] += made.status == "confirmed"

        asyncio.run(go())

    def count_then_insert(index: int) -> None:
        db = sqlite3.connect(path, timeout=60, isolation_level=None)
        start.wait()
        for n in range(each):
            (taken,) = db.execute(
                "SELECT count(*) FROM registrations WHERE event_id = 'forum' "
                "AND status = 'confirmed'"
            ).fetchone()
            status = "confirmed" if taken < capacity else "waiting"
            user = 50_000 + index * each + n
            db.execute(
                "INSERT INTO registrations (event_id, user_id, telegram_name, full_name, "
                "position, organization, phone, email, consent_at, consent_version, status, "
                "created_at, updated_at, queued_at) VALUES ('forum', ?, 'У', 'Иванова Мария', "
                "'С', 'М', '+79123456789', 'p@example.ru', ?, 'v1', ?, ?, ?, ?)",
                (user, NOW.isoformat(), status, NOW.isoformat(), NOW.isoformat(), NOW.isoformat()),
            )
            seated[index] += status == "confirmed"
        db.close()

    threads = [
        threading.Thread(target=count_then_insert if naive else ours, args=(index,))
        for index in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(seated)


async def prepare_probe(folder: Path, capacity: int) -> Path:
    settings = load_settings(
        _env_file=None,
        bot_token=TOKEN,
        database_path=folder / "probe.sqlite3",
        events_file=folder / "events.toml",
    )
    toml = EVENTS_TOML + f"capacity = {capacity}\n"
    catalog = parse_events(toml, file=Path("events.toml"), default_zone=settings.timezone)
    async with open_app(settings, catalog=catalog, clock=lambda: NOW):
        pass
    return settings.database_path


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--capacity", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="200 people, 20 seats")
    args = parser.parse_args(argv)
    people, capacity = (200, 20) if args.quick else (args.people, args.capacity)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-seats-") as directory:
        folder = Path(directory)
        (folder / "seats").mkdir()
        (folder / "open").mkdir()
        print(f"{people} people to the summary, twice …", file=sys.stderr, flush=True)
        seats = asyncio.run(burst(people, capacity, folder / "seats"))
        unlimited = asyncio.run(burst(people, None, folder / "open"))
        connections, each = 8, max(1, people // 8)
        probes = {}
        for naive in (False, True):
            sub = folder / ("naive" if naive else "ours")
            sub.mkdir()
            path = asyncio.run(prepare_probe(sub, capacity))
            began = time.perf_counter()
            seated = probe(path, connections, each, capacity, naive=naive)
            probes[naive] = (seated, time.perf_counter() - began)

    ok = (
        seats.confirmed == capacity
        and seats.waiting == people - capacity
        and seats.distinct_places == people - capacity
        and probes[False][0] == capacity
    )
    print(f"## Seats: {people} people confirming a {capacity}-seat session at once\n")
    print("| | confirmed | waiting | burst wall time | per press p50 | per press p99 |")
    print("|---|---|---|---|---|---|")
    for name, result in ((f"capacity {capacity}", seats), ("baseline: no capacity", unlimited)):
        print(
            f"| {name} | {result.confirmed} | {result.waiting} | {result.seconds:.2f} s | "
            f"{statistics.median(result.latencies) * 1000:.0f} ms | "
            f"{percentile(result.latencies, 0.99) * 1000:.0f} ms |"
        )
    print()
    print(
        f"- Each person in line was told a place of their own: {seats.distinct_places} distinct "
        f"places for {seats.waiting} people."
    )
    print(
        f"- Cost of deciding the seat in the INSERT: {seats.seconds / unlimited.seconds:.2f}× "
        "the burst's wall time without a capacity."
    )
    print()
    print(
        f"| {connections} connections × {each} confirmations, capacity {capacity} | seated | "
        "oversold | wall time |"
    )
    print("|---|---|---|---|")
    for naive, label in ((False, "one statement (the bot)"), (True, "count, then insert")):
        seated, seconds = probes[naive]
        print(f"| {label} | {seated} | {max(0, seated - capacity)} | {seconds:.2f} s |")
    print()
    print(f"- Goal met (exactly {capacity} seated, the rest in line, no oversell): {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
