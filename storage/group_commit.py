"""Group commit: callers that arrive while a write is in flight share the next write.

In webhook mode every request writes its update to the inbox before it is answered, and under
load dozens of requests are in hand at once. On PostgreSQL each write is a round trip and a
commit of its own; written together they are one. A lone caller writes at once (no timer, no
task), so nothing waits that would not have waited anyway. The callers that arrive while a
write is in flight wait for it to end and then go in the next write, all together. Each
returns once the write that holds its part has ended: with its own result, or with that
write's error (every caller of a failed write gets it).

On SQLite a short write runs on the event loop's thread without yielding, so it is never seen
in flight and every caller writes alone, as before; it waits only behind a transaction or a
write that went to aiosqlite's thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Part = TypeVar("Part")
Result = TypeVar("Result")


class GroupCommit(Generic[Part, Result]):
    """`write` takes the parts of one write, in the order their callers came, and returns one
    result per part, in the same order."""

    def __init__(
        self, write: Callable[[list[Part]], Awaitable[Sequence[Result]]], *, name: str
    ) -> None:
        self._write = write
        self._name = name
        self._busy = False
        self._waiting: list[tuple[Part, asyncio.Future[Result]]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def __call__(self, part: Part) -> Result:
        if self._busy:
            future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
            self._waiting.append((part, future))
            return await future
        self._busy = True
        try:
            [result] = await self._write([part])
        finally:
            self._then()
        return result

    def _then(self) -> None:
        if not self._waiting:
            self._busy = False
            return
        # In a task of its own: the caller that wrote returns now, not after the others' write.
        task = asyncio.create_task(self._flush(), name=self._name)
        self._flushers.add(task)
        task.add_done_callback(self._flushers.discard)

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    results = await self._write([part for part, _ in batch])
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                except BaseException:
                    for _, future in batch:
                        future.cancel()
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    # A caller cancelled meanwhile has its future done already.
                    if not future.done():
                        future.set_result(result)
        finally:
            for _, future in self._waiting:
                future.cancel()
            self._waiting.clear()
            self._busy = False
