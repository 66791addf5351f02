from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.domain.events import Event, EventCatalog, EventsFileError, load_events, parse_events

FILE = Path("conf/events.toml")
MOSCOW = ZoneInfo("Europe/Moscow")
SHIPPED_EVENTS_FILE = Path(__file__).resolve().parent.parent / "events.toml"

REQUIRED = """
id = "{id}"
title = "Сессия"
starts_at = 2022-11-24T12:00:00
registration_deadline = 2022-11-22T23:59:00
location = "Онлайн"
"""


def events_toml(*tables: str) -> str:
    return "".join(f"[[events]]\n{table}\n" for table in tables)


def minimal(event_id: str = "s1", extra: str = "") -> str:
    return REQUIRED.format(id=event_id) + extra


def test_parse_events_builds_aware_events_when_file_is_valid() -> None:
    text = events_toml(
        minimal(
            "etnik-pfo-2022",
            'timezone = "Asia/Yekaterinburg"\n'
            'description = "  Описание  "\n'
            'join_url = "https://example.org/join?x=1"\n'
            'contact = "org@example.ru"\n'
            'privacy_policy = "Условия"\n'
            'privacy_policy_version = "2022-11-18"\n',
        ),
        minimal("second_2"),
    )

    catalog = parse_events(text, file=FILE, default_zone=MOSCOW)

    assert [event.id for event in catalog] == ["etnik-pfo-2022", "second_2"]
    assert len(catalog) == 2
    first, second = catalog.events
    zone = ZoneInfo("Asia/Yekaterinburg")
    assert first == Event(
        id="etnik-pfo-2022",
        title="Сессия",
        starts_at=datetime(2022, 11, 24, 12, 0, tzinfo=zone),
        registration_deadline=datetime(2022, 11, 22, 23, 59, tzinfo=zone),
        timezone=zone,
        location="Онлайн",
        description="Описание",
        join_url="https://example.org/join?x=1",
        contact="org@example.ru",
        privacy_policy="Условия",
        privacy_policy_version="2022-11-18",
        ends_at=datetime(2022, 11, 24, 14, 0, tzinfo=zone),
        operator="org@example.ru",
        reminders=(timedelta(days=1), timedelta(hours=1)),
    )
    assert first.starts_at.utcoffset() == timedelta(hours=5)
    assert second.timezone is MOSCOW
    assert second.starts_at == datetime(2022, 11, 24, 9, 0, tzinfo=UTC)
    assert second.description is None
    assert second.join_url is None
    assert second.contact is None
    assert second.operator is None
    assert catalog.archived == ()


def test_parse_events_reads_ends_at_and_operator_when_given() -> None:
    text = events_toml(
        minimal(
            extra='ends_at = 2022-11-25T18:30:00\ncontact = "org@example.ru"\n'
            'operator = "ООО «Ромашка», 410012, г. Саратов, ул. Московская, 1"\n'
        )
    )

    (event,) = parse_events(text, file=FILE, default_zone=MOSCOW)

    assert event.ends_at == datetime(2022, 11, 25, 18, 30, tzinfo=MOSCOW)
    assert event.end() == event.ends_at
    assert event.operator == "ООО «Ромашка», 410012, г. Саратов, ул. Московская, 1"
    assert event.contact == "org@example.ru"


def test_event_ends_two_hours_after_its_start_when_ends_at_is_unknown() -> None:
    (parsed,) = parse_events(events_toml(minimal()), file=FILE, default_zone=MOSCOW)

    assert parsed.ends_at == datetime(2022, 11, 24, 14, 0, tzinfo=MOSCOW)
    assert replace(parsed, ends_at=None).end() == datetime(2022, 11, 24, 14, 0, tzinfo=MOSCOW)


def test_parse_events_uses_default_zone_when_timezone_omitted() -> None:
    berlin = ZoneInfo("Europe/Berlin")

    (event,) = parse_events(events_toml(minimal()), file=FILE, default_zone=berlin)

    assert event.timezone is berlin
    assert event.starts_at.tzinfo is berlin
    assert event.starts_at.utcoffset() == timedelta(hours=1)


