"""The events file: one `[[events]]` table per session, checked whole at start-up."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.domain.form import DEFAULT_MAX_LENGTH, FIELDS, Question
from bot.domain.retention import DEFAULT_RETENTION_DAYS
from bot.domain.texts import DEFAULT_LOCALE, LANGUAGES, LOCALE

# Deep-link payloads allow A-Z a-z 0-9 _ - (64 max); callback data is 64 bytes in all,
# so ids stay short enough to sit inside a button's payload.
EVENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
JOIN_URL_PATTERN = re.compile(r"https?://\S+")
# A session without `ends_at` (in the file, or synced before the column existed) is taken to
# last this long: the retention period counts from its end.
DEFAULT_DURATION = timedelta(hours=2)
# How long a waiting-list offer of a freed seat stays open when the file gives no `offer_hours`.
DEFAULT_OFFER_HOURS = 24


class EventsFileError(Exception):
    """A start-up error naming the file, the event and the key."""


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    title: str
    starts_at: datetime  # aware, in `timezone`
    registration_deadline: datetime  # aware, in `timezone`; inclusive
    timezone: ZoneInfo
    location: str
    description: str | None = None
    join_url: str | None = None
    contact: str | None = None
    privacy_policy: str | None = None
    privacy_policy_version: str = ""
    # Aware, in `timezone`, after `starts_at`; None: DEFAULT_DURATION after it (see `end`).
    ends_at: datetime | None = None
    # Who processes the data (152-FZ art. 14: the operator's name and address); the file's
    # `operator`, else its `contact`; None for a session known only from the database.
    operator: str | None = None
    # False for an event gone from the file but kept in the database: closed for good.
    in_file: bool = True
    # Seats and the waiting list (see `_seats`): None is unlimited.
    capacity: int | None = None
    offer_hours: int = DEFAULT_OFFER_HOURS
    # How long before `starts_at` each reminder goes out, longest first (see `reminders`).
    reminders: tuple[timedelta, ...] = ()
    # The texts in the other languages, `("title_en", "...")` pairs (see `localized`), and
    # the version of the consent each language's reader gives ("privacy_policy_version_en").
    translations: tuple[tuple[str, str], ...] = ()

    def localized(self, language: str) -> Event:
        """The event as a reader of `language` sees it: its texts in that language where
        the file gives them, else as written."""
        if language == DEFAULT_LOCALE or not self.translations:
            return self
        return _localized(self, language)

    # The event's own questions (`[[events.questions]]`), asked after the e-mail, in order.
    questions: tuple[Question, ...] = ()

    def is_open(self, now: datetime) -> bool:
        return self.in_file and now <= self.registration_deadline

    def end(self) -> datetime:
        return self.ends_at or self.starts_at + DEFAULT_DURATION


@dataclass(frozen=True, slots=True)
class EventCatalog:
    """The events of the file, in file order, and those gone from it that still have
    registrations (`archived`: shown to their registrants, closed to new ones)."""

    events: tuple[Event, ...]
    archived: tuple[Event, ...] = ()
    # RETENTION_DAYS, set by the one wiring function (bot.app.create_dispatcher), so that every
    # text that states how long the data is kept, the consent's included, can say it.
    retention_days: int = DEFAULT_RETENTION_DAYS

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def get(self, event_id: str) -> Event | None:
        """The event in the current locale's language (`texts.LOCALE`): a participant's in
        their update, the organisers' in work set to their language."""
        event = next((event for event in self.events + self.archived if event.id == event_id), None)
        return None if event is None else event.localized(LOCALE.get())

    def open_events(self, now: datetime) -> list[Event]:
        language = LOCALE.get()
        return [event.localized(language) for event in self.events if event.is_open(now)]

    def contacts(self) -> list[str]:
        return list(dict.fromkeys(event.contact for event in self.events if event.contact))


# --- Seats and the waiting list: `capacity` (no key: unlimited), `offer_hours` ---------------

MAX_CAPACITY = 100_000
MAX_OFFER_HOURS = 24 * 30
_SEAT_KEYS = ("capacity", "offer_hours")


def _whole(raw: dict[str, Any], key: str, low: int, high: int, fail: Any) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    # TOML's booleans are Python ints: `capacity = true` is a mistake, not one seat.
    if isinstance(value, bool) or not isinstance(value, int):
        fail(key, f"must be a whole number from {low} to {high}")
    if not low <= value <= high:
        fail(key, f"is {value}; use a whole number from {low} to {high}")
    number: int = value
    return number


