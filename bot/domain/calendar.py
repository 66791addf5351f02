"""The calendar file a registrant gets (RFC 5545): one VEVENT per session, with a UID that
never changes and a SEQUENCE raised when the session changes, so that a calendar that already
holds the session updates it instead of adding a second one (RFC 5545 §3.8.7.4)."""

from __future__ import annotations

from datetime import UTC, datetime
from html import unescape

from icalendar import Calendar
from icalendar import Event as VEvent

from bot.domain.events import Event
from bot.domain.texts import t

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
    """The session as an .ics file; times in UTC, so no VTIMEZONE is needed."""
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