def test_parse_events_accepts_iso_strings_when_datetimes_are_quoted() -> None:
    text = events_toml(
        'id = "s1"\ntitle = "T"\nlocation = "L"\n'
        'starts_at = "2022-11-24T12:00"\nregistration_deadline = "2022-11-24 12:00"\n'
    )

    (event,) = parse_events(text, file=FILE, default_zone=MOSCOW)

    assert event.starts_at == event.registration_deadline
    assert event.starts_at == datetime(2022, 11, 24, 12, 0, tzinfo=MOSCOW)


def policy_version(extra: str) -> str:
    (event,) = parse_events(events_toml(minimal(extra=extra)), file=FILE, default_zone=MOSCOW)
    return event.privacy_policy_version


def test_parse_events_hashes_policy_text_when_version_omitted() -> None:
    version = policy_version('privacy_policy = "Условия обработки"\n')

    assert version.startswith("sha256:")
    assert len(version) == len("sha256:") + 12
    assert version == policy_version('privacy_policy = "  Условия обработки\\n"\n')
    assert version != policy_version('privacy_policy = "Условия обработки, новая редакция"\n')
    assert version != policy_version("")
    assert policy_version("").startswith("sha256:")


def test_parse_events_keeps_explicit_version_when_policy_text_changes() -> None:
    assert policy_version('privacy_policy = "A"\nprivacy_policy_version = "v2"\n') == "v2"
    assert policy_version('privacy_policy = "B"\nprivacy_policy_version = "v2"\n') == "v2"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            events_toml('id = "s1"\ntitle = "T"\nstarts_at = 2022-11-24T12:00:00\n'),
            ["event 's1'", "'registration_deadline'", "is required"],
        ),
        (
            events_toml(minimal(), 'title = "T"\nstarts_at = 2022-11-24T12:00:00\n'),
            ["event #2", "'id'", "is required"],
        ),
        (
            events_toml(minimal(extra='venue = "Зал"\n')),
            ["event 's1'", "'venue'", "not a known key"],
        ),
        (events_toml(minimal("my session")), ["event 'my session'", "'id'", "1-32"]),
        (events_toml(minimal("s" * 33)), [f"event '{'s' * 33}'", "'id'", "1-32"]),
        (events_toml(minimal("сессия")), ["event 'сессия'", "'id'", "Latin"]),
        (events_toml(minimal("a/b")), ["event 'a/b'", "'id'", "Latin"]),
        (
            events_toml(minimal().replace('id = "s1"', "id = 7")),
            ["event #1", "'id'", "non-empty string"],
        ),
        (
            events_toml(minimal(extra='timezone = "Europe/Atlantis"\n')),
            ["event 's1'", "'timezone'", "'Europe/Atlantis'"],
        ),
        (
            events_toml(minimal(extra='timezone = "../etc/passwd"\n')),
            ["event 's1'", "'timezone'", "unknown IANA time zone"],
        ),
        (
            events_toml(minimal(extra='timezone = ""\n')),
            ["event 's1'", "'timezone'", "non-empty string"],
        ),
        (
            events_toml(minimal().replace("2022-11-24T12:00:00", '"24.11.2022 12:00"')),
            ["event 's1'", "'starts_at'", "'24.11.2022 12:00'", "ISO"],
        ),
        (
            events_toml(minimal().replace("2022-11-24T12:00:00", "2022-11-24")),
            ["event 's1'", "'starts_at'", "local date-time"],
        ),
        (
            events_toml(minimal().replace("2022-11-24T12:00:00", "12:00:00")),
            ["event 's1'", "'starts_at'", "local date-time"],
        ),
        (
            events_toml(minimal().replace("2022-11-22T23:59:00", "2022-11-22T23:59:00+03:00")),
            ["event 's1'", "'registration_deadline'", "without an offset"],
        ),
        (
            events_toml(minimal().replace("2022-11-24T12:00:00", '"2022-11-24T12:00Z"')),
            ["event 's1'", "'starts_at'", "without an offset"],
        ),
        (
            events_toml(minimal().replace("2022-11-22T23:59:00", "2022-11-24T12:01:00")),
            ["event 's1'", "'registration_deadline'", "after the session starts"],
        ),
        (
            events_toml(minimal(extra="ends_at = 2022-11-24T12:00:00\n")),
            ["event 's1'", "'ends_at'", "must be after starts_at"],
        ),
        (
            events_toml(minimal(extra="ends_at = 2022-11-23T18:00:00\n")),
            ["event 's1'", "'ends_at'", "must be after starts_at"],
        ),
        (
            events_toml(minimal(extra='ends_at = "вечером"\n')),
            ["event 's1'", "'ends_at'", "'вечером'", "ISO"],
        ),
        (
            events_toml(minimal(extra="ends_at = 2022-11-24T14:00:00+03:00\n")),
            ["event 's1'", "'ends_at'", "without an offset"],
        ),
        (
            events_toml(minimal(extra="ends_at = 14:00:00\n")),
            ["event 's1'", "'ends_at'", "local date-time"],
        ),
        (
            events_toml(minimal(extra='operator = " "\n')),
            ["event 's1'", "'operator'", "non-empty string"],
        ),
        (
            events_toml(minimal(extra="operator = 7\n")),
            ["event 's1'", "'operator'", "non-empty string"],
        ),
        (
            events_toml(minimal(extra=f'operator = "{"О" * 501}"\n')),
            ["event 's1'", "'operator'", "501 characters long", "at most 500"],
        ),
        (
            events_toml(minimal(extra='join_url = "ftp://example.org/x"\n')),
            ["event 's1'", "'join_url'", "http(s) URL"],
        ),
        (
            events_toml(minimal(extra='join_url = "https://example.org/a b"\n')),
            ["event 's1'", "'join_url'", "http(s) URL"],
        ),
        (
            events_toml(minimal(extra='contact = "   "\n')),
            ["event 's1'", "'contact'", "non-empty string"],
        ),
        (
            events_toml(minimal().replace('title = "Сессия"', "title = 1")),
            ["event 's1'", "'title'", "non-empty string"],
        ),
        (
            events_toml(minimal().replace('title = "Сессия"', f'title = "{"Т" * 201}"')),
            ["event 's1'", "'title'", "201 characters long", "at most 200"],
        ),
        (
            events_toml(minimal(extra=f'description = "{"о" * 1501}"\n')),
            ["event 's1'", "'description'", "at most 1500"],
        ),
        (events_toml(minimal("dup"), minimal("dup")), ["event 'dup'", "'id'", "used twice"]),
        ("[[events]\nid = 's1'", ["not valid TOML"]),
        ("[event]\nid = 's1'\n", ["no [[events]] tables"]),
        ("", ["no [[events]] tables"]),
        ("events = []\n", ["no [[events]] tables"]),
        ("events = [1]\n", ["event #1", "each entry must be a table"]),
    ],
)
def test_parse_events_names_file_event_and_key_when_invalid(
    text: str, fragments: list[str]
) -> None:
    with pytest.raises(EventsFileError) as caught:
        parse_events(text, file=FILE, default_zone=MOSCOW)

    message = str(caught.value)
    assert message.startswith(f"{FILE}: ")
    for fragment in fragments:
        assert fragment in message


