"""A burst of people confirming a session with few seats, all at once.

1. Through the production Dispatcher (the fake Bot API in-process): N people reach the summary,
   then all press "confirm" at the same moment; the database must seat exactly the capacity
   and put everyone else in line, each told their place. The baseline is the same burst for a
   session without a capacity (every confirmation an INSERT, no seat to decide).
2. A probe across several SQLite connections (threads, as separate processes would be):
   the bot's one-statement seat decision against the naive count-then-insert, which oversells.
3. A large session (100,000 registrations, half of them in line): what a greeting's seat
   count and a confirmation cost, beside the baseline of counting the session's rows, which
   is what the bot did before the counts were kept (storage/migrations.py, step 22).

    python -m bench.bench_seats [--people N] [--capacity C] [--rows R] [--quick]
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.app import create_bot, create_dispatcher, open_app
from bot.domain.config import Settings, load_settings
from bot.domain.events import EventCatalog, parse_events
from storage.database import Database, open_database, utc_iso
from storage.registrations import NewRegistration, Registrations
from storage.seats import seat_count
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


def configured(folder: Path, capacity: int | None) -> tuple[Settings, EventCatalog]:
    """The bot's settings, its database in `folder`, and the session "forum" with `capacity`
    seats (None: unlimited)."""
    settings = load_settings(
        _env_file=None,
        bot_token=TOKEN,
        database_path=folder / "bot.sqlite3",
        events_file=folder / "events.toml",
    )
    toml = EVENTS_TOML + (f"capacity = {capacity}\n" if capacity is not None else "")
    catalog = parse_events(toml, file=Path("events.toml"), default_zone=settings.timezone)
    return settings, catalog


async def burst(people: int, capacity: int | None, folder: Path) -> Burst:
    settings, catalog = configured(folder, capacity)
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
    settings, catalog = configured(folder, capacity)
    async with open_app(settings, catalog=catalog, clock=lambda: NOW):
        pass
    return settings.database_path


# What the bot counted before the counts were kept (storage/migrations.py, step 22): the
# greeting's and summary's seat count; a confirmation's seat; a newcomer's place in line.
SEAT_COUNT_BEFORE = """
    SELECT
        (SELECT count(*) FROM registrations WHERE event_id = 'forum' AND status = 'confirmed'),
        (SELECT capacity FROM events WHERE id = 'forum'),
        (SELECT count(*) FROM registrations WHERE event_id = 'forum' AND status = 'waiting'),
        (SELECT count(*) FROM registrations
            WHERE event_id = 'forum' AND status = 'waiting' AND offered_at IS NOT NULL)
"""
SEAT_BEFORE = (
    "SELECT count(*) FROM registrations WHERE event_id = 'forum' "
    "AND status IN ('confirmed', 'waiting')"
)
PLACE_BEFORE = (
    "SELECT count(*) FROM registrations WHERE event_id = 'forum' "
    "AND status = 'waiting' AND (queued_at, id) <= (?, ?)"
)


async def _median_ms(action: Callable[[int], Awaitable[object]], times: int) -> float:
    spent = []
    for n in range(times):
        began = time.perf_counter()
        await action(n)
        spent.append(time.perf_counter() - began)
    return statistics.median(spent) * 1000


async def _fill(db: Database, rows: int, capacity: int) -> None:
    """`rows` registrations of the session "forum": the first `capacity` seated, the rest in
    line a second apart. In transactions of 500, as the bot's own batches go."""
    row = (
        "INSERT INTO registrations (event_id, user_id, telegram_name, full_name, position, "
        "organization, phone, email, consent_at, consent_version, status, created_at, "
        "updated_at, queued_at) VALUES ('forum', ?, 'У', 'Иванова Мария', 'С', 'М', "
        "'+79123456789', 'p@example.ru', ?, 'v1', ?, ?, ?, ?)"
    )
    stamp = utc_iso(NOW)
    for start in range(0, rows, 500):
        async with db.transaction(heavy=True) as connection:
            await connection.executemany(
                row,
                [
                    (
                        1_000_000 + n,
                        stamp,
                        "confirmed" if n < capacity else "waiting",
                        stamp,
                        stamp,
                        None if n < capacity else utc_iso(NOW - timedelta(seconds=rows - n)),
                    )
                    for n in range(start, min(rows, start + 500))
                ],
            )


async def large_session(folder: Path, rows: int) -> dict[str, float]:
    """Milliseconds, median: the bot's seat count and confirmation in a session of `rows`
    registrations, and the counts of its rows that they replaced."""
    capacity = rows // 2
    settings, catalog = configured(folder, capacity)
    async with open_app(settings, catalog=catalog, clock=lambda: NOW) as opened:
        db = opened.db
        await _fill(db, rows, capacity)
        repository = Registrations(db)
        last = await db.fetchone(
            "SELECT queued_at, id FROM registrations WHERE status = 'waiting' "
            "ORDER BY queued_at DESC, id DESC LIMIT 1"
        )
        assert last is not None
        figures = {
            "seat count": await _median_ms(lambda n: seat_count(db, "forum"), 50),
            "confirmation": await _median_ms(
                lambda n: repository.create(newcomer(100_000_000 + n), now=NOW), 50
            ),
            "seat count before": await _median_ms(lambda n: db.fetchone(SEAT_COUNT_BEFORE), 20),
            "seat before": await _median_ms(lambda n: db.fetchone(SEAT_BEFORE), 20),
            "place before": await _median_ms(
                lambda n: db.fetchone(PLACE_BEFORE, (last[0], last[1])), 20
            ),
        }
        made = await repository.create(newcomer(200_000_000), now=NOW)
        assert made.status == "waiting" and made.place == rows - capacity + 51, made.place
    return figures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--capacity", type=int, default=100)
    parser.add_argument("--rows", type=int, default=100_000, help="of the large session")
    parser.add_argument(
        "--quick", action="store_true", help="200 people, 20 seats, a large session of 20,000"
    )
    args = parser.parse_args(argv)
    people, capacity = (200, 20) if args.quick else (args.people, args.capacity)
    rows = 20_000 if args.quick else args.rows
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
        (folder / "large").mkdir()
        print(f"a session of {rows:,} registrations …", file=sys.stderr, flush=True)
        large = asyncio.run(large_session(folder / "large", rows))

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
    print(
        f"| a session of {rows:,} registrations ({rows // 2:,} seated, {rows // 2:,} in line), "
        "SQLite | ms, median | baseline: the rows counted, as before step 22, ms | ratio |"
    )
    print("|---|---:|---:|---:|")
    before = large["seat before"] + large["place before"]
    for label, ours, baseline in (
        ("seat count (greeting, summary)", large["seat count"], large["seat count before"]),
        ("confirmation, joining the line", large["confirmation"], before),
    ):
        print(f"| {label} | {ours:.2f} | {baseline:.2f} | {ours / baseline:.2g}× |")
    print()
    print(
        "- The counts are kept in the session's row by triggers (storage/migrations.py, step "
        "22): a decision reads that row, and the newcomer's place is the line's length less "
        "those behind it. The baseline is the counts they replaced, timed in this run (a "
        "confirmation's: its seat and its place from the head of the line, without the "
        "insert). On SQLite they run on the event loop's thread, where every chat waits."
    )
    print()
    print(f"- Goal met (exactly {capacity} seated, the rest in line, no oversell): {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
