"""The daily digest end to end in-process: due once a day, for certain, across restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiogram import Dispatcher

from bot.digest_worker import DigestScheduler
from bot.domain.events import EventCatalog
from bot.sender import Sender
from storage.database import Database
from tests.client import TelegramUser
from tests.fake_telegram import FakeTelegram
from tests.helpers import ADMIN_ID, ORGANIZER_CHAT_ID, Clock, fill_form

# 09:00 in Moscow is 06:00 UTC.
BEFORE = datetime(2026, 11, 26, 5, 59, tzinfo=UTC)
AT = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def scheduler(
    db: Database, dispatcher: Dispatcher, catalog: EventCatalog, clock: Clock
) -> DigestScheduler:
    """A fresh scheduler over the same database: what a restarted bot would have."""
    return DigestScheduler(
        db=db,
        outbox=dispatcher["outbox"],
        catalog=catalog,
        chat_ids=(ORGANIZER_CHAT_ID,),
        at=dispatcher["settings"].digest_time,
        zone=dispatcher["settings"].timezone,
        clock=clock,
    )


def digests_in(fake: FakeTelegram) -> list[str]:
    return [m.text or "" for m in fake.messages_to(ORGANIZER_CHAT_ID) if "Сводка" in (m.text or "")]


async def test_digest_is_sent_once_a_day_and_not_again_after_a_restart(
    make_user, fake: FakeTelegram, sender: Sender, db: Database, dispatcher: Dispatcher,
    catalog: EventCatalog, clock: Clock,
) -> None:  # fmt: skip
    clock.now = AT - timedelta(days=1) + timedelta(minutes=1)  # first start, after 09:00
    assert await scheduler(db, dispatcher, catalog, clock).run_due() is False
    clock.advance(timedelta(hours=2))
    user: TelegramUser = make_user(1001)
    await fill_form(user)
    await user.click("Подтвердить")

    clock.now = BEFORE
    assert await scheduler(db, dispatcher, catalog, clock).run_due() is False  # not yet
    clock.now = AT
    assert await scheduler(db, dispatcher, catalog, clock).run_due() is True
    assert await scheduler(db, dispatcher, catalog, clock).run_due() is False  # restarted
    clock.now = AT + timedelta(hours=5)
    assert await scheduler(db, dispatcher, catalog, clock).run_due() is False
    await sender.idle()
    [digest] = digests_in(fake)
    assert "Сводка за 26 ноября 2026" in digest
    assert "Новых регистраций: 1" in digest
    assert "1. Иванова Мария Петровна — Министерство культуры Саратовской области" in digest
    assert "10 декабря 2026, 12:00 (МСК, UTC+3)" in digest

    # The next day nothing is new: one line.
    clock.now = AT + timedelta(days=1)
    assert await scheduler(db, dispatcher, catalog, clock).run_due() is True
    await sender.idle()
    assert digests_in(fake)[-1].startswith("📊 Сводка за 27 ноября 2026: новых регистраций нет.")
    assert "\n" not in digests_in(fake)[-1]
    [row] = await db.fetchall("SELECT count(*) FROM digests")
    assert row[0] == 3  # the baseline and two days


async def test_a_digest_missed_while_the_bot_was_down_is_sent_once_on_return(
    fake: FakeTelegram, sender: Sender, db: Database, dispatcher: Dispatcher,
    catalog: EventCatalog, clock: Clock,
) -> None:  # fmt: skip
    clock.now = AT - timedelta(days=1) + timedelta(minutes=1)
    await scheduler(db, dispatcher, catalog, clock).run_due()
    clock.now = AT + timedelta(hours=3)  # down from before 09:00 until noon
    assert await scheduler(db, dispatcher, catalog, clock).run_due() is True
    assert await scheduler(db, dispatcher, catalog, clock).run_due() is False
    await sender.idle()
    assert len(digests_in(fake)) == 1


async def test_the_worker_loop_sleeps_until_the_digest_time(
    fake: FakeTelegram, db: Database, dispatcher: Dispatcher, catalog: EventCatalog, clock: Clock
) -> None:
    clock.now = BEFORE - timedelta(minutes=1)
    naps: list[float] = []

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        clock.advance(timedelta(seconds=seconds))
        if clock.now > AT + timedelta(minutes=1):
            raise RuntimeError("stop the loop")

    worker = DigestScheduler(
        db=db, outbox=dispatcher["outbox"], catalog=catalog, chat_ids=(ORGANIZER_CHAT_ID,),
        at=dispatcher["settings"].digest_time, zone=dispatcher["settings"].timezone,
        clock=clock, sleep=sleep,
    )  # fmt: skip
    with pytest.raises(RuntimeError):
        await worker.run()
    assert naps[:2] == [60.0, 60.0]  # never sleeps past a minute: clock changes are caught
    rows = await db.fetchall("SELECT local_date FROM digests ORDER BY local_date")
    assert [row[0] for row in rows] == ["2026-11-25", "2026-11-26"]


async def test_admin_gets_the_digest_now_and_the_chats_do_not(
    make_user, fake: FakeTelegram, sender: Sender, db: Database
) -> None:
    participant: TelegramUser = make_user(1001)
    await fill_form(participant)
    await participant.click("Подтвердить")
    admin: TelegramUser = make_user(ADMIN_ID, first_name="Админ")
    replies = await admin.send("/digest")
    assert "Сводка за 26 ноября 2026" in (replies[0].text or "")
    assert "Иванова Мария Петровна" in (replies[0].text or "")
    await sender.idle()
    assert digests_in(fake) == []
    assert await db.fetchall("SELECT * FROM digests") == []


@pytest.mark.parametrize("command", ["/digest"])
async def test_non_admin_is_refused_admin_commands_without_data(
    make_user, fake: FakeTelegram, command: str
) -> None:
    participant: TelegramUser = make_user(1001)
    await fill_form(participant)
    await participant.click("Подтвердить")
    stranger: TelegramUser = make_user(3003)
    replies = await stranger.send(command)
    assert [m.text for m in replies] == ["Эта команда доступна только администраторам бота."]
    group_member: TelegramUser = make_user(3003, chat_id=-100777)
    assert await group_member.send(command) == []  # ignored in groups
    admin_in_group: TelegramUser = make_user(ADMIN_ID, chat_id=-100777)
    assert await admin_in_group.send(command) == []
