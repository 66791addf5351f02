"""Group commit of the inbox (storage/group_commit.py): webhook requests in hand together are
written in one statement, and each is answered only once that write committed.

The first write is held up by a real lock on the inbox (SQLite: the one writer's transaction;
PostgreSQL: a table lock taken by another connection), so the callers that come meanwhile
must wait for it, as they do under load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.types import Update

from bot.app import create_intake
from bot.domain.config import Settings
from bot.domain.texts import t
from bot.updates import Intake
from bot.webhook import WebhookHandler, WebhookServer
from storage.database import Connection, Database, Params, Row
from storage.health import Health
from tests.fake_telegram import SECRET_HEADER, FakeTelegram, text_update, user_json
from tests.helpers import Clock, fail_writes, stop_failing, wait_until
from tests.webhooks import free_port

pytestmark = pytest.mark.timeout(60)

INBOX_INSERT = "INSERT INTO inbox"
SECRET = "batches-secret_0123456789"


class Recorded(Database):
    """The bot's database, unchanged, writing down each statement it is given and each
    transaction begun: the tests' count of round trips."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.path: Path | None = db.path
        self.log: list[str] = []

    def inbox_writes(self) -> int:
        return sum(entry.startswith(INBOX_INSERT) for entry in self.log)

    @asynccontextmanager
    async def transaction(
        self, *, heavy: bool = False, serial: bool = True
    ) -> AsyncIterator[Connection]:
        self.log.append("BEGIN")
        async with self._db.transaction(heavy=heavy, serial=serial) as connection:
            yield connection

    async def fetchone(self, sql: str, params: Params = (), *, heavy: bool = False) -> Row | None:
        self.log.append(sql)
        return await self._db.fetchone(sql, params, heavy=heavy)

    async def fetchall(self, sql: str, params: Params = (), *, heavy: bool = False) -> list[Row]:
        self.log.append(sql)
        return await self._db.fetchall(sql, params, heavy=heavy)

    async def execute(self, sql: str, params: Params = (), *, heavy: bool = False) -> int:
        self.log.append(sql)
        return await self._db.execute(sql, params, heavy=heavy)

    async def executemany(self, sql: str, params: Iterable[Params]) -> None:
        self.log.append(sql)
        await self._db.executemany(sql, params)

    def scrub_erased(self) -> int:
        return self._db.scrub_erased()

    async def erased_scrubbed(self, number: int) -> None:
        await self._db.erased_scrubbed(number)

    async def schema_version(self) -> int:
        return await self._db.schema_version()


@asynccontextmanager
async def inbox_held(db: Database) -> AsyncIterator[None]:
    """Another writer holds the inbox: writes to it wait until the block ends."""
    async with db.transaction() as connection:
        if db.dialect == "postgres":
            await connection.execute("LOCK TABLE inbox IN EXCLUSIVE MODE")
        yield


@pytest.fixture
def recorded(db: Database) -> Recorded:
    return Recorded(db)


@pytest.fixture
async def intake(
    dispatcher: Dispatcher, bot: Bot, recorded: Recorded, settings: Settings, clock: Clock
) -> AsyncIterator[Intake]:
    # The intake's statements go through `recorded`; the handlers' do not.
    intake = create_intake(dispatcher, bot, db=recorded, settings=settings, clock=clock)
    yield intake
    await intake.close()


def update_of(bot: Bot, update_id: int, user_id: int, text: str = "/help") -> Update:
    return Update.model_validate(
        {"update_id": update_id, **text_update(user_json(user_id), text, message_id=update_id)},
        context={"bot": bot},
    )


async def handled_ids(db: Database) -> set[int]:
    return {row[0] for row in await db.fetchall("SELECT update_id FROM handled_updates")}


async def inbox_ids(db: Database) -> set[int]:
    return {row[0] for row in await db.fetchall("SELECT update_id FROM inbox")}


async def accepts_behind_a_held_inbox(
    db: Database, intake: Intake, first: Update, *batches: list[Update]
) -> list[set[int] | BaseException]:
    """`first` is accepted, its write waits for the held inbox, and then `batches` are
    accepted, one caller each; what each caller got once the inbox is free."""
    async with inbox_held(db):
        callers = [asyncio.create_task(intake.accept([first]))]
        await asyncio.sleep(0.1)  # its write is in flight
        callers += [asyncio.create_task(intake.accept(batch)) for batch in batches]
        await asyncio.sleep(0.1)
        # Not acknowledged while nothing is written.
        assert not any(caller.done() for caller in callers)
    return await asyncio.gather(*callers, return_exceptions=True)


async def test_callers_that_come_during_a_write_share_the_next_and_each_gets_its_own_ids(
    intake: Intake, recorded: Recorded, db: Database, bot: Bot, fake: FakeTelegram
) -> None:
    # Alone, a caller writes at once.
    assert await intake.accept([update_of(bot, 1, 1001)]) == {1}
    assert recorded.inbox_writes() == 1

    results = await accepts_behind_a_held_inbox(
        db, intake, update_of(bot, 2, 1002), *[[update_of(bot, n, 1000 + n)] for n in range(3, 13)]
    )

    assert results == [{n} for n in range(2, 13)]
    # The first alone, the ten that came while it was in flight together.
    assert recorded.inbox_writes() == 1 + 2
    await wait_until(lambda: all(fake.messages_to(1000 + n) for n in range(1, 13)), timeout=10)
    for n in range(1, 13):
        assert [m.text for m in fake.messages_to(1000 + n)] == [t("help")]
    await wait_until(lambda: not intake.busy_lanes, timeout=10)
    assert await handled_ids(db) >= set(range(1, 13))
    assert await inbox_ids(db) == set()


