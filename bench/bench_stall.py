"""Replies while the disk stalls: the real `python -m bot` process, N people registering with
1–3 s pauses, and every fsync/fdatasync held for `--stall` seconds in the middle.

A small LD_PRELOAD shim (bench/stall_shim.c, compiled here into a temporary directory) makes
fsync and fdatasync wait while a flag file exists: a disk whose flushes take seconds (a busy or
throttled volume, a cloud disk's hiccup). It does not hold plain writes, so it does not model a
dead disk or a full page cache: there every write blocks, and no arrangement of threads helps.
The same run is made twice: with every statement on aiosqlite's thread and SQLite's own
checkpoints (SQLITE_ON_LOOP=0, the design before), and with short statements on the event
loop's thread and checkpoints on a thread of their own (the bot as shipped).

    python -m bench.bench_stall [--participants 100] [--stall 10] [--seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.bench_http import (
    FIRST_USER_ID,
    STEP_TIMEOUT,
    Person,
    TimedTelegram,
    bot_process,
    calibrate,
    events_toml,
    our_buttons,
    process_cpu,
)
from tests.fake_telegram import serve

SHIM = Path(__file__).resolve().parent / "stall_shim.c"
MODES = (("aiosqlite thread only (before)", "0"), ("short statements on the loop (ours)", "1"))


def build_shim(directory: Path) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise SystemExit("bench_stall needs a C compiler (gcc or cc) for its LD_PRELOAD shim")
    library = directory / "stall_shim.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(SHIM), "-ldl"], check=True
    )
    return library


@dataclass
class Outcome:
    label: str
    samples: list[tuple[float, float]]  # (pushed, latency), monotonic seconds
    stall: tuple[float, float]
    syncs: list[tuple[str, str, float]]  # (function, thread, ms held)
    bot_cpu: float
    problems: list[str]

    def latencies(self, during: bool) -> list[float]:
        on, off = self.stall
        return [latency for pushed, latency in self.samples if (on <= pushed < off) == during]


async def participate(
    person: Person,
    replies: Sequence[int],
    rng: random.Random,
    samples: list[tuple[float, float]],
) -> None:
    seen = 0
    for (kind, value), expected in zip(person.steps(), replies, strict=True):
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        pushed = person.push(kind, value)
        await person.fake.wait_messages(person.user_id, seen + expected, STEP_TIMEOUT)
        samples.append((pushed, person.fake.arrivals[person.user_id][seen] - pushed))
        seen += expected


async def run(
    label: str,
    on_loop: str,
    shim: Path,
    participants: int,
    stall_at: float,
    stall_for: float,
    seed: int,
) -> Outcome:
    buttons = our_buttons()
    with tempfile.TemporaryDirectory(prefix="bench-stall-") as tmp:
        directory = Path(tmp)
        (directory / "events.toml").write_text(events_toml(), encoding="utf-8")
        flag, log = directory / "stall", directory / "syncs.log"
        env = {
            "LD_PRELOAD": str(shim),
            "STALL_FLAG": str(flag),
            "STALL_LOG": str(log),
            "SQLITE_ON_LOOP": on_loop,
        }
        fake = TimedTelegram()
        samples: list[tuple[float, float]] = []
        window = [0.0, 0.0]
        problems: list[str] = []
        async with (
            serve(fake) as base_url,
            bot_process("ours", directory, fake, base_url, extra_env=env) as bot,
        ):
            replies = await calibrate(fake, buttons)
            log.write_text("")  # start-up's syncs are not the question
            people = [
                Person(fake, FIRST_USER_ID + number, number, buttons)
                for number in range(participants)
            ]

            async def stall() -> None:
                await asyncio.sleep(stall_at)
                flag.touch()
                window[0] = time.monotonic()
                try:
                    await asyncio.sleep(stall_for)
                finally:
                    flag.unlink(missing_ok=True)
                    window[1] = time.monotonic()

            cpu_before, _ = process_cpu(bot.pid)
            try:
                await asyncio.gather(
                    stall(),
                    *(
                        participate(
                            person,
                            replies,
                            random.Random(seed * 1_000_003 + person.number),
                            samples,
                        )
                        for person in people
                    ),
                )
            finally:
                flag.unlink(missing_ok=True)
            cpu_after, _ = process_cpu(bot.pid)
            syncs = [
                (name, thread, float(ms))
                for name, thread, ms in (line.split() for line in log.read_text().splitlines())
            ]
            bot.send_signal(signal.SIGTERM)
            try:
                exit_code: int | None = await asyncio.wait_for(bot.wait(), 30)
            except TimeoutError:
                exit_code = None
            if exit_code != 0:
                problems.append(f"the bot exited with {exit_code} on SIGTERM")
        expected = participants * len(replies)
        if len(samples) != expected:
            problems.append(f"{len(samples)} replies timed, expected {expected}")
    return Outcome(
        label, samples, (window[0], window[1]), syncs, (cpu_after - cpu_before), problems
    )


def cell(latencies: list[float]) -> str:
    if not latencies:
        return "—"
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] * 1000

    return f"{at(50):,.0f} / {at(95):,.0f} / {at(99):,.0f} / {ordered[-1] * 1000:,.0f}"


def syncs_cell(outcome: Outcome, thread: str) -> str:
    mine = [ms for _, where, ms in outcome.syncs if where == thread]
    held = [ms for ms in mine if ms >= 1]
    return f"{len(mine):,} ({len(held):,} held, {sum(held) / 1000:,.1f} s in all)"


def report(outcomes: Sequence[Outcome], participants: int, stall_for: float) -> None:
    print(
        f"## Replies while fsync stalls: {participants:,} participants with 1–3 s pauses, "
        f"every fsync held for {stall_for:.0f} s, `python -m bot` over HTTP\n"
    )
    print("| | " + " | ".join(outcome.label for outcome in outcomes) + " |")
    print("|---" * (len(outcomes) + 1) + "|")

    def row(label: str, cells: Sequence[str]) -> None:
        print(f"| {label} | " + " | ".join(cells) + " |")

    row(
        "replies asked for during the stall",
        [f"{len(outcome.latencies(True)):,}" for outcome in outcomes],
    )
    row(
        "… latency p50 / p95 / p99 / max, ms",
        [cell(outcome.latencies(True)) for outcome in outcomes],
    )
    row("replies asked for outside it", [f"{len(o.latencies(False)):,}" for o in outcomes])
    row("… latency p50 / p95 / p99 / max, ms", [cell(o.latencies(False)) for o in outcomes])
    row("fsyncs on the event loop's thread", [syncs_cell(o, "main") for o in outcomes])
    row("fsyncs on other threads", [syncs_cell(o, "other") for o in outcomes])
    row(
        "bot CPU µs per update",
        [f"{o.bot_cpu / max(1, len(o.samples)) * 1e6:,.0f}" for o in outcomes],
    )
    print()
    print(
        "- The shim (bench/stall_shim.c, LD_PRELOAD) holds fsync and fdatasync while a flag "
        "file exists: a disk whose flushes take seconds. Writes to the page cache are not "
        "held, so this is not a dead disk or a full page cache, where every write blocks."
    )
    print(
        '- "During the stall": the update was pushed while fsync was held. A sync counts as '
        "held when it waited 1 ms or more. Latency as in bench_http (push to the first "
        "sendMessage to that chat). Fewer replies are asked for during the stall when "
        "replies stall: each person waits for the answer before the next step."
    )
    print(
        "- CPU per update at this load (about 40 updates/s) is mostly the cost of polling "
        "and waking up; bench_throughput and bench_http --no-pauses measure CPU per update."
    )
    for outcome in outcomes:
        counts = Counter(name for name, _, _ in outcome.syncs)
        print(f"- {outcome.label}: calls {dict(counts)}")
        for problem in outcome.problems:
            print(f"- PROBLEM ({outcome.label}): {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--participants", type=int, default=100, metavar="N")
    parser.add_argument("--stall", type=float, default=10.0, metavar="S", help="seconds held")
    parser.add_argument("--stall-at", type=float, default=6.0, metavar="S")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-stall-shim-") as tmp:
        shim = build_shim(Path(tmp))
        outcomes = [
            asyncio.run(
                run(label, on_loop, shim, args.participants, args.stall_at, args.stall, args.seed)
            )
            for label, on_loop in MODES
        ]
    report(outcomes, args.participants, args.stall)
    return 1 if any(outcome.problems for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
