"""An export built in a process of its own.

A large export is seconds of pure-Python CPU. In a thread it holds the GIL against the
event loop, and every hop to aiosqlite's thread and every HTTP reply waits for it in turn:
participants' replies slowed several times over during an export (bench/bench_noisy.py,
bench/ANALYSIS.md). A child process runs on the other core and shares no lock with the
bot; it reads its own read-only snapshot, as the thread did.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
from pathlib import Path

from bot.domain.events import EventCatalog
from bot.domain.form import FORM
from bot.domain.texts import DEFAULT_LOCALE
from storage.export import ExportFormat, export_to_file


class ExportProcessError(RuntimeError):
    pass


async def export_in_process(
    database_path: Path | str,
    catalog: EventCatalog,
    event_id: str | None,
    fmt: ExportFormat,
    output: Path,
    *,
    language: str = DEFAULT_LOCALE,
    standard: tuple[str, ...] = FORM.in_answers,
) -> int:
    """`export_to_file` in a child process; returns the number of rows written. The database
    (a path, or DATABASE_URL) goes to the child through a pipe, never its command line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "storage.export.process",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    job = pickle.dumps((database_path, catalog, event_id, fmt, output, language, standard))
    try:
        out, err = await process.communicate(job)
    except BaseException:
        # Cancelled (the bot is stopping): the child must not outlive the job.
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ExportProcessError(f"exit code {process.returncode}: {reason[0]}")
    return int(out)


def _main() -> int:
    # Our own pickle, from our own parent, through a pipe: nothing else can write it.
    database_path, catalog, event_id, fmt, output, language, standard = pickle.load(
        sys.stdin.buffer
    )
    try:
        rows = export_to_file(
            database_path, catalog, event_id, fmt, output, language=language, standard=standard
        )
    except Exception as error:
        # The type only: an error's text may quote a value from the database.
        print(type(error).__name__, file=sys.stderr)
        return 1
    print(rows)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
