"""The update path in-process: the real poller, inbox and per-chat workers with the
production dispatcher, against the fake Bot API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.types import Message, TelegramObject, Update

from bot.app import create_intake
from bot.domain.config import Settings
from bot.domain.texts import t
from bot.flood import FloodLimits
from bot.polling import poll
from bot.updates import Intake
from storage.database import Database, utc_iso
from storage.inbox import Arrival, Inbox
from tests.fake_telegram import (
    FakeTelegram,
    callback_query_update,
    photo_update,
    text_update,
    user_json,
)
from tests.helpers import ADMIN_ID, Clock

pytestmark = pytest.mark.timeout(60)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def inbox_rows(db: Database) -> list[tuple[int, int, str | None]]:
    rows = await db.fetchall("SELECT update_id, attempts, set_aside FROM inbox ORDER BY 1")
    return [(row[0], row[1], row[2]) for row in rows]


async def handled_ids(db: Database) -> set[int]:
    return {row[0] for row in await db.fetchall("SELECT update_id FROM handled_updates")}


@dataclass
class Running:
    fake: FakeTelegram
    intake: Intake
    db: Database
    stop: asyncio.Event
    task: asyncio.Task[None]
    message_ids: list[int]

    def send(self, user_id: int, text: str, *, chat_id: int | None = None) -> int:
        self.message_ids.append(len(self.message_ids) + 1)
        return self.fake.push_update(
            text_update(user_json(user_id), text, message_id=self.message_ids[-1], chat_id=chat_id)
        )

    def texts_to(self, chat_id: int) -> list[str]:
        return [message.text or "" for message in self.fake.messages_to(chat_id)]

    async def handled(self, update_id: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.fake.wait_confirmed(update_id, timeout=timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while update_id not in await handled_ids(self.db):
            assert loop.time() < deadline, f"update {update_id} not handled in time"
            await asyncio.sleep(0.005)

    async def stopped(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


Launch = Callable[..., Running]


@pytest.fixture
async def launch(
    dispatcher: Dispatcher,
    bot: Bot,
    fake: FakeTelegram,
    db: Database,
    settings: Settings,
    clock: Clock,
) -> AsyncIterator[Launch]:
    """Start the production poller and intake (options: `create_intake`'s); stopped at the
    end of the test if the test did not stop it."""
    launched: list[Running] = []

    def launch(**options: Any) -> Running:
        intake = create_intake(dispatcher, bot, db=db, settings=settings, clock=clock, **options)
        stop = asyncio.Event()
        task = asyncio.create_task(poll(dispatcher, bot, intake, stop=stop, polling_timeout=1))
        launched.append(Running(fake, intake, db, stop, task, []))
        return launched[-1]

    yield launch
    for app in launched:
        if not app.task.done():
            await app.stopped()


@pytest.fixture
async def running(launch: Launch) -> Running:
    return launch()


def stored_update(bot: Bot, update_id: int, text: str) -> tuple[Update, str]:
    """An update of user 1001 as the inbox stores it."""
    update = Update.model_validate(
        {"update_id": update_id, **text_update(user_json(1001), text, message_id=update_id)},
        context={"bot": bot},
    )
    return update, update.model_dump_json(by_alias=True, exclude_unset=True)


@pytest.mark.slow  # a chat waits out a real retry_after of seconds
async def test_a_chat_waiting_out_a_flood_limit_delays_no_other_chat(running: Running) -> None:
    fake = running.fake
    fake.fail("sendMessage", code=429, description="Too Many Requests: retry after 3",
              retry_after=3, chat_id=1001)  # fmt: skip
    running.send(1001, "/help")
    await until(lambda: any(call.error_code == 429 for call in fake.calls_of("sendMessage")))
    loop = asyncio.get_running_loop()
    asked = loop.time()
    other = running.send(1002, "/help")
    await running.handled(other, timeout=2)
    assert loop.time() - asked < 1.0
    assert "/cancel" in running.texts_to(1002)[-1]
    assert running.texts_to(1001) == []  # still waiting out its own limit
    await until(lambda: bool(running.texts_to(1001)), timeout=6)
    assert "/cancel" in running.texts_to(1001)[-1]


async def test_one_chats_updates_are_handled_in_order(running: Running) -> None:
    ids = [running.send(1001, text) for text in ("/start", "/cancel", "/help", "/cancel")]
    await running.handled(ids[-1])
    texts = running.texts_to(1001)
    assert len(texts) == 4
    assert "Здравствуйте" in texts[0]
    assert texts[1] == t("cancelled")
    assert "/cancel" in texts[2]
    assert texts[3] == t("nothing_to_cancel")
    assert running.intake.busy_lanes == 0  # idle chats leave nothing behind
    assert await inbox_rows(running.db) == []


async def test_stop_lets_the_update_in_hand_finish_and_keeps_the_rest(
    running: Running, db: Database
) -> None:
    fake = running.fake
    fake.slow("sendMessage", 0.5)
    first = running.send(1001, "/help")
    second = running.send(1001, "/help")
    await fake.wait_confirmed(second)
    await until(lambda: len(fake.calls_of("sendMessage")) >= 1)
    await running.stopped()
    assert first in await handled_ids(db)  # finished
    assert len(running.texts_to(1001)) == 1
    # ...and the second waits in the inbox for the next start, confirmed to Telegram.
    assert await inbox_rows(db) == [(second, 0, None)]


async def test_the_inbox_keeps_an_update_as_telegram_sent_it(
    running: Running, db: Database
) -> None:
    fake = running.fake
    fake.slow("sendMessage", 0.5)
    running.send(1001, "/help")
    sent = text_update(user_json(1001), "Иванова «Мария» \\ 😀", message_id=2)
    second = fake.push_update(sent)
    await fake.wait_confirmed(second)
    await until(lambda: len(fake.calls_of("sendMessage")) >= 1)
    await running.stopped()
    # The second waits in the inbox: its text is the JSON getUpdates carried.
    [row] = await db.fetchall("SELECT payload FROM inbox WHERE update_id = ?", (second,))
    assert json.loads(row["payload"]) == {"update_id": second, **sent}


async def test_what_a_stop_left_is_handled_at_the_next_start(
    launch: Launch,
    db: Database,
    bot: Bot,
    clock: Clock,
) -> None:
    _, payload = stored_update(bot, 77, "/help")
    await Inbox(db).accept([Arrival(77, 1001, payload)], [], now=clock())
    app = launch()
    await until(lambda: bool(app.texts_to(1001)))
    await app.stopped()
    assert "/cancel" in app.texts_to(1001)[0]
    assert 77 in await handled_ids(db)
    assert await inbox_rows(db) == []


async def test_an_update_delivered_again_has_no_second_effect(
    db: Database,
    fake: FakeTelegram,
    bot: Bot,
    clock: Clock,
    dispatcher: Dispatcher,
    settings: Settings,
) -> None:
    intake = create_intake(dispatcher, bot, db=db, settings=settings, clock=clock)
    update, _ = stored_update(bot, 5, "/help")
    await intake.accept([update])
    # Telegram sends it again while it waits (our confirmation was lost), and after.
    await intake.accept([update])
    await until(lambda: intake.busy_lanes == 0)
    await intake.accept([update])
    await intake.close()
    assert len(fake.messages_to(1001)) == 1
    assert await handled_ids(db) == {5}


async def test_an_update_that_runs_too_long_is_set_aside_and_the_person_told(
    launch: Launch,
    db: Database,
    fake: FakeTelegram,
) -> None:
    fake.slow("sendMessage", 0.6)
    app = launch(limit=0.3)
    stuck = app.send(1001, "/help")
    await until(lambda: t("update_set_aside") in app.texts_to(1001), timeout=5)
    fake.slow("sendMessage", 0)
    after = app.send(1001, "/help")  # the chat goes on
    await app.handled(after)
    await app.stopped()
    assert await inbox_rows(db) == [(stuck, 0, "not handled within 0.3 s")]
    assert stuck not in await handled_ids(db)


class Explode(BaseMiddleware):
    async def __call__(self, handler: Any, event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Message) and event.text == "boom":
            raise RuntimeError("a bug")
        return await handler(event, data)


async def test_a_failing_update_is_set_aside_once_with_its_reason(
    launch: Launch,
    db: Database,
    dispatcher: Dispatcher,
) -> None:
    dispatcher.message.outer_middleware(Explode())
    app = launch()
    boom = app.send(1001, "boom")
    after = app.send(1001, "/help")
    await app.handled(after)
    await app.stopped()
    # The errors handler told the person once; no second apology from the worker.
    texts = app.texts_to(1001)
    assert texts.count(t("error_try_again")) == 1
    assert t("update_set_aside") not in texts
    assert await inbox_rows(db) == [(boom, 0, "RuntimeError")]


async def test_an_update_in_hand_at_three_crashes_is_set_aside(
    launch: Launch,
    db: Database,
    bot: Bot,
    clock: Clock,
) -> None:
    inbox = Inbox(db)
    for update_id, text in ((40, "/help"), (41, "/cancel")):
        _, payload = stored_update(bot, update_id, text)
        await inbox.accept([Arrival(update_id, 1001, payload)], [], now=clock())
    # Two starts that died with update 40 in hand (each counts an attempt of the first).
    await inbox.waiting()
    await inbox.waiting()
    app = launch()
    await until(lambda: len(app.texts_to(1001)) >= 2)
    await app.stopped()
    texts = app.texts_to(1001)
    assert t("update_set_aside") in texts
    assert t("nothing_to_cancel") in texts  # the next update went on
    assert await inbox_rows(db) == [(40, 3, "in hand at 3 stops")]


async def test_handled_ids_and_set_aside_updates_are_pruned_while_running(
    launch: Launch,
    db: Database,
    clock: Clock,
) -> None:
    old = utc_iso(clock() - timedelta(days=3))
    recent = utc_iso(clock() - timedelta(hours=1))
    app = launch(prune_every=0.05)
    await until(lambda: app.intake.busy_lanes == 0)
    await db.execute("INSERT INTO handled_updates VALUES (1, ?), (2, ?)", (old, recent))
    await db.execute(
        "INSERT INTO inbox (update_id, lane, payload, received_at, set_aside) "
        "VALUES (3, 1, '{}', ?, 'x'), (4, 1, '{}', ?, 'x')",
        (old, recent),
    )
    await asyncio.sleep(0.3)
    assert await handled_ids(db) == {2}
    assert [row[0] for row in await inbox_rows(db)] == [4]
    await app.stopped()


# --- flood control -------------------------------------------------------------------------


async def test_a_flooding_person_is_asked_once_to_slow_down_and_the_rest_dropped(
    launch: Launch,
    db: Database,
) -> None:
    app = launch(flood=FloodLimits(updates=5))
    ids = [app.send(1001, "/help") for _ in range(9)]
    other = app.send(1002, "/help")
    await app.handled(other)
    for update_id in ids:
        await app.handled(update_id)  # dropped ones count as handled
    await until(lambda: t("slow_down") in app.texts_to(1001))
    await app.stopped()
    texts = app.texts_to(1001)
    assert texts.count(t("slow_down")) == 1
    assert len(texts) == 5 + 1
    assert len(app.texts_to(1002)) == 1
    assert await inbox_rows(db) == []


async def test_admins_are_not_flood_limited(
    launch: Launch,
) -> None:
    app = launch(flood=FloodLimits(updates=3))
    ids = [app.send(ADMIN_ID, "/cancel") for _ in range(6)]
    await app.handled(ids[-1])
    await app.stopped()
    assert app.texts_to(ADMIN_ID) == [t("nothing_to_cancel")] * 6


async def test_a_dropped_button_press_is_still_answered(
    launch: Launch,
    fake: FakeTelegram,
) -> None:
    app = launch(flood=FloodLimits(updates=2))
    user = user_json(1001)
    message = {"message_id": 1, "chat": {"id": 1001, "type": "private"}, "date": 0, "text": "x"}
    ids = [
        fake.push_update(callback_query_update(user, message, "stale", query_id=f"q{n}"))
        for n in range(5)
    ]
    for update_id in ids:
        await app.handled(update_id)
    await until(lambda: len(fake.calls_of("answerCallbackQuery")) == 5)
    await app.stopped()
    answers = [call.params.get("text") for call in fake.calls_of("answerCallbackQuery")]
    # Two handled (the stale-button answer), one asked to slow down, two just stopped spinning.
    assert answers.count(t("button_expired")) == 2
    assert answers.count(t("slow_down_button")) == 1
    assert answers.count(None) == 2


async def test_an_album_counts_as_one_message(
    launch: Launch,
    fake: FakeTelegram,
) -> None:
    app = launch(flood=FloodLimits(updates=2))
    user = user_json(1001)
    album = []
    for n in range(1, 9):
        update = photo_update(user, message_id=n)
        update["message"]["media_group_id"] = "album-1"
        album.append(fake.push_update(update))
    last = app.send(1001, "/cancel")
    for update_id in (*album, last):
        await app.handled(update_id)
    await app.stopped()
    assert t("slow_down") not in app.texts_to(1001)
    assert app.texts_to(1001)[-1] == t("nothing_to_cancel")


async def test_a_group_gets_at_most_one_pointer_a_minute(
    launch: Launch,
) -> None:
    app = launch()
    group = -100777
    ids = [app.send(1000 + n, "/start", chat_id=group) for n in range(6)]
    for update_id in ids:
        await app.handled(update_id)
    await app.stopped()
    assert len(app.texts_to(group)) == 1
    assert "личном чате" in app.texts_to(group)[0]


async def test_an_unreadable_update_left_in_the_inbox_does_not_stop_the_start(
    launch: Launch,
    db: Database,
    clock: Clock,
) -> None:
    inbox = Inbox(db)
    await inbox.accept([Arrival(50, 1001, '{"update_id": "not a number"}')], [], now=clock())
    app = launch()
    after = app.send(1001, "/help")
    await app.handled(after)
    await app.stopped()
    assert await inbox_rows(db) == [(50, 1, "unreadable")]
