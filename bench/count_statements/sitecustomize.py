"""Loaded by a replica started with `bench_replicas --count-statements` (this folder first on
its PYTHONPATH): counts every statement the process sends through asyncpg, and times the global
serial lock (storage/postgres.py SERIAL_LOCK): the round trip of `BEGIN; SELECT
pg_advisory_xact_lock(…)` (mostly waiting for it) and the hold, from its grant to the end of
COMMIT or ROLLBACK; and the round trip of a registration made in one statement
(`create_registration`, schema step 21), which takes and holds the lock inside: its wait and
hold together, as seen from here. Written at exit, one file per process, to BENCH_STATEMENTS_DIR.

A benchmark's instrument, not the bot's: it wraps the library's methods, not our code, and
adds a few microseconds a statement."""

from __future__ import annotations

import atexit
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg.connection

_counts: Counter[str] = Counter()
_waits: list[float] = []
_holds: list[float] = []
_one_statement: list[float] = []
_granted: dict[int, float] = {}


def _wrap(name: str) -> None:
    original: Callable[..., Any] = getattr(asyncpg.connection.Connection, name)

    async def counted(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        text = " ".join(str(query).split())
        _counts[text[:100]] += 1
        started = time.perf_counter()
        try:
            return await original(self, query, *args, **kwargs)
        finally:
            ended = time.perf_counter()
            if text.startswith("BEGIN; SELECT pg_advisory_xact_lock"):
                _waits.append(ended - started)
                _granted[id(self)] = ended
            elif text in ("COMMIT", "ROLLBACK") and id(self) in _granted:
                _holds.append(ended - _granted.pop(id(self)))
            elif "FROM create_registration(" in text:
                _one_statement.append(ended - started)

    setattr(asyncpg.connection.Connection, name, counted)


def _write() -> None:
    folder = os.environ.get("BENCH_STATEMENTS_DIR")
    if not folder:
        return
    record = {
        "counts": dict(_counts),
        "waits": _waits,
        "holds": _holds,
        "one_statement": _one_statement,
    }
    (Path(folder) / f"{os.getpid()}.json").write_text(json.dumps(record), encoding="utf-8")


if os.environ.get("BENCH_STATEMENTS_DIR"):
    for _name in ("execute", "executemany", "fetch", "fetchval", "fetchrow"):
        _wrap(_name)
    atexit.register(_write)
