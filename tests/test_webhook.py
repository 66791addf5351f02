"""Webhook mode in-process: the production dispatcher, intake and webhook server on 127.0.0.1,
fed by the fake Bot API's webhook delivery over real HTTP (or by hand-made requests)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest
from aiogram import Bot, Dispatcher

from bot.app import create_intake
from bot.domain.config import Settings
from bot.updates import Intake
from bot.webhook import (
    MAX_CONNECTIONS,
    WebhookHandler,
    WebhookServer,
    WebhookSetupError,
    leave_webhook,
    register_webhook,
    serve_webhook,
)
from storage.database import Database
from storage.health import Health
from storage.postgres import SERIAL_LOCK
from storage.webhook import WebhookRecord
from tests.client import TelegramUser
from tests.fake_telegram import SECRET_HEADER, FakeTelegram, text_update, user_json
from tests.helpers import Clock, set_read_only, wait_until

pytestmark = pytest.mark.timeout(60)

URL = "https://bot.example.org/telegram/updates"
SECRET = "webhook-secret_" + "0123456789" * 3
PATH = "/telegram/updates"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def webhook_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "mode": "webhook",
            "webhook_url": URL,
            "webhook_secret": type(settings.bot_token)(SECRET),
            "webhook_listen": ("127.0.0.1", free_port()),
        }
    )


@dataclass
class Serving:
    fake: FakeTelegram
    db: Database
    base: str
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def post(
        self, body: bytes, *, secret: str | None = SECRET, path: str = PATH
    ) -> tuple[int, float]:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.base + path, data=body, headers=headers) as response,
        ):
            await response.read()
            return response.status, loop.time() - started

    async def healthz(self) -> int:
        async with aiohttp.ClientSession() as session, session.get(f"{self.base}/healthz") as r:
            return r.status


async def inbox_ids(db: Database) -> list[int]:
    return [row[0] for row in await db.fetchall("SELECT update_id FROM inbox ORDER BY 1")]


async def handled_ids(db: Database) -> set[int]:
    return {row[0] for row in await db.fetchall("SELECT update_id FROM handled_updates")}


async def until_handled(db: Database, update_id: int) -> None:
    for _ in range(1000):
        if update_id in await handled_ids(db):
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"update {update_id} not handled in 5 s")


@pytest.fixture
async def serving(
    dispatcher: Dispatcher,
    bot: Bot,
    fake: FakeTelegram,
    db: Database,
    webhook_settings: Settings,
    clock: Clock,
) -> AsyncIterator[Serving]:
    """serve_webhook as `python -m bot` runs it, with the fake delivering to it."""
    fake.webhook_backoff = (0.05, 0.2)
    fake.webhook_timeout = 5.0
    intake = create_intake(dispatcher, bot, db=db, settings=webhook_settings, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve_webhook(
            dispatcher,
            bot,
            intake,
            settings=webhook_settings,
            health=Health(db),
            record=WebhookRecord(db),
            stop=stop,
        )
    )
    host, port = webhook_settings.webhook_listen
    base = f"http://{host}:{port}"
    fake.route_webhook(base)
    await wait_until(lambda: fake.webhook is not None or task.done(), timeout=10)
    if task.done():
        task.result()
    yield Serving(fake, db, base, stop, task)
    stop.set()
    await asyncio.wait_for(task, 10)
    await fake.close()


def update_json(update_id: int, user_id: int = 1001, text: str = "/help") -> bytes:
    update = {"update_id": update_id, **text_update(user_json(user_id), text, message_id=1)}
    return json.dumps(update).encode()


async def test_an_update_is_acknowledged_once_in_the_inbox_before_it_is_handled(
    serving: Serving,
) -> None:
    fake, db = serving.fake, serving.db
    hold = fake.hold("sendMessage", chat_id=1001)
    update_id = fake.push_update(text_update(user_json(1001), "/help", message_id=1))

    await fake.wait_confirmed(update_id, timeout=5)
    # Acknowledged while its reply is still held: durable, not yet handled.
    assert update_id in await inbox_ids(db)
    assert update_id not in await handled_ids(db)
    assert hold.reached.is_set() or not fake.messages_to(1001)
    hold.released.set()
    await wait_until(lambda: bool(fake.messages_to(1001)), timeout=5)
    assert "/cancel" in (fake.last_message(1001).text or "")
    [request] = [r for r in fake.webhook_requests if r.update_id == update_id]
    assert request.status == 200


async def test_a_registration_goes_through_webhook_delivery(serving: Serving) -> None:
    fake, db = serving.fake, serving.db

    async def deliver(update: dict[str, object]) -> None:
        update_id = fake.push_update(update)
        await fake.wait_confirmed(update_id, timeout=10)
        await until_handled(db, update_id)

    user = TelegramUser(fake, deliver, user_id=1001, first_name="Мария")
    await user.send("/start")
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    await user.send("Главный специалист")
    await user.send("Министерство культуры")
    await user.share_contact("79123456789")
    await user.send("maria@example.ru")
    replies = await user.click("Подтвердить")

    assert "Вы зарегистрированы" in (replies[0].text or "")
    rows = await db.fetchall("SELECT user_id, full_name FROM registrations")
    assert [tuple(row) for row in rows] == [(1001, "Иванова Мария Петровна")]
    assert all(request.status == 200 for request in fake.webhook_requests)


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET[:-1], SECRET + "x", "пароль"])
async def test_a_request_without_the_right_secret_gets_401_and_nothing_is_stored(
    serving: Serving, secret: str | None
) -> None:
    status, _ = await serving.post(update_json(77), secret=secret)

    assert status == 401
    assert await inbox_ids(serving.db) == []


async def raw_request(base: str, head: str) -> tuple[bytes, float]:
    """Send only a request's head (no body) and return the status line and how long it took."""
    host, port = base.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    return line, loop.time() - started


