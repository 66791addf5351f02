"""Replicas on PostgreSQL beside the SQLite default: the real `python -m bot` in webhook mode,
one process on SQLite, one replica on PostgreSQL, and two replicas on PostgreSQL behind the
fake Bot API's round-robin delivery (the operator's load balancer), all in one run with the
same simulated people (bench/bench_http.py's: same answers, same seed, same calibration).

Saturated: N people answer with no pauses; registrations per second and CPU per update summed
over every process, reported apart: the bot's processes (/proc/<pid>/stat), PostgreSQL's (the
backends of our sessions, found by their application_name in pg_stat_activity, and the
server's own processes: checkpointer, WAL writer and so on; the server is shared, so the
system-wide delta over every `postgres` process is shown too), and the driver (the fake and
the people, this process). While it runs, pg_locks is sampled for the global serial lock
(storage/postgres.py SERIAL_LOCK): how often it is held, and how many transactions wait for it.

Paced: N people with 1–3 s pauses; reply latency (from pushing the update to the bot's first
message to that chat) with 2 replicas beside 1, and SQLite.

    python -m bench.bench_replicas [--participants 1000] [--paced 1000] [--repeat 2]

PostgreSQL: BENCH_DATABASE_URL, else TEST_DATABASE_URL, else postgresql://postgres@127.0.0.1/test;
each run gets a schema of its own, dropped after. Without a server, the PostgreSQL columns
are skipped with one line.

Longer than our ~400-line rule on purpose: a benchmark reads top to bottom as one story.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.bench_http import (
    ORGANIZER_CHAT_ID,
    Person,
    TimedTelegram,
    calibrate,
    participate,
    process_cpu,
)
from bench.bench_throughput import FIRST_USER_ID, TOKEN, events_toml, our_buttons
from storage.postgres import SERIAL_LOCK
from tests.fake_telegram import serve
from tests.webhooks import free_port, healthz

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-replicas-secret_0123456789"
APPLICATION = "bench-replicas"
WARM_UP = 20
WARM_UP_FIRST = FIRST_USER_ID + 500_000
GOAL_CPU_RATIO = 1.3  # per-update CPU on PostgreSQL ≤ 1.3× SQLite's
GOAL_PER_CORE = 0.8  # registrations/s per core used, 2 replicas ≥ 0.8× one replica's
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_EVERY = 0.02

CONFIGS = {
    "polling": "SQLite, 1 process, polling (the default)",
    "sqlite": "SQLite, 1 process, webhook",
    "pg1": "PostgreSQL, 1 replica",
    "pg2": "PostgreSQL, 2 replicas",
}


def database_url() -> str:
    for name in ("BENCH_DATABASE_URL", "TEST_DATABASE_URL"):
        if value := os.environ.get(name, "").strip():
            return value
    return "postgresql://postgres@127.0.0.1:5432/test"


def with_settings(url: str, **settings: str) -> str:
    """asyncpg passes unknown query parameters to the server as settings."""
    query = "&".join(f"{name}={value}" for name, value in settings.items())
    return url + ("&" if "?" in url else "?") + query


# --- CPU from /proc ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessTimes:
    own: float  # utime + stime, seconds
    reaped: float  # cutime + cstime: its children that ended (the postmaster's backends)
    parent: int


def postgres_processes() -> dict[int, ProcessTimes]:
    """Every process named postgres on the machine."""
    found: dict[int, ProcessTimes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = text.partition("(")[2].rpartition(")")
        if not name.startswith("postgres"):
            continue
        fields = rest.split()
        own = (int(fields[11]) + int(fields[12])) / TICK
        reaped = (int(fields[13]) + int(fields[14])) / TICK
        found[int(entry.name)] = ProcessTimes(own, reaped, int(fields[1]))
    return found


@dataclass
class PostgresSnapshot:
    """CPU of the server's processes at one moment, sorted by whose they are."""

    processes: dict[int, ProcessTimes]
    ours: set[int]  # backends of our replicas' sessions
    server: set[int]  # the server's own: postmaster, checkpointer, WAL writer, autovacuum…

    @classmethod
    async def take(cls, monitor: asyncpg.Connection) -> PostgresSnapshot:
        rows = await monitor.fetch(
            "SELECT pid, backend_type, application_name FROM pg_stat_activity"
        )
        processes = postgres_processes()
        ours = {row["pid"] for row in rows if row["application_name"] == APPLICATION}
        server = {row["pid"] for row in rows if row["backend_type"] != "client backend"}
        # The postmaster is not in pg_stat_activity: the postgres process whose parent is not.
        server |= {pid for pid, times in processes.items() if times.parent not in processes}
        return cls(processes, ours, server)