def test_load_events_reads_file_when_present(tmp_path: Path) -> None:
    file = tmp_path / "events.toml"
    file.write_text(events_toml(minimal("s1")), encoding="utf-8")

    catalog = load_events(file, default_zone=MOSCOW)

    assert [event.id for event in catalog] == ["s1"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "file not found"),
        (b"\xff\xfe not utf-8", "cannot be read"),
        (b"[[events]]\nid = \n", "not valid TOML"),
    ],
)
def test_load_events_names_file_when_unreadable(
    tmp_path: Path, content: bytes | None, fragment: str
) -> None:
    file = tmp_path / "missing.toml"
    if content is not None:
        file.write_bytes(content)

    with pytest.raises(EventsFileError) as caught:
        load_events(file, default_zone=MOSCOW)

    assert str(caught.value).startswith(f"{file}: ")
    assert fragment in str(caught.value)


DEADLINE = datetime(2022, 11, 22, 23, 59, tzinfo=MOSCOW)
EVENT = Event(
    id="s1",
    title="Сессия",
    starts_at=datetime(2022, 11, 24, 12, 0, tzinfo=MOSCOW),
    registration_deadline=DEADLINE,
    timezone=MOSCOW,
    location="Онлайн",
    contact="a@example.ru",
)


@pytest.mark.parametrize(
    ("event", "now", "expected"),
    [
        (EVENT, DEADLINE - timedelta(days=30), True),
        (EVENT, DEADLINE, True),
        (EVENT, DEADLINE.astimezone(UTC), True),
        (EVENT, DEADLINE + timedelta(seconds=1), False),
        (EVENT, datetime(2022, 11, 22, 21, 0, tzinfo=UTC), False),
        (replace(EVENT, in_file=False), DEADLINE - timedelta(days=30), False),
        (replace(EVENT, in_file=False), DEADLINE, False),
    ],
)
def test_event_is_open_until_deadline_inclusive(
    event: Event, now: datetime, expected: bool
) -> None:
    assert event.is_open(now) is expected


