"""Export files: written beside their target and renamed when complete, owner-only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

Target = Path | BinaryIO


class UnknownEvent(LookupError):
    def __init__(self, event_id: str) -> None:
        super().__init__(f"unknown session {event_id!r}")
        self.event_id = event_id


@contextmanager
def binary_output(target: Target) -> Iterator[BinaryIO]:
    if not isinstance(target, Path):
        yield target
        return
    # Written beside the target and renamed when complete, so a failed export leaves no
    # half-file; personal data, so the file is its owner's only from birth, like the database.
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
