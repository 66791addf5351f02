"""Times for people: "24 ноября 2022, 12:00 (МСК, UTC+3)", in English "24 November 2022,
12:00 (MSK, UTC+3)", in the current locale (`texts.LOCALE`). Aware datetimes only."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from babel.dates import get_month_names

from bot.domain.texts import LOCALE


@cache
def month_names(locale: str) -> tuple[str, ...]:
    """The months as a date names them in `locale` (CLDR's format context: Russian's genitive
    «24 ноября»), so a new language brings its own without a list here."""
    return tuple(get_month_names("wide", "format", locale).values())


# Moscow time's abbreviation, as a reader of each language knows it (others read "MSK").
MOSCOW_ABBREVIATION = {"ru": "МСК", "en": "MSK"}

# Russia names its zones relative to Moscow ("МСК+2"); zoneinfo knows no countries,
# so the Russian IANA zones are listed (zone1970.tab, country RU).
RUSSIAN_ZONES = frozenset(
    {
        "Europe/Kaliningrad",
        "Europe/Moscow",
        "Europe/Simferopol",
        "Europe/Kirov",
        "Europe/Volgograd",
        "Europe/Astrakhan",
        "Europe/Saratov",
        "Europe/Ulyanovsk",
        "Europe/Samara",
        "Asia/Yekaterinburg",
        "Asia/Omsk",
        "Asia/Novosibirsk",
        "Asia/Barnaul",
        "Asia/Tomsk",
        "Asia/Novokuznetsk",
        "Asia/Krasnoyarsk",
        "Asia/Irkutsk",
        "Asia/Chita",
        "Asia/Yakutsk",
        "Asia/Khandyga",
        "Asia/Vladivostok",
        "Asia/Ust-Nera",
        "Asia/Magadan",
        "Asia/Sakhalin",
        "Asia/Srednekolymsk",
        "Asia/Kamchatka",
        "Asia/Anadyr",
    }
)
MOSCOW = ZoneInfo("Europe/Moscow")


def _offset(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "−"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours}" + (f":{rest:02d}" if rest else "")


def zone_label(moment: datetime) -> str:
    """ "МСК, UTC+3", "МСК+1, UTC+4", or "Europe/Berlin, UTC+1" for a zone abroad."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every time shown to a person must name its zone")
    utc_offset = moment.utcoffset() or timedelta(0)
    utc = "UTC" + ("" if not utc_offset else _offset(utc_offset))
    name = getattr(moment.tzinfo, "key", None)
    if name in RUSSIAN_ZONES:
        from_moscow = utc_offset - (moment.astimezone(MOSCOW).utcoffset() or timedelta(0))
        abbreviation = MOSCOW_ABBREVIATION.get(LOCALE.get(), "MSK")
        msk = abbreviation + ("" if not from_moscow else _offset(from_moscow))
        return f"{msk}, {utc}"
    if not name or name in ("UTC", "Etc/UTC"):
        return utc
    return f"{name}, {utc}"


def format_date(moment: datetime) -> str:
    months = month_names(LOCALE.get())
    return f"{moment.day} {months[moment.month - 1]} {moment.year}"


def format_datetime(moment: datetime, zone: ZoneInfo | None = None) -> str:
    """In `zone` when given (an event's), else in the moment's own zone."""
    # Checked before astimezone(), which would read a naive moment as the server's local time.
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every time shown to a person must name its zone")
    local = moment.astimezone(zone) if zone else moment
    return f"{format_date(local)}, {local:%H:%M} ({zone_label(local)})"
