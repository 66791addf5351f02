"""How long personal data is kept (Federal Law 152-FZ, art. 5 part 7: no longer than its
purpose needs). One definition for what a person is told and for what the bot does."""

from __future__ import annotations

from datetime import datetime, time, timedelta

# RETENTION_DAYS when not set: days after a session ends until its registrations' personal
# data is erased.
DEFAULT_RETENTION_DAYS = 30
# A form nobody has touched for this long is deleted, as is one whose session has closed.
FORM_KEPT_DAYS = 7


def kept_until(session_end: datetime, days: int) -> datetime:
    """`days` days after the session ends, on its calendar (`session_end` is in its zone):
    its registrations' personal data is kept to the end of this day and erased the next.
    With 0, that is the day the session ends."""
    if session_end.tzinfo is None:
        raise ValueError("naive datetime: a session ends in its own zone")
    return session_end + timedelta(days=days)


def erasure_due(session_end: datetime, days: int) -> datetime:
    """From this moment the data must be gone: the start of the day after `kept_until`'s,
    in the session's zone."""
    next_day = kept_until(session_end, days).date() + timedelta(days=1)
    return datetime.combine(next_day, time(0), tzinfo=session_end.tzinfo)
