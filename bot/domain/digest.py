"""The organisers' daily digest: when it runs, which sessions it covers, what it says.

Pure: the worker supplies the clock, the events and the numbers (storage/digests.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.domain.events import Event
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length
from bot.domain.render import retention_rule
from bot.domain.retention import erasure_moment
from bot.domain.sources import sources_line
from bot.domain.texts import LOCALE, Html, t, tn
from bot.domain.timefmt import format_date, format_datetime, month_names

MAX_NAMES = 100
PER_DAY_DAYS = 7
# The digest says when a session's data goes this long before: a week to export it.
ERASURE_NOTICE = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class EventDigest:
    event: Event
    new: list[tuple[str, str]]  # (full name, organisation) in registration order; may be capped
    new_count: int  # all new registrations, also those beyond `new`
    confirmed: int
    withdrawn: int
    # Confirmed registrations per local day in the event's zone: the most recent days
    # that have any, oldest first.
    per_day: list[tuple[date, int]]
    final: bool  # the session has started: its last digest
    # Confirmed registrations per source of the link (None: without one): (source, all, new).
    sources: tuple[tuple[str | None, int, int], ...] = ()
    # The session's seats (issue 13): None when it has no capacity, or the numbers are not
    # known; `waiting`: people on its waiting list, None without one.
    capacity: int | None = None
    seats_left: int | None = None
    waiting: int | None = None


@dataclass(frozen=True, slots=True)
class ErasureNotice:
    """A session whose registrations' personal data is erased from the start of `day`."""

    title: str
    day: date


@dataclass(frozen=True, slots=True)
class UpgradeNotice:
    """Said once, in the first digest after the upgrade that began retention: nothing is
    erased before the start of `day`."""

    day: date
    retention_days: int


def coming_erasures(
    sessions: Iterable[tuple[str, datetime]],
    retention_days: int,
    grace: datetime | None,
    now: datetime,
) -> list[ErasureNotice]:
    """(title, end) of sessions whose data is still held → those whose data goes within
    ERASURE_NOTICE after `now`, soonest first."""
    _aware(now)
    notices = []
    for title, end in sessions:
        moment = erasure_moment(end, retention_days, grace)
        if now < moment <= now + ERASURE_NOTICE:
            # The moment is a midnight in its own zone (the session's, or TIMEZONE for the
            # grace), so its date there is the day the data goes.
            notices.append((moment, ErasureNotice(title, moment.date())))
    return [notice for _, notice in sorted(notices, key=lambda pair: pair[0])]


def _aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("naive datetime: the digest schedule needs an aware `now`")


def _slot(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) of `day`'s run: `at` on the wall clock in `zone`.

    An ambiguous wall time (clocks go back) runs at its first occurrence (fold=0).
    A wall time in a gap (clocks go forward) runs at the first instant after the gap.
    """
    if at.tzinfo is not None:
        raise ValueError("the digest time is a wall-clock time; its zone is `zone`")
    wall = datetime.combine(day, at.replace(fold=0))
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap fold=0 applies the offset from before the transition and fold=1 the one
    # from after, so the transition lies between the two readings; tzdata transitions
    # fall on whole seconds, so a search over seconds finds it exactly.
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    before = math.floor(min(first, second).timestamp())  # wall clock still before the gap
    after = math.ceil(max(first, second).timestamp())  # wall clock already past it
    while after - before > 1:
        middle = (before + after) // 2
        local = datetime.fromtimestamp(middle, UTC).astimezone(zone).replace(tzinfo=None)
        if local >= wall:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def _slots_around(now: datetime, at: time, zone: ZoneInfo) -> list[tuple[date, datetime]]:
    today = now.astimezone(zone).date()
    days = [today + timedelta(days=shift) for shift in range(-2, 3)]
    return [(day, _slot(day, at, zone)) for day in days]


def next_run_after(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first run strictly after `now`, in UTC (so arithmetic on it never goes
    wrong across a DST switch, as same-zone datetime arithmetic would)."""
    _aware(now)
    return next(moment for _, moment in _slots_around(now, at, zone) if moment > now)


