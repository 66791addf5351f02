"""Instructions per update, counted by valgrind's callgrind: repeatable on a shared machine
where CPU seconds are not (two identical runs differ by well under 1%).

Runs bench_throughput's child (ours or the floor) under callgrind with counting off until
the warm-up is done and `gc.freeze()`d, then counts the timed participants only. For A/B
measurement of a change, not part of `make bench` (a run takes a minute or two).

    python -m bench.bench_instructions [--kind ours|floor] [--participants N] [--concurrency C]
        [--keep FILE]   # keep callgrind's output for callgrind_annotate
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.bench_throughput import CALLGRIND_ENV, UPDATES_PER_REGISTRATION


def count(kind: str, participants: int, concurrency: int, keep: Path | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.bench_throughput",
            "--child",
            kind,
            "--participants",
            str(participants),
            "--concurrency",
            str(concurrency),
        ]
        env = {**os.environ, CALLGRIND_ENV: "1", "PYTHONHASHSEED": "0"}
        completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if completed.returncode != 0:
            msg = f"{kind} under callgrind failed ({completed.returncode}):\n{completed.stderr}"
            raise RuntimeError(msg)
        text = out.read_text(errors="replace")
        if keep is not None:
            shutil.copy(out, keep)
    totals = re.search(r"^totals: (\d+)", text, re.MULTILINE)
    if totals is None:
        msg = "no totals in callgrind's output"
        raise RuntimeError(msg)
    return int(totals.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kind", choices=("ours", "floor"), default="ours")
    parser.add_argument("--participants", type=int, default=100, metavar="N")
    parser.add_argument("--concurrency", type=int, default=100, metavar="C")
    parser.add_argument("--keep", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    total = count(args.kind, args.participants, args.concurrency, args.keep)
    updates = args.participants * UPDATES_PER_REGISTRATION
    print(
        f"{args.kind}: {total:,} instructions for {updates:,} updates, "
        f"{total / updates:,.0f} per update"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
