"""Stored times as the session's people read them, worked out once per UTC hour."""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from bot.domain.cells import cells, csv_line
from bot.domain.timefmt import zone_label


def local_time(stored: str, zone: ZoneInfo) -> str:
    """A stored time in the session's zone, zone named: "26.11.2026 12:00 (МСК, UTC+3)"."""
    local = datetime.fromisoformat(stored).astimezone(zone)
    return (
        f"{local.day:02d}.{local.month:02d}.{local.year} {local.hour:02d}:{local.minute:02d} "
        f"({zone_label(local)})"
    )


_UTC_HOUR = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}")


@functools.cache
def _shifted_minutes(shift: int) -> dict[str, tuple[int, str]]:
    """Stored minutes ("07") -> (0 for the local hour the UTC hour starts in, 1 for the next;
    the local minutes), in a zone `shift` minutes past a whole-hour offset (India: 30)."""
    return {
        f"{minute:02d}": ((minute + shift) // 60, f"{(minute + shift) % 60:02d}")
        for minute in range(60)
    }


def _hour_prefix(moment: datetime) -> str:
    return f"{moment.day:02d}.{moment.month:02d}.{moment.year} {moment.hour:02d}:"


_Text = TypeVar("_Text", str, bytes)
_Other = TypeVar("_Other")


# What a UTC hour's times show, worked out once: the local date-and-hour prefixes it starts in
# and ends in (the same but in a zone whose offset is not whole hours), the zone label after
# the time (" (МСК, UTC+3)"), `_shifted_minutes(shift)`, and the shift itself. A plain tuple:
# the hot loop indexes it, and Python indexes an exact tuple fastest.
HourParts = tuple[tuple[_Text, _Text], _Text, dict[str, tuple[int, _Text]], int]


class _PerHour(Generic[_Text, _Other]):
    """Texts of stored times put together from parts worked out once per UTC hour
    (`_hour`); a time in an hour without them, or not as `utc_iso` writes it, goes to
    `_other`. The one hot path of `LocalTimes` and `CsvTimes`."""

    def __init__(self) -> None:
        # UTC hour and colon ("2026-11-26T09:") -> its parts, or None when it has no fast
        # path.
        self._hours: dict[str, HourParts[_Text] | None] = {}

    def __call__(self, stored: str) -> _Text | _Other:
        parts = self._hours.get(stored[:14])
        if parts is not None and stored.endswith("+00:00"):
            minutes = parts[2].get(stored[14:16])
            if minutes is not None:
                return parts[0][minutes[0]] + minutes[1] + parts[1]
        hour = stored[:14]
        if hour not in self._hours and self.parts(hour) is not None:
            return self(stored)
        return self._other(stored)

    def parts(self, hour: str) -> HourParts[_Text] | None:
        """The parts of a UTC hour and colon as stored ("2026-11-26T09:"); None when the
        hour has no fast path."""
        if hour not in self._hours:
            self._hours[hour] = self._hour(hour) if hour[13:] == ":" else None
        return self._hours[hour]

    def _hour(self, hour: str) -> HourParts[_Text] | None:
        raise NotImplementedError

    def _other(self, stored: str) -> _Other:
        raise NotImplementedError


class LocalTimes(_PerHour[str, str]):
    """`local_time` in one zone for many times stored by `utc_iso`, much faster (bench/ANALYSIS.md).

    zoneinfo and `zone_label` cost microseconds a call, and an export shows two times a row.
    Within one UTC hour whose two ends have the same offset (whole minutes) and the same label
    (no zone changes its offset twice within an hour), the local time is one of two local
    dates and hours (one, for a whole-hour offset) plus the stored minutes shifted by the
    offset's odd minutes: worked out once per hour, then a lookup and a concatenation. Any
    other hour, and any time not in `utc_iso` form, goes through `local_time`.
    """

    def __init__(self, zone: ZoneInfo) -> None:
        super().__init__()
        self._zone = zone

    def _other(self, stored: str) -> str:
        return local_time(stored, self._zone)

    def _hour(self, hour: str) -> HourParts[str] | None:
        if not _UTC_HOUR.fullmatch(hour[:13]):
            return None
        utc_start = datetime.fromisoformat(f"{hour}00:00+00:00")
        start = utc_start.astimezone(self._zone)
        end = (utc_start + timedelta(minutes=59, seconds=59)).astimezone(self._zone)
        offset = start.utcoffset()
        label = zone_label(start)
        if offset is None or offset % timedelta(minutes=1) or end.utcoffset() != offset:
            return None
        if zone_label(end) != label:
            return None
        # The UTC hour starts `shift` minutes into a local hour and ends in the next one.
        shift = offset // timedelta(minutes=1) % 60
        first = start.replace(minute=0, second=0, tzinfo=None)
        before = _hour_prefix(first)
        after = _hour_prefix(first + timedelta(hours=1)) if shift else before
        return (before, after), f" ({label})", _shifted_minutes(shift), shift


@functools.cache
def _shifted_minute_bytes(shift: int) -> dict[str, tuple[int, bytes]]:
    """`_shifted_minutes`, the local minutes encoded."""
    return {
        stored: (which, local.encode())
        for stored, (which, local) in _shifted_minutes(shift).items()
    }


def as_cell(text: str) -> bytes | None:
    """`text` as it goes into a CSV line, when it goes as it is (nothing to flatten, quote
    or neutralise), else None."""
    return text.encode() if csv_line(cells([text], for_csv=True)) == text else None


class CsvTimes(_PerHour[bytes, bytes | None]):
    """`LocalTimes` as they go into a CSV line, UTF-8 bytes: the same per-hour parts, encoded
    once. None for a time that would not go into the line as it is (no time we write;
    checked once per hour all the same)."""

    def __init__(self, times: LocalTimes) -> None:
        super().__init__()
        self._times = times

    def _other(self, stored: str) -> bytes | None:
        return as_cell(self._times(stored))

    def _hour(self, hour: str) -> HourParts[bytes] | None:
        parts = self._times.parts(hour)
        if parts is None:
            return None
        (before, after), zone, _, shift = parts
        if any(as_cell(prefix + "00" + zone) is None for prefix in {before, after}):
            return None
        prefixes = (before.encode(), after.encode())
        return prefixes, zone.encode(), _shifted_minute_bytes(shift), shift
