"""Unfinished forms expire (152-FZ art. 5 part 7: data no longer than its purpose needs): a
registration form nobody has touched for a week, or whose session no longer takes
registrations, is deleted with its answers. The person is not told; their next message
starts afresh, as after /cancel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.audit import RETENTION, AuditEntry, Reason, record_in
from storage.database import Database, utc_iso

# A form is a row in fsm_states in one of the form's states (the caller names them: a
# broadcast being written is an admin's conversation, not personal data of a registrant),
# its session id in its data. It expires when untouched since `cutoff`, or when its session
# is closed: the deadline passed (`now` after it, as Event.is_open says), or the session left
# the events file, or is unknown.
_EXPIRED = """
    SELECT key, json_extract(data, '$.event_id') AS event_id FROM fsm_states
    WHERE state IN ({states}) AND (
        updated_at < :cutoff
        OR NOT EXISTS (
            SELECT 1 FROM events
            WHERE events.id = json_extract(fsm_states.data, '$.event_id')
              AND events.in_file = 1 AND events.registration_deadline >= :now))
    ORDER BY key
"""


@dataclass(frozen=True, slots=True)
class ExpiredDraft:
    event_id: str | None


class Drafts:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def expire(
        self, *, states: Sequence[str], now: datetime, untouched: timedelta
    ) -> list[ExpiredDraft]:
        """Delete the expired forms, each recorded in the audit, in one transaction.

        The transaction holds the connection's lock, so no step of a form is written in
        between: a form is deleted whole, or it was touched and stays. (A step already in
        hand, its row read before, writes the whole row again after: the person was there,
        and the form is theirs to finish.)
        """
        if not states:
            return []
        sql = _EXPIRED.format(states=", ".join(f":state{i}" for i in range(len(states))))
        params: dict[str, object] = {f"state{i}": state for i, state in enumerate(states)}
        params |= {"cutoff": utc_iso(now - untouched), "now": utc_iso(now)}
        async with self._db.transaction(heavy=True) as connection:
            async with connection.execute(sql, params) as cursor:
                rows = list(await cursor.fetchall())
            if not rows:
                return []
            await connection.executemany(
                "DELETE FROM fsm_states WHERE key = ?", [(row["key"],) for row in rows]
            )
            expired = [ExpiredDraft(row["event_id"]) for row in rows]
            await record_in(
                connection,
                [
                    AuditEntry(
                        now,
                        "erase",
                        RETENTION,
                        reason=Reason.draft_expiry,
                        event_id=draft.event_id,
                        fields=("draft",),
                    )
                    for draft in expired
                ],
            )
        self._db.scrub_erased()
        return expired
