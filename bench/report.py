"""Run the benchmarks one after another and write bench/RESULTS.md: the machine, the versions,
the date, and each benchmark's own markdown table.

    python -m bench.report [--quick] [--output bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 3 * 60 * 60

# (module, full arguments, --quick arguments); a module that is not there is skipped.
BENCHMARKS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("bench.bench_throughput", ("--repeat", "3"), ("--participants", "300")),
    ("bench.bench_startup", (), ("--rounds", "2")),
    ("bench.bench_http", (), ("--participants", "200")),
    ("bench.bench_http", ("--no-pauses",), ("--no-pauses", "--participants", "200")),
    ("bench.bench_cards", (), ("--quick",)),
    ("bench.bench_validators", (), ("--quick",)),
    ("bench.bench_export", (), ("--quick",)),
    ("bench.bench_noisy", (), ("--participants", "100", "--rows", "20000")),
    ("bench.bench_stall", (), ("--participants", "50", "--stall", "5", "--stall-at", "4")),
    ("bench.bench_seats", (), ("--quick",)),
    ("bench.bench_reminders", (), ("--registrants", "1000")),
    ("bench.bench_webhook", ("--participants", "100"), ("--participants", "30")),
    ("bench.bench_webhook", ("--no-pauses", "--participants", "100"), ("--no-pauses",)),
    (
        "bench.bench_replicas",
        ("--repeat", "4", "--paced-repeat", "2"),
        ("--participants", "200", "--paced", "200", "--repeat", "1", "--paced-repeat", "1"),
    ),
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' with uncommitted changes' if dirty else ''}" if head else "unknown"


def header() -> list[str]:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench.report`); each section is printed by its "
        "benchmark, which also states its baseline. Other processes on the machine make the "
        "figures noisy: compare ratios taken in the same run rather than absolute numbers.",
        "",
        "| | |",
        "|---|---|",
        f"| date | {datetime.now(UTC):%Y-%m-%d %H:%M} UTC |",
        f"| commit | {commit()} |",
        f"| CPU | {cpu_model()}, {os.cpu_count()} cores |",
        f"| RAM | {memory_gib()} |",
        f"| load average at start (1, 5, 15 min) | {load} |",
        f"| OS | {platform.system()} {platform.release()} |",
        f"| Python | {platform.python_version()} ({platform.python_implementation()}) |",
        f"| aiogram | {version('aiogram')} |",
        f"| aiosqlite | {version('aiosqlite')} |",
        f"| pydantic | {version('pydantic')} |",
        f"| aiohttp | {version('aiohttp')} |",
        f"| SQLite | {sqlite3.sqlite_version} |",
        "",
    ]


def run(module: str, arguments: Sequence[str]) -> tuple[list[str], bool]:
    command = [sys.executable, "-m", module, *arguments]
    shown = " ".join(["python", "-m", module, *arguments])
    print(f"running {shown} …", file=sys.stderr, flush=True)
    began = time.monotonic()
    try:
        completed = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return [f"## `{shown}`", "", f"Did not finish within {TIMEOUT // 60} minutes.", ""], False
    seconds = time.monotonic() - began
    lines = completed.stdout.splitlines()
    # A benchmark's own progress lines come before its first heading.
    start = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    body = lines[start:] or [f"## `{shown}`", "", "No table was printed."]
    footer = ["", f"_`{shown}`: {seconds:,.0f} s, exit code {completed.returncode}._", ""]
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-15:]
        footer[1:1] = ["", "Its last words on stderr:", "", "```", *tail, "```"]
    print(f"  done in {seconds:,.0f} s (exit {completed.returncode})", file=sys.stderr)
    return [*body, *footer], completed.returncode == 0


ANALYSIS = ROOT / "bench" / "ANALYSIS.md"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs of each benchmark")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)

    lines = header()
    failed = 0
    for module, full, quick in BENCHMARKS:
        if importlib.util.find_spec(module) is None:
            print(f"skipping {module}: not present", file=sys.stderr)
            continue
        section, ok = run(module, quick if args.quick else full)
        failed += not ok
        lines += section
    # What the figures cannot say: what dominates a missed goal and what was tried.
    lines += ["", ANALYSIS.read_text(encoding="utf-8")]
    args.output.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
