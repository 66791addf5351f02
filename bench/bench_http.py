"""Participants over real HTTP: the real `python -m bot` process polls the fake Bot API server
on 127.0.0.1 (bot/sandbox/fake_telegram/) while N simulated people fill the form at once.

Each person waits for the bot's answer to a step, then pauses 1–3 s (seeded uniform) before
the next, as people do (the first pause, before /start, spreads arrivals over about 2 s).
Latency is the time from pushing their update into the fake's queue to the arrival at the fake
of the bot's first sendMessage (or editMessageText) to their chat. How many messages each step
gets is learnt from one calibration participant first, so a step is complete, not just begun,
before the next answer. With `--no-pauses` everybody answers at once (saturation), and the floor
(`bench/floor_bot.py`, aiogram's own `start_polling`) is run as a process the same way.

    python -m bench.bench_http [--participants 1000] [--no-pauses] [--seed S]

Longer than our ~400-line rule on purpose: a benchmark reads top to bottom as one story (its
driver, its measurement and its report beside the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_throughput import (
    FIRST_USER_ID,
    TOKEN,
    Buttons,
    answers_for,
    button_data,
    events_toml,
    floor_buttons,
    our_buttons,
)
from tests.fake_telegram import (
    FakeTelegram,
    callback_query_update,
    serve,
    text_update,
    user_json,
)

ROOT = Path(__file__).resolve().parent.parent
ORGANIZER_CHAT_ID = -1001234567890
GOAL_P99_MS = 250.0
STEP_TIMEOUT = 120.0
QUIET = 0.5  # calibration: a step is over when the bot has said nothing more for this long
CALIBRATION_USER = FIRST_USER_ID - 1

JSON = dict[str, Any]


class TimedTelegram(FakeTelegram):
    """The fake, noting when each message the bot sends to a chat (or edits) arrives."""

    def __init__(self) -> None:
        super().__init__(token=TOKEN)
        self.arrivals: defaultdict[int, list[float]] = defaultdict(list)
        self.keyboards: dict[int, JSON] = {}
        self.last_text: dict[int, str] = {}
        self._arrived: dict[int, asyncio.Event] = {}

    async def handle(self, method: str, params: Mapping[str, Any]) -> Any:
        arrived = time.monotonic()
        result = await super().handle(method, params)
        # A reply is a new message or an edit of the one whose button was pressed.
        if method.lower() in ("sendmessage", "editmessagetext") and isinstance(result, dict):
            chat_id = result["chat"]["id"]
            self.arrivals[chat_id].append(arrived)
            self.last_text[chat_id] = result.get("text", "")
            if "reply_markup" in result:
                self.keyboards[chat_id] = result
            if event := self._arrived.get(chat_id):
                event.set()
        return result

    async def wait_messages(self, chat_id: int, count: int, timeout: float) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.arrivals[chat_id]) < count:
            event = self._arrived.setdefault(chat_id, asyncio.Event())
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), deadline - loop.time())
            except TimeoutError:
                msg = (
                    f"chat {chat_id}: {len(self.arrivals[chat_id])} messages from the bot "
                    f"after {timeout:.0f} s, expected {count}"
                )
                raise AssertionError(msg) from None


@dataclass
class Person:
    fake: TimedTelegram
    user_id: int
    number: int
    buttons: Buttons
    user: JSON = field(init=False)

    def __post_init__(self) -> None:
        self.user = user_json(self.user_id, first_name="Участник")

    def steps(self) -> list[tuple[str, str]]:
        typed = [("send", answer) for answer in answers_for(self.number)]
        return [
            ("send", "/start"),
            ("click", self.buttons.consent),
            *typed,
            ("click", self.buttons.confirm),
        ]

    def push(self, kind: str, value: str) -> float:
        if kind == "send":
            message_id = self.fake.next_message_id(self.user_id)
            update = text_update(self.user, value, message_id=message_id)
        else:
            message = self.fake.keyboards.get(self.user_id)
            data = button_data(message, value)
            if message is None or data is None:
                msg = f"chat {self.user_id}: no button {value!r} in the bot's last keyboard"
                raise AssertionError(msg)
            query_id = self.fake.new_callback_query_id()
            update = callback_query_update(self.user, message, data, query_id=query_id)
        pushed = time.monotonic()
        self.fake.push_update(update)
        return pushed


async def calibrate(fake: TimedTelegram, buttons: Buttons) -> list[int]:
    """How many messages the bot sends for each step: one person, alone, waiting for quiet."""
    person = Person(fake, CALIBRATION_USER, 0, buttons)
    replies: list[int] = []
    for kind, value in person.steps():
        before = len(fake.arrivals[person.user_id])
        person.push(kind, value)
        await fake.wait_messages(person.user_id, before + 1, STEP_TIMEOUT)
        while True:
            count = len(fake.arrivals[person.user_id])
            await asyncio.sleep(QUIET)
            if len(fake.arrivals[person.user_id]) == count:
                break
        replies.append(len(fake.arrivals[person.user_id]) - before)
    return replies


async def participate(
    person: Person, replies: Sequence[int], rng: random.Random | None, latencies: list[float]
) -> None:
    seen = 0
    for (kind, value), expected in zip(person.steps(), replies, strict=True):
        if rng is not None:
            await asyncio.sleep(rng.uniform(1.0, 3.0))
        pushed = person.push(kind, value)
        await person.fake.wait_messages(person.user_id, seen + expected, STEP_TIMEOUT)
        latencies.append(person.fake.arrivals[person.user_id][seen] - pushed)
        seen += expected


# --- the bot process ---------------------------------------------------------------------------


def process_cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of a live process, from /proc. The CPU includes its
    children that ended (an export's process), so it is all the bot used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


@asynccontextmanager
async def bot_process(
    kind: str,
    directory: Path,
    fake: FakeTelegram,
    base_url: str,
    *,
    extra_env: Mapping[str, str] | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    env.update(extra_env or {})
    env.update(
        BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=base_url,
        DATABASE_PATH=str(directory / "data" / "bot.sqlite3"),
        EVENTS_FILE=str(directory / "events.toml"),
        ADMIN_IDS="500",
        ORGANIZER_CHAT_IDS=str(ORGANIZER_CHAT_ID),
        PYTHONPATH=str(ROOT),
    )
    module = "bot" if kind == "ours" else "bench.floor_bot"
    log = directory / f"{kind}.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, cwd=directory, env=env, stdout=sink, stderr=sink
        )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not fake.calls_of("getUpdates"):
            if process.returncode is not None or loop.time() > deadline:
                output = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{module} did not start polling:\n{output}")
            await asyncio.sleep(0.05)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@dataclass
class Outcome:
    kind: str
    participants: int
    paced: bool
    total: float
    latencies: list[float]
    stored: int
    duplicates: int
    confirmations: int
    bot_cpu: float
    bot_rss_mb: float
    driver_cpu: float
    api_calls: int
    exit_code: int | None
    problems: list[str]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index] * 1000


async def run(kind: str, participants: int, paced: bool, seed: int) -> Outcome:
    buttons = our_buttons() if kind == "ours" else floor_buttons()
    with tempfile.TemporaryDirectory(prefix=f"bench-http-{kind}-") as tmp:
        directory = Path(tmp)
        (directory / "events.toml").write_text(events_toml(), encoding="utf-8")
        fake = TimedTelegram()
        async with serve(fake) as base_url, bot_process(kind, directory, fake, base_url) as bot:
            replies = await calibrate(fake, buttons)
            print(f"{kind}: messages per step {replies}", file=sys.stderr, flush=True)
            people = [
                Person(fake, FIRST_USER_ID + number, number, buttons)
                for number in range(participants)
            ]
            latencies: list[float] = []
            calls_before = len(fake.calls)
            driver_before = time.process_time()
            bot_before, _ = process_cpu(bot.pid)
            began = time.monotonic()
            await asyncio.gather(
                *(
                    participate(
                        person,
                        replies,
                        random.Random(seed * 1_000_003 + person.number) if paced else None,
                        latencies,
                    )
                    for person in people
                )
            )
            total = time.monotonic() - began
            bot_after, bot_rss = process_cpu(bot.pid)
            driver_cpu = time.process_time() - driver_before
            api_calls = len(fake.calls) - calls_before
            bot.send_signal(signal.SIGTERM)
            try:
                exit_code: int | None = await asyncio.wait_for(bot.wait(), 30)
            except TimeoutError:
                exit_code = None

        problems: list[str] = []
        per_person = sum(replies)
        for person in people:
            got = len(fake.arrivals[person.user_id])
            if got != per_person:
                problems.append(f"chat {person.user_id}: {got} messages, expected {per_person}")
        confirmations = sum(
            1 for person in people if buttons.registered in fake.last_text.get(person.user_id, "")
        )
        stored = duplicates = confirmations
        if kind == "ours":
            database = directory / "data" / "bot.sqlite3"
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
                stored = db.execute(
                    "SELECT COUNT(*) FROM registrations WHERE user_id >= ?", (FIRST_USER_ID,)
                ).fetchone()[0]
                duplicates = db.execute(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM registrations "
                    "GROUP BY event_id, user_id HAVING COUNT(*) > 1)"
                ).fetchone()[0]
        else:
            duplicates = 0
        if stored != participants:
            problems.append(f"{stored} registrations stored, expected {participants}")
        if duplicates:
            problems.append(f"{duplicates} people registered twice")
        if exit_code != 0:
            problems.append(f"the bot exited with {exit_code} on SIGTERM")
    return Outcome(
        kind,
        participants,
        paced,
        total,
        latencies,
        stored,
        duplicates,
        confirmations,
        bot_after - bot_before,
        bot_rss,
        driver_cpu,
        api_calls,
        exit_code,
        problems[:10],
    )


# --- report ------------------------------------------------------------------------------------


def latency_cell(outcome: Outcome) -> str:
    return " / ".join(f"{outcome.percentile(q):,.0f}" for q in (50, 95, 99))


def report_paced(outcome: Outcome) -> None:
    n = outcome.participants
    updates = len(outcome.latencies)
    p99 = outcome.percentile(99)
    mark = "met" if p99 <= GOAL_P99_MS else "missed"
    print(
        f"## Over HTTP: {n:,} participants at once, 1–3 s pauses, `python -m bot` against the "
        "fake Bot API on 127.0.0.1\n"
    )
    print("| | ours | goal |")
    print("|---|---:|---|")
    print(f"| total time | {outcome.total:,.1f} s | |")
    print(f"| updates | {updates:,} ({updates / outcome.total:,.0f}/s) | |")
    print(f"| offered load, updates/s | ≈ {n / 2:,.0f} (one answer per person every 2 s) | |")
    print(f"| reply latency p50 / p95 / p99, ms | {latency_cell(outcome)} | p99 ≤ 250 ({mark}) |")
    print(f"| max latency, ms | {max(outcome.latencies) * 1000:,.0f} | |")
    print(f"| rows stored | {outcome.stored:,} | {n:,} |")
    print(f"| duplicates | {outcome.duplicates} | 0 |")
    cpu = outcome.bot_cpu / updates * 1e6
    print(f"| bot CPU µs per update | {cpu:,.0f} | |")
    print(f"| updates/s one core could do (10⁶ / CPU µs) | {1e6 / cpu:,.0f} | |")
    print(f"| bot peak RSS, MB | {outcome.bot_rss_mb:,.1f} | |")
    calls = outcome.api_calls / n
    print(f"| Bot API calls per registration (getUpdates included) | {calls:,.2f} | |")
    notes(outcome)


def report_saturation(ours: Outcome, floor: Outcome) -> None:
    n = ours.participants
    print(
        f"## Over HTTP, saturation: {n:,} participants answering with no pauses, each process "
        "against the fake Bot API on 127.0.0.1\n"
    )
    print("| | floor (bench/floor_bot.py) | ours | ours / floor |")
    print("|---|---:|---:|---:|")

    def row(label: str, f: float, o: float, fmt: str = ",.0f") -> None:
        print(f"| {label} | {f:{fmt}} | {o:{fmt}} | {o / f:.2f}× |")

    row("total time, s", floor.total, ours.total, ",.1f")
    row("registrations/s", floor.participants / floor.total, n / ours.total, ",.1f")
    row("updates/s", len(floor.latencies) / floor.total, len(ours.latencies) / ours.total)
    print(f"| reply latency p50 / p95 / p99, ms | {latency_cell(floor)} | {latency_cell(ours)} | |")
    floor_cpu = floor.bot_cpu / len(floor.latencies) * 1e6
    ours_cpu = ours.bot_cpu / len(ours.latencies) * 1e6
    row("bot CPU µs per update", floor_cpu, ours_cpu)
    row("updates/s one core could do (10⁶ / CPU µs)", 1e6 / floor_cpu, 1e6 / ours_cpu)
    row("bot peak RSS, MB", floor.bot_rss_mb, ours.bot_rss_mb, ",.1f")
    row(
        "Bot API calls per registration (getUpdates included)",
        floor.api_calls / floor.participants,
        ours.api_calls / n,
        ",.2f",
    )
    stored = f"{ours.stored:,} / {ours.duplicates}"
    print(f"| rows stored / duplicates | {floor.stored:,} / — | {stored} | |")
    notes(ours, floor)


def notes(*outcomes: Outcome) -> None:
    print()
    for outcome in outcomes:
        print(
            f"- {outcome.kind}: the driver (fake server and simulated people, one process) "
            f"used {outcome.driver_cpu:,.1f} s CPU beside the bot's {outcome.bot_cpu:,.1f} s, "
            f"on {os.cpu_count()} cores shared with whatever else runs: wall-clock figures are "
            "noisy, CPU per update less so."
        )
        for problem in outcome.problems:
            print(f"- PROBLEM ({outcome.kind}): {problem}")
    print(
        "- Latency: from pushing the update into the fake's queue to the arrival of the bot's "
        "first message (or edit) to that chat; it includes waiting for the next getUpdates (at "
        "most 100 updates each; ours asks again as soon as a batch is in its inbox)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--participants", type=int, default=1000, metavar="N")
    parser.add_argument("--no-pauses", action="store_true", help="saturation, with the floor")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    if not args.no_pauses:
        outcome = asyncio.run(run("ours", args.participants, True, args.seed))
        report_paced(outcome)
        return 1 if outcome.problems else 0
    floor = asyncio.run(run("floor", args.participants, False, args.seed))
    ours = asyncio.run(run("ours", args.participants, False, args.seed))
    report_saturation(ours, floor)
    return 1 if ours.problems or floor.problems else 0


if __name__ == "__main__":
    sys.exit(main())
