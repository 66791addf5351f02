"""One bot process per SQLite file: an exclusive flock on the database file itself, held for
the life of the process.

Two processes on one file would each long-poll (Telegram answers one of them 409) or each
deliver the outbox: replicas need PostgreSQL. flock(2) locks are independent of the POSIX
(fcntl) locks SQLite takes on the same file on Linux, so readers and the operator's commands
(`python -m bot export|erase|audit`, which take no lease) work beside the bot as before. (On
NFS, Linux emulates flock with POSIX locks: SQLite does not belong on NFS anyway.)
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from storage.database import _create_private_file


class DatabaseInUse(Exception):
    """Another process holds the file's lease; the message is one line."""


@contextmanager
def hold_lease(path: Path) -> Iterator[None]:
    """Hold the lease while the block runs: open the database inside it, so that the
    descriptor is closed only after SQLite closed the file (closing any descriptor of a
    file drops every POSIX lock the process holds on it, SQLite's included)."""
    _create_private_file(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = holder(path)
            who = f"pid {pid}?" if pid is not None else "pid unknown"
            raise DatabaseInUse(
                f"DATABASE_PATH: {path} is in use by another process ({who}); replicas need "
                "PostgreSQL: see README"
            ) from None
        yield
    finally:
        os.close(fd)


def holder(path: Path) -> int | None:
    """The pid holding a flock on `path`, from /proc/locks (Linux): a guess, as the pid may be
    of another pid namespace (a container) or have gone meanwhile."""
    try:
        status = path.stat()
        lines = Path("/proc/locks").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF": device major:minor in hex, inode.
    key = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == key and parts[4].isdigit():
            return int(parts[4])
    return None
