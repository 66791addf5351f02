"""The fake Bot API's webhooks: the methods as Telegram answers them, and delivery as Telegram
does it (POST with the secret header, a chat's next update after its previous request ended,
again after a non-2xx answer or a timeout, round-robin over a balancer's targets)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramConflictError
from aiohttp import web

from tests.fake_telegram import (
    SECRET_HEADER,
    FakeSession,
    FakeTelegram,
    text_update,
    user_json,
)

URL = "https://bot.example.org/telegram/hook"
SECRET = "fake-secret_0123456789"

Answer = Callable[[web.Request, dict[str, object]], Awaitable[web.Response]]


async def ok(request: web.Request, update: dict[str, object]) -> web.Response:
    return web.Response()


@asynccontextmanager
async def receiver(answer: Answer = ok) -> AsyncIterator[tuple[str, list[tuple[str, dict]]]]:  # type: ignore[type-arg]
    """A bot's webhook endpoint on 127.0.0.1: yields its base URL and what it received
    (the secret header and the update), in arrival order."""
    received: list[tuple[str, dict]] = []  # type: ignore[type-arg]

    async def endpoint(request: web.Request) -> web.Response:
        update = await request.json()
        received.append((request.headers.get(SECRET_HEADER, ""), update))
        return await answer(request, update)

    app = web.Application()
    app.router.add_post("/telegram/hook", endpoint)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", received
    finally:
        await runner.cleanup()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    fake.webhook_backoff = (0.05, 0.2)
    fake.webhook_timeout = 2.0
    yield fake
    await fake.close()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    bot = Bot(fake.token, session=FakeSession(fake))
    yield bot
    await bot.session.close()


_message_ids = iter(range(1, 1_000_000))


def says(chat: int, text: str) -> dict[str, object]:
    return text_update(user_json(chat, first_name="Иван"), text, message_id=next(_message_ids))


def ids(received: list[tuple[str, dict]]) -> list[int]:  # type: ignore[type-arg]
    return [update["update_id"] for _, update in received]


async def test_webhook_info_shows_the_webhook_but_never_its_secret(
    bot: Bot, fake: FakeTelegram
) -> None:
    assert (await bot.get_webhook_info()).url == ""
    await bot.set_webhook(URL, secret_token=SECRET, allowed_updates=["message"], max_connections=7)

    info = await bot.get_webhook_info()

    assert (info.url, info.max_connections, info.allowed_updates) == (URL, 7, ["message"])
    assert SECRET not in info.model_dump_json()
    assert fake.webhook is not None and fake.webhook.secret == SECRET


async def test_get_updates_answers_409_while_a_webhook_is_set(bot: Bot, fake: FakeTelegram) -> None:
    update_id = fake.push_update(says(42, "привет"))
    await bot.set_webhook(URL, secret_token=SECRET)

    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates(timeout=0)

    await bot.delete_webhook(drop_pending_updates=False)
    assert (await bot.get_webhook_info()).url == ""
    # Nothing was lost: the update waits for getUpdates now.
    [update] = await bot.get_updates(timeout=0)
    assert update.update_id == update_id


async def test_set_webhook_with_drop_pending_updates_drops_them(
    bot: Bot, fake: FakeTelegram
) -> None:
    update_id = fake.push_update(says(42, "привет"))
    await bot.set_webhook(URL, secret_token=SECRET, drop_pending_updates=True)

    assert (await bot.get_webhook_info()).pending_update_count == 0
    with pytest.raises(AssertionError, match="dropped"):
        await fake.wait_confirmed(update_id, timeout=0.5)


@pytest.mark.parametrize(
    ("url", "secret", "connections", "reason"),
    [
        ("http://bot.example.org/hook", SECRET, 40, "HTTPS URL must be provided"),
        ("https://bot.example.org:8080/hook", SECRET, 40, "ports 80, 88, 443 or 8443"),
        (URL, "with space", 40, "secret token contains unallowed characters"),
        (URL, "x" * 257, 40, "secret token contains unallowed characters"),
        (URL, SECRET, 101, "max_connections"),
    ],
)
async def test_set_webhook_refuses_what_telegram_refuses(
    bot: Bot, url: str, secret: str, connections: int, reason: str
) -> None:
    with pytest.raises(TelegramBadRequest, match=reason):
        await bot.set_webhook(url, secret_token=secret, max_connections=connections)
    assert (await bot.get_webhook_info()).url == ""


async def test_delivery_posts_each_update_with_the_secret_and_confirms_on_200(
    bot: Bot, fake: FakeTelegram
) -> None:
    async with receiver() as (base, received):
        fake.route_webhook(base)
        first = fake.push_update(says(1, "раз"))
        await bot.set_webhook(URL, secret_token=SECRET)
        second = fake.push_update(says(2, "два"))

        await fake.wait_confirmed(first, timeout=5)
        await fake.wait_confirmed(second, timeout=5)

    assert sorted(ids(received)) == [first, second]
    assert {secret for secret, _ in received} == {SECRET}
    assert received[0][1]["message"]["text"] in ("раз", "два")
    assert (await bot.get_webhook_info()).pending_update_count == 0
    assert [request.target for request in fake.webhook_requests] == [f"{base}/telegram/hook"] * 2


async def test_a_chats_next_update_waits_until_its_previous_request_ended(
    bot: Bot, fake: FakeTelegram
) -> None:
    release = asyncio.Event()

    async def hold_chat_one(request: web.Request, update: dict) -> web.Response:  # type: ignore[type-arg]
        if update["message"]["text"] == "first of 1":
            await release.wait()
        return web.Response()

    async with receiver(hold_chat_one) as (base, received):
        fake.route_webhook(base)
        await bot.set_webhook(URL, secret_token=SECRET)
        one_a = fake.push_update(says(1, "first of 1"))
        one_b = fake.push_update(says(1, "second of 1"))
        two = fake.push_update(says(2, "only of 2"))

        # Another chat is not held up...
        await fake.wait_confirmed(two, timeout=5)
        await asyncio.sleep(0.2)
        # ...but chat 1's second update waits for its first request to end.
        assert ids(received) == [one_a, two]
        release.set()
        await fake.wait_confirmed(one_b, timeout=5)

    assert ids(received) == [one_a, two, one_b]


async def test_non_2xx_answers_and_timeouts_are_sent_again_after_a_back_off(
    bot: Bot, fake: FakeTelegram
) -> None:
    fake.webhook_timeout = 0.3
    seen: dict[str, int] = {}

    async def fail_each_once(request: web.Request, update: dict) -> web.Response:  # type: ignore[type-arg]
        text = update["message"]["text"]
        seen[text] = seen.get(text, 0) + 1
        if seen[text] == 1 and text == "refused":
            return web.Response(status=500)
        if seen[text] == 1 and text == "slow":
            await asyncio.sleep(1)
        return web.Response()

    async with receiver(fail_each_once) as (base, received):
        fake.route_webhook(base)
        await bot.set_webhook(URL, secret_token=SECRET)
        refused = fake.push_update(says(1, "refused"))
        after_refused = fake.push_update(says(1, "after"))
        slow = fake.push_update(says(2, "slow"))
        for update_id in (refused, after_refused, slow):
            await fake.wait_confirmed(update_id, timeout=5)
        info = await bot.get_webhook_info()

    assert seen == {"refused": 2, "after": 1, "slow": 2}
    # Chat 1's next update went only after its first was acknowledged.
    assert [i for i in ids(received) if i != slow] == [refused, refused, after_refused]
    attempts = [request for request in fake.webhook_requests if request.update_id == refused]
    assert [request.status for request in attempts] == [500, 200]
    assert attempts[1].started - attempts[0].ended >= 0.04  # the back-off
    timed_out = [request for request in fake.webhook_requests if request.update_id == slow]
    assert [(request.status, request.error) for request in timed_out] == [
        (None, "Read timeout expired"),
        (200, None),
    ]
    assert info.last_error_message is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_delivery_goes_round_robin_and_around_a_target_that_is_down(
    bot: Bot, fake: FakeTelegram
) -> None:
    async with receiver() as (first, at_first), receiver() as (second, at_second):
        fake.route_webhook(first, second)
        await bot.set_webhook(URL, secret_token=SECRET, max_connections=1)
        pushed = [fake.push_update(says(chat, "привет")) for chat in range(1, 11)]
        for update_id in pushed:
            await fake.wait_confirmed(update_id, timeout=5)
        assert (len(at_first), len(at_second)) == (5, 5)

        down = f"http://127.0.0.1:{free_port()}"
        fake.route_webhook(down, second)
        more = [fake.push_update(says(chat, "ещё")) for chat in range(1, 5)]
        for update_id in more:
            await fake.wait_confirmed(update_id, timeout=5)

    assert sorted(ids(at_second)[5:]) == more
    refused = [request for request in fake.webhook_requests if request.target.startswith(down)]
    assert refused and all(request.error for request in refused)
    assert json.dumps(ids(at_first)) == json.dumps(sorted(ids(at_first)))


async def test_without_a_route_nothing_leaves_127_0_0_1_and_updates_wait(
    bot: Bot, fake: FakeTelegram
) -> None:
    await bot.set_webhook(URL, secret_token=SECRET)
    update_id = fake.push_update(says(1, "привет"))

    with pytest.raises(AssertionError, match="not confirmed"):
        await fake.wait_confirmed(update_id, timeout=0.3)
    assert fake.webhook_requests == []
    assert (await bot.get_webhook_info()).pending_update_count == 1

    async with receiver() as (base, received):
        fake.route_webhook(base)
        await fake.wait_confirmed(update_id, timeout=5)
    assert ids(received) == [update_id]
