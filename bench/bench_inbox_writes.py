"""The inbox write alone on PostgreSQL, one statement per caller or shared
(storage/group_commit.py): N callers at once, each writing one update after another as
webhook requests do, and the CPU per update of this process and of its PostgreSQL
backends. What the group commit saves at a given number of requests in hand, apart from the
rest of an update's work (bench_replicas cannot see a few hundred microseconds through a
busy machine's noise).

    python -m bench.bench_inbox_writes [--callers 1,4,20] [--updates 2000] [--repeat 3]

PostgreSQL: BENCH_DATABASE_URL, else TEST_DATABASE_URL, else postgresql://postgres@127.0.0.1/test;
each run gets a schema of its own, dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.bench_replicas import database_url
from storage.database import open_database
from storage.group_commit import GroupCommit
from storage.inbox import Arrival, Inbox
from tests.postgres_server import create_schema, drop_schema, with_schema

APPLICATION = "bench-inbox-writes"
TICK = os.sysconf("SC_CLK_TCK")
# About the size of a text message's update as the inbox stores it.
PAYLOAD = '{"update_id": 1, "message": {"text": "' + "x" * 400 + '"}}'


def backends_cpu(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


async def measure(server: str, *, grouped: bool, callers: int, updates: int) -> tuple[float, ...]:
    """CPU µs per update (this process, our backends) and inbox statements per update."""
    schema = await create_schema(server)
    try:
        url = with_schema(server, schema, application_name=APPLICATION)
        async with open_database(Path("unused"), url=url) as db:
            inbox = Inbox(db)
            statements = 0

            async def write(parts: list[list[Arrival]]) -> list[set[int]]:
                nonlocal statements
                statements += 1
                arrivals = [arrival for part in parts for arrival in part]
                fresh = await inbox.accept(arrivals, [], now=datetime.now(UTC))
                return [fresh] * len(parts)

            shared = GroupCommit(write, name="inbox-write")

            async def caller(first: int, count: int) -> None:
                for update_id in range(first, first + count):
                    part = [Arrival(update_id, first, PAYLOAD)]
                    await (shared(part) if grouped else write([part]))

            each = updates // callers
            # Warm-up at the same concurrency, so the pool has opened its connections.
            await asyncio.gather(*(caller(10**9 + c * 100, 20) for c in range(callers)))
            connection = await asyncpg.connect(server)
            try:
                rows = await connection.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1", APPLICATION
                )
            finally:
                await connection.close()
            pids = [row[0] for row in rows]
            statements = 0
            started, backends = time.process_time(), backends_cpu(pids)
            await asyncio.gather(*(caller(1 + c * each, each) for c in range(callers)))
            done = callers * each
            return (
                (time.process_time() - started) / done * 1e6,
                (backends_cpu(pids) - backends) / done * 1e6,
                statements / done,
            )
    finally:
        await drop_schema(server, schema)


async def run(callers: Sequence[int], updates: int, repeat: int) -> None:
    server = database_url()
    print(
        f"## The inbox write alone on PostgreSQL: {updates} updates, median of {repeat} "
        "(direct and shared alternating)\n"
    )
    print(
        "| callers at once | write | statements per update | CPU µs per update: process "
        "| … our backends | … both |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    for count in callers:
        results: dict[bool, list[tuple[float, ...]]] = {False: [], True: []}
        for index in range(repeat):
            for grouped in (False, True) if index % 2 == 0 else (True, False):
                results[grouped].append(
                    await measure(server, grouped=grouped, callers=count, updates=updates)
                )
        for grouped in (False, True):
            process, backends, statements = (
                statistics.median(values) for values in zip(*results[grouped], strict=True)
            )
            print(
                f"| {count} | {'shared' if grouped else 'one each'} | {statements:.2f} | "
                f"{process:,.0f} | {backends:,.0f} | {process + backends:,.0f} |"
            )
    print(f"\n- Load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--callers", default="1,4,20")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    asyncio.run(run([int(c) for c in args.callers.split(",")], args.updates, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