async def test_an_update_sent_twice_in_one_write_is_handed_on_once(
    intake: Intake, recorded: Recorded, db: Database, bot: Bot, fake: FakeTelegram
) -> None:
    results = await accepts_behind_a_held_inbox(
        db,
        intake,
        update_of(bot, 1, 1001),
        [update_of(bot, 5, 1005)],
        [update_of(bot, 5, 1005)],  # Telegram sent it again before the first was answered
        [update_of(bot, 1, 1001)],  # written by the first write already
        [update_of(bot, 6, 1006)],
    )

    assert results == [{1}, {5}, set(), set(), {6}]
    assert recorded.inbox_writes() == 2
    await wait_until(lambda: not intake.busy_lanes, timeout=10)
    assert await handled_ids(db) >= {1, 5, 6}
    assert [m.text for m in fake.messages_to(1001)] == [t("help")]
    assert [m.text for m in fake.messages_to(1005)] == [t("help")]
    assert [m.text for m in fake.messages_to(1006)] == [t("help")]


async def test_one_chats_updates_in_one_write_are_handled_in_update_id_order(
    intake: Intake, recorded: Recorded, db: Database, bot: Bot, fake: FakeTelegram
) -> None:
    # Came in the reverse of their order (requests racing): handled in Telegram's order.
    await accepts_behind_a_held_inbox(
        db,
        intake,
        update_of(bot, 1, 1002),
        [update_of(bot, 12, 1001, "hello")],
        [update_of(bot, 11, 1001, "/help")],
        [update_of(bot, 10, 1001, "/cancel")],
    )

    assert recorded.inbox_writes() == 2
    await wait_until(lambda: len(fake.messages_to(1001)) == 3, timeout=10)
    assert [m.text for m in fake.messages_to(1001)] == [
        t("nothing_to_cancel"),
        t("help"),
        t("not_understood"),
    ]
    await wait_until(lambda: not intake.busy_lanes, timeout=10)
    assert await handled_ids(db) >= {10, 11, 12}


async def test_a_failed_shared_write_fails_every_caller_in_it_and_no_other(
    intake: Intake, recorded: Recorded, db: Database, bot: Bot, fake: FakeTelegram
) -> None:
    # The write of updates 100 and above fails (a full disk, say); update 1's does not.
    name = await fail_writes(db, "inbox", "INSERT", when="NEW.update_id >= 100")

    results = await accepts_behind_a_held_inbox(
        db,
        intake,
        update_of(bot, 1, 1001),
        [update_of(bot, 100, 1100)],
        [update_of(bot, 101, 1101)],
        [update_of(bot, 2, 1002)],  # in the failed write too: not acknowledged either
    )

    assert results[0] == {1}
    assert all(isinstance(result, Exception) for result in results[1:])
    assert "injected failure" in str(results[1])
    assert recorded.inbox_writes() == 2
    await wait_until(lambda: not intake.busy_lanes, timeout=10)
    assert await inbox_ids(db) | await handled_ids(db) >= {1}
    assert not ({2, 100, 101} & (await inbox_ids(db) | await handled_ids(db)))
    assert fake.messages_to(1100) == fake.messages_to(1002) == []

    # Telegram sends them again: written and handled, once.
    await stop_failing(db, "inbox", name=name)
    assert await intake.accept([update_of(bot, 100, 1100)]) == {100}
    await wait_until(lambda: bool(fake.messages_to(1100)), timeout=10)
    assert [m.text for m in fake.messages_to(1100)] == [t("help")]


async def test_webhook_requests_in_hand_together_are_acknowledged_by_one_write_once_it_committed(
    intake: Intake, recorded: Recorded, db: Database, bot: Bot, dispatcher: Dispatcher
) -> None:
    port = free_port()
    server = WebhookServer(
        WebhookHandler(dispatcher, bot, intake, SECRET),
        Health(db),
        path="/updates",
        host="127.0.0.1",
        port=port,
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:

            async def post(update_id: int) -> int:
                body = update_of(bot, update_id, 1000 + update_id).model_dump_json()
                async with session.post(
                    f"http://127.0.0.1:{port}/updates",
                    data=body,
                    headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"},
                ) as response:
                    return response.status

            async with inbox_held(db):
                first = asyncio.create_task(post(1))
                await wait_until(lambda: bool(recorded.log), timeout=5)
                others = [asyncio.create_task(post(n)) for n in range(2, 9)]
                await asyncio.sleep(0.3)
                # No answer before the update is written.
                assert not first.done() and not any(other.done() for other in others)
            assert await first == 200
            assert await asyncio.gather(*others) == [200] * 7
    finally:
        await server.stop()
    # The first request's write, then one for the seven that came meanwhile (they may have
    # reached the server one by one, so at most one more).
    assert recorded.inbox_writes() in (2, 3)
    await wait_until(lambda: not intake.busy_lanes, timeout=10)
    assert await handled_ids(db) >= set(range(1, 9))
