"""The retention job: personal data is erased once its purpose is achieved (152-FZ art. 5
part 7, art. 21 §4), and unfinished forms expire.

Hourly, and at start-up (a bot that was down catches up at once): the moments it acts on
fall at midnight in each session's own zone and at any minute of a deadline, so an hourly
look keeps the data at most an hour past its day; a look with nothing due is two small
queries. When each session's data goes is `bot.domain.retention.erasure_moment`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from bot.domain.clock import Clock
from bot.domain.retention import FORM_KEPT_DAYS, erasure_due, erasure_moment, grace_until
from storage.audit import RETENTION, AuditLog, Reason
from storage.database import Database
from storage.drafts import Drafts
from storage.erasure import PersonalData
from storage.retention import Retention

logger = logging.getLogger(__name__)

EVERY = 3600.0
# Registrations erased per transaction: the connection is never held long, and every other
# chat's step waits at most one batch.
BATCH = 500


@dataclass(frozen=True, slots=True)
class RetentionRun:
    erased: int  # registrations whose personal data was erased
    drafts: int  # unfinished forms deleted
    postponed: int  # registrations past their session's period, kept by the upgrade's grace


class RetentionJob:
    def __init__(
        self,
        *,
        db: Database,
        personal_data: PersonalData,
        retention_days: int,
        zone: ZoneInfo,
        form_states: Sequence[str],
        clock: Clock,
        batch: int = BATCH,
        every: float = EVERY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._retention = Retention(db)
        self._drafts = Drafts(db)
        self._audit = AuditLog(db)
        self._personal_data = personal_data
        self._days = retention_days
        self._zone = zone
        self._form_states = tuple(form_states)
        self._clock = clock
        self._batch = batch
        self._every = every
        self._sleep = sleep
        self._grace_logged = False

    async def run_once(self) -> RetentionRun:
        now = self._clock()
        drafts = await self._drafts.expire(
            states=self._form_states, now=now, untouched=timedelta(days=FORM_KEPT_DAYS)
        )
        if drafts:
            logger.info("Retention: %d unfinished forms expired", len(drafts))
        since = await self._retention.since()
        grace = None if since is None else grace_until(since, self._days, self._zone)
        erased = postponed = 0
        for session in await self._retention.held():
            if now < erasure_due(session.end, self._days):
                continue
            if now < erasure_moment(session.end, self._days, grace):
                postponed += session.registrations
                continue
            count = await self._erase_session(session.event_id)
            logger.info("Retention: erased the personal data of %d registrations of %s",
                        count, session.event_id)  # fmt: skip
            erased += count
        if postponed and not self._grace_logged:
            self._grace_logged = True
            assert grace is not None and since is not None
            logger.warning(
                "Retention: %d registrations of sessions past their period are kept until %s "
                "(%s): erasure by RETENTION_DAYS began on %s, and nothing is erased sooner "
                "than RETENTION_DAYS after that",
                postponed,
                grace.date().isoformat(),
                grace.tzinfo,
                since.astimezone(self._zone).date().isoformat(),
            )
        if pruned := await self._audit.prune(now=now):
            logger.info("Audit: %d entries older than three years deleted", pruned)
        return RetentionRun(erased, len(drafts), postponed)

    async def _erase_session(self, event_id: str) -> int:
        erased = 0
        while ids := await self._retention.not_erased(event_id, limit=self._batch):
            done = await self._personal_data.erase(
                ids, reason=Reason.retention, actor=RETENTION, now=self._clock()
            )
            erased += len(done)
            if not done:  # erased by someone else meanwhile: the next look finds the rest
                break
            await asyncio.sleep(0)  # let a waiting step have the connection
        return erased

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                logger.exception("Retention run failed; trying again at the next run")
            await self._sleep(self._every)