def _seats(raw: dict[str, Any], fail: Any) -> dict[str, Any]:
    """The event's seat keys as Event fields."""
    capacity = _whole(raw, "capacity", 1, MAX_CAPACITY, fail)
    offer_hours = _whole(raw, "offer_hours", 1, MAX_OFFER_HOURS, fail)
    return {
        "capacity": capacity,
        "offer_hours": DEFAULT_OFFER_HOURS if offer_hours is None else offer_hours,
    }


# The texts a file may give in each further language as `<key>_<language>` ("title_en").
TRANSLATED = ("title", "description", "location", "privacy_policy")
_TRANSLATED_KEYS = tuple(
    f"{key}_{language}"
    for language in LANGUAGES
    if language != DEFAULT_LOCALE
    for key in TRANSLATED
)


@lru_cache(maxsize=256)
def _localized(event: Event, language: str) -> Event:
    texts = dict(event.translations)

    def text(key: str) -> str | None:
        value = texts.get(f"{key}_{language}", getattr(event, key))
        return None if value is None else str(value)

    return replace(
        event,
        title=text("title") or event.title,
        description=text("description"),
        location=text("location") or event.location,
        privacy_policy=text("privacy_policy"),
        privacy_policy_version=text("privacy_policy_version") or event.privacy_policy_version,
    )


def _translations(
    raw: dict[str, Any], policy: str | None, version: str, explicit: bool, fail: Any
) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for language in LANGUAGES:
        if language == DEFAULT_LOCALE:
            continue
        for key in TRANSLATED:
            text = _text(raw, f"{key}_{language}", fail, limit_of=key)
            if text is not None:
                pairs.append((f"{key}_{language}", text))
        # Consent is given to the text the person read: a reader of another language reads
        # another text, so their consent names another version.
        translated = _text(raw, f"privacy_policy_{language}", fail, limit_of="privacy_policy")
        if translated is not None and not explicit:
            digest = hashlib.sha256(translated.encode()).hexdigest()[:12]
            pairs.append((f"privacy_policy_version_{language}", f"sha256:{digest}"))
        elif translated is not None or policy is None:
            # The file's own version, or the bot's default policy, which is translated.
            pairs.append((f"privacy_policy_version_{language}", f"{version}+{language}"))
    return tuple(pairs)


_REQUIRED = ("id", "title", "starts_at", "registration_deadline", "location")
_OPTIONAL = (
    "timezone",
    "description",
    "join_url",
    "contact",
    "privacy_policy",
    "privacy_policy_version",
    "ends_at",
    "operator",
    *_SEAT_KEYS,
    "reminders",
    *_TRANSLATED_KEYS,
    "questions",
)


# An event's texts go into Telegram messages of at most 4096 characters: the greeting holds
# title, location, description and contact at once, the consent question the policy, a
# digest the titles of every session. Within these, each such message fits.
MAX_LENGTHS = {
    "title": 200,
    "location": 200,
    "description": 1500,
    "join_url": 500,
    "contact": 200,
    "privacy_policy": 2000,
    "privacy_policy_version": 64,
    "operator": 500,
}


def _text(raw: dict[str, Any], key: str, fail: Any, *, limit_of: str = "") -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        fail(key, "must be a non-empty string")
    text = str(value).strip()
    limit = MAX_LENGTHS.get(limit_of or key)
    if limit is not None and len(text) > limit:
        fail(key, f"is {len(text)} characters long; at most {limit} fit in a message")
    return text


def _local_datetime(raw: dict[str, Any], key: str, zone: ZoneInfo, fail: Any) -> datetime:
    value = raw[key]
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            fail(key, f"{value!r} is not an ISO date-time such as 2022-11-24T12:00")
    if not isinstance(value, datetime):
        fail(key, "must be a local date-time such as 2022-11-24T12:00")
    if value.tzinfo is not None:
        fail(key, "give the local time without an offset; the zone comes from `timezone`")
    moment: datetime = value.replace(tzinfo=zone)
    return moment