@pytest.mark.parametrize(
    ("secret", "expected"), [("wrong", b"401"), (None, b"401"), (SECRET, b"413")]
)
@pytest.mark.parametrize("expect", [False, True])
async def test_a_huge_body_announced_is_refused_at_once_without_being_read(
    serving: Serving, secret: str | None, expected: bytes, expect: bool
) -> None:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000000\r\n"
        + (f"{SECRET_HEADER}: {secret}\r\n" if secret is not None else "")
        + ("Expect: 100-continue\r\n" if expect else "")
        + "\r\n"
    )

    line, took = await raw_request(serving.base, head)

    assert line.split()[1] == expected, line
    assert took < 1.0


@pytest.mark.parametrize(
    "body",
    [b"{not json, Ivanova", b'{"update_id": "x"}', b"[]", b"", "Иванова".encode()],
)
async def test_what_is_not_an_update_gets_400_and_its_content_is_not_logged(
    serving: Serving, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        status, _ = await serving.post(body)

    assert status == 400
    assert "not an update" in caplog.text
    assert "Ivanova" not in caplog.text and "Иванова" not in caplog.text
    assert await inbox_ids(serving.db) == []


async def test_an_inbox_that_cannot_be_written_gets_500_and_telegram_sends_again(
    serving: Serving,
) -> None:
    fake, db = serving.fake, serving.db
    await set_read_only(db, True)
    update_id = fake.push_update(text_update(user_json(1001), "/help", message_id=1))
    await wait_until(lambda: len(fake.webhook_requests) >= 2, timeout=5)
    assert {request.status for request in fake.webhook_requests} == {500}

    await set_read_only(db, False)
    await fake.wait_confirmed(update_id, timeout=5)
    await until_handled(db, update_id)
    assert len(fake.messages_to(1001)) == 1


@pytest.mark.sqlite_only("another process holding SQLite's write lock")
async def test_healthz_answers_200_and_503_while_the_database_is_locked(
    serving: Serving, settings: Settings
) -> None:
    assert await serving.healthz() == 200

    # Another process holds the write lock (an operator's sqlite3 shell, say): the inbox
    # could not be written, so the replica is not ready.
    with closing(sqlite3.connect(settings.database_path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await serving.healthz() == 503
        assert loop.time() - started < 4
        other.execute("ROLLBACK")

    statuses: list[int] = []
    for _ in range(100):
        statuses.append(await serving.healthz())
        if statuses[-1] == 200:
            break
        await asyncio.sleep(0.1)
    assert statuses[-1] == 200


@pytest.mark.postgres_only
async def test_healthz_answers_503_while_another_replica_holds_the_write_lock_on_postgres(
    serving: Serving, settings: Settings
) -> None:
    assert await serving.healthz() == 200
    assert settings.database_dsn is not None

    # Another session holds the lock every writing transaction takes (storage/postgres.py):
    # the inbox could not be written in time, so the replica is not ready.
    other = await asyncpg.connect(settings.database_dsn)
    try:
        await other.execute("BEGIN")
        await other.execute("SELECT pg_advisory_xact_lock($1)", SERIAL_LOCK)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await serving.healthz() == 503
        assert loop.time() - started < 4
        await other.execute("ROLLBACK")
    finally:
        await other.close()

    statuses: list[int] = []
    for _ in range(100):
        statuses.append(await serving.healthz())
        if statuses[-1] == 200:
            break
        await asyncio.sleep(0.1)
    assert statuses[-1] == 200


async def test_set_webhook_only_when_the_fingerprint_changes_and_never_drops_updates(
    bot: Bot,
    fake: FakeTelegram,
    db: Database,
    dispatcher: Dispatcher,
    webhook_settings: Settings,
) -> None:
    record = WebhookRecord(db)
    allowed = dispatcher.resolve_used_update_types()

    assert await register_webhook(bot, record, webhook_settings, allowed)
    assert not await register_webhook(bot, record, webhook_settings, allowed)
    [call] = fake.calls_of("setWebhook")
    assert call.params["url"] == URL
    assert call.params["secret_token"] == SECRET
    assert call.params["max_connections"] == MAX_CONNECTIONS
    assert sorted(call.params["allowed_updates"]) == sorted(allowed)

    # getWebhookInfo cannot show a new secret: the stored fingerprint tells.
    renewed = webhook_settings.model_copy(
        update={"webhook_secret": type(webhook_settings.bot_token)("another-secret")}
    )
    assert await register_webhook(bot, record, renewed, allowed)
    assert fake.webhook is not None and fake.webhook.secret == "another-secret"
    # Removed by hand meanwhile: Telegram's URL differs, so it is set again.
    await bot.delete_webhook()
    assert await register_webhook(bot, record, renewed, allowed)
    assert len(fake.calls_of("setWebhook")) == 3
    assert all(
        call.params.get("drop_pending_updates") in (None, False)
        for call in fake.calls_of("setWebhook")
    )
    await fake.close()


async def test_polling_start_removes_a_leftover_webhook_keeping_its_updates(
    bot: Bot,
    fake: FakeTelegram,
    db: Database,
    dispatcher: Dispatcher,
    webhook_settings: Settings,
) -> None:
    record = WebhookRecord(db)
    allowed = dispatcher.resolve_used_update_types()
    await register_webhook(bot, record, webhook_settings, allowed)
    await fake.close()  # nobody listens: the update waits at Telegram's
    update_id = fake.push_update(text_update(user_json(1001), "/help", message_id=1))

    await leave_webhook(bot, record)

    [call] = fake.calls_of("deleteWebhook")
    assert call.params.get("drop_pending_updates") is False
    assert fake.webhook is None
    assert await record.fingerprint() is None
    [update] = await bot.get_updates(timeout=0)
    assert update.update_id == update_id
    # Back in webhook mode, Telegram is told again.
    assert await register_webhook(bot, record, webhook_settings, allowed)
    await leave_webhook(bot, record)
    await leave_webhook(bot, record)
    assert len(fake.calls_of("deleteWebhook")) == 2  # nothing to remove the second time
    await fake.close()


async def test_a_stopping_server_answers_503_and_healthz_too(
    dispatcher: Dispatcher, bot: Bot, db: Database, settings: Settings, clock: Clock
) -> None:
    intake: Intake = create_intake(dispatcher, bot, db=db, settings=settings, clock=clock)
    server = WebhookServer(
        WebhookHandler(dispatcher, bot, intake, SECRET),
        Health(db),
        path=PATH,
        host="127.0.0.1",
        port=0,
    )
    await server.start()
    serving = Serving(FakeTelegram(), db, f"http://127.0.0.1:{server.port}", asyncio.Event(),
                      asyncio.create_task(asyncio.sleep(0)))  # fmt: skip
    try:
        assert await serving.healthz() == 200
        server.refuse()
        status, _ = await serving.post(update_json(5))
        assert status == 503
        assert await serving.healthz() == 503
        # The secret is still checked first.
        assert (await serving.post(update_json(5), secret="wrong"))[0] == 401
    finally:
        await server.stop()
    assert await inbox_ids(db) == []


async def test_a_webhook_telegram_refuses_stops_the_start_with_one_line_without_the_secret(
    bot: Bot,
    fake: FakeTelegram,
    db: Database,
    dispatcher: Dispatcher,
    webhook_settings: Settings,
) -> None:
    fake.fail(
        "setWebhook", code=400, description="Bad Request: bad webhook: Failed to resolve host"
    )

    with pytest.raises(WebhookSetupError) as refused:
        await register_webhook(
            bot, WebhookRecord(db), webhook_settings, dispatcher.resolve_used_update_types()
        )

    message = str(refused.value)
    assert message == (
        "WEBHOOK_URL: Telegram refused the webhook: Bad Request: bad webhook: "
        "Failed to resolve host"
    )
    assert SECRET not in message
    # Nothing remembered: the next start tries again.
    assert await WebhookRecord(db).fingerprint() is None