def postgres_cpu(before: PostgresSnapshot, after: PostgresSnapshot) -> tuple[float, float, float]:
    """(our sessions, the server's own processes, every postgres process) CPU seconds between
    two snapshots. A process that started in between counts whole; one that ended in between
    counts only in the system-wide figure (through the postmaster's reaped children's times)."""

    def own(pids: set[int]) -> float:
        total = 0.0
        for pid in pids & after.processes.keys():
            start = before.processes[pid].own if pid in before.processes else 0.0
            total += after.processes[pid].own - start
        return total

    everything = sum(t.own + t.reaped for t in after.processes.values()) - sum(
        t.own + t.reaped for pid, t in before.processes.items() if pid in after.processes
    )
    return own(after.ours), own(after.server), everything


class LockSampler:
    """Samples pg_locks every SAMPLE_EVERY s: is the serial lock held, how many wait for it."""

    def __init__(self, monitor: asyncpg.Connection) -> None:
        self._monitor = monitor
        self.samples: list[tuple[bool, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        key_high, key_low = SERIAL_LOCK >> 32, SERIAL_LOCK & 0xFFFF_FFFF
        query = (
            "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) "
            "FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid "
            "AND objid = $2::bigint::oid AND objsubid = 1"
        )
        while True:
            row = await self._monitor.fetchrow(query, key_high, key_low)
            self.samples.append((row[0] > 0, int(row[1])))
            await asyncio.sleep(SAMPLE_EVERY)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    @property
    def held(self) -> float:
        return sum(held for held, _ in self.samples) / max(1, len(self.samples))

    @property
    def waiting(self) -> float:
        return sum(waiting for _, waiting in self.samples) / max(1, len(self.samples))


# --- the bot's processes -------------------------------------------------------------------------


@asynccontextmanager
async def replicas(
    directory: Path,
    fake: TimedTelegram,
    base_url: str,
    count: int,
    url: str | None,
    *,
    webhook: bool = True,
    count_into: Path | None = None,
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """`count` processes of `python -m bot` in webhook mode, the fake routing to them in turn;
    yielded once each answers /healthz and the webhook is set. `webhook=False`: one process
    polling (the default), yielded once it asks for updates. `count_into`: each process counts
    its statements into that folder (bench/count_statements/sitecustomize.py)."""
    ports = [free_port() for _ in range(count)]
    fake.route_webhook(*(f"http://127.0.0.1:{port}" for port in ports))
    processes: list[asyncio.subprocess.Process] = []
    try:
        for index, port in enumerate(ports):
            env = {
                key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")
            }
            env.update(
                BOT_TOKEN=TOKEN,
                TELEGRAM_API_URL=base_url,
                DATABASE_PATH=str(directory / "data" / "bot.sqlite3"),
                EVENTS_FILE=str(directory / "events.toml"),
                ADMIN_IDS="500",
                ORGANIZER_CHAT_IDS=str(ORGANIZER_CHAT_ID),
                PYTHONPATH=str(ROOT),
            )
            if count_into is not None:
                counter = ROOT / "bench" / "count_statements"
                env.update(PYTHONPATH=f"{counter}:{ROOT}", BENCH_STATEMENTS_DIR=str(count_into))
            if webhook:
                env.update(
                    MODE="webhook",
                    WEBHOOK_URL="https://bot.example.org/telegram",
                    WEBHOOK_SECRET=SECRET,
                    WEBHOOK_LISTEN=f"127.0.0.1:{port}",
                )
            if url is not None:
                env["DATABASE_URL"] = url
            log = directory / f"bot-{index}.log"
            with log.open("wb") as sink:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bot", cwd=directory, env=env, stdout=sink, stderr=sink
                )
            processes.append(process)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not (
                fake.calls_of("getUpdates")
                if not webhook
                else fake.webhook is not None and await healthz(port) == 200
            ):
                if process.returncode is not None or loop.time() > deadline:
                    output = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"replica {index} did not start:\n{output}")
                await asyncio.sleep(0.05)
        yield processes
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


@asynccontextmanager
async def fresh_schema(server: str) -> AsyncIterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
    finally:
        await connection.close()
    try:
        yield schema
    finally:
        connection = await asyncpg.connect(server)
        try:
            await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await connection.close()


# --- one run -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    config: str
    participants: int
    paced: bool
    total: float = 0.0
    latencies: list[float] = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    bot_cpu: float = 0.0
    pg_ours: float = 0.0
    pg_server: float = 0.0
    pg_everything: float = 0.0
    driver_cpu: float = 0.0
    lock_held: float = 0.0
    lock_waiting: float = 0.0
    served: dict[str, int] = field(default_factory=dict)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    problems: list[str] = field(default_factory=list)
    # --count-statements: over the processes' whole life (calibration and warm-up included).
    statements: Counter[str] = field(default_factory=Counter)
    lock_waits: list[float] = field(default_factory=list)
    lock_holds: list[float] = field(default_factory=list)
    one_statement: list[float] = field(default_factory=list)  # create_registration's round trips

    @property
    def updates(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.participants / self.total

    @property
    def cpu(self) -> float:
        """What the deployment itself uses: the bot's processes and PostgreSQL (our sessions
        and the server's own processes), not the driver."""
        return self.bot_cpu + self.pg_ours + self.pg_server

    @property
    def cores(self) -> float:
        return self.cpu / self.total

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] * 1000


def read_counts(directory: Path, outcome: Outcome) -> None:
    """What each process counted (--count-statements), once they all exited."""
    for counted in directory.glob("*.json"):
        record = json.loads(counted.read_text(encoding="utf-8"))
        outcome.statements.update(record["counts"])
        outcome.lock_waits += record["waits"]
        outcome.lock_holds += record["holds"]
        outcome.one_statement += record.get("one_statement", [])


async def run(
    config: str,
    participants: int,
    paced: bool,
    seed: int,
    server: str,
    settings: dict[str, str] | None = None,
    *,
    count: bool = False,
) -> Outcome:
    outcome = Outcome(config, participants, paced)
    buttons = our_buttons()
    processes = 2 if config == "pg2" else 1
    counting = count and config.startswith("pg")
    with tempfile.TemporaryDirectory(prefix=f"bench-replicas-{config}-") as tmp:
        directory = Path(tmp)
        (directory / "events.toml").write_text(events_toml(), encoding="utf-8")
        async with AsyncExitStack() as stack:
            url: str | None = None
            monitor: asyncpg.Connection | None = None
            if config.startswith("pg"):
                schema = await stack.enter_async_context(fresh_schema(server))
                url = with_settings(
                    server, search_path=schema, application_name=APPLICATION, **(settings or {})
                )
                monitor = await asyncpg.connect(
                    with_settings(server, application_name="bench-replicas-monitor")
                )
                stack.push_async_callback(monitor.close)
            fake = TimedTelegram()
            base_url = await stack.enter_async_context(serve(fake))
            fake.webhook_timeout = 60.0
            bots = await stack.enter_async_context(
                replicas(
                    directory,
                    fake,
                    base_url,
                    processes,
                    url,
                    webhook=config != "polling",
                    count_into=directory if counting else None,
                )
            )
            replies = await calibrate(fake, buttons)
            print(f"{config}: messages per step {replies}", file=sys.stderr, flush=True)
            # Warm-up: every replica's pool, caches and prepared statements, at once.
            warm = [Person(fake, WARM_UP_FIRST + n, 10_000 + n, buttons) for n in range(WARM_UP)]
            await asyncio.gather(*(participate(p, replies, None, []) for p in warm))
            people = [
                Person(fake, FIRST_USER_ID + number, number, buttons)
                for number in range(participants)
            ]
            requests_before = len(fake.webhook_requests)
            sampler: LockSampler | None = None
            if monitor is not None:
                before_pg = await PostgresSnapshot.take(monitor)
                sampler = LockSampler(monitor)
                sampler.start()
            bot_before = sum(process_cpu(bot.pid)[0] for bot in bots)
            driver_before = time.process_time()
            began = time.monotonic()
            await asyncio.gather(
                *(
                    participate(
                        person,
                        replies,
                        random.Random(seed * 1_000_003 + person.number) if paced else None,
                        outcome.latencies,
                    )
                    for person in people
                )
            )
            outcome.total = time.monotonic() - began
            outcome.driver_cpu = time.process_time() - driver_before
            outcome.bot_cpu = sum(process_cpu(bot.pid)[0] for bot in bots) - bot_before
            outcome.load = os.getloadavg()
            if monitor is not None and sampler is not None:
                await sampler.stop()
                after_pg = await PostgresSnapshot.take(monitor)
                outcome.pg_ours, outcome.pg_server, outcome.pg_everything = postgres_cpu(
                    before_pg, after_pg
                )
                outcome.lock_held, outcome.lock_waiting = sampler.held, sampler.waiting
            for request in fake.webhook_requests[requests_before:]:
                outcome.served[request.target] = outcome.served.get(request.target, 0) + 1
            if url is not None:
                connection = await asyncpg.connect(url)
                try:
                    outcome.stored = await connection.fetchval(
                        "SELECT count(*) FROM registrations WHERE user_id >= $1 AND user_id < $2",
                        FIRST_USER_ID,
                        WARM_UP_FIRST,
                    )
                    outcome.duplicates = await connection.fetchval(
                        "SELECT count(*) FROM (SELECT 1 FROM registrations "
                        "GROUP BY event_id, user_id HAVING count(*) > 1) AS twice"
                    )
                finally:
                    await connection.close()
        read_counts(directory, outcome)
        if url is None:
            database = directory / "data" / "bot.sqlite3"
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
                outcome.stored = db.execute(
                    "SELECT COUNT(*) FROM registrations WHERE user_id >= ? AND user_id < ?",
                    (FIRST_USER_ID, WARM_UP_FIRST),
                ).fetchone()[0]
                outcome.duplicates = db.execute(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM registrations "
                    "GROUP BY event_id, user_id HAVING COUNT(*) > 1)"
                ).fetchone()[0]
        per_person = sum(replies)
        for person in people:
            got = len(fake.arrivals[person.user_id])
            if got != per_person:
                outcome.problems.append(
                    f"chat {person.user_id}: {got} messages, expected {per_person}"
                )
        if outcome.stored != participants:
            outcome.problems.append(
                f"{outcome.stored} registrations stored, expected {participants}"
            )
        if outcome.duplicates:
            outcome.problems.append(f"{outcome.duplicates} people registered twice")
        refused = sum(1 for r in fake.webhook_requests[requests_before:] if not r.acknowledged)
        if refused:
            outcome.problems.append(f"{refused} webhook requests not answered 2xx")
    return outcome


# --- report --------------------------------------------------------------------------------------


Metric = Callable[[Outcome], float]

SATURATED: tuple[tuple[str, Metric, str], ...] = (
    ("total time, s", lambda o: o.total, ",.1f"),
    ("registrations/s", lambda o: o.rate, ",.1f"),
    ("reply latency p50 / p99, ms", lambda o: o.percentile(50), ",.0f"),
    ("", lambda o: o.percentile(99), ",.0f"),
    ("CPU µs per update: the bot's process(es)", lambda o: o.bot_cpu / o.updates * 1e6, ",.0f"),
    ("… PostgreSQL: our sessions' backends", lambda o: o.pg_ours / o.updates * 1e6, ",.0f"),
    ("… PostgreSQL: the server's own processes", lambda o: o.pg_server / o.updates * 1e6, ",.0f"),
    ("**CPU µs per update, bot + PostgreSQL**", lambda o: o.cpu / o.updates * 1e6, ",.0f"),
    (
        "… counting every postgres process on the machine instead",
        lambda o: (o.bot_cpu + o.pg_everything) / o.updates * 1e6,
        ",.0f",
    ),
    (
        "driver (fake + people) CPU µs per update, apart",
        lambda o: o.driver_cpu / o.updates * 1e6,
        ",.0f",
    ),
    ("cores used (bot + PostgreSQL CPU s ÷ wall s)", lambda o: o.cores, ",.2f"),
    ("**registrations/s per core used**", lambda o: o.rate / o.cores, ",.1f"),
    ("serial lock held, % of samples", lambda o: o.lock_held * 100, ",.0f"),
    ("transactions waiting for it, mean", lambda o: o.lock_waiting, ",.2f"),
)

PACED: tuple[tuple[str, Metric, str], ...] = (
    ("total time, s", lambda o: o.total, ",.1f"),
    ("reply latency p50, ms", lambda o: o.percentile(50), ",.0f"),
    ("reply latency p95, ms", lambda o: o.percentile(95), ",.0f"),
    ("**reply latency p99, ms**", lambda o: o.percentile(99), ",.0f"),
    ("max, ms", lambda o: max(o.latencies) * 1000, ",.0f"),
    ("CPU µs per update, bot + PostgreSQL", lambda o: o.cpu / o.updates * 1e6, ",.0f"),
    ("bot CPU, s", lambda o: o.bot_cpu, ",.1f"),
    ("PostgreSQL CPU (our sessions + server's own), s", lambda o: o.pg_ours + o.pg_server, ",.1f"),
    ("driver CPU, s", lambda o: o.driver_cpu, ",.1f"),
    ("serial lock held, % of samples", lambda o: o.lock_held * 100, ",.0f"),
)


def median_of(outcomes: Sequence[Outcome], metric: Metric) -> float:
    return statistics.median(metric(o) for o in outcomes)


def cell(outcomes: Sequence[Outcome], metric: Metric, fmt: str) -> str:
    values = [metric(o) for o in outcomes]
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:{fmt}}"
    return f"{middle:{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def table(runs: dict[str, list[Outcome]], rows: Sequence[tuple[str, Metric, str]]) -> None:
    configs = [config for config in CONFIGS if runs.get(config)]
    print("| | " + " | ".join(CONFIGS[c] for c in configs) + " |")
    print("|---|" + "---:|" * len(configs))
    for index, (label, metric, fmt) in enumerate(rows):
        if not label:
            continue
        cells = [cell(runs[c], metric, fmt) for c in configs]
        # A label with a blank follower: two figures in one cell ("p50 / p99").
        if index + 1 < len(rows) and not rows[index + 1][0]:
            _, second, fmt2 = rows[index + 1]
            cells = [
                f"{first} / {cell(runs[c], second, fmt2)}"
                for first, c in zip(cells, configs, strict=True)
            ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()


def run_notes(runs: dict[str, list[Outcome]]) -> None:
    for config in CONFIGS:
        for o in runs.get(config, []):
            served = ", ".join(f"{n:,}" for n in o.served.values())
            extra = ""
            if len(o.served) > 1:
                extra += f"; requests per replica {served}"
            if config.startswith("pg"):
                extra += f"; every postgres process on the machine used {o.pg_everything:,.1f} s"
            print(
                f"- {CONFIGS[config]}: {o.stored:,} stored, {o.duplicates} duplicates; load "
                f"average after (1, 5, 15 min) {', '.join(f'{v:.2f}' for v in o.load)}{extra}."
            )
            for problem in o.problems[:5]:
                print(f"- PROBLEM ({CONFIGS[config]}): {problem}")


def paired(baselines: Sequence[Outcome], outcomes: Sequence[Outcome], metric: Metric) -> str:
    """The ratio round by round (each round runs every configuration within minutes, so a
    machine whose speed drifts over the hour moves both sides of it alike): its median and
    range, when there are two rounds or more."""
    ratios = sorted(metric(o) / metric(b) for b, o in zip(baselines, outcomes, strict=True))
    if len(ratios) < 2:
        return ""
    return (
        f"; round by round {statistics.median(ratios):.2f}× "
        f"({ratios[0]:.2f}–{ratios[-1]:.2f}, {len(ratios)} rounds)"
    )


def report_saturated(runs: dict[str, list[Outcome]], participants: int, repeat: int) -> None:
    print(
        f"## Replicas on PostgreSQL, saturated: {participants:,} participants answering with no "
        f"pauses, webhook mode beside the polling default, median of {repeat} run(s) (min–max)\n"
    )
    table(runs, SATURATED)

    def per_update(o: Outcome) -> float:
        return o.cpu / o.updates

    def per_core(o: Outcome) -> float:
        return o.rate / o.cores

    pg1, pg2 = runs.get("pg1"), runs.get("pg2")
    for baseline in ("sqlite", "polling"):
        if not runs.get(baseline):
            continue
        base = median_of(runs[baseline], per_update)
        for label, outcomes in (("1 replica", pg1), ("2 replicas", pg2)):
            if outcomes:
                ratio = median_of(outcomes, per_update) / base
                mark = "met" if ratio <= GOAL_CPU_RATIO else "missed"
                print(
                    f"- Goal, CPU per update on PostgreSQL ≤ {GOAL_CPU_RATIO}× SQLite's "
                    f"({CONFIGS[baseline]}): {label} {ratio:.2f}× ({mark})"
                    f"{paired(runs[baseline], outcomes, per_update)}."
                )
    if pg1 and pg2:
        ratio = median_of(pg2, per_core) / median_of(pg1, per_core)
        mark = "met" if ratio >= GOAL_PER_CORE else "missed"
        print(
            f"- Goal, registrations/s per core used with 2 replicas ≥ {GOAL_PER_CORE}× one "
            f"replica's: {ratio:.2f}× ({mark}){paired(pg1, pg2, per_core)}."
        )
        # More cores: bound by the CPU per registration (bot + PostgreSQL, no driver), and by
        # the global lock: held a fraction u of the time at X registrations/s, it allows X / u.
        per_registration = median_of(pg2, lambda o: o.cpu / o.participants)
        rate = median_of(pg2, lambda o: o.rate)
        held = median_of(pg2, lambda o: o.lock_held)
        cap = rate / held if held > 0 else float("inf")
        for cores in (4, 8):
            bound = cores / per_registration
            print(
                f"- {cores} cores for the bot and PostgreSQL alone: their CPU allows "
                f"≈ {bound:,.0f} registrations/s ({per_registration * 1000:,.1f} ms CPU each); "
                f"the serial lock, held {held:.0%} of the time at {rate:,.0f}/s here, caps near "
                f"{cap:,.0f}/s: ≈ {min(bound, cap):,.0f}/s (the lock's hold time is taken "
                "here, where its holder also waits for a core: see bench/ANALYSIS.md)."
            )
    run_notes(runs)
    notes()
    report_statements(runs)


def report_paced(runs: dict[str, list[Outcome]], participants: int, repeat: int) -> None:
    print(
        f"## Replicas on PostgreSQL, paced: {participants:,} participants with 1–3 s pauses, "
        f"webhook mode beside the polling default, median of {repeat} run(s) (min–max)\n"
    )
    table(runs, PACED)
    run_notes(runs)
    notes()
    report_statements(runs)


def report_statements(runs: dict[str, list[Outcome]]) -> None:
    """--count-statements: what each update costs in round trips, and the serial lock's times."""
    counted = {c: o for c in CONFIGS for o in runs.get(c, [])[:1] if o.statements}
    if not counted:
        return
    print("## Replicas on PostgreSQL: statements per update (`--count-statements`)\n")
    for config, o in counted.items():
        # Every update the processes handled: the calibration, the warm-up and the people.
        updates = (o.participants + 1 + WARM_UP) * len(o.latencies) // max(1, o.participants)
        registrations = o.participants + 1 + WARM_UP
        total = sum(o.statements.values())
        print(f"### {CONFIGS[config]}: {total / updates:.1f} statements per update\n")
        print("| statement (first 100 characters) | per update |")
        print("|---|---:|")
        for text, n in o.statements.most_common(15):
            shown = text.replace("|", "\\|")
            print(f"| `{shown}` | {n / updates:.2f} |")
        print()

        def ms(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

        if o.lock_holds:
            print(
                f"- Serial transactions: {len(o.lock_waits) / registrations:.2f} per "
                f"registration; `BEGIN` with the lock, round trip mean / p50 / p99 "
                f"{statistics.mean(o.lock_waits) * 1000:.1f} / {ms(o.lock_waits, 0.5):.1f} / "
                f"{ms(o.lock_waits, 0.99):.1f} ms; held from grant to the end of COMMIT "
                f"{statistics.mean(o.lock_holds) * 1000:.1f} / {ms(o.lock_holds, 0.5):.1f} / "
                f"{ms(o.lock_holds, 0.99):.1f} ms."
            )
        if o.one_statement:
            print(
                f"- Registrations in one statement (`create_registration`, the lock taken and "
                f"held inside): {len(o.one_statement) / registrations:.2f} per registration; "
                f"round trip (waiting for the lock, holding it, and the trip) mean / p50 / p99 "
                f"{statistics.mean(o.one_statement) * 1000:.1f} / "
                f"{ms(o.one_statement, 0.5):.1f} / {ms(o.one_statement, 0.99):.1f} ms (the "
                "replica's busy loop included). The lock held "
                f"{o.lock_held:.0%} of the samples over {o.total:.1f} s puts its mean hold "
                f"near {o.lock_held * o.total / o.participants * 1000:.1f} ms a registration."
            )
        print(
            "- Counted over the processes' whole life (start-up's few statements, the "
            "calibration and warm-up participants included), by wrapping asyncpg's methods "
            "(bench/count_statements/sitecustomize.py)."
        )
        print()


def notes() -> None:
    print(
        "- Every configuration is the real `python -m bot`: in webhook mode (SQLite too, so "
        "the transport is the same) the fake delivers by POST (up to 100 at a time, one per "
        "chat); the default polls getUpdates. Two organiser chats get cards; the same people, "
        f"answers and seed, a calibration participant and {WARM_UP} warm-up participants first."
    )
    print(
        f"- {os.cpu_count()} cores shared by the bot's processes, PostgreSQL and the driver "
        "(and whatever else runs: the load average is printed per run). PostgreSQL is the "
        "machine's system service: 'our sessions' are the backends whose application_name is "
        "the bench's; 'the server's own processes' (checkpointer, WAL writer, …) also work "
        "for other sessions if any run at the time; the system-wide figure adds every other "
        "session's backends. Wall-clock figures are noisy; CPU per update less so."
    )
    print(
        "- The serial lock: pg_locks sampled every 20 ms by a connection of the driver's "
        "(its own backend is not in 'our sessions')."
    )
    print()


async def server_ready(server: str) -> str | None:
    try:
        connection = await asyncpg.connect(server, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"no PostgreSQL at the URL ({type(error).__name__})"
    await connection.close()
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--participants", type=int, default=1000, metavar="N", help="saturated")
    parser.add_argument("--paced", type=int, default=1000, metavar="N", help="0: skip")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--paced-repeat", type=int, default=1)
    parser.add_argument("--configs", default="polling,sqlite,pg1,pg2")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting for the bot's sessions (e.g. synchronous_commit=off)",
    )
    parser.add_argument(
        "--count-statements",
        action="store_true",
        help="count the replicas' statements and time the serial lock (adds a little CPU)",
    )
    args = parser.parse_args(argv)

    server = database_url()
    settings = dict(item.split("=", 1) for item in args.pg_setting)
    configs = args.configs.split(",")
    if unknown := [c for c in configs if c not in CONFIGS]:
        parser.error(f"--configs: unknown {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    if why := asyncio.run(server_ready(server)):
        print(f"PostgreSQL configurations skipped: {why}", file=sys.stderr)
        configs = [c for c in configs if not c.startswith("pg")]
    failed = False
    if args.participants:
        runs: dict[str, list[Outcome]] = {c: [] for c in configs}
        for round_ in range(args.repeat):
            # Rotated each round, so a drift of the machine's load does not favour one.
            order = configs[round_ % len(configs) :] + configs[: round_ % len(configs)]
            for config in order:
                outcome = asyncio.run(
                    run(
                        config,
                        args.participants,
                        False,
                        args.seed,
                        server,
                        settings,
                        count=args.count_statements,
                    )
                )
                print(
                    f"saturated {config}: {outcome.rate:.1f}/s, bot {outcome.bot_cpu:.1f} s, "
                    f"pg {outcome.pg_ours:.1f}+{outcome.pg_server:.1f} s "
                    f"(all {outcome.pg_everything:.1f}), driver {outcome.driver_cpu:.1f} s, "
                    f"lock held {outcome.lock_held:.0%}",
                    file=sys.stderr,
                    flush=True,
                )
                runs[config].append(outcome)
                failed |= bool(outcome.problems)
        report_saturated(runs, args.participants, args.repeat)
    if args.paced:
        paced: dict[str, list[Outcome]] = {c: [] for c in configs}
        for round_ in range(args.paced_repeat):
            order = configs[round_ % len(configs) :] + configs[: round_ % len(configs)]
            for config in order:
                outcome = asyncio.run(
                    run(
                        config,
                        args.paced,
                        True,
                        args.seed,
                        server,
                        settings,
                        count=args.count_statements,
                    )
                )
                print(
                    f"paced {config}: p99 {outcome.percentile(99):.0f} ms",
                    file=sys.stderr,
                    flush=True,
                )
                paced[config].append(outcome)
                failed |= bool(outcome.problems)
        report_paced(paced, args.paced, args.paced_repeat)
    if settings:
        shown = ", ".join(f"{name}={value}" for name, value in settings.items())
        print(f"- The bot's PostgreSQL sessions ran with {shown}.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
