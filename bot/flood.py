"""Flood control: one person (or one group) cannot take more than their share of the bot.

Decided when an update arrives, before it is written to the inbox: a dropped update costs
one row in handled_updates and nothing else. Windows live in memory only (a restart forgets
them, which errs on the side of the participant).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from aiogram.enums import ChatType
from aiogram.types import Update


@dataclass(frozen=True)
class FloodLimits:
    """Every flood-control number, here and nowhere else (README, "Flood control")."""

    # A person's updates beyond `updates` within `window` seconds are dropped; the first
    # one dropped is answered with a request to slow down.
    updates: int = 20
    window: float = 10.0
    # A group gets a pointer to the private chat for /start at most this often (seconds).
    group_start_every: float = 60.0


class Verdict(Enum):
    PASS = "pass"
    DROP = "drop"
    # Dropped, and the first of this flood: the person is asked to slow down.
    WARN = "warn"


class FloodGate:
    def __init__(
        self,
        limits: FloodLimits,
        exempt: Iterable[int] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._exempt = frozenset(exempt)
        self._clock = clock
        # user id -> arrival times within the window; warned users; last album seen.
        self._arrivals: dict[int, deque[float]] = {}
        self._warned: set[int] = set()
        self._albums: dict[int, str] = {}
        # group chat id -> when its last /start was let through.
        self._group_starts: dict[int, float] = {}
        self._swept = clock()

    def check(self, update: Update) -> Verdict:
        now = self._clock()
        if now - self._swept > self._limits.window:
            self._sweep(now)
        message = update.message
        callback = update.callback_query
        user = message.from_user if message else callback.from_user if callback else None
        if user is None or user.id in self._exempt:
            return Verdict.PASS
        private = message is None or message.chat.type == ChatType.PRIVATE
        if message is not None and not private and _is_start(message.text):
            last = self._group_starts.get(message.chat.id)
            if last is not None and now - last < self._limits.group_start_every:
                return Verdict.DROP
            self._group_starts[message.chat.id] = now
        if message is not None and message.media_group_id is not None:
            # An album arrives as one update per photo: it counts as one message.
            if self._albums.get(user.id) == message.media_group_id:
                return Verdict.DROP if user.id in self._warned else Verdict.PASS
            self._albums[user.id] = message.media_group_id
        arrivals = self._arrivals.setdefault(user.id, deque())
        while arrivals and now - arrivals[0] >= self._limits.window:
            arrivals.popleft()
        if len(arrivals) < self._limits.updates:
            arrivals.append(now)
            self._warned.discard(user.id)
            return Verdict.PASS
        if user.id in self._warned or not private:
            # Never a reply in a group: that would be the bot flooding it.
            return Verdict.DROP
        self._warned.add(user.id)
        return Verdict.WARN

    def __len__(self) -> int:
        """Entries held: bounded by the people active within the last window."""
        return len(self._arrivals) + len(self._albums) + len(self._group_starts)

    def _sweep(self, now: float) -> None:
        window = self._limits.window
        idle = [
            user for user, times in self._arrivals.items() if not times or now - times[-1] >= window
        ]
        for user in idle:
            del self._arrivals[user]
            self._warned.discard(user)
            self._albums.pop(user, None)
        for user in [user for user in self._albums if user not in self._arrivals]:
            del self._albums[user]
        every = self._limits.group_start_every
        for chat in [chat for chat, at in self._group_starts.items() if now - at >= every]:
            del self._group_starts[chat]
        self._swept = now


def _is_start(text: str | None) -> bool:
    if not text:
        return False
    command = text.split(maxsplit=1)[0]
    return command == "/start" or command.startswith("/start@")
