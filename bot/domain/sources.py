"""Where people came from: the source in a session's link, and its counts as shown.

`https://t.me/<bot>?start=<event id>--<source>` opens the session and stores the source with the
registration (one link per channel or post: `forum-2026--vk`, `forum-2026--tg_channel`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bot.domain.events import Event, EventCatalog
from bot.domain.texts import Html, t

# Telegram's deep-link payload: A-Z a-z 0-9 _ - and at most 64 characters. With event ids of
# at most 32 (bot.domain.events.EVENT_ID_PATTERN), "--" and a source of at most 30 always fit.
SOURCE_PATTERN: Final = re.compile(r"[A-Za-z0-9_]{1,30}")
SEPARATOR: Final = "--"
MAX_PAYLOAD: Final = 64
# Sources named in /stats and the digest; anyone can make up a source, so the rest are summed.
SHOWN_SOURCES: Final = 10


@dataclass(frozen=True, slots=True)
class StartLink:
    """What a /start payload names: the session (None: none known) and the source, when the
    link carried a well-formed one."""

    event: Event | None
    source: str | None = None


def valid_source(source: str | None) -> str | None:
    """`source` when it has a source's shape, else None (a malformed source is ignored)."""
    if source is not None and SOURCE_PATTERN.fullmatch(source):
        return source
    return None


def parse_start_payload(payload: str, catalog: EventCatalog) -> StartLink:
    """The session and source of `/start <payload>`.

    A session's own id comes first (ids may contain "-", even "--"). Otherwise the payload is
    split at its last "--", and only when the left part is a known session: that session,
    with the right part as its source if it is well formed. (A malformed one, or one too long
    for a link, typed by hand, is dropped: the session still opens.)
    """
    payload = payload.strip()
    event = catalog.get(payload)
    if event is not None:
        return StartLink(event)
    left, separator, right = payload.rpartition(SEPARATOR)
    if not separator:
        return StartLink(None)
    event = catalog.get(left)
    if event is None:
        return StartLink(None)
    return StartLink(event, valid_source(right))


# (source, or None for registrations without one; how many), in any order.
SourceCounts = Sequence[tuple[str | None, int]]


def sources_line(counts: SourceCounts, new: dict[str | None, int] | None = None) -> str | None:
    """The line "🔗 Откуда пришли: vk — 12, без метки — 8, tg — 5" of a session; None when
    none of its registrations came by a link with a source. `new`: how many of each since the
    last digest, shown as "(+3)". The first SHOWN_SOURCES by count are named; the rest summed."""
    if not any(source is not None for source, _ in counts):
        return None
    ordered = sorted(counts, key=lambda item: (-item[1], item[0] is None, item[0] or ""))
    shown, rest = ordered[:SHOWN_SOURCES], ordered[SHOWN_SOURCES:]
    items = []
    for source, count in shown:
        label = source if source is not None else t("sources_none")
        fresh = (new or {}).get(source, 0)
        items.append(
            t("sources_item_new", source=label, count=count, new=fresh)
            if fresh
            else t("sources_item", source=label, count=count)
        )
    if rest:
        items.append(t("sources_more", sources=len(rest), count=sum(count for _, count in rest)))
    return t("sources_line", items=Html(", ".join(items)))
