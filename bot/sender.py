"""The outbox sender: delivers queued messages in order per chat, within Telegram's limits.

Delivery is at least once: a row is marked sent after Telegram accepted it, so only a kill
between Telegram's answer and that mark can send it twice (at most one message per chat
per kill). Limits (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this):
about one message a second per chat, 20 a minute in a group, 30 a second overall. The
sender stays under 25 a second so that replies to participants keep the rest.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
)
from aiogram.types import Message
from aiolimiter import AsyncLimiter

from bot.clock import Clock
from bot.retry import RETRIES_OFF
from bot.texts import t
from storage.outbox import Media, Outbox, OutboxMessage

logger = logging.getLogger(__name__)

MAX_TEXT = 4096


@dataclass(frozen=True, slots=True)
class Limits:
    private_interval: float = 1.0  # seconds between messages to one private chat
    group_interval: float = 3.0  # 20 a minute, evenly: never over 20 in any minute
    overall_per_second: float = 25.0
    backoff_base: float = 1.0  # first retry after a network or server error, seconds
    backoff_max: float = 60.0
    request_timeout: float = 30.0
    rescan_every: float = 5.0


@dataclass(slots=True)
class SenderStats:
    sent_messages: int = 0
    delivered_rows: int = 0
    retry_after: int = 0
    errors: int = 0


class Spacing:
    """At least `interval` seconds from Telegram's answer to the next request to a chat.

    A leaky bucket spaces the *starts* of requests, but Telegram counts *arrivals*, and
    network jitter of a few milliseconds then reads as a message too soon (a 429 costs a
    whole second). Counting from the answer keeps every arrival gap at or above the
    interval, for the price of one round trip per message.
    """

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        delay = self._next - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def __aexit__(self, *exc_info: object) -> None:
        self._next = asyncio.get_running_loop().time() + self._interval
        self._lock.release()


def pack(rows: Sequence[OutboxMessage]) -> list[OutboxMessage]:
    """The next message to send: consecutive cards combined while they fit in one text
    (a backlog in a group becomes a few long messages, not hours of queue)."""
    batch = [rows[0]]
    if rows[0].kind != "card":
        return batch
    separator = len(t("card_separator"))
    length = len(rows[0].text)
    for row in rows[1:]:
        if row.kind != "card" or length + separator + len(row.text) > MAX_TEXT:
            break
        batch.append(row)
        length += separator + len(row.text)
    return batch


class Sender:
    def __init__(
        self, bot: Bot, outbox: Outbox, clock: Clock, limits: Limits | None = None
    ) -> None:
        self._bot = bot
        self._outbox = outbox
        self._clock = clock
        self.limits = limits or Limits()
        self.stats = SenderStats()
        self._overall = AsyncLimiter(1, 1 / self.limits.overall_per_second)
        # Kept across workers: a chat's next worker still waits its turn.
        self._per_chat: dict[int, Spacing] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle (the dispatcher's startup and shutdown hooks) ---------------------------

    async def start(self) -> None:
        self._stopping = False
        self._supervisor = asyncio.create_task(self._supervise(), name="outbox-sender")

    async def stop(self, *, grace: float = 10.0) -> None:
        """Let each chat finish the message in flight, then stop."""
        self._stopping = True
        self._outbox.added.set()
        tasks = [task for task in (self._supervisor, *self._workers.values()) if task]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with suppress(asyncio.CancelledError):
                await task

    async def idle(self) -> None:
        """Wait until nothing is pending or in flight (for tests and benchmarks)."""
        # Polling is fine here: it is a test and benchmark helper, not a production path.
        while await self._outbox.pending_chats() or any(  # noqa: ASYNC110
            not task.done() for task in self._workers.values()
        ):
            await asyncio.sleep(0.01)

    # --- work ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        while not self._stopping:
            self._outbox.added.clear()
            try:
                chats = await self._outbox.pending_chats()
            except Exception:
                logger.exception("Outbox scan failed; retrying")
                chats = []
            for chat_id in chats:
                worker = self._workers.get(chat_id)
                if worker is None or worker.done():
                    worker = asyncio.create_task(self._drain(chat_id), name=f"outbox-{chat_id}")
                    # A finished worker triggers a rescan: rows added while it was
                    # finishing are never left waiting.
                    worker.add_done_callback(lambda _: self._outbox.added.set())
                    self._workers[chat_id] = worker
            with suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.added.wait(), self.limits.rescan_every)

    def _chat_limiter(self, chat_id: int) -> Spacing:
        limiter = self._per_chat.get(chat_id)
        if limiter is None:
            # Group and channel ids are negative.
            interval = self.limits.group_interval if chat_id < 0 else self.limits.private_interval
            limiter = self._per_chat[chat_id] = Spacing(interval)
        return limiter

    async def _drain(self, chat_id: int) -> None:
        RETRIES_OFF.set(True)  # this worker's own task: 429s and errors are handled here
        failures = 0
        try:
            while not self._stopping:
                rows = await self._outbox.pending(chat_id)
                if not rows:
                    return
                batch = pack(rows)
                ids = [row.id for row in batch]
                text = t("card_separator").join(row.text for row in batch)
                try:
                    async with self._chat_limiter(chat_id), self._overall:
                        message = await self._send(chat_id, text, batch[0].media)
                except TelegramRetryAfter as error:
                    self.stats.retry_after += 1
                    logger.warning(
                        "Chat %d: flood control, waiting %d s", chat_id, error.retry_after
                    )
                    await asyncio.sleep(error.retry_after)
                    continue
                except TelegramMigrateToChat as error:
                    logger.warning(
                        "Chat %d became supergroup %d; following it",
                        chat_id,
                        error.migrate_to_chat_id,
                    )
                    await self._outbox.chat_moved(chat_id, error.migrate_to_chat_id)
                    return
                except (TelegramForbiddenError, TelegramNotFound) as error:
                    await self._unreachable(chat_id, error)
                    return
                except TelegramBadRequest as error:
                    if "chat not found" in error.message.lower():
                        await self._unreachable(chat_id, error)
                        return
                    # Telegram refuses this text itself: retrying cannot help.
                    self.stats.errors += 1
                    logger.error(
                        "Chat %d: outbox rows %s refused (%s); skipped", chat_id, ids, error
                    )
                    await self._outbox.fail_messages(ids, error=error.message)
                    continue
                except (TelegramNetworkError, TelegramAPIError, TimeoutError) as error:
                    failures += 1
                    self.stats.errors += 1
                    delay = self._backoff(failures)
                    logger.warning(
                        "Chat %d: sending failed (%s: %s); retry %d in %.1f s",
                        chat_id,
                        type(error).__name__,
                        error,
                        failures,
                        delay,
                    )
                    await self._outbox.count_attempt(ids, error=f"{type(error).__name__}")
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                await self._outbox.mark_sent(ids, message_id=message.message_id, now=self._clock())
                self.stats.sent_messages += 1
                self.stats.delivered_rows += len(ids)
        except Exception:
            # The worker ends; the supervisor starts a new one at its next scan.
            logger.exception("Chat %d: outbox worker failed", chat_id)
            await asyncio.sleep(self._backoff(1))

    async def _send(self, chat_id: int, text: str, media: Media | None) -> Message:
        timeout = int(self.limits.request_timeout) or 1
        if media is None:
            return await self._bot.send_message(chat_id, text, request_timeout=timeout)
        caption = text or None
        if media.kind == "photo":
            return await self._bot.send_photo(
                chat_id, media.file_id, caption=caption, request_timeout=timeout
            )
        return await self._bot.send_document(
            chat_id, media.file_id, caption=caption, request_timeout=timeout
        )

    def _backoff(self, failures: int) -> float:
        delay: float = min(
            self.limits.backoff_max, self.limits.backoff_base * 2.0 ** (failures - 1)
        )
        return delay * random.uniform(0.5, 1.5)  # jitter: retries from many chats spread out

    async def _unreachable(self, chat_id: int, error: TelegramAPIError) -> None:
        parked = await self._outbox.fail_chat(chat_id, reason=error.message, now=self._clock())
        # Logged once: the chat's messages wait, unretried, until the bot is added back.
        logger.warning(
            "Chat %d is unreachable (%s); %d messages wait until the bot is back",
            chat_id,
            error.message,
            parked,
        )