def _parse_event(raw: Any, position: int, default_zone: ZoneInfo, file: Path) -> Event:
    label = f"event #{position}"
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        label = f"event {raw['id']!r}"

    def fail(key: str, problem: str) -> None:
        raise EventsFileError(f"{file}: {label}: key {key!r}: {problem}")

    if not isinstance(raw, dict):
        fail("[[events]]", "each entry must be a table")
    for key in _REQUIRED:
        if key not in raw:
            fail(key, "is required")
    for key in raw:
        if key not in _REQUIRED and key not in _OPTIONAL:
            fail(key, f"is not a known key (known: {', '.join(_REQUIRED + _OPTIONAL)})")

    event_id = _text(raw, "id", fail) or ""
    if not EVENT_ID_PATTERN.fullmatch(event_id):
        fail("id", "use 1-32 Latin letters, digits, '_' or '-' (it goes into the deep link)")

    zone = default_zone
    if "timezone" in raw:
        name = _text(raw, "timezone", fail) or ""
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            fail("timezone", f"unknown IANA time zone {name!r}, e.g. Europe/Moscow")

    starts_at = _local_datetime(raw, "starts_at", zone, fail)
    deadline = _local_datetime(raw, "registration_deadline", zone, fail)
    if deadline > starts_at:
        fail("registration_deadline", "is after the session starts")
    ends_at = starts_at + DEFAULT_DURATION
    if "ends_at" in raw:
        ends_at = _local_datetime(raw, "ends_at", zone, fail)
        if ends_at <= starts_at:
            fail("ends_at", "must be after starts_at")

    join_url = _text(raw, "join_url", fail)
    if join_url is not None and not JOIN_URL_PATTERN.fullmatch(join_url):
        fail("join_url", "must be an http(s) URL")

    policy = _text(raw, "privacy_policy", fail)
    version = _text(raw, "privacy_policy_version", fail)
    explicit = version is not None
    if version is None:
        # Consent is given to a specific text: without an explicit version, its hash.
        digest = hashlib.sha256((policy or "").encode()).hexdigest()[:12]
        version = f"sha256:{digest}"

    contact = _text(raw, "contact", fail)
    return Event(
        id=event_id,
        title=_text(raw, "title", fail) or "",
        starts_at=starts_at,
        registration_deadline=deadline,
        timezone=zone,
        location=_text(raw, "location", fail) or "",
        description=_text(raw, "description", fail),
        join_url=join_url,
        contact=contact,
        privacy_policy=policy,
        privacy_policy_version=version,
        ends_at=ends_at,
        operator=_text(raw, "operator", fail) or contact,
        **_seats(raw, fail),
        reminders=_reminders(raw, fail),
        translations=_translations(raw, policy, version, explicit, fail),
        questions=_questions(raw, file, label),
    )


# --- the event's own questions: `[[events.questions]]` -----------------------------------------
QUESTION_ID_PATTERN = re.compile(r"[a-z0-9_]{1,30}")
# Enough for any form; with these limits the longest summary still fits in one message
# (tests/test_questions.py builds one with 20 questions of the longest texts).
MAX_QUESTIONS = 20
MAX_QUESTION_TEXT = 300
MAX_OPTIONS = 10
MAX_OPTION_TEXT = 60
MAX_ANSWER_LENGTH = 1000
_QUESTION_KINDS = ("text", "choice", "yes_no")
_QUESTION_KEYS = (
    "id", "text", "text_en", "kind", "options", "options_en", "required", "max_length",
)  # fmt: skip


def _questions(raw: dict[str, Any], file: Path, label: str) -> tuple[Question, ...]:
    value = raw.get("questions")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_QUESTIONS:
        raise EventsFileError(
            f"{file}: {label}: key 'questions': use up to {MAX_QUESTIONS} [[events.questions]] "
            "tables"
        )
    questions: list[Question] = []
    for position, item in enumerate(value, start=1):
        question = _question(item, position, file, label)
        if any(other.id == question.id for other in questions):
            raise EventsFileError(
                f"{file}: {label}: question {question.id!r}: key 'id': used twice"
            )
        questions.append(question)
    return tuple(questions)


