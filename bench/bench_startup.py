"""Start-up: how long the real `python -m bot` takes from its launch to polling, and to its
first reply, beside the floor (`bench/floor_bot.py`: aiogram's own `start_polling`, imported as
aiogram imports itself) and a bare `import aiogram`.

A start is paid at every deploy, restart and crash recovery, and by every operator command
that needs the Bot API: until the bot polls (or listens, in webhook mode), nobody gets an answer.
Each round starts each process once, against the fake Bot API on 127.0.0.1, on SQLite; the
rounds interleave the kinds. CPU is the process's own (from /proc), wall time from launch.

    python -m bench.bench_startup [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.bench_http import TimedTelegram, bot_process, process_cpu
from bench.bench_throughput import FIRST_USER_ID, events_toml
from tests.fake_telegram import serve, text_update, user_json

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Start:
    polling_s: float  # launch → first getUpdates
    polling_cpu: float
    reply_s: float  # launch → the first answer to /start (first use builds what it needs)
    reply_cpu: float


async def start(kind: str) -> Start:
    with tempfile.TemporaryDirectory(prefix=f"bench-startup-{kind}-") as tmp:
        directory = Path(tmp)
        (directory / "events.toml").write_text(events_toml(), encoding="utf-8")
        fake = TimedTelegram()
        async with serve(fake) as base_url:
            launched = time.monotonic()
            async with bot_process(kind, directory, fake, base_url) as process:
                polling = time.monotonic() - launched
                polling_cpu, _ = process_cpu(process.pid)
                fake.push_update(text_update(user_json(FIRST_USER_ID), "/start", message_id=1))
                await fake.wait_messages(FIRST_USER_ID, 1, timeout=60)
                replied = fake.arrivals[FIRST_USER_ID][0] - launched
                reply_cpu, _ = process_cpu(process.pid)
    return Start(polling, polling_cpu, replied, reply_cpu)


def import_aiogram_cpu() -> float:
    """CPU seconds of `python -c "import aiogram"` (with its methods and types)."""
    code = "import time; import aiogram, aiogram.methods, aiogram.types; print(time.process_time())"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(completed.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    starts: dict[str, list[Start]] = {"ours": [], "floor": []}
    imports: list[float] = []
    for number in range(args.rounds):
        kinds = ("ours", "floor") if number % 2 == 0 else ("floor", "ours")
        for kind in kinds:
            starts[kind].append(asyncio.run(start(kind)))
        imports.append(import_aiogram_cpu())
        print(f"round {number + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    def median(kind: str, attribute: str) -> float:
        return statistics.median(getattr(one, attribute) for one in starts[kind])

    print(f"## Start-up: launch to polling and to the first reply, median of {args.rounds}\n")
    print("| | ours (`python -m bot`) | floor (aiogram's `start_polling`) | ours ÷ floor |")
    print("|---|---:|---:|---:|")
    rows = (
        ("launch → polling, wall s", "polling_s"),
        ("… CPU s", "polling_cpu"),
        ("launch → first reply to /start, wall s", "reply_s"),
        ("… CPU s", "reply_cpu"),
    )
    for label, attribute in rows:
        ours, floor = median("ours", attribute), median("floor", attribute)
        print(f"| {label} | {ours:.2f} | {floor:.2f} | {ours / floor:.2f}× |")
    print(
        f"\n- `import aiogram` alone (with its methods and types), as aiogram builds its "
        f"types: {statistics.median(imports):.2f} s of CPU (median; "
        f"{min(imports):.2f}–{max(imports):.2f})."
    )
    print(
        "- Ours imports aiogram with its types built on first use (bot/aiogram_import.py); "
        "the floor imports it as it is, so both the floor and the bare import pay for building "
        "every type at import."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
