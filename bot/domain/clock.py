from collections.abc import Callable
from datetime import UTC, datetime

# Handlers get the time from here (a Dispatcher keyword argument), so tests can move it.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
