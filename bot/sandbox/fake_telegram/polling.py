"""The updates queue: what getUpdates hands out, and Telegram's offset confirmation."""

from __future__ import annotations

import asyncio
from typing import cast

from bot.sandbox.fake_telegram.model import JSON


class UpdateQueue:
    """The getUpdates half of FakeTelegram: an update stays queued until a later getUpdates
    offset confirms it, as Telegram does."""

    def __init__(self) -> None:
        self._last_update_id = 0
        self._last_queued_id = 0
        self._queue: list[JSON] = []
        # The highest getUpdates offset seen: every update below it is confirmed.
        self._acknowledged = 0
        self._dropped: set[int] = set()
        # Updates a webhook request delivered (answered 2xx): confirmed one by one.
        self._delivered: set[int] = set()
        self._polling_released = False
        self._changed = asyncio.Event()

    def next_update_id(self) -> int:
        self._last_update_id += 1
        return self._last_update_id

    def push_update(self, payload: JSON) -> int:
        update = dict(payload)
        if "update_id" not in update:
            update["update_id"] = self.next_update_id()
        update_id = update["update_id"]
        if update_id <= self._last_queued_id:
            msg = f"update_id {update_id} is not above the last queued {self._last_queued_id}"
            raise ValueError(msg)
        self._last_queued_id = update_id
        self._last_update_id = max(self._last_update_id, update_id)
        self._queue.append(update)
        self._pulse()
        return cast(int, update_id)

    # The explicit timeout is the point: it turns "the bot never handled it" into a clear failure.
    async def wait_confirmed(self, update_id: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._is_confirmed(update_id):
            if update_id in self._dropped:
                msg = f"update {update_id} was dropped by deleteWebhook(drop_pending_updates)"
                raise AssertionError(msg)
            if not await self._wait_change(deadline - loop.time()):
                msg = (
                    f"update {update_id} was not confirmed within {timeout} s: the last "
                    f"getUpdates offset was {self._acknowledged}, no webhook request for it "
                    "was answered 2xx (is the bot polling with handle_as_tasks=False, or did "
                    "a handler hang?)"
                )
                raise AssertionError(msg)

    def _is_confirmed(self, update_id: int) -> bool:
        return self._acknowledged > update_id

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, seconds: float) -> bool:
        if seconds <= 0:
            return False
        changed = self._changed
        # Not wait_for: on Python 3.11 it swallows a cancellation that comes as the event is
        # set, and the fake's webhook delivery (cancelled by close()) would run on.
        try:
            async with asyncio.timeout(seconds):
                await changed.wait()
        except TimeoutError:
            return False
        return True

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            # "Negative offset ... All previous updates will be forgotten."
            self._queue = self._queue[offset:]
            return
        self._queue = [update for update in self._queue if update["update_id"] >= offset]
        if offset > self._acknowledged:
            self._acknowledged = offset
            self._pulse()

    def release_polling(self, released: bool) -> None:
        """While released, getUpdates answers at once instead of long polling."""
        self._polling_released = released
        self._pulse()

    async def _get_updates(self, params: JSON) -> list[JSON]:
        offset = params.get("offset")
        limit = int(params.get("limit", 100))
        timeout = float(params.get("timeout", 0))
        if offset is not None:
            self._confirm(int(offset))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._queue and not self._polling_released:
            if not await self._wait_change(deadline - loop.time()):
                break
        return [dict(update) for update in self._queue[: max(1, min(limit, 100))]]
