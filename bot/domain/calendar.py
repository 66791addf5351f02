"""The calendar file a registrant gets (RFC 5545): one VEVENT per session, with a UID that
never changes and a SEQUENCE raised when the session changes, so that a calendar that already
holds the session updates it instead of adding a second one (RFC 5545 §3.8.7.4)."""

from __future__ import annotations

from datetime import UTC, datetime
from html import unescape

from icalendar import Calendar
from icalendar import Event as VEvent

from bot.domain.events import Event
from bot.domain.texts import LOCALE, t

PRODID = "-//event-registration-bot//Calendar file 1.0//RU"
UID_DOMAIN = "event-registration-bot"


def calendar_uid(event_id: str) -> str:
    return f"{event_id}@{UID_DOMAIN}"


def calendar_name(event: Event) -> str:
    return f"{event.id}.ics"


def _plain(text: str) -> str:
    # The catalogue's texts are Telegram HTML with escaped values; a calendar shows plain
    # text, so the escaping is undone (the templates of these keys hold no tags).
    return unescape(text)


def calendar_file(event: Event, *, sequence: int, now: datetime) -> bytes:
    """The session as an .ics file; times in UTC, so no VTIMEZONE is needed.

    Every registrant of a session version gets the same file but for its DTSTAMP (when it
    was made), and icalendar takes about a millisecond to make one: each is made once per
    session version and language, and each copy gets its own DTSTAMP line."""
    key = (
        event.id,
        event.title,
        event.location,
        event.join_url,
        event.contact,
        event.starts_at,
        event.end(),
        sequence,
        LOCALE.get(),
    )
    made = _MADE.get(key)
    if made is None:
        made = _build(event, sequence=sequence, now=_STAMP_MARK)
        if made.count(_STAMP_LINE) != 1:  # the mark must be the DTSTAMP alone
            return _build(event, sequence=sequence, now=now)
        if len(_MADE) >= _MADE_LIMIT:
            _MADE.clear()
        _MADE[key] = made
    stamp = now.astimezone(UTC).strftime("DTSTAMP:%Y%m%dT%H%M%SZ").encode()
    return made.replace(_STAMP_LINE, stamp)


# A DTSTAMP no real file has, replaced in each copy (the line is short: never folded).
_STAMP_MARK = datetime(1901, 1, 1, tzinfo=UTC)
_STAMP_LINE = b"DTSTAMP:19010101T000000Z"
_MADE_LIMIT = 256
_MADE: dict[tuple[object, ...], bytes] = {}


def _build(event: Event, *, sequence: int, now: datetime) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    vevent = VEvent()
    vevent.add("uid", calendar_uid(event.id))
    vevent.add("dtstamp", now.astimezone(UTC))
    vevent.add("sequence", sequence)
    vevent.add("dtstart", event.starts_at.astimezone(UTC))
    vevent.add("dtend", event.end().astimezone(UTC))
    vevent.add("summary", event.title)
    vevent.add("location", event.location)
    if event.join_url:
        vevent.add("url", event.join_url)
    lines = []
    if event.join_url:
        lines.append(_plain(t("calendar_join_url", url=event.join_url)))
    if event.contact:
        lines.append(_plain(t("calendar_contact", contact=event.contact)))
    if lines:
        vevent.add("description", "\n".join(lines))
    calendar.add_component(vevent)
    content: bytes = calendar.to_ical()
    return content
