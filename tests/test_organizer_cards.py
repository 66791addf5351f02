"""Organiser cards: written with the registration, delivered by the sender, exactly once."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from itertools import pairwise

import pytest
from aiogram import Bot, Dispatcher

from bot.app import create_bot
from bot.domain.config import Settings
from bot.sender import Limits, Sender
from storage.database import Database
from storage.outbox import Outbox
from tests.client import TelegramUser, feed_deliver
from tests.fake_telegram import FakeTelegram, my_chat_member_update, serve, user_json
from tests.helpers import FAST, ORGANIZER_CHAT_ID, Clock, card_numbers, fill_form, set_read_only

PRIVATE_ORGANIZER = 500  # ADMIN_ID in conftest; also an organiser chat here


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    # Two organiser chats: a group and a private chat.
    return settings.model_copy(
        update={"organizer_chat_ids": (ORGANIZER_CHAT_ID, PRIVATE_ORGANIZER)}
    )


async def register(make_user, user_id: int) -> TelegramUser:  # type: ignore[no-untyped-def]
    user: TelegramUser = make_user(user_id, first_name="Участник", username=f"user{user_id}")
    await fill_form(user)
    await user.click("Подтвердить")
    return user


async def outbox_rows(db: Database) -> list[dict[str, object]]:
    return [dict(row) for row in await db.fetchall("SELECT * FROM outbox ORDER BY id")]


async def test_each_registration_posts_a_card_to_every_organizer_chat(
    make_user, fake: FakeTelegram, sender: Sender, db: Database
) -> None:
    await register(make_user, 1001)
    await sender.idle()
    for chat_id in (ORGANIZER_CHAT_ID, PRIVATE_ORGANIZER):
        [card] = fake.messages_to(chat_id)
        text = card.text or ""
        assert "Новая регистрация №1" in text
        assert "Стратегическая сессия «ЭтНик» · 10 декабря 2026, 12:00 (МСК, UTC+3)" in text
        for shown in (
            "Иванова Мария Петровна",
            "Главный специалист",
            "Министерство культуры Саратовской области",
            "+7 912 345-67-89",
            "Maria.Ivanova@example.ru",
            "Участник @user1001",
            "26 ноября 2026, 12:00 (МСК, UTC+3)",
        ):
            assert shown in text
        assert '<a href="tg://user?id=1001">Участник</a>' in (card.source or "")
    rows = await outbox_rows(db)
    assert [(row["status"], row["text"], row["registration_id"]) for row in rows] == [
        ("sent", None, 1),
        ("sent", None, 1),
    ]  # delivered rows keep ids, not personal data


async def test_changes_and_withdrawals_post_cards_with_old_and_new(
    make_user, fake: FakeTelegram, sender: Sender, clock: Clock
) -> None:
    user = await register(make_user, 1001)
    clock.advance(timedelta(hours=1))
    await user.send("/me")
    await user.click("Изменить данные")
    await user.click("Должность")
    await user.send("<b>Директор</b> & Co")
    await user.send("/me")
    await user.click("Отменить регистрацию")
    await user.click("Да, отменить")
    await sender.idle()
    texts = [message.text or "" for message in fake.messages_to(ORGANIZER_CHAT_ID)]
    joined = "\n".join(texts)
    assert "Изменение регистрации №1" in joined
    assert "Должность: Главный специалист → <b>Директор</b> & Co" in joined
    assert "Отмена регистрации №1" in joined
    assert "26 ноября 2026, 13:00 (МСК, UTC+3)" in joined
    assert card_numbers(fake, ORGANIZER_CHAT_ID) == Counter({1: 3})


async def test_a_card_is_not_written_when_the_registration_is_not(
    make_user, fake: FakeTelegram, sender: Sender, db: Database
) -> None:
    user = await register(make_user, 1001)
    await user.send("/me")
    await user.click("Изменить данные")
    await user.click("Должность")
    await user.send("Главный специалист")  # the same value: nothing changed, no card
    await sender.idle()
    assert card_numbers(fake, ORGANIZER_CHAT_ID) == Counter({1: 1})
    assert len(await outbox_rows(db)) == 2


@pytest.fixture
async def http_sender(
    settings: Settings, fake: FakeTelegram, dispatcher: Dispatcher, clock: Clock
) -> AsyncIterator[Sender]:
    """A sender talking real HTTP to the fake Bot API server on 127.0.0.1."""
    async with serve(fake) as base_url:
        bot = create_bot(settings.model_copy(update={"telegram_api_url": base_url}))
        sender = Sender(bot, dispatcher["outbox"], clock, FAST)
        await sender.start()
        yield sender
        await sender.stop(grace=1)
        await bot.session.close()


@pytest.mark.slow  # an HTTP server, and real retry waits
@pytest.mark.parametrize("fault", ["429", "500", "502", "timeout"])
async def test_cards_arrive_exactly_once_despite_telegram_faults(
    make_user, fake: FakeTelegram, http_sender: Sender, db: Database, fault: str
) -> None:
    sender = http_sender
    if fault == "429":
        fake.fail("sendMessage", code=429, description="Too Many Requests: retry after 1",
                  retry_after=1, chat_id=ORGANIZER_CHAT_ID)  # fmt: skip
    elif fault == "timeout":
        fake.hang("sendMessage", chat_id=ORGANIZER_CHAT_ID, times=2)
    else:
        fake.fail("sendMessage", code=int(fault), description="Internal Server Error",
                  chat_id=ORGANIZER_CHAT_ID, times=2)  # fmt: skip
    for user_id in (1001, 1002, 1003):
        await register(make_user, user_id)
    await sender.idle()
    for chat_id in (ORGANIZER_CHAT_ID, PRIVATE_ORGANIZER):
        assert card_numbers(fake, chat_id) == Counter({1: 1, 2: 1, 3: 1})
    assert {row["status"] for row in await outbox_rows(db)} == {"sent"}
    if fault == "429":
        assert sender.stats.retry_after == 1
        [failed, retried] = [
            call for call in fake.calls_of("sendMessage")
            if call.params["chat_id"] == ORGANIZER_CHAT_ID
        ][:2]  # fmt: skip
        assert retried.time - failed.time >= 1.0  # retry_after honoured
    else:
        assert sender.stats.errors == 2


async def test_an_unreachable_chat_does_not_hold_up_the_others_and_resumes(
    make_user,
    fake: FakeTelegram,
    sender: Sender,
    db: Database,
    dispatcher: Dispatcher,
    bot: Bot,
) -> None:
    fake.block(ORGANIZER_CHAT_ID)  # answers 403: the bot was removed from the group
    await register(make_user, 1001)
    await register(make_user, 1002)
    await sender.idle()
    assert card_numbers(fake, PRIVATE_ORGANIZER) == Counter({1: 1, 2: 1})
    assert card_numbers(fake, ORGANIZER_CHAT_ID) == Counter()
    attempts = len(
        [c for c in fake.calls_of("sendMessage") if c.params["chat_id"] == ORGANIZER_CHAT_ID]
    )
    assert attempts == 1  # no retry storm against a chat that refused
    [chat] = await db.fetchall("SELECT * FROM chats")
    assert chat["unreachable"] == "Forbidden: bot was blocked by the user"

    # The group adds the bot back: Telegram sends my_chat_member, the cards go out.
    fake.unblock(ORGANIZER_CHAT_ID)
    admin = user_json(500, first_name="Админ")
    await feed_deliver(dispatcher, bot)(
        {
            "update_id": fake.next_update_id(),
            **my_chat_member_update(
                admin,
                fake.bot_user,
                old_status="left",
                new_status="member",
                chat_id=ORGANIZER_CHAT_ID,
            ),
        }
    )
    await sender.idle()
    assert card_numbers(fake, ORGANIZER_CHAT_ID) == Counter({1: 1, 2: 1})
    assert {row["status"] for row in await outbox_rows(db)} == {"sent"}


async def test_a_group_upgraded_to_a_supergroup_is_followed(
    make_user, fake: FakeTelegram, sender: Sender, db: Database
) -> None:
    new_id = -1009999999999
    fake.fail(
        "sendMessage",
        code=400,
        description="Bad Request: group chat was upgraded to a supergroup chat",
        migrate_to_chat_id=new_id,
        chat_id=ORGANIZER_CHAT_ID,
    )
    await register(make_user, 1001)
    await sender.idle()
    await register(make_user, 1002)  # later cards go straight to the new id
    await sender.idle()
    assert card_numbers(fake, new_id) == Counter({1: 1, 2: 1})
    assert card_numbers(fake, ORGANIZER_CHAT_ID) == Counter()


async def test_a_backlog_in_a_group_is_combined_into_few_long_messages(
    make_user, fake: FakeTelegram, bot: Bot, dispatcher: Dispatcher, clock: Clock, db: Database
) -> None:
    # Registrations arrive while the sender is stopped (or far behind): 25 cards pile up.
    for user_id in range(1001, 1026):
        await register(make_user, user_id)
    sender = Sender(bot, dispatcher["outbox"], clock, FAST)
    await sender.start()
    await sender.idle()
    await sender.stop()
    group_messages = fake.messages_to(ORGANIZER_CHAT_ID)
    assert 2 <= len(group_messages) <= 5
    assert all(len(message.source or "") <= 4096 for message in group_messages)
    assert card_numbers(fake, ORGANIZER_CHAT_ID) == Counter(range(1, 26))
    numbers = [
        int(n)
        for message in group_messages
        for n in re.findall(r"регистрац\w+ №(\d+)", message.text or "")
    ]
    assert numbers == sorted(numbers)  # in order


async def test_cards_to_one_chat_are_spaced_by_the_limit(
    make_user, fake: FakeTelegram, bot: Bot, dispatcher: Dispatcher, clock: Clock
) -> None:
    limits = Limits(private_interval=0.3, group_interval=0.3, rescan_every=0.05)
    sender = Sender(bot, dispatcher["outbox"], clock, limits)
    await sender.start()
    for user_id in (1001, 1002, 1003):
        await register(make_user, user_id)
        await sender.idle()
    await sender.stop()
    times = [
        call.time
        for call in fake.calls_of("sendMessage")
        if call.params["chat_id"] == PRIVATE_ORGANIZER
    ]
    assert len(times) == 3
    assert all(later - earlier >= 0.25 for earlier, later in pairwise(times))


async def test_outbox_rows_and_registration_commit_together(
    make_user, db: Database, fake: FakeTelegram
) -> None:
    user: TelegramUser = make_user(1001)
    await fill_form(user)
    await set_read_only(db, True)
    await user.click("Подтвердить")
    await set_read_only(db, False)
    assert await db.fetchall("SELECT * FROM registrations") == []
    assert await outbox_rows(db) == []
    outbox = Outbox(db)
    assert await outbox.pending_chats() == []


# --- Issue 10: nothing lost to one chat, bounded while running ------------------------------

NO_RIGHTS = "Bad Request: not enough rights to send text messages to the chat"


async def queue_cards(dispatcher: Dispatcher, clock: Clock, chat_id: int, *texts: str) -> None:
    outbox: Outbox = dispatcher["outbox"]
    for text in texts:
        await outbox.enqueue([chat_id], "card", text, now=clock())


@pytest.fixture
async def chores_by_hand(bot: Bot, dispatcher: Dispatcher, clock: Clock) -> AsyncIterator[Sender]:
    """A sender whose hourly chores run only when the test calls `maintain`."""
    sender = Sender(bot, dispatcher["outbox"], clock, replace(FAST, maintain_every=1e9))
    await sender.start()
    yield sender
    await sender.stop(grace=1)


async def test_a_chat_that_lost_the_right_to_send_is_parked_and_its_cards_kept(
    fake: FakeTelegram,
    chores_by_hand: Sender,
    dispatcher: Dispatcher,
    clock: Clock,
    db: Database,
) -> None:
    sender = chores_by_hand
    fake.fail("sendMessage", code=400, description=NO_RIGHTS, chat_id=ORGANIZER_CHAT_ID, times=2)
    await queue_cards(dispatcher, clock, ORGANIZER_CHAT_ID, "Карта 1", "Карта 2", "Карта 3")
    await sender.idle()
    rows = await outbox_rows(db)
    assert [(row["status"], row["failed_at"]) for row in rows] == [("failed", None)] * 3
    [chat] = await db.fetchall("SELECT * FROM chats")
    assert chat["unreachable"] == NO_RIGHTS
    parked_at = chat["unreachable_at"]

    # Within the hour nothing is tried; after it, one probe, refused again: still parked.
    await sender.maintain()
    await sender.idle()
    assert len(fake.calls_of("sendMessage")) == 1
    clock.advance(timedelta(minutes=61))
    await sender.maintain()
    await sender.idle()
    assert len(fake.calls_of("sendMessage")) == 2
    [chat] = await db.fetchall("SELECT * FROM chats")
    assert (chat["unreachable"], chat["unreachable_at"]) == (NO_RIGHTS, parked_at)

    # An admin gives the bot its rights back (Telegram tells the bot nothing): the next
    # hourly probe delivers the first card and the rest follow.
    clock.advance(timedelta(minutes=61))
    await sender.maintain()
    await sender.idle()
    texts = [message.text for message in fake.messages_to(ORGANIZER_CHAT_ID)]
    assert texts == ["Карта 1", "Карта 2\n\nКарта 3"]
    assert {row["status"] for row in await outbox_rows(db)} == {"sent"}
    [chat] = await db.fetchall("SELECT * FROM chats")
    assert chat["unreachable"] is None


async def test_a_refused_packed_message_is_resent_row_by_row_and_only_the_bad_row_fails(
    fake: FakeTelegram, bot: Bot, dispatcher: Dispatcher, clock: Clock, db: Database
) -> None:
    await queue_cards(
        dispatcher, clock, ORGANIZER_CHAT_ID, "Карта 1", "Карта <b>2", "Карта 3", "Карта 4"
    )
    sender = Sender(bot, dispatcher["outbox"], clock, FAST)
    await sender.start()
    await sender.idle()
    await sender.stop()
    assert [message.text for message in fake.messages_to(ORGANIZER_CHAT_ID)] == [
        "Карта 1",
        "Карта 3",
        "Карта 4",
    ]  # every row of the refused message alone: another of them might be refused too
    rows = await outbox_rows(db)
    assert [row["status"] for row in rows] == ["sent", "failed", "sent", "sent"]
    assert "can't parse entities" in str(rows[1]["error"])
    assert rows[1]["failed_at"] == "2026-11-26T09:00:00+00:00"
    assert await db.fetchall("SELECT * FROM chats") == []  # the chat is fine


async def test_cards_with_emoji_are_packed_by_utf16_length(
    fake: FakeTelegram, bot: Bot, dispatcher: Dispatcher, clock: Clock, db: Database
) -> None:
    # 1,400 code points each, 2,800 UTF-16 units: two fit 4096 code points, not 4096 units.
    card = "😀" * 1400
    await queue_cards(dispatcher, clock, ORGANIZER_CHAT_ID, card, card, card)
    sender = Sender(bot, dispatcher["outbox"], clock, FAST)
    await sender.start()
    await sender.idle()
    await sender.stop()
    assert len(fake.messages_to(ORGANIZER_CHAT_ID)) == 3
    assert {row["status"] for row in await outbox_rows(db)} == {"sent"}


async def test_delivered_rows_are_deleted_a_day_later_by_the_running_sender(
    fake: FakeTelegram, bot: Bot, dispatcher: Dispatcher, clock: Clock, db: Database
) -> None:
    await queue_cards(dispatcher, clock, ORGANIZER_CHAT_ID, "Вчерашняя")
    sender = Sender(bot, dispatcher["outbox"], clock, FAST)
    await sender.start()
    await sender.idle()
    clock.advance(timedelta(hours=23))
    await queue_cards(dispatcher, clock, ORGANIZER_CHAT_ID, "Сегодняшняя")
    await sender.idle()
    assert len(await outbox_rows(db)) == 2
    clock.advance(timedelta(hours=2))  # the first row is 25 hours old, the second 2
    dispatcher["outbox"].added.set()  # wakes the loop, which finds its hourly chores due
    for _ in range(200):
        if len(await outbox_rows(db)) == 1:
            break
        await asyncio.sleep(0.01)
    await sender.stop()
    [row] = await outbox_rows(db)
    assert row["sent_at"] == "2026-11-27T08:00:00+00:00"


async def test_idle_chats_are_forgotten(
    make_user, fake: FakeTelegram, sender: Sender, db: Database
) -> None:
    for user_id in (1001, 1002):
        await register(make_user, user_id)
    await sender.idle()
    assert sender.chats_in_memory == 2
    await asyncio.sleep(FAST.group_interval * 2)  # past the spacing window
    await sender.maintain()
    assert sender.chats_in_memory == 0
    await register(make_user, 1003)  # a forgotten chat is written to as before
    await sender.idle()
    assert card_numbers(fake, ORGANIZER_CHAT_ID) == Counter({1: 1, 2: 1, 3: 1})
