"""The path of an update: flood control, the inbox, then its chat's worker.

Each batch Telegram delivers is written to the inbox in one statement and only then
confirmed (the next getUpdates offset, or the webhook's 200), so Telegram never waits for a
slow chat and `kill -9` loses nothing; webhook requests that come while an inbox write is in
flight share the next one (storage/group_commit.py). Each chat has a worker that handles its
updates one at a time, in order; a chat whose replies wait out a flood limit, or an admin
whose upload crawls, holds up only itself. A handled update's id goes to handled_updates
(ConversationMiddleware), which takes it out of the inbox. An update that fails, or outlasts
HANDLING_LIMIT, is set aside with its reason and the person is told: no update can stop the
bot after every restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiogram import Bot, Dispatcher
from aiogram.dispatcher.middlewares.user_context import UserContextMiddleware
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.strategy import apply_strategy
from aiogram.types import Update

from bot.domain.clock import Clock
from bot.domain.texts import language_of, t
from bot.flood import FloodGate, Verdict
from bot.middlewares import OUTCOME, Outcome
from storage.audit import AuditLog
from storage.fsm import SQLiteStorage
from storage.group_commit import GroupCommit
from storage.inbox import Arrival, Inbox, Waiting
from storage.languages import Languages
from storage.updates import HandledUpdates

if TYPE_CHECKING:  # asyncpg is imported on PostgreSQL only
    from storage.replicas import ChatTurns, Turn

logger = logging.getLogger(__name__)

# Longer than any reply may take: RetryRequests waits out flood limits of up to 30 s, four
# times at most. Exports and uploads run as background jobs, not on the update.
HANDLING_LIMIT = 150.0
# An update in hand when the process died this many times is set aside at the next start.
MAX_ATTEMPTS = 3
# How often handled ids, set-aside updates and audit entries past their keeping time are
# deleted.
PRUNE_EVERY = 3600.0
# Replicas (SharedIntake): how often each looks for chats whose updates wait with no replica
# handling them (the one that received them stopped), and how long such an update must have
# waited.
SWEEP_EVERY = 2.0
STALE_AFTER = 3.0


@dataclass(frozen=True)
class _Part:
    """What one caller of `Intake.accept` brings to an inbox write."""

    kept: list[tuple[int, Update]]  # (lane, update), passed by flood control
    dropped: list[tuple[Update, Verdict]]
    payloads: dict[int, str]  # update id -> its JSON as Telegram sent it, when known


def lane_of(update: Update) -> int:
    """The worker an update goes to: its chat, else its user (inline queries have no chat)."""
    context = UserContextMiddleware.resolve_event_context(update)
    if context.chat is not None:
        return context.chat.id
    if context.user is not None:
        return context.user.id
    return 0


class Intake:
    """Takes batches from the poller; needs the dispatcher built by `bot.app` (its
    ConversationMiddleware marks each update handled)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        bot: Bot,
        *,
        inbox: Inbox,
        handled: HandledUpdates,
        gate: FloodGate,
        clock: Clock,
        limit: float = HANDLING_LIMIT,
        prune_every: float = PRUNE_EVERY,
        audit: AuditLog | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._bot = bot
        self._inbox = inbox
        self._handled = handled
        self._gate = gate
        self._clock = clock
        self._limit = limit
        self._prune_every = prune_every
        self._audit = audit
        # lane -> updates accepted and not yet handled, the one in hand first. A lane's
        # entry lives as long as its worker: an idle chat leaves nothing behind.
        self._lanes: dict[int, deque[Update]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._chores: set[asyncio.Task[None]] = set()
        self._closing = False
        # Concurrent callers of `accept` (webhook requests) share one inbox write.
        self._inbox_write = GroupCommit(self._write_parts, name="inbox-write")

    @property
    def busy_lanes(self) -> int:
        return len(self._lanes)

    async def start(self) -> None:
        """Queue what a previous run left in the inbox, then keep the tables bounded."""
        for row in await self._inbox.waiting():
            try:
                update = Update.model_validate_json(row.payload, context={"bot": self._bot})
            except ValueError as error:
                # Written by another version of aiogram, say: one unreadable row must not
                # stop every start.
                logger.error(
                    "Update %d set aside: unreadable (%s)", row.update_id, type(error).__name__
                )
                await self._inbox.set_aside(row.update_id, "unreadable")
                continue
            if row.attempts >= MAX_ATTEMPTS:
                await self._set_aside(
                    update, row.lane, f"in hand at {row.attempts} stops", apologise=True
                )
            else:
                self._submit(row.lane, update)
        self._chore(self._prune_periodically(), name="prune")

    async def accept(
        self, updates: Sequence[Update], payloads: Sequence[str] | None = None
    ) -> set[int]:
        """Durable when this returns: the batch may be confirmed to Telegram. Returns the ids
        handed to their chats' workers (new to the bot, not dropped). `payloads`: the updates'
        JSON as Telegram sent it, when the caller has it (else each is written again from its
        model, pydantic's model_dump_json: 20-40 µs an update)."""
        kept: list[tuple[int, Update]] = []
        dropped: list[tuple[Update, Verdict]] = []
        for update in updates:
            verdict = self._gate.check(update)
            if verdict is Verdict.PASS:
                kept.append((lane_of(update), update))
            else:
                dropped.append((update, verdict))
        raw = (
            {}
            if payloads is None
            else dict(zip((u.update_id for u in updates), payloads, strict=True))
        )
        return await self._inbox_write(_Part(kept, dropped, raw))

    async def _write_parts(self, parts: list[_Part]) -> list[set[int]]:
        """One inbox write for the callers of `accept` that came while the previous write was
        in flight (webhook mode: one request each). An update id in two parts (Telegram sent
        it again before the first request was answered) is written and handed on once."""
        arrivals: list[Arrival] = []
        dropped: list[int] = []
        seen: set[int] = set()
        for part in parts:
            for lane, update in part.kept:
                if update.update_id not in seen:
                    seen.add(update.update_id)
                    payload = part.payloads.get(update.update_id) or update.model_dump_json(
                        by_alias=True, exclude_unset=True
                    )
                    arrivals.append(Arrival(update.update_id, lane, payload))
            for update, _ in part.dropped:
                if update.update_id not in seen:
                    seen.add(update.update_id)
                    dropped.append(update.update_id)
        fresh = await self._inbox.accept(arrivals, dropped, now=self._clock())
        results: list[set[int]] = []
        handed: list[tuple[int, Update]] = []
        for part in parts:
            mine: set[int] = set()
            for lane, update in part.kept:
                if update.update_id in fresh:
                    fresh.discard(update.update_id)
                    mine.add(update.update_id)
                    handed.append((lane, update))
            results.append(mine)
        # A chat's updates from several requests reach its worker in Telegram's order.
        handed.sort(key=lambda kept: kept[1].update_id)
        for lane, update in handed:
            self._submit(lane, update)
        for part in parts:
            for update, verdict in part.dropped:
                self._answer_dropped(update, verdict)
        return results

    async def close(self) -> None:
        """Let each worker finish the update in hand (the rest wait in the inbox)."""
        self._closing = True
        for task in self._chores:
            if task.get_name() in ("prune", "sweep"):
                task.cancel()
        pending = self._workers | self._chores
        if pending:
            _, late = await asyncio.wait(pending, timeout=self._limit)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def _submit(self, lane: int, update: Update) -> None:
        queue = self._lanes.get(lane)
        if queue is None:
            queue = self._lanes[lane] = deque()
            worker = asyncio.create_task(self._work(lane, queue), name=f"lane-{lane}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.append(update)

    async def _work(self, lane: int, queue: deque[Update]) -> None:
        try:
            while queue and not self._closing:
                await self._handle(lane, queue[0])
                queue.popleft()
        finally:
            if self._lanes.get(lane) is queue:
                del self._lanes[lane]

    async def _handle(self, lane: int, update: Update) -> None:
        outcome = Outcome()
        token = OUTCOME.set(outcome)
        try:
            # In this worker's task (wait_for would make one more task per update). No
            # keyword arguments of its own (aiogram's polling adds the dispatcher and the
            # bots, which no handler takes): each would be copied dozens of times an update.
            async with asyncio.timeout(self._limit):
                await self._dispatcher.feed_update(self._bot, update)
        except TimeoutError:
            reason, apologise = f"not handled within {self._limit:g} s", True
        except Exception as error:
            # Raised below the errors handler (by a middleware): nobody told the person.
            logger.exception("Update %d failed outside the handlers", update.update_id)
            reason, apologise = type(error).__name__, True
        else:
            if outcome.handled:
                return
            # The errors handler has told the person to try again.
            reason, apologise = outcome.failure or "not marked handled", False
        finally:
            OUTCOME.reset(token)
        await self._set_aside(update, lane, reason, apologise=apologise)

    async def _set_aside(self, update: Update, lane: int, reason: str, *, apologise: bool) -> None:
        logger.error("Update %d set aside: %s", update.update_id, reason)
        try:
            await self._inbox.set_aside(update.update_id, reason)
        except Exception as error:
            # It stays in the inbox and is tried again at the next start.
            logger.error("Could not set update %d aside: %s", update.update_id, error)
        if apologise:
            self._chore(self._apologise(update, lane))

    async def _apologise(self, update: Update, lane: int) -> None:
        with suppress(TelegramAPIError):
            if update.callback_query is not None:
                await update.callback_query.answer()
        chat = UserContextMiddleware.resolve_event_context(update).chat
        if chat is not None and chat.type == ChatType.PRIVATE:
            await self._notify(lane, t("update_set_aside"))

    def _answer_dropped(self, update: Update, verdict: Verdict) -> None:
        callback = update.callback_query
        if callback is not None:
            # Answered even when dropped, so the button stops spinning.
            text = t("slow_down_button") if verdict is Verdict.WARN else None
            self._chore(self._quietly(callback.answer(text=text), update.update_id))
        elif verdict is Verdict.WARN and update.message is not None:
            self._chore(self._notify(update.message.chat.id, t("slow_down")))

    async def _notify(self, chat_id: int, text: str) -> None:
        try:
            await self._bot.send_message(chat_id, text)
        except TelegramAPIError as error:
            logger.warning("Could not tell chat %d: %s", chat_id, type(error).__name__)

    async def _quietly(self, call: Awaitable[object], update_id: int) -> None:
        try:
            await call
        except TelegramAPIError as error:
            logger.info("Update %d: answer failed: %s", update_id, type(error).__name__)

    def _chore(self, coroutine: Coroutine[Any, Any, None], name: str = "chore") -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _prune_periodically(self) -> None:
        while True:
            try:
                now = self._clock()
                handled = await self._handled.prune(now=now)
                aside = await self._inbox.prune(now=now)
                if handled or aside:
                    logger.info("Pruned %d handled ids, %d updates set aside", handled, aside)
                if self._audit is not None and (old := await self._audit.prune(now=now)):
                    logger.info("Pruned %d audit entries older than three years", old)
            except Exception as error:
                logger.error("Pruning failed: %s", error)
            await asyncio.sleep(self._prune_every)


class SharedIntake(Intake):
    """The intake of one of several replicas sharing a PostgreSQL inbox (webhook mode behind
    a load balancer, which gives any replica any update).

    An update is acknowledged once it is in the inbox, as in polling mode, so a chat's next
    update may reach another replica while the first is still being handled. What keeps a
    chat's updates one at a time and in order is the chat's turn (storage/replicas.py): a
    replica handles a chat only while it holds the turn, and then handles every update of
    the chat waiting in the inbox, in order, whichever replica received it. A replica that
    finds the turn taken leaves its update to the holder, which looks again each time it
    gives the turn back. A replica that dies loses its turns with its connection; the
    updates it left are found by the others' sweep, and the first waiting update of a chat
    taken up counts an attempt, so an update that kills replicas is set aside after three.
    """

    def __init__(self, *args: Any, turns: ChatTurns, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turns = turns
        # lane -> the updates this replica received and has not handled, parsed already.
        self._received: dict[int, dict[int, Update]] = {}
        # Lanes with an update received since their worker last asked for the turn.
        self._wanted: set[int] = set()
        storage = self._dispatcher.fsm.storage
        self._storage = storage if isinstance(storage, SQLiteStorage) else None
        languages = self._dispatcher.get("languages")
        self._languages = languages if isinstance(languages, Languages) else None

    async def start(self) -> None:
        self._chore(self._sweep_periodically(), name="sweep")
        self._chore(self._prune_periodically(), name="prune")

    def _submit(self, lane: int, update: Update) -> None:
        self._received.setdefault(lane, {})[update.update_id] = update
        self._wanted.add(lane)
        self._start(lane, None)

    def _start(self, lane: int, turn: Turn | None) -> None:
        if lane in self._lanes:
            return  # its worker asks again before it ends
        queue = self._lanes[lane] = deque()
        worker = asyncio.create_task(self._take_turns(lane, queue, turn), name=f"lane-{lane}")
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    def _conversation(self, lane: int) -> str | None:
        """The conversation a private chat's updates belong to (its key in fsm_states),
        read with the chat's turn; None for groups, whose updates each have their own."""
        if self._storage is None or lane <= 0:
            return None
        chat_id, user_id, thread_id = apply_strategy(
            self._dispatcher.fsm.strategy, chat_id=lane, user_id=lane
        )
        return self._storage.key_text(
            StorageKey(bot_id=self._bot.id, chat_id=chat_id, user_id=user_id, thread_id=thread_id)
        )

    def _language(self, lane: int) -> str | None:
        """The language a private chat's person gets at their first message (`Languages.of`),
        from an update of theirs received here, unless this replica knows theirs: the turn's
        request stores it if they have none yet, whichever replica then handles the update
        (one that finds none stored with its turn stores it as `of` does)."""
        if lane <= 0 or self._languages is None or self._languages.knows(lane):
            return None
        for update in self._received.get(lane, {}).values():
            user = UserContextMiddleware.resolve_event_context(update).user
            if user is not None and user.id == lane and not user.is_bot:
                return language_of(user.language_code)
        return None

    async def _take_turns(self, lane: int, queue: deque[Update], turn: Turn | None) -> None:
        conversation = self._conversation(lane)
        try:
            while not self._closing:
                if turn is None:
                    if lane not in self._wanted:
                        break
                    # Cleared before asking: an update received from here on asks again.
                    self._wanted.discard(lane)
                    turn = await self._turns.take(
                        lane,
                        conversation=conversation,
                        received=self._received.get(lane, ()),
                        language=self._language(lane),
                    )
                    # None: another replica has the chat, and will see our updates when it
                    # gives the turn back (storage/replicas.py: ChatTurns).
                    continue
                if lane > 0 and self._languages is not None:
                    # A private chat's person's language, read with the turn after the last
                    # change any replica made to it: their updates' middleware reads none
                    # (a /language or /forget among them updates `Languages` as ever).
                    self._languages.read_just_now(lane, turn.language)
                try:
                    await self._handle_waiting(lane, turn, conversation)
                except BaseException:
                    await self._turns.give_back(lane)
                    raise
                if self._closing:
                    await self._turns.give_back(lane)
                    break
                self._wanted.discard(lane)
                turn = await self._turns.pass_on(
                    lane,
                    conversation=conversation,
                    received=self._received.get(lane, ()),
                    language=self._language(lane),
                )
        except Exception as error:
            # The database did not answer: the updates wait in the inbox, and a sweep (this
            # replica's or another's) takes the chat up again.
            logger.error("Chat %d's turn failed: %s", lane, type(error).__name__)
        finally:
            # What is left was handled by another replica, or waits for it or for a sweep.
            self._received.pop(lane, None)
            self._wanted.discard(lane)
            if self._lanes.get(lane) is queue:
                del self._lanes[lane]

    async def _handle_waiting(self, lane: int, turn: Turn, conversation: str | None) -> None:
        mine = self._received.get(lane, {})
        for index, row in enumerate(turn.waiting):
            if self._closing:
                return
            if not self._turns.still_held(turn.generation):
                # The connection holding the turn was lost (PostgreSQL restarted, say): the
                # turn went with it and another replica may have the chat now. Giving it
                # back (a no-op now) looks again, and takes the chat again if it is free.
                logger.warning("Chat %d's turn was lost with its connection", lane)
                return
            update = mine.pop(row.update_id, None)
            if update is None:
                update = await self._readable(row)
                if update is None:
                    continue
                if index == 0 and row.attempts >= MAX_ATTEMPTS:
                    # Taken up from another replica, which may have stopped with it in hand
                    # (only a chat's first waiting update can have been in hand); the turn
                    # counted the attempt.
                    await self._set_aside(
                        update, lane, f"in hand at {row.attempts} stops", apologise=True
                    )
                    continue
            if index == 0 and conversation is not None and self._storage is not None:
                # Read with the turn: the update starts from it instead of reading it again.
                with self._storage.known(conversation, turn.conversation):
                    await self._handle(lane, update)
            else:
                await self._handle(lane, update)

    async def _readable(self, row: Waiting) -> Update | None:
        try:
            return Update.model_validate_json(row.payload, context={"bot": self._bot})
        except ValueError as error:
            logger.error(
                "Update %d set aside: unreadable (%s)", row.update_id, type(error).__name__
            )
            await self._inbox.set_aside(row.update_id, "unreadable")
            return None

    async def _sweep_periodically(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as error:
                logger.error("Looking for waiting updates failed: %s", type(error).__name__)
            await asyncio.sleep(SWEEP_EVERY)

    async def sweep(self) -> int:
        """Take up the chats whose updates wait with no replica on them; returns how many."""
        received_before = self._clock() - timedelta(seconds=STALE_AFTER)
        taken = 0
        for lane in await self._inbox.stale_lanes(received_before=received_before):
            if lane in self._lanes or self._closing:
                continue
            turn = await self._turns.take(lane, conversation=self._conversation(lane))
            if turn is None:
                continue  # another replica is on it
            if lane in self._lanes:
                # An update of the chat arrived meanwhile: its worker asks for the turn.
                await self._turns.give_back(lane)
                continue
            taken += 1
            self._start(lane, turn)
        return taken
