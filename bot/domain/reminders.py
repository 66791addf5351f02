"""Reminders before a session, and the notice when a session changes: when each is due, and
what it says. Pure: storage/reminders.py queues them, bot/reminder_worker.py says when."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.events import Event
from bot.domain.render import event_card
from bot.domain.texts import LOCALE, Html, quantity, t
from bot.domain.timefmt import format_datetime

# A reminder not queued within this long after it was due (the bot was down) is skipped:
# "in one hour" read forty minutes before the start misleads more than it helps.
GRACE = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class DueReminder:
    event: Event
    offset: timedelta
    at: datetime  # starts_at - offset


def reminders_of(event: Event) -> list[DueReminder]:
    return [DueReminder(event, offset, event.starts_at - offset) for offset in event.reminders]


def due_reminders(events: Iterable[Event], now: datetime) -> list[DueReminder]:
    """The reminders to queue now: due, less than GRACE ago, and the session not started."""
    return [
        reminder
        for event in events
        if event.in_file
        for reminder in reminders_of(event)
        if reminder.at <= now < min(reminder.at + GRACE, event.starts_at)
    ]


def next_due_after(events: Iterable[Event], now: datetime) -> datetime | None:
    times = [
        reminder.at
        for event in events
        if event.in_file
        for reminder in reminders_of(event)
        if reminder.at > now
    ]
    return min(times, default=None)


def offset_minutes(offset: timedelta) -> int:
    return int(offset.total_seconds() // 60)


def time_left(offset: timedelta) -> str:
    """ "1 день", "2 часа", "30 минут": the largest unit that divides the offset."""
    minutes = offset_minutes(offset)
    if minutes % 1440 == 0:
        return quantity(minutes // 1440, "unit_days")
    if minutes % 60 == 0:
        return quantity(minutes // 60, "unit_hours")
    return quantity(minutes, "unit_minutes")


def reminder_text(event: Event, offset: timedelta) -> str:
    return t("reminder", left=time_left(offset), card=event_card(event, join_url=True))


@dataclass(frozen=True, slots=True)
class SessionVersion:
    """What a registrant's calendar shows of a session."""

    starts_at: datetime
    ends_at: datetime
    location: str
    join_url: str | None

    @classmethod
    def of(cls, event: Event) -> SessionVersion:
        return cls(event.starts_at, event.end(), event.location, event.join_url)


@dataclass(frozen=True, slots=True)
class SessionChange:
    event: Event  # as it is now
    before: SessionVersion
    sequence: int  # the calendar's SEQUENCE from now on

    def changed(self) -> list[str]:
        after = SessionVersion.of(self.event)
        return [
            name
            for name in ("starts_at", "ends_at", "location", "join_url")
            if getattr(self.before, name) != getattr(after, name)
        ]


def change_text(change: SessionChange) -> str:
    """What changed (old → new) and the session as it is now."""
    event, before = change.event, change.before
    zone = event.timezone
    lines = []
    for name in change.changed():
        if name in ("starts_at", "ends_at"):
            old = format_datetime(getattr(before, name), zone)
            new = format_datetime(getattr(SessionVersion.of(event), name), zone)
        else:
            old = getattr(before, name) or t("change_none")
            new = getattr(event, name) or t("change_none")
        lines.append(t(f"change_{name}", old=old, new=new))
    # What changed is compared as the file writes it; the session is shown in the reader's.
    shown = event.localized(LOCALE.get())
    return t(
        "session_changed",
        title=shown.title,
        changes=Html("\n".join(lines)),
        card=event_card(shown, join_url=True),
    )
