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
from collections.abc import Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
)
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, Message
from aiolimiter import AsyncLimiter

from bot.domain.clock import Clock
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length
from bot.domain.texts import t
from bot.retry import RETRIES_OFF
from bot.telegram_errors import Blame, blame
from storage.outbox import Outbox, OutboxMessage

logger = logging.getLogger(__name__)


class _Outcome(Enum):
    DELIVERED = "delivered"
    AGAIN = "again"  # flood control waited out: try at once
    SPLIT = "split"  # a packed message was refused: send its rows one by one
    REFUSED = "refused"  # the single row was failed for good
    PARKED = "parked"
    MOVED = "moved"
    BACKOFF = "backoff"


@dataclass(frozen=True, slots=True)
class Limits:
    private_interval: float = 1.0  # seconds between messages to one private chat
    group_interval: float = 3.0  # 20 a minute, evenly: never over 20 in any minute
    overall_per_second: float = 25.0
    backoff_base: float = 1.0  # first retry after a network or server error, seconds
    backoff_max: float = 60.0
    request_timeout: float = 30.0
    rescan_every: float = 5.0
    # Chats being sent to at once. Every chat with a message waiting (10,000 registrants, each
    # reminded) used to get a worker at once: each read its rows in the same moment, holding
    # the event loop for a second, and then all waited on the overall limiter, whose waiters
    # each wake to look again every 1/overall_per_second: a herd that ate the CPU that replies
    # need. Far more than the overall rate can keep busy, far fewer than such a crowd.
    max_workers: int = 64
    maintain_every: float = 3600.0  # delete old rows, forget idle chats, probe parked ones
    keep_sent: float = 86400.0  # delivered rows kept this long for diagnosis
    probe_after: float = 3600.0  # a parked chat is tried again after this long


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

    def idle(self, now: float) -> bool:
        """Nothing in flight and the interval over: forgetting it changes nothing."""
        return not self._lock.locked() and self._next <= now


