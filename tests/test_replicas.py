"""Replicas on one PostgreSQL database, in-process: a chat's turn (SharedIntake), the sweep
that takes up what a stopped replica left, the leader that alone sends, the digest once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiogram import Bot, Dispatcher
from aiogram.types import Update

from bot.app import create_intake
from bot.digest_worker import DigestScheduler
from bot.domain.config import Settings
from bot.domain.events import EventCatalog
from bot.leader import Leader
from bot.updates import MAX_ATTEMPTS, STALE_AFTER, SharedIntake
from storage.database import Database, open_database
from storage.inbox import Arrival, Inbox
from storage.languages import Languages
from storage.outbox import Outbox
from storage.postgres import PostgresDatabase
from storage.replicas import ChatTurns, Leadership
from tests.client import Deliver, TelegramUser
from tests.fake_telegram import FakeTelegram, text_update, user_json
from tests.helpers import EVENTS_TOML, Clock, dispatcher_for, wait_until

pytestmark = pytest.mark.postgres_only


def update_of(
    bot: Bot, update_id: int, user_id: int, text: str, *, language_code: str = "ru"
) -> Update:
    user = user_json(user_id, language_code=language_code)
    return Update.model_validate(
        {"update_id": update_id, **text_update(user, text, message_id=update_id)},
        context={"bot": bot},
    )


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement this process sends to PostgreSQL from here on, by wrapping asyncpg's
    methods (as bench/count_statements does), not ours."""
    sent: list[str] = []

    def recording(original: Callable[..., Any]) -> Callable[..., Any]:
        async def recorded(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            sent.append(" ".join(str(query).split()))
            return await original(self, query, *args, **kwargs)

        return recorded

    for name in ("execute", "executemany", "fetch", "fetchval", "fetchrow"):
        connection = asyncpg.connection.Connection
        monkeypatch.setattr(connection, name, recording(getattr(connection, name)))
    return sent


def about_languages(statements: list[str]) -> list[str]:
    return [sql for sql in statements if "languages" in sql]


def through(intake: SharedIntake, bot: Bot) -> Deliver:
    """Delivery to one replica (as its webhook does), returning once its chat's worker is
    done (the turn was free: the update was handled there)."""

    async def deliver(update: dict[str, Any]) -> None:
        await intake.accept([Update.model_validate(update, context={"bot": bot})])
        await wait_until(lambda: intake.busy_lanes == 0, timeout=10)

    return deliver


@pytest.fixture
async def shared(
    dispatcher: Dispatcher, bot: Bot, db: Database, settings: Settings, clock: Clock
) -> AsyncIterator[SharedIntake]:
    assert isinstance(db, PostgresDatabase)
    turns = ChatTurns(db.session)
    intake = create_intake(dispatcher, bot, db=db, settings=settings, clock=clock, turns=turns)
    assert isinstance(intake, SharedIntake)
    await intake.start()
    yield intake
    await intake.close()
    await turns.close()


async def handled(db: Database, update_id: int) -> bool:
    return (
        await db.fetchone("SELECT 1 FROM handled_updates WHERE update_id = ?", (update_id,))
        is not None
    )


async def test_a_chat_whose_turn_another_replica_holds_waits_and_keeps_its_order(
    shared: SharedIntake, bot: Bot, db: Database, fake: FakeTelegram, clock: Clock
) -> None:
    assert isinstance(db, PostgresDatabase)
    other = ChatTurns(db.session)  # another replica, handling chat 1001 now
    try:
        assert await other.take(1001)
        await shared.accept([update_of(bot, 1, 1001, "/start"), update_of(bot, 2, 1002, "/start")])
        # Another chat is not held up by it.
        await wait_until(lambda: bool(fake.messages_to(1002)), timeout=10)
        await asyncio.sleep(0.3)
        assert fake.messages_to(1001) == []
        assert not await handled(db, 1)
        await shared.accept([update_of(bot, 3, 1001, "/help")])
        # Its worker finds the turn taken, and leaves the update to the holder.
        await wait_until(lambda: shared.busy_lanes == 0, timeout=10)
        # The holder, giving the turn back, finds what waits for the chat and takes it again:
        # here it stops instead (it dies, say), and its updates wait for a sweep.
        turn = await other.pass_on(1001)
        assert turn is not None
        assert [row.update_id for row in turn.waiting] == [1, 3]
    finally:
        await other.give_back(1001)
        await other.close()
    assert not await handled(db, 1)
    clock.advance(timedelta(seconds=STALE_AFTER + 1))
    await shared.sweep()  # (or the sweep the replica runs every SWEEP_EVERY seconds)
    await wait_until(lambda: len(fake.messages_to(1001)) >= 2, timeout=10)
    await wait_until(lambda: shared.busy_lanes == 0, timeout=10)
    assert await handled(db, 1) and await handled(db, 3)
    # In order: the greeting (consent) first, then /help's answer.
    first, second = fake.messages_to(1001)[:2]
    assert first.message_id < second.message_id
    assert "соглас" in (first.text or "").lower()
    assert "/forget" in (second.text or "")


async def test_two_replicas_taking_turns_at_one_chat_handle_each_update_once_in_order(
    shared: SharedIntake,
    dispatcher: Dispatcher,
    bot: Bot,
    db: Database,
    settings: Settings,
    fake: FakeTelegram,
    clock: Clock,
) -> None:
    assert isinstance(db, PostgresDatabase)
    turns = ChatTurns(db.session)
    second = create_intake(dispatcher, bot, db=db, settings=settings, clock=clock, turns=turns)
    texts = ["/me", "/help"] * 6
    try:
        # A load balancer's round robin: each update to the other replica, none waiting for
        # the one before, so most arrive while the other replica holds the chat's turn.
        for update_id, text in enumerate(texts, start=1):
            await (shared if update_id % 2 else second).accept(
                [update_of(bot, update_id, 1010, text)]
            )
        # No sweep: the clock stands still, so nothing is ever stale.
        await wait_until(lambda: len(fake.messages_to(1010)) >= len(texts), timeout=20)
        await wait_until(lambda: shared.busy_lanes == second.busy_lanes == 0, timeout=10)
    finally:
        await second.close()
        await turns.close()
    replies = fake.messages_to(1010)
    assert len(replies) == len(texts)
    assert [("/forget" in (reply.text or "")) for reply in replies] == [False, True] * 6
    assert all([await handled(db, update_id) for update_id in range(1, len(texts) + 1)])
    assert await db.fetchall("SELECT update_id FROM inbox") == []


async def test_a_turn_given_back_is_taken_again_with_what_waits_and_the_conversation(
    db: Database, clock: Clock
) -> None:
    assert isinstance(db, PostgresDatabase)
    holder, receiver = ChatTurns(db.session), ChatTurns(db.session)
    inbox = Inbox(db)
    try:
        assert await holder.take(1020, received=()) is not None
        # Another replica writes an update of the chat, then finds the turn taken.
        await inbox.accept([Arrival(21, 1020, "{}")], [], now=clock())
        assert await receiver.take(1020) is None
        await db.execute(
            "INSERT INTO fsm_states (key, state, data, updated_at) VALUES (?, ?, ?, ?)",
            ("k", "Form:name", '{"a": 1}', clock()),
        )
        turn = await holder.pass_on(1020, conversation="k")
        assert turn is not None
        assert [(row.update_id, row.attempts) for row in turn.waiting] == [(21, 1)]
        assert turn.conversation == ("Form:name", '{"a": 1}', "[]")
        # What this replica received itself is not counted as an attempt.
        await holder.give_back(1020)
        turn = await holder.take(1020, received=[21])
        assert turn is not None and turn.waiting[0].attempts == 1 and turn.conversation is None
        # Nothing waits once it is handled: the turn is given back and stays free.
        await db.execute(
            "INSERT INTO handled_updates (update_id, handled_at) VALUES (?, ?)", (21, clock())
        )
        assert await holder.pass_on(1020) is None
        assert await receiver.take(1020) is not None
    finally:
        await holder.close()
        await receiver.close()


async def test_what_a_stopped_replica_left_is_taken_up_with_an_attempt_counted(
    shared: SharedIntake, bot: Bot, db: Database, fake: FakeTelegram, clock: Clock
) -> None:
    # Written by a replica that died before handling it (no turn held: its session is gone).
    left = update_of(bot, 7, 1003, "/start")
    payload = left.model_dump_json(by_alias=True, exclude_unset=True)
    await Inbox(db).accept([Arrival(7, 1003, payload)], [], now=clock() - timedelta(seconds=10))

    assert await shared.sweep() == 1
    await wait_until(lambda: bool(fake.messages_to(1003)), timeout=10)
    # Marked handled after its reply, before its worker ends.
    await wait_until(lambda: shared.busy_lanes == 0, timeout=10)
    assert await handled(db, 7)
    assert await shared.sweep() == 0


async def test_an_update_that_stopped_replicas_again_and_again_is_set_aside(
    shared: SharedIntake, bot: Bot, db: Database, fake: FakeTelegram, clock: Clock
) -> None:
    poison = update_of(bot, 8, 1004, "/start")
    payload = poison.model_dump_json(by_alias=True, exclude_unset=True)
    await Inbox(db).accept([Arrival(8, 1004, payload)], [], now=clock() - timedelta(seconds=10))
    await db.execute("UPDATE inbox SET attempts = ? WHERE update_id = 8", (MAX_ATTEMPTS - 1,))

    assert await shared.sweep() == 1
    await wait_until(lambda: bool(fake.messages_to(1004)), timeout=10)
    [(update_id, reason)] = await Inbox(db).set_aside_rows()
    assert update_id == 8 and reason == f"in hand at {MAX_ATTEMPTS} stops"
    assert not await handled(db, 8)
    # The person is told (the apology), not left waiting.
    assert len(fake.messages_to(1004)) == 1


async def test_one_replica_leads_and_another_takes_over_when_it_stops(db: Database) -> None:
    assert isinstance(db, PostgresDatabase)
    events: list[str] = []

    def leader(name: str) -> Leader:
        async def start() -> None:
            events.append(f"{name} starts")

        async def stop() -> None:
            events.append(f"{name} stops")

        return Leader(Leadership(db.session), start=start, stop=stop, try_every=0.05)

    first, second = leader("first"), leader("second")
    first.begin()
    await wait_until(lambda: first.leading, timeout=5)
    second.begin()
    await asyncio.sleep(0.3)
    assert not second.leading
    await first.end()
    await wait_until(lambda: second.leading, timeout=5)
    await second.end()
    assert events == ["first starts", "first stops", "second starts", "second stops"]


async def test_two_replicas_due_a_digest_at_once_queue_it_once(
    db: Database, catalog: EventCatalog, settings: Settings, clock: Clock, database_url: str
) -> None:
    zone = settings.timezone

    def scheduler(on: Database) -> DigestScheduler:
        return DigestScheduler(
            db=on, outbox=Outbox(on), catalog=catalog, chat_ids=(-100, -200),
            at=settings.digest_time, zone=zone, clock=clock,
        )  # fmt: skip

    yesterday = (clock() - timedelta(days=1)).astimezone(zone).date()
    await db.execute(
        "INSERT INTO digests (local_date, created_at) VALUES (?, ?)",
        (yesterday.isoformat(), (clock() - timedelta(days=1)).isoformat()),
    )
    clock.advance(timedelta(days=1))
    # The other replica: a pool of its own on the same database.
    async with open_database(settings.database_path, url=database_url) as other:
        results = await asyncio.gather(scheduler(db).run_due(), scheduler(other).run_due())
    assert sorted(results) == [False, True]
    rows = await db.fetchall(
        "SELECT chat_id, count(*) FROM outbox WHERE kind = 'digest' GROUP BY 1"
    )
    assert {row[0] for row in rows} == {-100, -200}
    assert len({row[1] for row in rows}) == 1


async def test_a_turn_lost_with_its_connection_is_known_and_the_chat_free_for_others(
    db: Database,
) -> None:
    assert isinstance(db, PostgresDatabase)
    turns, other = ChatTurns(db.session), ChatTurns(db.session)
    try:
        assert await turns.take(1001)
        since = turns.generation
        assert turns.still_held(since)
        assert not await other.take(1001)
        # PostgreSQL ends the session holding the turn (a restart, an operator's kill).
        ended = await db.fetchall(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND objsubid = 2 AND objid = CAST(? AS oid) "
            "AND pid <> pg_backend_pid()",
            (1001,),
        )
        assert [tuple(row) for row in ended] == [(True,)]
        await wait_until(lambda: not turns.still_held(since), timeout=5)
        assert await other.take(1001)
        # The replica that lost it asks again and finds it taken (no second handler).
        assert not await turns.take(1001)
    finally:
        await turns.close()
        await other.close()


async def test_turns_asked_at_once_are_answered_each_with_its_own_chat(
    db: Database, clock: Clock
) -> None:
    assert isinstance(db, PostgresDatabase)
    turns, other = ChatTurns(db.session), ChatTurns(db.session)
    chats = list(range(2001, 2011))
    await Inbox(db).accept(
        [Arrival(chat * 10 + n, chat, "{}") for chat in chats for n in (1, 2)], [], now=clock()
    )
    try:
        taken = await asyncio.gather(
            *(turns.take(chat, received=[chat * 10 + 1]) for chat in chats)
        )
        for chat, turn in zip(chats, taken, strict=True):
            assert turn is not None
            assert [(row.update_id, row.attempts) for row in turn.waiting] == [
                (chat * 10 + 1, 0),
                (chat * 10 + 2, 0),
            ]
        assert not any(await asyncio.gather(*(other.take(chat) for chat in chats)))
        # Half the chats' updates handled: those chats are given back and stay free; the
        # others are taken again with what still waits.
        for chat in chats[:5]:
            for n in (1, 2):
                await db.execute(
                    "INSERT INTO handled_updates (update_id, handled_at) VALUES (?, ?)",
                    (chat * 10 + n, clock()),
                )
        passed = await asyncio.gather(*(turns.pass_on(chat) for chat in chats))
        assert passed[:5] == [None] * 5
        assert [[row.update_id for row in turn.waiting] for turn in passed[5:] if turn] == [
            [chat * 10 + 1, chat * 10 + 2] for chat in chats[5:]
        ]
        assert all(await asyncio.gather(*(other.take(chat) for chat in chats[:5])))
    finally:
        await turns.close()
        await other.close()


async def test_turns_asked_while_one_is_on_its_way_go_in_one_statement(
    db: Database, clock: Clock
) -> None:
    assert isinstance(db, PostgresDatabase)
    turns = ChatTurns(db.session)
    chats = list(range(3001, 3007))
    await Inbox(db).accept([Arrival(chat, chat, "{}") for chat in chats], [], now=clock())
    # Another connection holds the inbox, so the first statement waits in PostgreSQL.
    holder = await db.session()
    hold = holder.transaction()
    await hold.start()
    await holder.execute("LOCK TABLE inbox IN EXCLUSIVE MODE")
    try:
        asks = [asyncio.create_task(turns.take(chats[0]))]
        await asyncio.sleep(0.2)
        asks += [asyncio.create_task(turns.take(chat)) for chat in chats[1:]]
        await asyncio.sleep(0.2)
        assert not any(ask.done() for ask in asks)
    finally:
        await hold.rollback()
        await holder.close()
    try:
        assert all(await asyncio.gather(*asks))
        # Each turn counted an attempt on its chat's update (received by no one here): the
        # first in a transaction of its own, the five asked meanwhile in one.
        rows = await db.fetchall(
            "SELECT attempts, CAST(xmin AS TEXT) FROM inbox WHERE update_id BETWEEN ? AND ?",
            (chats[0], chats[-1]),
        )
        assert [row[0] for row in rows] == [1] * len(chats)
        assert len({row[1] for row in rows}) == 2
    finally:
        await turns.close()


async def test_a_private_chats_turn_brings_the_persons_language_and_its_update_reads_none(
    shared: SharedIntake, bot: Bot, db: Database, fake: FakeTelegram, statements: list[str]
) -> None:
    # Mary chose English on another replica (unknown here); Ann writes for the first time.
    await Languages(db).choose(1030, "en")
    statements.clear()
    await shared.accept(
        [update_of(bot, 1, 1030, "/help"), update_of(bot, 2, 1031, "/help", language_code="en-GB")]
    )
    await wait_until(lambda: bool(fake.messages_to(1030) and fake.messages_to(1031)), timeout=10)
    await wait_until(lambda: shared.busy_lanes == 0, timeout=10)
    # Read (and Ann's stored) by the turns' statement, not by one of their own.
    assert any("FROM turns(" in sql for sql in statements)
    assert about_languages(statements) == []
    for chat in (1030, 1031):
        assert (fake.messages_to(chat)[0].text or "").startswith("I register")
    rows = await db.fetchall(
        "SELECT user_id, language, chosen FROM languages WHERE user_id IN (1030, 1031) "
        "ORDER BY user_id"
    )
    assert [tuple(row) for row in rows] == [(1030, "en", 1), (1031, "en", 0)]


async def test_a_first_message_left_to_the_turns_holder_stores_the_language_it_reads(
    shared: SharedIntake,
    bot: Bot,
    db: Database,
    fake: FakeTelegram,
    clock: Clock,
    statements: list[str],
) -> None:
    assert isinstance(db, PostgresDatabase)
    holder = ChatTurns(db.session)  # another replica, handling chat 1040 now
    try:
        assert await holder.take(1040)
        await shared.accept([update_of(bot, 1, 1040, "/help", language_code="en")])
        await wait_until(lambda: shared.busy_lanes == 0, timeout=10)
        assert fake.messages_to(1040) == []
        # Stored by the request that found the turn taken: her first message's language.
        rows = await db.fetchall("SELECT language, chosen FROM languages WHERE user_id = 1040")
        assert [tuple(row) for row in rows] == [("en", 0)]
        # The holder, giving the turn back, takes it again for her update, with her language.
        turn = await holder.pass_on(1040)
        assert turn is not None and [row.update_id for row in turn.waiting] == [1]
        assert turn.language == "en"
    finally:
        await holder.give_back(1040)  # it stops instead: a sweep takes the chat up
        await holder.close()
    statements.clear()
    clock.advance(timedelta(seconds=STALE_AFTER + 1))
    assert await shared.sweep() == 1
    await wait_until(lambda: bool(fake.messages_to(1040)), timeout=10)
    await wait_until(lambda: shared.busy_lanes == 0, timeout=10)
    assert (fake.messages_to(1040)[0].text or "").startswith("I register")
    assert about_languages(statements) == []


async def test_a_language_chosen_or_forgotten_on_one_replica_shows_at_the_others_next_turn(
    shared: SharedIntake,
    bot: Bot,
    db: Database,
    settings: Settings,
    fake: FakeTelegram,
    clock: Clock,
) -> None:
    assert isinstance(db, PostgresDatabase)
    # Another replica: a dispatcher of its own (its own languages known), its own turns.
    turns = ChatTurns(db.session)
    other = create_intake(
        await dispatcher_for(EVENTS_TOML, settings, db, clock),
        bot,
        db=db,
        settings=settings,
        clock=clock,
        turns=turns,
    )
    assert isinstance(other, SharedIntake)
    here, there = through(shared, bot), through(other, bot)
    mary = TelegramUser(fake, here, user_id=1050, first_name="Mary", language_code="ru")
    try:
        assert (await mary.send("/help"))[0].text.startswith("Я регистрирую")  # type: ignore[union-attr]
        mary.deliver = there
        await mary.send("/language")
        await mary.click("English")
        await mary.send("/start")
        await mary.click("I agree")
        # Known here in Russian a moment ago, yet in English at once: the turn read it (the
        # clock stands still: FRESH_FOR is not what brings it).
        mary.deliver = here
        assert (await mary.send("/help"))[0].text.startswith("I register")  # type: ignore[union-attr]
        mary.deliver = there
        await mary.send("/forget")
        await mary.click("Yes, delete everything")
        assert await db.fetchall("SELECT * FROM languages WHERE user_id = 1050") == []
        # Her next message stores her Telegram's language again, wherever it arrives.
        mary.deliver = here
        assert (await mary.send("/help"))[0].text.startswith("Я регистрирую")  # type: ignore[union-attr]
        rows = await db.fetchall("SELECT language, chosen FROM languages WHERE user_id = 1050")
        assert [tuple(row) for row in rows] == [("ru", 0)]
    finally:
        await other.close()
        await turns.close()


async def test_a_replica_of_the_version_before_still_takes_turns_during_a_rolling_restart(
    db: Database,
) -> None:
    """Schema step 20 gave `turns` an eighth argument; a replica not yet restarted asks with
    seven (README: a rolling restart goes one replica at a time)."""
    assert isinstance(db, PostgresDatabase)
    older = await db.session()
    try:
        rows = await older.fetch(
            "SELECT * FROM turns($1, $2, $3, $4, $5, $6, $7)",
            4242,
            [False],
            [77],
            [77],
            [None],
            [],
            [],
        )
        assert [tuple(row.keys()) for row in rows] == [
            (
                "request",
                "taken",
                "waiting_id",
                "waiting_payload",
                "waiting_attempts",
                "fsm_state",
                "fsm_data",
                "fsm_recent",
            )
        ]
        assert (rows[0]["request"], rows[0]["taken"]) == (1, True)
    finally:
        await older.close()
