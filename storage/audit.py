"""The record of erasures and of who read personal data (152-FZ; Roskomnadzor order No. 179
of 28.10.2022 asks a destruction act to name what was destroyed, why, by whom and when).

Kept three years. It never holds a participant's personal data: an erasure names the
registration by number and the fields by column; the actor is a role or an admin's id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from storage.database import Connection, Database, Row, utc_iso

KEPT_FOR = timedelta(days=3 * 365 + 1)

Action = Literal["erase", "export", "find", "broadcast"]


class Reason(StrEnum):
    """Why personal data was erased."""

    withdrawal = "withdrawal"  # the person withdrew the registration (consent revoked)
    forget = "forget"  # the person asked for everything to be erased (/forget)
    admin = "admin"  # an admin or the operator erased it on a request by other channels
    retention = "retention"  # the session ended RETENTION_DAYS ago: the purpose is achieved
    draft_expiry = "draft_expiry"  # an unfinished form, abandoned or past its deadline


# Who did it, as recorded: a participant is never named (their id is personal data).
PARTICIPANT = "participant"
RETENTION = "retention"
OPERATOR = "operator"


def admin_actor(admin_id: int) -> str:
    return f"admin {admin_id}"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    action: Action
    actor: str
    reason: str | None = None
    registration_id: int | None = None
    event_id: str | None = None
    fields: tuple[str, ...] = ()
    row_count: int | None = None

    @classmethod
    def from_row(cls, row: Row) -> AuditEntry:
        return cls(
            at=datetime.fromisoformat(row["at"]),
            action=row["action"],
            actor=row["actor"],
            reason=row["reason"],
            registration_id=row["registration_id"],
            event_id=row["event_id"],
            fields=tuple(row["fields"].split(",")) if row["fields"] else (),
            row_count=row["row_count"],
        )


_INSERT = """
    INSERT INTO audit (at, action, reason, actor, registration_id, event_id, fields, row_count)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""


def _params(entry: AuditEntry) -> tuple[object, ...]:
    return (
        utc_iso(entry.at),
        entry.action,
        entry.reason,
        entry.actor,
        entry.registration_id,
        entry.event_id,
        ",".join(entry.fields) or None,
        entry.row_count,
    )


async def record_in(connection: Connection, entries: Sequence[AuditEntry]) -> None:
    """Record inside the caller's transaction: an erasure and its record commit together."""
    await connection.executemany(_INSERT, [_params(entry) for entry in entries])


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, entry: AuditEntry) -> None:
        await self._db.execute(_INSERT, _params(entry))

    async def recent(self, limit: int) -> list[AuditEntry]:
        rows = await self._db.fetchall(
            "SELECT * FROM audit ORDER BY at DESC, id DESC LIMIT ?", (limit,)
        )
        return [AuditEntry.from_row(row) for row in rows]

    async def since(self, moment: datetime) -> list[AuditEntry]:
        rows = await self._db.fetchall(
            "SELECT * FROM audit WHERE at >= ? ORDER BY at, id", (utc_iso(moment),), heavy=True
        )
        return [AuditEntry.from_row(row) for row in rows]

    async def prune(self, *, now: datetime) -> int:
        """Forget entries older than three years."""
        return await self._db.execute(
            "DELETE FROM audit WHERE at < ?", (utc_iso(now - KEPT_FOR),), heavy=True
        )


def csv_lines(entries: Sequence[AuditEntry]) -> Iterator[list[str]]:
    """The record as CSV rows (the header first), times in UTC ISO 8601."""
    yield ["at", "action", "reason", "actor", "registration", "event", "fields", "rows"]
    for entry in entries:
        yield [
            utc_iso(entry.at),
            entry.action,
            entry.reason or "",
            entry.actor,
            "" if entry.registration_id is None else str(entry.registration_id),
            entry.event_id or "",
            " ".join(entry.fields),
            "" if entry.row_count is None else str(entry.row_count),
        ]
