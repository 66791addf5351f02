"""The poller: an update is confirmed only once handled, even when the bot is stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.types import Message

from bot.polling import poll
from tests.fake_telegram import FakeSession, FakeTelegram, text_update, user_json

TOKEN = "7000000001:AAtest-token-for-tests-only-xxxxxxxxxx"


@pytest.fixture
async def fake_bot() -> AsyncIterator[tuple[FakeTelegram, Bot]]:
    fake = FakeTelegram(token=TOKEN)
    bot = Bot(TOKEN, session=FakeSession(fake))
    yield fake, bot
    await bot.session.close()


def slow_dispatcher(release: asyncio.Event, order: list[str]) -> Dispatcher:
    """Echoes every text; "wait" is held until `release` is set."""
    router = Router()

    @router.message(F.text)
    async def echo(message: Message) -> None:
        if message.text == "wait":
            await release.wait()
        order.append(f"{message.chat.id}:{message.text}")
        await message.answer(message.text or "")

    dispatcher = Dispatcher(events_isolation=SimpleEventIsolation())
    dispatcher.include_router(router)
    return dispatcher


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def test_stop_lets_updates_in_hand_finish_then_confirms_them(
    fake_bot: tuple[FakeTelegram, Bot],
) -> None:
    fake, bot = fake_bot
    release, order = asyncio.Event(), list[str]()
    stop = asyncio.Event()
    poller = asyncio.create_task(
        poll(slow_dispatcher(release, order), bot, stop=stop, polling_timeout=1)
    )
    held = fake.push_update(text_update(user_json(1), "wait", message_id=1))
    await until(lambda: len(fake.calls_of("getUpdates")) >= 1)
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.sleep(0.05)
    assert not poller.done()  # still handling
    release.set()
    await asyncio.wait_for(poller, 5)
    assert order == ["1:wait"]
    await fake.wait_confirmed(held, timeout=1)
