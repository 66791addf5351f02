"""How long personal data is kept: the day shown to a person and the moment it must be gone."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.domain.events import parse_events
from bot.domain.render import privacy_policy, retention_rule
from bot.domain.retention import erasure_due, kept_until
from tests.helpers import EVENTS_TOML, MOSCOW

VLADIVOSTOK = ZoneInfo("Asia/Vladivostok")


@pytest.mark.parametrize(
    ("end", "days", "last", "due"),
    [
        (
            datetime(2026, 12, 10, 14, 0, tzinfo=MOSCOW),
            30,
            datetime(2027, 1, 9, 14, 0, tzinfo=MOSCOW),
            datetime(2027, 1, 10, 0, 0, tzinfo=MOSCOW),
        ),
        # 0: kept the day the session ends, gone from the next.
        (
            datetime(2026, 12, 10, 23, 30, tzinfo=MOSCOW),
            0,
            datetime(2026, 12, 10, 23, 30, tzinfo=MOSCOW),
            datetime(2026, 12, 11, 0, 0, tzinfo=MOSCOW),
        ),
        # On the session's calendar: in Vladivostok the day ends seven hours before Moscow's.
        (
            datetime(2026, 12, 10, 20, 0, tzinfo=VLADIVOSTOK),
            1,
            datetime(2026, 12, 11, 20, 0, tzinfo=VLADIVOSTOK),
            datetime(2026, 12, 12, 0, 0, tzinfo=VLADIVOSTOK),
        ),
    ],
)
def test_data_is_kept_to_the_end_of_the_day_retention_days_after_the_session(
    end: datetime, days: int, last: datetime, due: datetime
) -> None:
    assert kept_until(end, days) == last
    assert erasure_due(end, days) == due
    assert erasure_due(end, days).tzinfo is end.tzinfo


def test_erasure_due_is_a_moment_comparable_with_utc_now() -> None:
    due = erasure_due(datetime(2026, 12, 10, 20, 0, tzinfo=VLADIVOSTOK), 0)
    assert due.astimezone(UTC) == datetime(2026, 12, 10, 14, 0, tzinfo=UTC)


def test_kept_until_refuses_a_naive_end() -> None:
    with pytest.raises(ValueError, match="naive"):
        kept_until(datetime(2026, 12, 10, 14, 0), 30)  # noqa: DTZ001


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (0, "на следующий день после окончания мероприятия"),
        (1, "через 1 день после окончания мероприятия"),
        (2, "через 2 дня после окончания мероприятия"),
        (30, "через 30 дней после окончания мероприятия"),
        (365, "через 365 дней после окончания мероприятия"),
    ],
)
def test_retention_rule_in_words(days: int, expected: str) -> None:
    assert retention_rule(days) == expected


def test_an_events_own_policy_is_shown_as_written_and_the_default_states_the_period() -> None:
    (event,) = parse_events(EVENTS_TOML, file=Path("events.toml"), default_zone=MOSCOW)
    assert privacy_policy(event, 0) == "Данные обрабатываются по 152-ФЗ."
    default = privacy_policy(replace(event, privacy_policy=None), 7)
    assert "Данные регистрации удаляются автоматически через 7 дней после окончания" in default
