from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.domain.timefmt import format_date, format_datetime, month_names, zone_label


def at(zone: str, *fields: int) -> datetime:
    return datetime(*fields, tzinfo=ZoneInfo(zone))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at("Europe/Moscow", 2022, 11, 24, 12, 0), "24 ноября 2022, 12:00 (МСК, UTC+3)"),
        (at("Europe/Saratov", 2022, 11, 24, 12, 0), "24 ноября 2022, 12:00 (МСК+1, UTC+4)"),
        (at("Europe/Kaliningrad", 2022, 11, 24, 9, 5), "24 ноября 2022, 09:05 (МСК−1, UTC+2)"),
        (at("Asia/Yekaterinburg", 2022, 11, 24, 14, 0), "24 ноября 2022, 14:00 (МСК+2, UTC+5)"),
        (at("Asia/Vladivostok", 2022, 11, 24, 19, 0), "24 ноября 2022, 19:00 (МСК+7, UTC+10)"),
        (at("Asia/Kamchatka", 2023, 1, 1, 0, 0), "1 января 2023, 00:00 (МСК+9, UTC+12)"),
        (at("Europe/Berlin", 2022, 1, 24, 10, 0), "24 января 2022, 10:00 (Europe/Berlin, UTC+1)"),
        (at("Europe/Berlin", 2022, 7, 24, 11, 0), "24 июля 2022, 11:00 (Europe/Berlin, UTC+2)"),
        (
            at("Asia/Kolkata", 2022, 11, 24, 14, 30),
            "24 ноября 2022, 14:30 (Asia/Kolkata, UTC+5:30)",
        ),
        (
            at("America/St_Johns", 2022, 1, 24, 5, 30),
            "24 января 2022, 05:30 (America/St_Johns, UTC−3:30)",
        ),
        (
            at("America/New_York", 2022, 7, 4, 23, 59),
            "4 июля 2022, 23:59 (America/New_York, UTC−4)",
        ),
        (at("UTC", 2022, 11, 24, 9, 0), "24 ноября 2022, 09:00 (UTC)"),
        (at("Etc/UTC", 2022, 11, 24, 9, 0), "24 ноября 2022, 09:00 (UTC)"),
        (datetime(2022, 11, 24, 9, 0, tzinfo=UTC), "24 ноября 2022, 09:00 (UTC)"),
        (
            datetime(2022, 11, 24, 9, 0, tzinfo=timezone(timedelta(hours=3))),
            "24 ноября 2022, 09:00 (UTC+3)",
        ),
    ],
)
def test_format_datetime_names_zone_when_moment_is_aware(moment: datetime, expected: str) -> None:
    assert format_datetime(moment) == expected


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("Europe/Moscow", "24 ноября 2022, 12:00 (МСК, UTC+3)"),
        ("Europe/Samara", "24 ноября 2022, 13:00 (МСК+1, UTC+4)"),
        ("Europe/Kaliningrad", "24 ноября 2022, 11:00 (МСК−1, UTC+2)"),
        ("Asia/Vladivostok", "24 ноября 2022, 19:00 (МСК+7, UTC+10)"),
        ("Asia/Kolkata", "24 ноября 2022, 14:30 (Asia/Kolkata, UTC+5:30)"),
        ("America/Los_Angeles", "24 ноября 2022, 01:00 (America/Los_Angeles, UTC−8)"),
        ("Pacific/Kiritimati", "24 ноября 2022, 23:00 (Pacific/Kiritimati, UTC+14)"),
        ("UTC", "24 ноября 2022, 09:00 (UTC)"),
    ],
)
def test_format_datetime_converts_into_zone_when_zone_given(zone: str, expected: str) -> None:
    moment = datetime(2022, 11, 24, 9, 0, tzinfo=UTC)

    assert format_datetime(moment, ZoneInfo(zone)) == expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at("Europe/Moscow", 2022, 11, 24, 12, 0), "МСК, UTC+3"),
        (at("Europe/Saratov", 2022, 11, 24, 12, 0), "МСК+1, UTC+4"),
        (at("Europe/Kaliningrad", 2022, 11, 24, 12, 0), "МСК−1, UTC+2"),
        (at("Europe/Berlin", 2022, 12, 1, 12, 0), "Europe/Berlin, UTC+1"),
        (at("Europe/Berlin", 2022, 6, 1, 12, 0), "Europe/Berlin, UTC+2"),
        (datetime(2022, 6, 1, tzinfo=UTC), "UTC"),
    ],
)
def test_zone_label_counts_from_moscow_when_zone_is_russian(
    moment: datetime, expected: str
) -> None:
    assert zone_label(moment) == expected


def test_kaliningrad_label_uses_true_minus_sign() -> None:
    label = zone_label(at("Europe/Kaliningrad", 2022, 11, 24, 12, 0))

    assert "\u2212" in label
    assert "-" not in label


@pytest.mark.parametrize(
    "call",
    [
        lambda: format_datetime(datetime(2022, 11, 24, 12, 0)),  # noqa: DTZ001
        lambda: format_datetime(datetime(2022, 11, 24, 12, 0), ZoneInfo("Europe/Moscow")),  # noqa: DTZ001
        lambda: format_datetime(datetime(2022, 11, 24, 12, 0), ZoneInfo("UTC")),  # noqa: DTZ001
        lambda: zone_label(datetime(2022, 11, 24, 12, 0)),  # noqa: DTZ001
    ],
    ids=["no-zone", "moscow", "utc", "zone-label"],
)
def test_naive_datetime_raises_value_error_when_formatted(call: object) -> None:
    with pytest.raises(ValueError, match="naive"):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("month", "name"),
    list(
        enumerate(
            [
                "января",
                "февраля",
                "марта",
                "апреля",
                "мая",
                "июня",
                "июля",
                "августа",
                "сентября",
                "октября",
                "ноября",
                "декабря",
            ],
            start=1,
        )
    ),
)
def test_format_date_uses_genitive_month_name_for_every_month(month: int, name: str) -> None:
    moment = datetime(2024, month, 9, 12, 0, tzinfo=UTC)

    assert format_date(moment) == f"9 {name} 2024"
    assert month_names("ru")[month - 1] == name
