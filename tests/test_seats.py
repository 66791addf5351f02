"""Seats and the waiting list through the production Dispatcher: the database decides who gets
a seat (also under a burst of simultaneous confirmations, and across several connections),
a freed seat is offered to the first in line in the freeing transaction, the offer is taken
once, runs out to the next, stops at the deadline; the list is left from /me."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiogram import Bot, Dispatcher
from openpyxl import load_workbook

from bot.domain.config import Settings
from bot.domain.events import EventCatalog, EventsFileError, load_events, parse_events
from bot.sender import Sender
from storage.audit import Reason
from storage.database import Database, open_database
from storage.export import export_to_file
from storage.outbox import Outbox
from storage.registrations import NewRegistration, Registrations
from storage.seats import Seats
from tests.client import TelegramUser, feed_deliver
from tests.fake_telegram import FakeTelegram
from tests.helpers import (
    ADMIN_ID,
    EVENTS_TOML,
    MOSCOW,
    ORGANIZER_CHAT_ID,
    Clock,
    dispatcher_for,
    export_source,
    fill_form,
    select,
)

CAPACITY = 2


def with_seats(capacity: int | None = CAPACITY, offer_hours: int | None = None) -> str:
    extra = f"capacity = {capacity}\n" if capacity is not None else ""
    extra += f"offer_hours = {offer_hours}\n" if offer_hours is not None else ""
    return EVENTS_TOML + extra


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.toml"
    path.write_text(with_seats(), encoding="utf-8")
    return path


@pytest.fixture
def people(fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot) -> list[TelegramUser]:
    deliver = feed_deliver(dispatcher, bot)
    return [TelegramUser(fake, deliver, user_id=2000 + n) for n in range(60)]


async def statuses(db: Database) -> dict[object, object]:
    rows = await select(db, "SELECT user_id, status FROM registrations ORDER BY id")
    return {user_id: status for user_id, status in rows}


def offers_to(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [
        m.text or "" for m in fake.messages_to(chat_id) if "Освободилось место" in (m.text or "")
    ]


async def register(user: TelegramUser, button: str = "Подтвердить") -> str:
    await fill_form(user)
    await user.click(button)
    return user.last_message_text


async def full_house(people: list[TelegramUser]) -> tuple[TelegramUser, TelegramUser, TelegramUser]:
    """Two seated, a third and fourth waiting; returns (seated, first, second in line)."""
    seated = people[0]
    assert "Вы зарегистрированы" in await register(seated)
    assert "Вы зарегистрированы" in await register(people[1])
    first = people[2]
    assert "место в очереди — 1" in await register(first, "Встать в лист ожидания")
    second = people[3]
    assert "место в очереди — 2" in await register(second, "Встать в лист ожидания")
    return seated, first, second


async def withdraw(user: TelegramUser) -> None:
    await user.send("/me")
    await user.click("Отменить регистрацию")
    await user.click("Да, отменить")


# --- the events file ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("capacity = 0", "'capacity': is 0"),
        ("capacity = -5", "'capacity': is -5"),
        ('capacity = "120"', "'capacity': must be a whole number"),
        ("capacity = 1.5", "'capacity': must be a whole number"),
        ("capacity = true", "'capacity': must be a whole number"),
        ("offer_hours = 0", "'offer_hours': is 0"),
        ("offer_hours = 100000", "'offer_hours': is 100000"),
    ],
)
def test_events_file_stops_with_the_key_when_a_seat_value_is_wrong(line: str, problem: str) -> None:
    with pytest.raises(EventsFileError) as error:
        parse_events(EVENTS_TOML + line + "\n", file=Path("events.toml"), default_zone=MOSCOW)
    assert "events.toml: event 'forum-2026': key " + problem in str(error.value)


def test_events_file_keys_are_optional_when_left_out() -> None:
    [event] = parse_events(EVENTS_TOML, file=Path("e.toml"), default_zone=MOSCOW)
    assert (event.capacity, event.offer_hours) == (None, 24)
    [event] = parse_events(with_seats(120, 6), file=Path("e.toml"), default_zone=MOSCOW)
    assert (event.capacity, event.offer_hours) == (120, 6)


# --- taking a seat ------------------------------------------------------------------------------


async def test_confirm_becomes_join_the_waiting_list_when_full(
    people: list[TelegramUser], db: Database, fake: FakeTelegram, sender: Sender
) -> None:
    await register(people[0])
    await register(people[1])
    third = people[2]
    await fill_form(third)
    summary = third.last_message_text
    assert "Свободных мест нет" in summary
    assert "🕒 Встать в лист ожидания" in third.buttons(fake.last_message(third.chat_id))
    await third.click("Встать в лист ожидания")
    assert "место в очереди — 1" in third.last_message_text
    assert (await statuses(db)) == {2000: "confirmed", 2001: "confirmed", 2002: "waiting"}
    await sender.idle()
    cards = [m.text or "" for m in fake.messages_to(ORGANIZER_CHAT_ID)]
    assert any("Лист ожидания: регистрация №3, место в очереди — 1" in text for text in cards)


async def test_exactly_capacity_confirmed_when_fifty_confirm_at_once(
    people: list[TelegramUser], db: Database
) -> None:
    crowd = people[:50]
    for person in crowd:
        await fill_form(person)
    # Every summary was shown while seats were free: the database alone decides.
    await asyncio.gather(*(person.click("Подтвердить") for person in crowd))
    seated = [person for person in crowd if "Вы зарегистрированы" in person.last_message_text]
    waiting = [person for person in crowd if "лист ожидания" in person.last_message_text]
    assert len(seated) == CAPACITY
    assert len(waiting) == len(crowd) - CAPACITY
    assert list((await statuses(db)).values()).count("confirmed") == CAPACITY
    [(places,)] = await select(
        db,
        "SELECT count(*) FROM (SELECT DISTINCT queued_at, id FROM registrations "
        "WHERE status = 'waiting') AS places",
    )
    assert places == len(crowd) - CAPACITY


def newcomer(n: int) -> NewRegistration:
    return NewRegistration(
        event_id="forum-2026",
        user_id=9000 + n,
        username=None,
        telegram_name="Участник",
        full_name="Иванова Мария Петровна",
        position="Специалист",
        organization="Министерство",
        phone="+79123456789",
        email=f"p{n}@example.ru",
        consent_at=datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
        consent_version="v1",
    )


async def test_no_oversell_when_several_connections_confirm_at_once(
    settings: Settings, db: Database, clock: Clock
) -> None:
    """A probe outside the bot's one connection: four connections on the same file, each on a
    thread and event loop of its own (as four processes would be), each confirming 20 at
    once; the one statement holds across them."""
    now = clock()

    async def confirm_many(base: int) -> list[str]:
        async with open_database(
            settings.database_path, url=settings.database_dsn, busy_timeout_ms=30_000
        ) as other:
            repository = Registrations(other)
            made = await asyncio.gather(
                *(repository.create(newcomer(base + n), now=now) for n in range(20))
            )
            return [registration.status for registration in made]

    results = await asyncio.gather(
        *(asyncio.to_thread(asyncio.run, confirm_many(100 * k)) for k in range(4))
    )
    every = [status for result in results for status in result]
    assert every.count("confirmed") == CAPACITY
    assert every.count("waiting") == 80 - CAPACITY
    assert list((await statuses(db)).values()).count("confirmed") == CAPACITY


async def test_a_newcomers_place_is_the_one_read_back_when_stamps_tie_or_a_clock_lags(
    registrations: Registrations, db: Database, clock: Clock
) -> None:
    # The place of a newcomer comes from the session's count of people waiting, less those
    # behind: whom there are some of only when the newcomer's clock lags another writer's.
    now = clock()
    made = [await registrations.create(newcomer(n), now=now) for n in range(CAPACITY + 3)]
    assert [r.status for r in made] == ["confirmed"] * CAPACITY + ["waiting"] * 3
    lagging = await registrations.create(newcomer(10), now=now - timedelta(minutes=1))
    later = await registrations.create(newcomer(11), now=now + timedelta(minutes=1))
    waiting = [*made[CAPACITY:], lagging, later]
    assert [r.place for r in waiting] == [1, 2, 3, 1, 5]
    # As every later read counts them: the lagging one went ahead of the three.
    read = [await registrations.get(r.id) for r in waiting]
    assert [r.place for r in read if r] == [2, 3, 4, 1, 5]
    [(confirmed, line)] = await select(
        db, "SELECT seats_confirmed, seats_waiting FROM events WHERE id = 'forum-2026'"
    )
    assert (confirmed, line) == (CAPACITY, 5)


async def test_greeting_shows_seats_left_when_fewer_than_a_tenth_remain(
    people: list[TelegramUser],
    settings: Settings,
    db: Database,
    clock: Clock,
    fake: FakeTelegram,
    bot: Bot,
) -> None:
    dispatcher = await dispatcher_for(with_seats(20), settings, db, clock)
    deliver = feed_deliver(dispatcher, bot)
    crowd = [TelegramUser(fake, deliver, user_id=3000 + n) for n in range(20)]
    for person in crowd[:18]:
        assert "Вы зарегистрированы" in await register(person)
    await crowd[18].send("/start")
    assert "Осталось мест" not in crowd[18].last_message_text  # 2 of 20 is not fewer than 10%
    await register(crowd[18])
    await crowd[19].send("/start")
    assert "Осталось мест: 1 из 20" in fake.messages_to(crowd[19].chat_id)[0].text  # type: ignore[operator]


async def test_lowered_capacity_keeps_the_confirmed_and_lists_newcomers(
    people: list[TelegramUser],
    settings: Settings,
    db: Database,
    clock: Clock,
    bot: Bot,
    fake: FakeTelegram,
) -> None:
    await register(people[0])
    await register(people[1])
    dispatcher = await dispatcher_for(with_seats(1), settings, db, clock)
    late = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=2050)
    await late.send("/start")
    assert "Свободных мест нет" in late.last_message_text
    assert "место в очереди — 1" in await register(late, "Встать в лист ожидания")
    assert (await statuses(db)) == {2000: "confirmed", 2001: "confirmed", 2050: "waiting"}


# --- a seat frees -------------------------------------------------------------------------------


async def test_withdrawal_offers_the_seat_to_the_first_in_line_who_takes_it_once(
    people: list[TelegramUser],
    db: Database,
    fake: FakeTelegram,
    sender: Sender,
) -> None:
    seated, first, second = await full_house(people)
    await withdraw(seated)
    # The offer is in the outbox, with its button, committed with the withdrawal.
    [(chat_id, markup)] = await select(
        db, "SELECT chat_id, reply_markup FROM outbox WHERE kind = 'offer'"
    )
    assert chat_id == first.chat_id and "offer:take:" in str(markup)
    await sender.idle()
    [offer] = offers_to(fake, first.chat_id)
    assert "до 27 ноября 2026, 12:00 (МСК, UTC+3)" in offer
    assert offers_to(fake, second.chat_id) == []

    offer_message = fake.messages_to(first.chat_id)[-1]
    button = offer_message.inline_keyboard[0][0]["callback_data"]
    await first.click_data(offer_message, button)
    assert "Место ваше, вы зарегистрированы" in first.last_message_text
    await first.click_data(offer_message, button)  # a double tap
    assert (await statuses(db))[first.user_id] == "confirmed"
    assert list((await statuses(db)).values()).count("confirmed") == CAPACITY
    assert sum("Место ваше" in (m.text or "") for m in fake.messages_to(first.chat_id)) == 1
    await sender.idle()
    cards = " ".join(m.text or "" for m in fake.messages_to(ORGANIZER_CHAT_ID))
    assert "Место предложено: регистрация №3" in cards
    assert "Место занято из листа ожидания: регистрация №3" in cards


async def test_forget_and_an_admins_erasure_free_seats_for_the_line(
    people: list[TelegramUser], db: Database, dispatcher: Dispatcher, clock: Clock
) -> None:
    seated, first, second = await full_house(people)
    await seated.send("/forget")
    await seated.click("Да, удалить всё")
    offered = await select(db, "SELECT user_id FROM registrations WHERE offered_at IS NOT NULL")
    assert offered == [(first.user_id,)]
    # An erasure on request of the other seated person: the next in line is offered too.
    [(other,)] = await select(
        db, "SELECT id FROM registrations WHERE user_id = ?", (people[1].user_id,)
    )
    await dispatcher["personal_data"].erase(
        [other], reason=Reason.admin, actor="admin 1", now=clock()
    )
    offered = await select(
        db, "SELECT user_id FROM registrations WHERE offered_at IS NOT NULL ORDER BY id"
    )
    [kinds] = await select(db, "SELECT count(*) FROM outbox WHERE kind = 'offer'")
    assert offered == [(first.user_id,), (second.user_id,)]
    assert kinds == (2,)


async def test_an_offer_runs_out_to_the_next_in_line_and_says_so_when_pressed_late(
    people: list[TelegramUser],
    db: Database,
    fake: FakeTelegram,
    sender: Sender,
    dispatcher: Dispatcher,
    clock: Clock,
) -> None:
    seated, first, second = await full_house(people)
    await withdraw(seated)
    await sender.idle()
    seats: Seats = dispatcher["seats"]
    clock.advance(timedelta(hours=23))
    await seats.tick(clock())
    assert offers_to(fake, second.chat_id) == []
    clock.advance(timedelta(hours=1, seconds=1))
    await seats.tick(clock())
    await sender.idle()
    assert len(offers_to(fake, second.chat_id)) == 1
    [ran_out] = [m for m in fake.messages_to(first.chat_id) if "истекло" in (m.text or "")]
    assert "Вы остаётесь в листе ожидания" in (ran_out.text or "")
    offer_message = next(m for m in fake.messages_to(first.chat_id) if m.inline_keyboard)
    await first.click_data(offer_message, offer_message.inline_keyboard[0][0]["callback_data"])
    assert "Срок предложения истёк" in first.last_message_text
    assert "место в очереди — 2" in first.last_message_text  # behind the one now offered
    assert (await statuses(db))[first.user_id] == "waiting"
    await second.click("Занять место")
    assert (await statuses(db))[second.user_id] == "confirmed"


async def test_an_offer_ends_at_the_deadline_and_the_list_is_told_once(
    people: list[TelegramUser],
    db: Database,
    fake: FakeTelegram,
    sender: Sender,
    dispatcher: Dispatcher,
    clock: Clock,
) -> None:
    seated, first, second = await full_house(people)
    clock.now = datetime(2026, 12, 8, 12, 0, tzinfo=MOSCOW)  # 12 hours before the deadline
    await withdraw(seated)
    await sender.idle()
    [offer] = offers_to(fake, first.chat_id)
    assert "до 8 декабря 2026, 23:59 (МСК, UTC+3)" in offer  # the deadline is sooner
    seats: Seats = dispatcher["seats"]
    clock.now = datetime(2026, 12, 9, 0, 0, 30, tzinfo=MOSCOW)
    await seats.tick(clock())
    await seats.tick(clock())
    await sender.idle()
    for person in (first, second):
        told = [m for m in fake.messages_to(person.chat_id) if "так и не" in (m.text or "")]
        assert len(told) == 1
    assert len(offers_to(fake, second.chat_id)) == 0
    # Ended by the deadline, the offer's end is not told on its own: the list's end says it.
    assert not any("истекло" in (m.text or "") for m in fake.messages_to(first.chat_id))
    await first.click("Занять место")
    assert "Срок предложения истёк" in first.last_message_text
    assert (await statuses(db))[first.user_id] == "waiting"


async def test_raised_capacity_offers_the_new_seats(
    people: list[TelegramUser], settings: Settings, db: Database, clock: Clock
) -> None:
    await full_house(people)
    dispatcher = await dispatcher_for(with_seats(5), settings, db, clock)
    await dispatcher["seats"].tick(clock())
    [offered] = await select(db, "SELECT count(*) FROM registrations WHERE offered_at IS NOT NULL")
    assert offered == (2,)
    count = await dispatcher["seats"].seats("forum-2026")
    assert (count.confirmed, count.capacity, count.waiting, count.offered) == (2, 5, 2, 2)
    assert count.left == 1


async def test_a_capacity_raised_by_many_is_offered_in_transactions_of_a_few(
    people: list[TelegramUser], settings: Settings, db: Database, clock: Clock
) -> None:
    # Offers per transaction are bounded (storage/seats.py, OFFERS_AT_ONCE); one tick still
    # offers every free seat, in as many transactions as it takes.
    await full_house(people)
    for person in people[4:7]:
        assert "место в очереди" in await register(person, "Встать в лист ожидания")
    await dispatcher_for(with_seats(7), settings, db, clock)
    catalog = load_events(settings.events_file, default_zone=settings.timezone)
    seats = Seats(db, Outbox(db), catalog, offers_at_once=2)
    async with db.transaction() as connection:
        assert await seats.fill_in(connection, ["forum-2026"], clock()) == 2
    [offered] = await select(db, "SELECT count(*) FROM registrations WHERE offered_at IS NOT NULL")
    assert offered == (2,)
    await seats.tick(clock())
    count = await seats.seats("forum-2026")
    assert (count.confirmed, count.capacity, count.waiting, count.offered) == (2, 7, 5, 5)
    rows = await select(
        db, "SELECT count(*) FROM outbox WHERE kind = 'offer' AND status = 'pending'"
    )
    assert rows == [(5,)]


async def test_leaving_the_waiting_list_from_me_erases_and_moves_the_line(
    people: list[TelegramUser], db: Database, fake: FakeTelegram, sender: Sender
) -> None:
    _, first, second = await full_house(people)
    await first.send("/me")
    assert "место в очереди — 1" in first.last_message_text or any(
        "место в очереди — 1" in (m.text or "") for m in fake.messages_to(first.chat_id)[-3:]
    )
    await first.click("Покинуть лист ожидания")
    await first.click("Да, покинуть")
    assert "Вы покинули лист ожидания" in first.last_message_text
    await second.send("/me")
    assert any(
        "место в очереди — 1" in (m.text or "") for m in fake.messages_to(second.chat_id)[-3:]
    )
    [row] = await select(
        db, "SELECT status, full_name, erased_at IS NOT NULL FROM registrations WHERE id = 3"
    )
    assert row == ("withdrawn", None, 1)
    await sender.idle()
    cards = " ".join(m.text or "" for m in fake.messages_to(ORGANIZER_CHAT_ID))
    assert "Выход из листа ожидания: регистрация №3" in cards


async def test_stats_and_export_show_the_waiting_list(
    people: list[TelegramUser], fake: FakeTelegram, dispatcher: Dispatcher, bot: Bot
) -> None:
    await full_house(people)
    admin = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=ADMIN_ID)
    await admin.send("/stats")
    assert "Мест: 2, занято: 2, свободно: 0" in admin.last_message_text
    assert "Лист ожидания: 2, из них с предложением места: 0" in admin.last_message_text


async def test_start_up_after_a_withdrawal_leaves_the_erased_row_without_a_csv_text(
    people: list[TelegramUser], db: Database
) -> None:
    """Making missing CSV texts at start-up skips erased rows (it failed on their CHECK)."""
    await withdraw_after_registering(people[0])
    assert await Registrations(db).fill_csv_cells() == 0


async def withdraw_after_registering(user: TelegramUser) -> None:
    await register(user)
    await withdraw(user)


async def test_a_double_tap_on_join_the_waiting_list_joins_once(
    people: list[TelegramUser], db: Database, fake: FakeTelegram
) -> None:
    await register(people[0])
    await register(people[1])
    third = people[2]
    await fill_form(third)
    summary = fake.last_message(third.chat_id)
    data = summary.inline_keyboard[0][0]["callback_data"]
    await asyncio.gather(third.click_data(summary, data), third.click_data(summary, data))
    assert (await statuses(db))[third.user_id] == "waiting"
    assert (
        sum("место в очереди — 1" in (m.text or "") for m in fake.messages_to(third.chat_id)) == 1
    )
    answers = [call.params.get("text") for call in fake.calls_of("answerCallbackQuery")]
    assert "Вы уже в листе ожидания." in answers


async def test_exports_name_the_waiting_status(
    people: list[TelegramUser], db: Database, catalog: EventCatalog, tmp_path: Path
) -> None:
    await full_house(people)
    for fmt in ("csv", "xlsx"):
        output = tmp_path / f"out.{fmt}"
        assert export_to_file(export_source(db), catalog, "forum-2026", fmt, output) == 4
    text = (tmp_path / "out.csv").read_text(encoding="utf-8-sig")
    assert [line.split(";")[0] for line in text.splitlines()[1:]] == [
        "подтверждена",
        "подтверждена",
        "лист ожидания",
        "лист ожидания",
    ]
    sheet = load_workbook(tmp_path / "out.xlsx").active
    assert sheet is not None
    assert [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)].count(
        "лист ожидания"
    ) == 2


async def test_no_offer_when_a_withdrawal_leaves_a_lowered_capacity_still_full(
    people: list[TelegramUser],
    settings: Settings,
    db: Database,
    clock: Clock,
    bot: Bot,
    fake: FakeTelegram,
) -> None:
    seated, first, _ = await full_house(people)
    dispatcher = await dispatcher_for(with_seats(1), settings, db, clock)
    await dispatcher["seats"].tick(clock())  # 2 confirmed, 1 seat: over, nothing to offer
    again = TelegramUser(fake, feed_deliver(dispatcher, bot), user_id=seated.user_id)
    await withdraw(again)  # 1 confirmed left, capacity 1: no seat freed
    await dispatcher["seats"].tick(clock())
    [offered] = await select(db, "SELECT count(*) FROM registrations WHERE offered_at IS NOT NULL")
    assert offered == (0,)
    assert (await statuses(db))[first.user_id] == "waiting"