def _question(raw: Any, position: int, file: Path, label: str) -> Question:
    name = f"question #{position}"
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        name = f"question {raw['id']!r}"

    def fail(key: str, problem: str) -> Any:
        raise EventsFileError(f"{file}: {label}: {name}: key {key!r}: {problem}")

    if not isinstance(raw, dict):
        fail("questions", "each entry must be a [[events.questions]] table")
    for key in ("id", "text"):
        if key not in raw:
            fail(key, "is required")
    for key in raw:
        if key not in _QUESTION_KEYS:
            fail(key, f"is not a known key (known: {', '.join(_QUESTION_KEYS)})")

    def text(key: str, limit: int) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            fail(key, "must be a non-empty string")
        # One line: a question's text goes into one line of the summary, and a long summary
        # is cut between lines (bot/domain/limits.py: split_lines).
        flat = " ".join(str(value).split())
        if len(flat) > limit:
            fail(key, f"is {len(flat)} characters long; at most {limit}")
        return flat

    def options(key: str) -> tuple[str, ...]:
        value = raw.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not 2 <= len(value) <= MAX_OPTIONS:
            fail(key, f"must be a list of 2 to {MAX_OPTIONS} texts")
        items = []
        for item in value:
            if not isinstance(item, str) or not item.strip():
                fail(key, "each option must be a non-empty string")
            flat = " ".join(str(item).split())
            if len(flat) > MAX_OPTION_TEXT:
                fail(key, f"{item!r} is longer than {MAX_OPTION_TEXT} characters")
            items.append(flat)
        if len({item.casefold() for item in items}) != len(items):
            fail(key, "has the same option twice")
        return tuple(items)

    question_id = raw["id"]
    if not isinstance(question_id, str) or not QUESTION_ID_PATTERN.fullmatch(question_id):
        fail("id", "use 1-30 lowercase Latin letters, digits or '_'")
    kind = raw.get("kind", "text")
    if kind not in _QUESTION_KINDS:
        fail("kind", f"{kind!r} is not one of {', '.join(_QUESTION_KINDS)}")
    required = raw.get("required", True)
    if not isinstance(required, bool):
        fail("required", "must be true or false")
    found = options("options")
    found_en = options("options_en")
    if kind == "choice" and not found:
        fail("options", 'is required for kind = "choice"')
    if kind != "choice" and (found or found_en):
        fail("options" if found else "options_en", "only a choice question has options")
    if found_en and len(found_en) != len(found):
        fail("options_en", f"has {len(found_en)} options; options has {len(found)}")
    max_length = DEFAULT_MAX_LENGTH
    if "max_length" in raw:
        if kind != "text":
            fail("max_length", "only a text question has a maximum length")
        length = raw["max_length"]
        if isinstance(length, bool) or not isinstance(length, int):
            fail("max_length", f"must be a whole number from 1 to {MAX_ANSWER_LENGTH}")
        if not 1 <= length <= MAX_ANSWER_LENGTH:
            fail("max_length", f"is {length}; use a whole number from 1 to {MAX_ANSWER_LENGTH}")
        max_length = length
    return Question(
        id=question_id,
        text=text("text", MAX_QUESTION_TEXT) or "",
        kind=kind,
        options=found,
        required=required,
        max_length=max_length,
        text_en=text("text_en", MAX_QUESTION_TEXT),
        options_en=found_en,
    )


# --- reminders ---------------------------------------------------------------------------------
# `reminders = ["1d", "1h"]`: how long before the start each registrant is reminded; [] none.
DEFAULT_REMINDERS = (timedelta(days=1), timedelta(hours=1))
_REMINDER = re.compile(r"([1-9][0-9]{0,3})([dhm])")
_REMINDER_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
# A reminder further ahead than this is a typo rather than a reminder.
MAX_REMINDER = timedelta(days=60)


def _reminders(raw: dict[str, Any], fail: Any) -> tuple[timedelta, ...]:
    value = raw.get("reminders")
    if value is None:
        return DEFAULT_REMINDERS
    example = 'e.g. ["1d", "1h"], or [] for none'
    if not isinstance(value, list):
        fail("reminders", f"must be a list of times before the start, {example}")
    offsets: list[timedelta] = []
    for item in value:
        match = _REMINDER.fullmatch(item) if isinstance(item, str) else None
        if match is None:
            fail("reminders", f"{item!r} is not a time such as '1d', '1h' or '30m' ({example})")
            continue
        offset = int(match[1]) * _REMINDER_UNITS[match[2]]
        if offset > MAX_REMINDER:
            fail("reminders", f"{item!r} is more than {MAX_REMINDER.days} days before the start")
        if offset in offsets:
            fail("reminders", f"{item!r} is the same time as another reminder")
        offsets.append(offset)
    return tuple(sorted(offsets, reverse=True))


def parse_events(
    text: str, *, file: Path, default_zone: ZoneInfo, standard: Collection[str] = FIELDS
) -> EventCatalog:
    """The events file; `standard`: the standard questions' ids, which the events' own
    questions may not take (both kinds of answer are stored by id in one table)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise EventsFileError(f"{file}: not valid TOML: {error}") from None
    raw_events = document.get("events")
    if not isinstance(raw_events, list) or not raw_events:
        raise EventsFileError(f"{file}: no [[events]] tables found")
    events: Sequence[Event] = [
        _parse_event(raw, position, default_zone, file)
        for position, raw in enumerate(raw_events, start=1)
    ]
    seen: set[str] = set()
    for event in events:
        if event.id in seen:
            raise EventsFileError(f"{file}: event {event.id!r}: key 'id': used twice")
        seen.add(event.id)
        for question in event.questions:
            if question.id in standard:
                raise EventsFileError(
                    f"{file}: event {event.id!r}: question {question.id!r}: key 'id': a "
                    "standard question of the form has this id; use another"
                )
    return EventCatalog(tuple(events))


def load_events(
    file: Path, *, default_zone: ZoneInfo, standard: Collection[str] = FIELDS
) -> EventCatalog:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EventsFileError(f"{file}: file not found (set EVENTS_FILE or create it)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise EventsFileError(f"{file}: cannot be read: {error}") from None
    return parse_events(text, file=file, default_zone=default_zone, standard=standard)