def pack(rows: Sequence[OutboxMessage]) -> list[OutboxMessage]:
    """The next message to send: consecutive cards combined while they fit in one text
    (a backlog in a group becomes a few long messages, not hours of queue)."""
    batch = [rows[0]]
    if rows[0].kind != "card" or rows[0].reply_markup:
        return batch
    separator = message_length(t("card_separator"))
    length = message_length(rows[0].text)
    for row in rows[1:]:
        added = separator + message_length(row.text)
        if row.kind != "card" or row.reply_markup or length + added > MAX_MESSAGE_LENGTH:
            break
        batch.append(row)
        length += added
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
        # Kept across workers: a chat's next worker still waits its turn. Both maps drop a
        # chat once it is idle (`maintain`), so they hold the chats in use, not all ever.
        self._per_chat: dict[int, Spacing] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._active = 0  # workers not yet done
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._maintain_at: datetime | None = None

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

    @property
    def chats_in_memory(self) -> int:
        """Chats the sender holds state for (for tests: it stays bounded)."""
        return len(self._workers.keys() | self._per_chat.keys())

    async def maintain(self) -> None:
        """The hourly chores: delete rows delivered over a day ago, forget idle chats, and
        probe chats parked for an hour (`_probe`)."""
        now = self._clock()
        deleted = await self._outbox.delete_sent(
            before=now - timedelta(seconds=self.limits.keep_sent)
        )
        if deleted:
            logger.info("Outbox: %d delivered rows deleted", deleted)
        self._forget_idle_chats()
        parked_before = now - timedelta(seconds=self.limits.probe_after)
        for row in await self._outbox.probes(parked_before=parked_before):
            worker = self._workers.get(row.chat_id)
            if worker is None or worker.done():
                self._start_worker(row.chat_id, self._probe(row))

    # --- work ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        while not self._stopping:
            self._outbox.added.clear()
            now = self._clock()
            if self._maintain_at is None or now >= self._maintain_at:
                self._maintain_at = now + timedelta(seconds=self.limits.maintain_every)
                try:
                    await self.maintain()
                except Exception:
                    logger.exception("Outbox maintenance failed; next time in an hour")
            try:
                # The chats being sent to may be among them (max_workers at most): twice as
                # many leaves at least as many others as there are free workers.
                chats = await self._outbox.pending_chats(limit=2 * self.limits.max_workers)
            except Exception:
                logger.exception("Outbox scan failed; retrying")
                chats = []
            for chat_id in chats:
                if self._active >= self.limits.max_workers:
                    break  # a worker that ends triggers the next scan
                worker = self._workers.get(chat_id)
                if worker is None or worker.done():
                    self._start_worker(chat_id, self._drain(chat_id))
            with suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.added.wait(), self.limits.rescan_every)

    def _start_worker(self, chat_id: int, work: Coroutine[Any, Any, None]) -> None:
        worker = asyncio.create_task(work, name=f"outbox-{chat_id}")
        self._active += 1
        # A finished worker triggers a rescan: rows added while it was finishing are
        # never left waiting.
        worker.add_done_callback(self._worker_done)
        self._workers[chat_id] = worker

    def _worker_done(self, _: asyncio.Task[None]) -> None:
        self._active -= 1
        self._outbox.added.set()

    def _forget_idle_chats(self) -> None:
        for chat_id in [chat for chat, task in self._workers.items() if task.done()]:
            del self._workers[chat_id]
        now = asyncio.get_running_loop().time()
        idle = [
            chat_id
            for chat_id, spacing in self._per_chat.items()
            if chat_id not in self._workers and spacing.idle(now)
        ]
        for chat_id in idle:
            del self._per_chat[chat_id]

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
        # Rows up to this id go one by one: a packed message holding them was refused, and
        # only a row refused on its own is failed.
        alone_through = 0
        try:
            while not self._stopping:
                rows = await self._outbox.pending(chat_id)
                if not rows:
                    return
                batch = [rows[0]] if rows[0].id <= alone_through else pack(rows)
                outcome = await self._attempt(chat_id, batch)
                if outcome in (_Outcome.PARKED, _Outcome.MOVED):
                    return
                if outcome is _Outcome.SPLIT:
                    alone_through = batch[-1].id
                elif outcome is _Outcome.BACKOFF:
                    failures += 1
                    delay = self._backoff(failures)
                    logger.warning("Chat %d: retry %d in %.1f s", chat_id, failures, delay)
                    await asyncio.sleep(delay)
                elif outcome is _Outcome.DELIVERED:
                    failures = 0
        except Exception:
            # The worker ends; the supervisor starts a new one at its next scan.
            logger.exception("Chat %d: outbox worker failed", chat_id)
            await asyncio.sleep(self._backoff(1))

    async def _probe(self, row: OutboxMessage) -> None:
        """Send a parked chat's first message again; delivered, the chat is back.

        The message itself is the probe because only sending proves sending works: getChat
        succeeds in a group where the bot may not write, and sendChatAction is not refused
        for every reason a message is (a right to send photos, a closed topic). A failure
        costs one request an hour and leaves the chat parked."""
        RETRIES_OFF.set(True)
        try:
            outcome = await self._attempt(row.chat_id, [row])
            if outcome is _Outcome.DELIVERED:
                requeued = await self._outbox.chat_is_back(row.chat_id)
                logger.info("Chat %d is back; %d waiting messages requeued", row.chat_id, requeued)
        except Exception:
            logger.exception("Chat %d: probe failed", row.chat_id)

    async def _attempt(self, chat_id: int, batch: Sequence[OutboxMessage]) -> _Outcome:
        """Send `batch` as one message and record what became of it."""
        ids = [row.id for row in batch]
        text = t("card_separator").join(row.text for row in batch)
        try:
            async with self._chat_limiter(chat_id), self._overall:
                message = await self._send(chat_id, text, batch[0])
        except TelegramRetryAfter as error:
            self.stats.retry_after += 1
            logger.warning("Chat %d: flood control, waiting %d s", chat_id, error.retry_after)
            await asyncio.sleep(error.retry_after)
            return _Outcome.AGAIN
        except TelegramMigrateToChat as error:
            logger.warning(
                "Chat %d became supergroup %d; following it", chat_id, error.migrate_to_chat_id
            )
            await self._outbox.chat_moved(chat_id, error.migrate_to_chat_id)
            return _Outcome.MOVED
        except (TelegramAPIError, TimeoutError) as error:
            return await self._failed(chat_id, batch, error)
        await self._outbox.mark_sent(ids, message_id=message.message_id, now=self._clock())
        self.stats.sent_messages += 1
        self.stats.delivered_rows += len(ids)
        return _Outcome.DELIVERED

    async def _failed(
        self,
        chat_id: int,
        batch: Sequence[OutboxMessage],
        error: TelegramAPIError | TimeoutError,
    ) -> _Outcome:
        ids = [row.id for row in batch]
        reason = error.message if isinstance(error, TelegramAPIError) else "timeout"
        at_fault = blame(error)
        if at_fault is Blame.CHAT:
            parked = await self._outbox.fail_chat(chat_id, reason=reason, now=self._clock())
            # Logged once: the chat's messages wait, unretried, until it is back.
            logger.warning(
                "Chat %d refuses the bot (%s); %d messages wait until it is back",
                chat_id,
                reason,
                parked,
            )
            return _Outcome.PARKED
        self.stats.errors += 1
        if at_fault is Blame.MESSAGE:
            if len(batch) > 1:
                logger.warning(
                    "Chat %d: packed rows %s refused (%s); sending them one by one",
                    chat_id,
                    ids,
                    reason,
                )
                return _Outcome.SPLIT
            logger.error("Chat %d: outbox row %d refused (%s); given up", chat_id, ids[0], reason)
            await self._outbox.fail_message(ids[0], error=reason, now=self._clock())
            return _Outcome.REFUSED
        log = logger.error if at_fault is Blame.BOT else logger.warning
        log("Chat %d: sending failed (%s: %s)", chat_id, type(error).__name__, reason)
        await self._outbox.count_attempt(ids, error=type(error).__name__)
        return _Outcome.BACKOFF

    async def _send(self, chat_id: int, text: str, first: OutboxMessage) -> Message:
        timeout = int(self.limits.request_timeout) or 1
        media, attachment, reply_markup = first.media, first.attachment, first.reply_markup
        if attachment is not None:
            return await self._bot.send_document(
                chat_id,
                BufferedInputFile(attachment.content, filename=attachment.name),
                caption=text or None,
                request_timeout=timeout,
            )
        if media is None:
            markup = (
                InlineKeyboardMarkup.model_validate_json(reply_markup) if reply_markup else None
            )
            return await self._bot.send_message(
                chat_id, text, reply_markup=markup, request_timeout=timeout
            )
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
