"""Admin jobs that take seconds (an export, a search over every registration) run as tasks of
their own: the update that started one ends at once, so neither its chat nor anyone else's
waits for an upload, and the job reports back by editing its "preparing…" message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

Job = Callable[[], Coroutine[Any, Any, None]]


class BackgroundJobs:
    """The running jobs, one per (kind, chat): held here so the event loop's weak reference
    is not their only one (a task nobody holds may be garbage-collected mid-way), and so
    shutdown can wait for them."""

    def __init__(self) -> None:
        self._tasks: dict[tuple[str, int], asyncio.Task[None]] = {}

    def running(self, kind: str, chat_id: int) -> bool:
        return (kind, chat_id) in self._tasks

    def start(self, kind: str, chat_id: int, job: Job) -> bool:
        """Start `job` unless one of this kind is running for the chat; False then."""
        key = (kind, chat_id)
        if key in self._tasks:
            return False
        task = asyncio.create_task(self._run(kind, chat_id, job), name=f"{kind}-{chat_id}")
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._forget(key, done))
        return True

    def _forget(self, key: tuple[str, int], task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    @staticmethod
    async def _run(kind: str, chat_id: int, job: Job) -> None:
        # A job reports its own expected failures to the admin; this is the last resort,
        # so that an unexpected one is logged (ids and the exception's type only) rather
        # than lost in a task nobody awaits.
        try:
            await job()
        except Exception as error:
            logger.error(
                "Job %s for chat %d failed: %s",
                kind,
                chat_id,
                type(error).__name__,
                exc_info=error,
            )

    async def idle(self) -> None:
        """Until no job runs (jobs started meanwhile included)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    async def stop(self, grace: float = 10.0) -> None:
        """Let running jobs finish for up to `grace` seconds, then cancel the rest (each
        tells its admin it was interrupted) and wait for them to end."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            logger.info("Job %s cancelled at shutdown", task.get_name())
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
