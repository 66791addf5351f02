"""The daily digest's pure parts: the schedule, the sessions covered, the messages."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.digest import (
    EventDigest,
    due_digest_date,
    events_for_digest,
    latest_run_at_or_before,
    next_run_after,
    render_digest,
)
from bot.domain.events import Event
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length
from bot.domain.texts import use_locale

MOSCOW = ZoneInfo("Europe/Moscow")
VLADIVOSTOK = ZoneInfo("Asia/Vladivostok")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


# 2026: New York switches on 8 March and 1 November at 02:00 local; Berlin on 29 March
# (02:00 CET -> 03:00 CEST) and 25 October (03:00 CEST -> 02:00 CET).
NEXT_RUN_CASES = [
    # Moscow, UTC+3 all year
    ("before the slot", utc(2026, 11, 26, 5, 0), time(9), MOSCOW, utc(2026, 11, 26, 6, 0)),
    ("just before", utc(2026, 11, 26, 5, 59, 59, 999999), time(9), MOSCOW, utc(2026, 11, 26, 6)),
    ("exactly at it", utc(2026, 11, 26, 6, 0), time(9), MOSCOW, utc(2026, 11, 27, 6, 0)),
    ("just after", utc(2026, 11, 26, 6, 0, 0, 1), time(9), MOSCOW, utc(2026, 11, 27, 6, 0)),
    ("local midnight slot", utc(2026, 11, 26, 20, 59), time(0), MOSCOW, utc(2026, 11, 26, 21)),
    ("at local midnight", utc(2026, 11, 26, 21, 0), time(0), MOSCOW, utc(2026, 11, 27, 21, 0)),
    ("after UTC midnight", utc(2026, 11, 26, 23, 30), time(2), MOSCOW, utc(2026, 11, 27, 23, 0)),
    ("before UTC midnight", utc(2026, 11, 26, 22, 30), time(2), MOSCOW, utc(2026, 11, 26, 23)),
    ("across the year", utc(2026, 12, 31, 7, 0), time(9), MOSCOW, utc(2027, 1, 1, 6, 0)),
    ("across February", utc(2028, 2, 28, 7, 0), time(9), MOSCOW, utc(2028, 2, 29, 6, 0)),
    # Vladivostok, UTC+10: the local day starts at 14:00 UTC the day before
    ("local next day", utc(2026, 11, 26, 22, 0), time(9), VLADIVOSTOK, utc(2026, 11, 26, 23)),
    ("local evening", utc(2026, 11, 26, 12, 0), time(9), VLADIVOSTOK, utc(2026, 11, 26, 23)),
    ("at it", utc(2026, 11, 26, 23, 0), time(9), VLADIVOSTOK, utc(2026, 11, 27, 23, 0)),
    # New York
    ("winter", utc(2026, 1, 15, 15, 0), time(9), NEW_YORK, utc(2026, 1, 16, 14, 0)),
    ("into summer time", utc(2026, 3, 7, 15, 0), time(9), NEW_YORK, utc(2026, 3, 8, 13, 0)),
    ("out of summer", utc(2026, 10, 31, 14, 0), time(9), NEW_YORK, utc(2026, 11, 1, 14, 0)),
    ("UTC is a day ahead", utc(2026, 11, 26, 1, 30), time(21), NEW_YORK, utc(2026, 11, 26, 2)),
    # Berlin across both switches
    ("into summer time", utc(2026, 3, 28, 9, 0), time(9), BERLIN, utc(2026, 3, 29, 7, 0)),
    ("out of summer", utc(2026, 10, 24, 8, 0), time(9), BERLIN, utc(2026, 10, 25, 8, 0)),
    # 02:30 does not exist on 29 March: the first instant after the gap is 03:00 CEST.
    ("in the gap", utc(2026, 3, 28, 12, 0), time(2, 30), BERLIN, utc(2026, 3, 29, 1, 0)),
    ("after the gap", utc(2026, 3, 29, 1, 0), time(2, 30), BERLIN, utc(2026, 3, 30, 0, 30)),
    # 02:30 happens twice on 25 October: only the first (CEST) one runs.
    ("ambiguous", utc(2026, 10, 24, 12, 0), time(2, 30), BERLIN, utc(2026, 10, 25, 0, 30)),
    ("at the first", utc(2026, 10, 25, 0, 30), time(2, 30), BERLIN, utc(2026, 10, 26, 1, 30)),
    ("between both", utc(2026, 10, 25, 1, 0), time(2, 30), BERLIN, utc(2026, 10, 26, 1, 30)),
    # `now` in the zone itself, on the repeated hour: compared as instants
    (
        "now local fold=1",
        datetime(2026, 10, 25, 2, 15, fold=1, tzinfo=BERLIN),
        time(2, 30),
        BERLIN,
        utc(2026, 10, 26, 1, 30),
    ),
    (
        "now local fold=0",
        datetime(2026, 10, 25, 2, 15, fold=0, tzinfo=BERLIN),
        time(2, 30),
        BERLIN,
        utc(2026, 10, 25, 0, 30),
    ),
]


@pytest.mark.parametrize(
    ("now", "at", "zone", "expected"),
    [case[1:] for case in NEXT_RUN_CASES],
    ids=[f"{case[3].key}: {case[0]}" for case in NEXT_RUN_CASES],
)
def test_next_run_after(now: datetime, at: time, zone: ZoneInfo, expected: datetime) -> None:
    run = next_run_after(now, at, zone)

    assert run.tzinfo is not None
    assert run.astimezone(UTC) == expected
    assert run > now


@pytest.mark.parametrize("zone", [MOSCOW, VLADIVOSTOK, NEW_YORK, BERLIN], ids=str)
@pytest.mark.parametrize("at", [time(0), time(2, 30), time(9), time(23, 59)], ids=str)
def test_next_run_after_runs_once_every_local_day_of_a_year(zone: ZoneInfo, at: time) -> None:
    now = utc(2026, 1, 1)
    runs = []
    while now < utc(2027, 1, 1):
        run = next_run_after(now, at, zone)
        assert run > now
        assert run - now <= timedelta(hours=25)
        assert latest_run_at_or_before(run, at, zone) == run
        runs.append(run)
        now = run

    days = [run.astimezone(zone).date() for run in runs]
    assert days == [days[0] + timedelta(days=n) for n in range(len(days))]
    assert len(days) in (365, 366)
    for run in runs:
        local = run.astimezone(zone)
        wall = datetime.combine(local.date(), at, tzinfo=zone)
        exists = wall.astimezone(UTC).astimezone(zone).time() == at
        assert local.time() == (at if exists else time(3, 0))


def test_next_run_after_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="naive"):
        next_run_after(datetime(2026, 11, 26, 9, 0), time(9), MOSCOW)  # noqa: DTZ001


@pytest.mark.parametrize(
    ("now", "at", "zone", "expected"),
    [
        (utc(2026, 11, 26, 5, 59), time(9), MOSCOW, utc(2026, 11, 25, 6, 0)),
        (utc(2026, 11, 26, 6, 0), time(9), MOSCOW, utc(2026, 11, 26, 6, 0)),
        (utc(2026, 11, 26, 22, 59), time(9), VLADIVOSTOK, utc(2026, 11, 25, 23, 0)),
        (utc(2026, 3, 29, 1, 0), time(2, 30), BERLIN, utc(2026, 3, 29, 1, 0)),
        (utc(2026, 10, 25, 1, 45), time(2, 30), BERLIN, utc(2026, 10, 25, 0, 30)),
    ],
)
def test_latest_run_at_or_before(
    now: datetime, at: time, zone: ZoneInfo, expected: datetime
) -> None:
    assert latest_run_at_or_before(now, at, zone) == expected


DUE_CASES = [
    ("first start before the slot", utc(2026, 11, 26, 5, 59), MOSCOW, None, date(2026, 11, 25)),
    ("first start at the slot", utc(2026, 11, 26, 6, 0), MOSCOW, None, date(2026, 11, 26)),
    ("at the slot", utc(2026, 11, 26, 6, 0), MOSCOW, date(2026, 11, 25), date(2026, 11, 26)),
    ("already sent", utc(2026, 11, 26, 6, 0), MOSCOW, date(2026, 11, 26), None),
    ("later that day", utc(2026, 11, 26, 20, 0), MOSCOW, date(2026, 11, 26), None),
    ("before next slot", utc(2026, 11, 27, 5, 59), MOSCOW, date(2026, 11, 26), None),
    ("next slot", utc(2026, 11, 27, 6, 0), MOSCOW, date(2026, 11, 26), date(2026, 11, 27)),
    ("down at 09:00", utc(2026, 11, 26, 12, 0), MOSCOW, date(2026, 11, 25), date(2026, 11, 26)),
    ("down for days", utc(2026, 11, 26, 5, 0), MOSCOW, date(2026, 11, 22), date(2026, 11, 25)),
    (
        "local day ahead",
        utc(2026, 11, 26, 23, 30),
        VLADIVOSTOK,
        date(2026, 11, 26),
        date(2026, 11, 27),
    ),
    ("local day ahead, sent", utc(2026, 11, 27, 0, 0), VLADIVOSTOK, date(2026, 11, 27), None),
    ("New York evening", utc(2026, 11, 27, 2, 0), NEW_YORK, date(2026, 11, 25), date(2026, 11, 26)),
]


@pytest.mark.parametrize(
    ("now", "zone", "last_date", "expected"),
    [case[1:] for case in DUE_CASES],
    ids=[case[0] for case in DUE_CASES],
)
def test_due_digest_date_at_nine(
    now: datetime, zone: ZoneInfo, last_date: date | None, expected: date | None
) -> None:
    assert due_digest_date(now, time(9), zone, last_date) == expected


@pytest.mark.parametrize(
    ("now", "last_date", "expected"),
    [
        (utc(2026, 3, 29, 0, 59, 59), date(2026, 3, 28), None),  # 01:59:59 CET
        (utc(2026, 3, 29, 1, 0), date(2026, 3, 28), date(2026, 3, 29)),  # 03:00 CEST
        (utc(2026, 10, 25, 0, 29), date(2026, 10, 24), None),
        (utc(2026, 10, 25, 0, 30), date(2026, 10, 24), date(2026, 10, 25)),  # 02:30 CEST
        (utc(2026, 10, 25, 1, 30), date(2026, 10, 25), None),  # 02:30 CET: not again
    ],
)
def test_due_digest_date_at_half_past_two_in_berlin_across_dst(
    now: datetime, last_date: date, expected: date | None
) -> None:
    assert due_digest_date(now, time(2, 30), BERLIN, last_date) == expected


def test_due_digest_date_sends_a_missed_digest_once() -> None:
    sent: list[date] = []
    now = utc(2026, 11, 26, 10, 0)  # back at 13:00, after a night down
    while now < utc(2026, 11, 28):
        day = due_digest_date(now, time(9), MOSCOW, sent[-1] if sent else date(2026, 11, 25))
        if day is not None:
            sent.append(day)
        now += timedelta(minutes=10)

    assert sent == [date(2026, 11, 26), date(2026, 11, 27)]


def make_event(
    event_id: str = "forum",
    *,
    title: str = "Форум «ЭтНик»",
    starts_at: datetime = datetime(2026, 12, 10, 12, 0, tzinfo=MOSCOW),
    deadline: datetime = datetime(2026, 12, 8, 23, 59, tzinfo=MOSCOW),
    zone: ZoneInfo = MOSCOW,
) -> Event:
    return Event(
        id=event_id,
        title=title,
        starts_at=starts_at.astimezone(zone),
        registration_deadline=deadline.astimezone(zone),
        timezone=zone,
        location="Онлайн",
    )


NOW = utc(2026, 11, 26, 6, 0)  # 09:00 in Moscow


@pytest.mark.parametrize(
    ("starts_at", "previous_run", "expected"),
    [
        (NOW + timedelta(days=14), NOW - timedelta(days=1), [False]),
        (NOW + timedelta(seconds=1), NOW - timedelta(days=1), [False]),
        (NOW, NOW - timedelta(days=1), [True]),
        (NOW - timedelta(hours=2), NOW - timedelta(days=1), [True]),
        (NOW - timedelta(days=1), NOW - timedelta(days=1), []),  # final digest already sent
        (NOW - timedelta(days=2), NOW - timedelta(days=1), []),
        (NOW - timedelta(days=3), NOW - timedelta(days=4), [True]),  # bot was down
        (NOW - timedelta(hours=23), None, [True]),
        (NOW - timedelta(hours=25), None, []),
        (NOW + timedelta(days=1), None, [False]),
    ],
)
def test_events_for_digest(
    starts_at: datetime, previous_run: datetime | None, expected: list[bool]
) -> None:
    event = make_event(starts_at=starts_at, deadline=starts_at - timedelta(days=1))

    chosen = events_for_digest([event], NOW, previous_run)

    assert [final for _, final in chosen] == expected
    assert all(chosen_event is event for chosen_event, _ in chosen)


def test_events_for_digest_keeps_file_order() -> None:
    later = make_event("later", starts_at=NOW + timedelta(days=20))
    started = make_event("started", starts_at=NOW - timedelta(hours=1))
    gone = make_event("gone", starts_at=NOW - timedelta(days=5))
    sooner = make_event("sooner", starts_at=NOW + timedelta(days=2))

    chosen = events_for_digest([later, started, gone, sooner], NOW, NOW - timedelta(days=1))

    assert [(event.id, final) for event, final in chosen] == [
        ("later", False),
        ("started", True),
        ("sooner", False),
    ]


def make_digest(event: Event | None = None, **changes: object) -> EventDigest:
    digest = EventDigest(
        event=event or make_event(),
        new=[],
        new_count=0,
        confirmed=12,
        withdrawn=1,
        per_day=[(date(2026, 11, 24), 4), (date(2026, 11, 25), 8)],
        final=False,
    )
    return replace(digest, **changes)  # type: ignore[arg-type]


def test_render_digest_is_nothing_when_no_session_is_covered() -> None:
    assert render_digest(date(2026, 11, 26), [], NOW) == []


def test_render_digest_is_one_line_when_nothing_new() -> None:
    other = make_event("other", title="Семинар <онлайн> & офлайн")
    digests = [make_digest(), make_digest(other, confirmed=3, final=True)]

    messages = render_digest(date(2026, 11, 26), digests, NOW)

    assert messages == [
        "📊 Сводка за 26 ноября 2026: новых регистраций нет. Всего зарегистрированы: "
        "«Форум «ЭтНик»» — 12, «Семинар &lt;онлайн&gt; &amp; офлайн» — 3 "
        "(сессия началась, сводка последняя)."
    ]


def test_render_digest_escapes_a_new_name_and_shows_the_numbers() -> None:
    digest = make_digest(new=[("<b>Иван</b> & Co", "ООО «Ромашка» <i>")], new_count=1)

    (message,) = render_digest(date(2026, 11, 26), [digest], NOW)

    assert message.split("\n") == [
        "📊 <b>Сводка за 26 ноября 2026</b>",
        "",
        "<b>Форум «ЭтНик»</b>",
        "📅 10 декабря 2026, 12:00 (МСК, UTC+3)",
        "🆕 Новых регистраций: 1",
        "1. &lt;b&gt;Иван&lt;/b&gt; &amp; Co — ООО «Ромашка» &lt;i&gt;",
        "👥 Всего зарегистрированы: 12, отменили регистрацию: 1",
        "📈 По дням: 24 ноября — 4, 25 ноября — 8",
        "⏳ До конца регистрации: 12 дней (до 8 декабря 2026, 23:59 (МСК, UTC+3))",
        "🗓 До начала: 14 дней.",
    ]


def test_render_digest_counts_days_on_the_events_calendar() -> None:
    # 26 November 15:00 UTC is already 27 November 01:00 in Vladivostok.
    now = utc(2026, 11, 26, 15, 0)
    event = make_event(
        starts_at=datetime(2026, 11, 29, 10, 0, tzinfo=VLADIVOSTOK),
        deadline=datetime(2026, 11, 28, 10, 0, tzinfo=VLADIVOSTOK),
        zone=VLADIVOSTOK,
    )
    digest = make_digest(event, new=[("Иванов Иван", "НКО")], new_count=1)

    (message,) = render_digest(date(2026, 11, 26), [digest], now)

    assert "📅 29 ноября 2026, 10:00 (МСК+7, UTC+10)" in message
    assert "⏳ До конца регистрации: 1 день (до 28 ноября 2026, 10:00 (МСК+7, UTC+10))" in message
    assert "🗓 До начала: 2 дня." in message


def test_render_digest_marks_the_final_digest_of_a_started_session() -> None:
    event = make_event(starts_at=NOW - timedelta(hours=3), deadline=NOW - timedelta(days=1))
    fresh = make_event(
        "fresh",
        title="Семинар",
        starts_at=NOW + timedelta(hours=5),
        deadline=NOW + timedelta(hours=2),
    )
    digests = [
        make_digest(event, new=[("Петрова Анна", "Фонд")], new_count=1, final=True),
        make_digest(fresh, per_day=[]),
    ]

    (message,) = render_digest(date(2026, 11, 26), digests, NOW)
    started, other = message.split("\n\n")[1:]

    assert "🏁 Сессия началась: это последняя сводка по ней." in started
    assert "⏳ Регистрация закрыта." in started
    assert "До начала" not in started
    assert "🆕 Новых регистраций нет." in other
    assert "По дням" not in other
    assert "⏳ Регистрация закрывается сегодня" in other
    assert "🗓 Начало сегодня." in other


def test_render_digest_splits_a_long_list_without_splitting_lines() -> None:
    new = [
        (f"Константинопольская-Щербакова Анастасия Ивановна {n}", f"ГБУК «Дом культуры № {n}»")
        for n in range(1, 501)
    ]
    digests = [make_digest(new=new, new_count=500), make_digest(make_event("b", title="Семинар"))]

    messages = render_digest(date(2026, 11, 26), digests, NOW, max_names=100)

    assert len(messages) > 1
    assert all(message_length(message) <= MAX_MESSAGE_LENGTH for message in messages)
    lines = [line for message in messages for line in message.split("\n")]
    for n in range(1, 101):
        expected = f"{n}. Константинопольская-Щербакова Анастасия Ивановна {n} — "
        expected += f"ГБУК «Дом культуры № {n}»"
        assert lines.count(expected) == 1
    assert not any(re.match(r"101\. ", line) for line in lines)
    assert lines.count("…и ещё 400") == 1
    assert messages[1].startswith("<b>Форум «ЭтНик»</b> (продолжение)\n")
    assert sum(message.count("<b>Семинар</b>") for message in messages) == 1


def test_render_digest_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="naive"):
        render_digest(date(2026, 11, 26), [make_digest()], datetime(2026, 11, 26))  # noqa: DTZ001


def test_render_digest_in_english_names_the_days_in_english() -> None:
    # ORGANIZER_LANGUAGE=en: the registrations-per-day line too (it named Russian months).
    now = utc(2026, 11, 26, 15, 0)
    digest = make_digest(
        new=[("Ivanov Ivan", "NGO")],
        new_count=1,
        per_day=[(date(2026, 11, 24), 2), (date(2026, 11, 25), 1)],
    )

    with use_locale("en"):
        (message,) = render_digest(date(2026, 11, 26), [digest], now)

    assert "24 November" in message and "25 November" in message
    assert "ноября" not in message