def _latest(now: datetime, at: time, zone: ZoneInfo) -> tuple[date, datetime]:
    _aware(now)
    return next(
        (day, moment) for day, moment in reversed(_slots_around(now, at, zone)) if moment <= now
    )


def latest_run_at_or_before(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The most recent run at or before `now`, in UTC."""
    return _latest(now, at, zone)[1]


def due_digest_date(now: datetime, at: time, zone: ZoneInfo, last_date: date | None) -> date | None:
    """The local date whose digest is due and not yet made, or None.

    Only the latest slot counts: a bot down for three days sends one digest when it is
    back, not three.
    """
    day, _ = _latest(now, at, zone)
    return day if last_date is None or day > last_date else None


def events_for_digest(
    events: Iterable[Event], now: datetime, previous_run: datetime | None
) -> list[tuple[Event, bool]]:
    """(event, final) for every event the digest covers: those not started yet, and those
    started since the previous run (within the last day when there was none): final."""
    _aware(now)
    since = previous_run if previous_run is not None else now - timedelta(days=1)
    chosen = []
    for event in events:
        if now < event.starts_at:
            chosen.append((event, False))
        elif since < event.starts_at:
            chosen.append((event, True))
    return chosen


def _short_date(day: date) -> str:
    return f"{day.day} {month_names(LOCALE.get())[day.month - 1]}"


def _day_text(day: date) -> str:
    # format_date reads only the calendar fields; the zone is irrelevant for a date.
    return format_date(datetime.combine(day, time(), tzinfo=UTC))


def _days_between(start: datetime, end: datetime, zone: ZoneInfo) -> int:
    """Calendar days from `start` to `end` on the wall calendar of `zone`."""
    return (end.astimezone(zone).date() - start.astimezone(zone).date()).days


def _seat_texts(digest: EventDigest) -> list[str]:
    texts = []
    if digest.capacity is not None and digest.seats_left is not None:
        texts.append(
            t("digest_seats_left", left=digest.seats_left, capacity=digest.capacity)
            if digest.seats_left > 0
            else t("digest_seats_none", capacity=digest.capacity)
        )
    if digest.waiting is not None and (digest.waiting or texts):
        texts.append(t("digest_waiting", count=digest.waiting))
    return texts


def _seats_suffix(digest: EventDigest) -> str:
    """The seats and the waiting list after a session's total in the one-line digest."""
    seats = _seat_texts(digest)
    return t("digest_total_seats", seats=Html("; ".join(seats))) if seats else ""


def _source_text(digest: EventDigest) -> str | None:
    return sources_line(
        [(source, count) for source, count, _ in digest.sources],
        {source: new for source, _, new in digest.sources},
    )


@dataclass(frozen=True, slots=True)
class _Line:
    text: str
    starts_block: bool = False
    # Repeated at the top of the next message when a block is split there.
    resume: str | None = None


def _event_lines(digest: EventDigest, now: datetime, max_names: int) -> list[_Line]:
    event = digest.event
    zone = event.timezone
    resume = t("digest_event_continued", title=event.title)
    texts = [
        t("digest_event_title", title=event.title),
        t("digest_event_when", when=format_datetime(event.starts_at, zone)),
    ]
    if digest.final:
        texts.append(t("digest_final"))
    if digest.new_count:
        texts.append(t("digest_new_count", count=digest.new_count))
        shown = digest.new[:max_names]
        texts += [
            t("digest_new_line", number=number, full_name=full_name, organization=organization)
            for number, (full_name, organization) in enumerate(shown, start=1)
        ]
        if digest.new_count > len(shown):
            texts.append(t("digest_new_more", count=digest.new_count - len(shown)))
    else:
        texts.append(t("digest_new_none"))
    texts.append(t("digest_totals", confirmed=digest.confirmed, withdrawn=digest.withdrawn))
    texts += _seat_texts(digest)
    if (sources := _source_text(digest)) is not None:
        texts.append(sources)
    if digest.per_day:
        days = Html(
            ", ".join(
                t("digest_per_day_item", date=_short_date(day), count=count)
                for day, count in digest.per_day
            )
        )
        texts.append(t("digest_per_day", days=days))
    deadline = format_datetime(event.registration_deadline, zone)
    if not event.is_open(now):
        texts.append(t("digest_closed"))
    elif (days_left := _days_between(now, event.registration_deadline, zone)) > 0:
        texts.append(tn("digest_deadline_days", days_left, days=days_left, deadline=deadline))
    else:
        texts.append(t("digest_deadline_today", deadline=deadline))
    if now < event.starts_at:
        days_left = _days_between(now, event.starts_at, zone)
        texts.append(
            tn("digest_start_days", days_left, days=days_left)
            if days_left > 0
            else t("digest_start_today")
        )
    return [
        _Line(text, starts_block=index == 0, resume=None if index == 0 else resume)
        for index, text in enumerate(texts)
    ]


def _pack(lines: list[_Line], limit: int) -> list[str]:
    """Join lines into messages of at most `limit` units, never splitting a line."""
    messages: list[str] = []
    parts: list[str] = []
    size = 0
    for line in lines:
        separator = ("\n\n" if line.starts_block else "\n") if parts else ""
        length = message_length(line.text)
        if parts and size + message_length(separator) + length > limit:
            messages.append("".join(parts))
            parts, size, separator = [], 0, ""
            resume = line.resume
            if resume is not None and message_length(resume) + 1 + length <= limit:
                parts, size, separator = [resume], message_length(resume), "\n"
        parts.append(separator + line.text)
        size += message_length(separator) + length
    if parts:
        messages.append("".join(parts))
    return messages


def _date(day: date) -> str:
    return f"{day:%d.%m.%Y}"


def _erasure_lines(erasures: Sequence[ErasureNotice], upgrade: UpgradeNotice | None) -> list[_Line]:
    if not erasures and upgrade is None:
        return []
    title = t("digest_erasure_title")
    resume = t("digest_erasure_continued")
    texts = [title]
    if upgrade is not None:
        texts.append(
            t(
                "digest_erasure_upgrade",
                rule=retention_rule(upgrade.retention_days),
                date=_date(upgrade.day),
            )
        )
    texts += [
        t("digest_erasure_line", title=notice.title, date=_date(notice.day)) for notice in erasures
    ]
    return [
        _Line(text, starts_block=index == 0, resume=None if index == 0 else resume)
        for index, text in enumerate(texts)
    ]


def render_digest(
    day: date,
    digests: list[EventDigest],
    now: datetime,
    *,
    max_names: int = MAX_NAMES,
    erasures: Sequence[ErasureNotice] = (),
    upgrade: UpgradeNotice | None = None,
) -> list[str]:
    """The digest for `day` as HTML messages, each within Telegram's limit; [] when it
    covers no session and announces no erasure. `now` decides the days left, on each
    event's own calendar. Erasures coming within a week (and, once, the upgrade's grace)
    close the digest, so organisers can export the data before it goes."""
    _aware(now)
    notes = _erasure_lines(erasures, upgrade)
    if not digests:
        if not notes:
            return []
        return _pack([_Line(t("digest_header", date=_day_text(day))), *notes], MAX_MESSAGE_LENGTH)
    if not any(digest.new_count for digest in digests):
        totals = Html(
            ", ".join(
                t(
                    "digest_total_item_final" if digest.final else "digest_total_item",
                    title=digest.event.title,
                    confirmed=digest.confirmed,
                )
                + _seats_suffix(digest)
                for digest in digests
            )
        )
        nothing_new = t("digest_nothing_new", date=_day_text(day), totals=totals)
        if not notes:
            return [nothing_new]
        return _pack([_Line(nothing_new), *notes], MAX_MESSAGE_LENGTH)
    lines = [_Line(t("digest_header", date=_day_text(day)), starts_block=True)]
    for digest in digests:
        lines += _event_lines(digest, now, max_names)
    return _pack([*lines, *notes], MAX_MESSAGE_LENGTH)
