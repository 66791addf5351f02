"""Fault injection: Telegram's bad days (errors, hangs, storms, garbled answers, slow and held
calls, blocked chats) and its send limits, applied to each call before the model answers it."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.fake_telegram.model import (
    BotAPIError,
    Call,
    DroppedConnection,
    GarbledResponse,
    chat_id_of,
)
from bot.sandbox.fake_telegram.rules import SENDING_METHODS, SendLimits


@dataclass
class Hold:
    method: str
    chat_id: int | None
    reached: asyncio.Event = field(default_factory=asyncio.Event)  # a call is waiting
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Failure:
    method: str | None
    chat_id: int | None
    error: BotAPIError
    remaining: int

    def matches(self, method: str, chat_id: int | None) -> bool:
        # getUpdates is transport, not something the bot under test does: a wildcard failure
        # landing on it would only make the polling loop back off and slow the test down.
        if self.method is None and method == "getUpdates":
            return False
        if self.method is not None and self.method != method:
            return False
        return self.chat_id is None or self.chat_id == chat_id


class Faults:
    """The fault-injection half of FakeTelegram; `method_names` are the Bot API methods the
    model implements, which are the only ones a fault may name."""

    def __init__(self, method_names: Iterable[str]) -> None:
        # Bot API method names are case-insensitive.
        self._method_names = {name.lower(): name for name in method_names}
        self._failures: list[Failure] = []
        self._limits: SendLimits | None = None
        # 429s answered by the limit enforcer (injected failures are not counted).
        self.limit_violations = 0
        self._latency: dict[str, float] = {}
        self._storm_until = 0.0
        self._storm_rng = random.Random(0)
        self._storm_probability = 0.0
        self._storm_max = 2
        self._storm_timeout = 1.5
        self._storm_in_a_row: dict[tuple[str, int | None], int] = {}
        self.storm_faults: Counter[str] = Counter()
        self._hangs: list[list[Any]] = []
        self._holds: list[Hold] = []
        self._blocked: set[int] = set()
        self._garbles: list[list[Any]] = []

    async def before_call(self, call: Call) -> tuple[int, float] | None:
        """Delay, hang, hold or fail `call` as the test asked; else the (chat, time) a send
        counts against the limits once it succeeds (see `after_call`)."""
        if delay := self._latency.get(call.method):
            await asyncio.sleep(delay)
        await self._maybe_hang(call)
        await self._maybe_hold(call)
        await self._storm(call)
        self._inject_faults(call)
        return self._enforce_limits(call)

    def after_call(self, limited: tuple[int, float] | None) -> None:
        if limited is not None and self._limits is not None:
            self._limits.record(*limited)

    def _inject_faults(self, call: Call) -> None:
        chat_id = chat_id_of(call.params)
        for garble in self._garbles:
            if garble[0] == call.method and garble[1] > 0:
                garble[1] -= 1
                call.error_code = 0
                raise GarbledResponse
        for failure in self._failures:
            if failure.matches(call.method, chat_id):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                raise failure.error
        if chat_id is not None and chat_id in self._blocked:
            raise BotAPIError(403, "Forbidden: bot was blocked by the user")

    def _enforce_limits(self, call: Call) -> tuple[int, float] | None:
        """429 if this send breaks a limit; else the (chat, time) to record once it succeeds."""
        chat_id = chat_id_of(call.params)
        if self._limits is None or call.method not in SENDING_METHODS or chat_id is None:
            return None
        now = self._limits.clock()
        wait = self._limits.wait(chat_id, now)
        if wait > 0:
            self.limit_violations += 1
            # Telegram answers whole seconds, at least one.
            retry_after = max(1, math.ceil(wait))
            raise BotAPIError(
                429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after
            )
        return chat_id, now

    def enforce_limits(
        self,
        *,
        private_per_second: float = 1.0,
        group_per_minute: int = 20,
        overall_per_second: int = 30,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """From now on, answer 429 to a sendMessage or sendDocument that breaks Telegram's
        limits: a private chat closer than 1/private_per_second after the previous message
        (after `burst` at once), a group (negative id) over `group_per_minute` in any sliding
        minute, or over `overall_per_second` in any sliding second. Messages refused are not
        counted. `clock` (monotonic seconds) lets the fake's own tests move time."""
        self._limits = SendLimits(
            private_interval=1.0 / private_per_second,
            burst=burst,
            group_per_minute=group_per_minute,
            overall_per_second=overall_per_second,
            clock=clock,
        )

    def fail(
        self,
        method: str | None,
        *,
        code: int,
        description: str,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        chat_id: int | None = None,
        times: int = 1,
    ) -> None:
        if method is not None:
            if method.lower() not in self._method_names:
                msg = f"the fake does not implement {method!r}, so it cannot fail it"
                raise ValueError(msg)
            method = self._method_names[method.lower()]
        error = BotAPIError(
            code, description, retry_after=retry_after, migrate_to_chat_id=migrate_to_chat_id
        )
        self._failures.append(Failure(method, chat_id, error, times))

    def garble(self, method: str, *, times: int = 1) -> None:
        """The next `times` calls of `method` get bytes that are not an HTTP response."""
        self._garbles.append([self._method_names[method.lower()], times])

    def hang(self, method: str, *, chat_id: int | None = None, times: int = 1) -> None:
        """The next matching calls never get an answer and have no effect, like a request
        lost on the way: the client's timeout is all it sees."""
        self._hangs.append([self._method_names[method.lower()], chat_id, times])

    async def _maybe_hang(self, call: Call) -> None:
        chat_id = chat_id_of(call.params)
        for hang in self._hangs:
            if hang[0] == call.method and hang[1] in (None, chat_id) and hang[2] > 0:
                hang[2] -= 1
                call.error_code = 0
                await asyncio.Event().wait()  # until the client gives up and we are cancelled

    def hold(self, method: str, *, chat_id: int | None = None) -> Hold:
        """Matching calls wait until the test releases them, then go on as usual: an
        upload as slow as the test wants it."""
        hold = Hold(self._method_names[method.lower()], chat_id)
        self._holds.append(hold)
        return hold

    async def _maybe_hold(self, call: Call) -> None:
        chat_id = chat_id_of(call.params)
        for hold in self._holds:
            if hold.method == call.method and hold.chat_id in (None, chat_id):
                hold.reached.set()
                await hold.released.wait()

    def storm(
        self,
        *,
        seconds: float,
        probability: float = 0.25,
        seed: int = 0,
        max_in_a_row: int = 2,
        timeout_after: float = 1.5,
    ) -> None:
        """For `seconds`, answer calls at random with 429 (retry_after 1), 500, 502, a
        timeout (no answer for `timeout_after` s, then the connection drops) or a dropped
        connection; none of them has any effect. The same method to the same chat fails
        at most `max_in_a_row` times running: a longer run is an outage, not a storm."""
        self._storm_until = time.monotonic() + seconds
        self._storm_rng = random.Random(seed)
        self._storm_probability = probability
        self._storm_max = max_in_a_row
        self._storm_timeout = timeout_after

    async def _storm(self, call: Call) -> None:
        if time.monotonic() >= self._storm_until:
            return
        key = (call.method, chat_id_of(call.params))
        if (
            self._storm_in_a_row.get(key, 0) >= self._storm_max
            or self._storm_rng.random() >= self._storm_probability
        ):
            self._storm_in_a_row[key] = 0
            return
        self._storm_in_a_row[key] = self._storm_in_a_row.get(key, 0) + 1
        fault = self._storm_rng.choice(("429", "500", "502", "timeout", "drop"))
        self.storm_faults[fault] += 1
        call.error_code = {"429": 429, "500": 500, "502": 502}.get(fault, 0)
        if fault == "429":
            raise BotAPIError(429, "Too Many Requests: retry after 1", retry_after=1)
        if fault in ("500", "502"):
            raise BotAPIError(
                int(fault), "Internal Server Error" if fault == "500" else "Bad Gateway"
            )
        if fault == "timeout":
            await asyncio.sleep(self._storm_timeout)
        raise DroppedConnection

    def slow(self, method: str, seconds: float) -> None:
        """Answer `method` only after `seconds`, like a slow network (0 to stop)."""
        self._latency[self._method_names[method.lower()]] = seconds

    def block(self, chat_id: int) -> None:
        self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self._blocked.discard(chat_id)