LATE = replace(
    EVENT,
    id="s2",
    registration_deadline=DEADLINE + timedelta(days=1),
    contact="b@example.ru",
)
SAME_CONTACT = replace(EVENT, id="s3", registration_deadline=DEADLINE - timedelta(days=1))
NO_CONTACT = replace(EVENT, id="s4", contact=None)
ARCHIVED = replace(EVENT, id="old", in_file=False, contact="archived@example.ru")
CATALOG = EventCatalog((EVENT, LATE, SAME_CONTACT, NO_CONTACT), archived=(ARCHIVED,))


@pytest.mark.parametrize(
    ("event_id", "expected"),
    [("s1", EVENT), ("s2", LATE), ("old", ARCHIVED), ("missing", None), ("", None)],
)
def test_catalog_get_finds_file_and_archived_events(event_id: str, expected: Event | None) -> None:
    assert CATALOG.get(event_id) == expected


@pytest.mark.parametrize(
    ("now", "expected_ids"),
    [
        (DEADLINE - timedelta(days=2), ["s1", "s2", "s3", "s4"]),
        (DEADLINE - timedelta(days=1), ["s1", "s2", "s3", "s4"]),
        (DEADLINE, ["s1", "s2", "s4"]),
        (DEADLINE + timedelta(seconds=1), ["s2"]),
        (DEADLINE + timedelta(days=2), []),
    ],
)
def test_catalog_open_events_keeps_file_order_when_filtering(
    now: datetime, expected_ids: list[str]
) -> None:
    assert [event.id for event in CATALOG.open_events(now)] == expected_ids


def test_catalog_contacts_are_deduplicated_in_file_order() -> None:
    assert CATALOG.contacts() == ["a@example.ru", "b@example.ru"]


def test_shipped_events_file_loads_seed_session() -> None:
    catalog = load_events(SHIPPED_EVENTS_FILE, default_zone=ZoneInfo("UTC"))

    event = catalog.get("etnik-pfo-2022")
    assert event is not None
    assert event.timezone == MOSCOW
    assert event.starts_at == datetime(2022, 11, 24, 12, 0, tzinfo=MOSCOW)
    assert event.starts_at.utcoffset() == timedelta(hours=3)
    assert event.registration_deadline == datetime(2022, 11, 22, 23, 59, tzinfo=MOSCOW)
    assert event.contact == "IlinskayaVV@saratov.gov.ru"
    assert "IlinskayaVV@saratov.gov.ru" in catalog.contacts()
    assert event.privacy_policy
    assert event.privacy_policy_version
    assert event.join_url is None or event.join_url.startswith("https://")
