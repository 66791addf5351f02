"""A registration made in one statement on PostgreSQL (storage/migrations.py, step 21:
`create_registration`): the same rows, seats and organiser cards as the transaction SQLite
takes (and PostgreSQL too, for a card too long for one message), byte for byte."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg.connection
import pytest

from bot.domain.config import Settings
from bot.domain.events import EventCatalog, load_events
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length, split_lines
from bot.domain.texts import LANGUAGES, po_path, use_locale
from storage.cards import CardPublisher, render_card
from storage.database import Connection, Database
from storage.events import EventsRepository
from storage.outbox import Outbox
from storage.registrations import (
    CARD_ID,
    CARD_PLACE,
    AlreadyRegistered,
    NewRegistration,
    Registration,
    RegistrationChange,
    Registrations,
)
from tests.helpers import EVENTS_TOML, ORGANIZER_CHAT_ID, QUESTIONS_TOML, Clock

SECOND_CHAT = 500  # a private organiser chat beside the group
# What a person may type that looks like the marks the database fills in, or like HTML.
TRICKY = '<b>Анна & "Co"</b> <#id> <#place> {id} &lt;#id&gt;'


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"organizer_chat_ids": (ORGANIZER_CHAT_ID, SECOND_CHAT)})


async def repository_for(
    toml: str, settings: Settings, db: Database, clock: Clock
) -> tuple[Registrations, CardPublisher, EventCatalog]:
    """The registrations and their card publisher as the bot wires them, for `toml`."""
    settings.events_file.write_text(toml, encoding="utf-8")
    catalog = load_events(settings.events_file, default_zone=settings.timezone)
    await EventsRepository(db).sync(catalog, now=clock())
    cards = CardPublisher(
        Outbox(db), settings.organizer_chat_ids, catalog, settings.organizer_language
    )
    return Registrations(db, cards), cards, catalog


def person(n: int, *, answers: tuple[tuple[str, str], ...] = ()) -> NewRegistration:
    return NewRegistration(
        event_id="forum-2026",
        user_id=7000 + n,
        username=f"user{n}",
        telegram_name=TRICKY,
        full_name=TRICKY,
        position="Главный специалист",
        organization="ООО «<#place>» & Партнёры",
        phone="+79123456789",
        email=f"p{n}@example.ru",
        consent_at=datetime(2026, 11, 26, 8, 59, 30, 123456, tzinfo=UTC),
        consent_version="v1",
        source="vk_2026",
        answers=answers,
    )


ANSWERS = (("category", "СМИ"), ("speaker", "Да"), ("topic", "О <#id> & <i>прочем</i>"))


def expected_card(
    made: Registration, catalog: EventCatalog, settings: Settings, clock: Clock
) -> str:
    kind = "created" if made.status == "confirmed" else "waiting"
    with use_locale(settings.organizer_language):
        return render_card(RegistrationChange(kind, made.id, made.event_id, made), catalog, clock())


async def cards_of(db: Database, registration_id: int) -> list[tuple[Any, ...]]:
    rows = await db.fetchall(
        "SELECT chat_id, kind, registration_id, text, status, error, created_at "
        "FROM outbox WHERE registration_id = ? ORDER BY id",
        (registration_id,),
    )
    return [tuple(row) for row in rows]


def in_the_transaction(cards: CardPublisher) -> Callable[..., Any]:
    """The publisher as a plain change listener: the creation takes today's transaction."""

    async def listener(connection: Connection, change: RegistrationChange, now: datetime) -> None:
        await cards(connection, change, now)

    return listener


@pytest.mark.parametrize("seat", ["confirmed", "waiting"])
@pytest.mark.parametrize("questions", [True, False])
async def test_a_new_registrations_cards_are_the_rendered_card_byte_for_byte(
    seat: str, questions: bool, settings: Settings, db: Database, clock: Clock
) -> None:
    toml = EVENTS_TOML + "capacity = 1\n" + (QUESTIONS_TOML if questions else "")
    registrations, _, catalog = await repository_for(toml, settings, db, clock)
    if seat == "waiting":
        await registrations.create(person(1), now=clock())  # the one seat
    clock.advance(timedelta(seconds=5))
    made = await registrations.create(person(2, answers=ANSWERS if questions else ()), now=clock())

    assert made.status == seat
    assert made.place == (1 if seat == "waiting" else None)
    assert made.answers == (ANSWERS if questions else ())
    card = expected_card(made, catalog, settings, clock)
    title = "Лист ожидания: регистрация" if seat == "waiting" else "Новая регистрация"
    assert title in card and f"№{made.id}" in card
    assert "&lt;#id&gt; &lt;#place&gt; {id} &amp;lt;#id&amp;gt;" in card  # as typed
    assert ("О &lt;#id&gt; &amp; &lt;i&gt;прочем&lt;/i&gt;" in card) is questions
    stamp = clock().isoformat()
    assert await cards_of(db, made.id) == [
        (ORGANIZER_CHAT_ID, "card", made.id, card, "pending", None, stamp),
        (SECOND_CHAT, "card", made.id, card, "pending", None, stamp),
    ]
    stored = await db.fetchall(
        "SELECT question_id, value FROM answers WHERE registration_id = ? ORDER BY question_id",
        (made.id,),
    )
    assert [tuple(row) for row in stored] == sorted(ANSWERS if questions else ())
    assert await registrations.active("forum-2026", made.user_id) == made


async def registration_rows(db: Database, made: Registration) -> dict[str, Any]:
    """Everything a creation wrote, its own ids left out."""
    [row] = await db.fetchall("SELECT * FROM registrations WHERE id = ?", (made.id,))
    answers = await db.fetchall(
        "SELECT question_id, value FROM answers WHERE registration_id = ? ORDER BY question_id",
        (made.id,),
    )
    outbox = await db.fetchall(
        "SELECT * FROM outbox WHERE registration_id = ? ORDER BY id", (made.id,)
    )
    return {
        "registration": {key: value for key, value in dict(row).items() if key != "id"},
        "answers": [tuple(answer) for answer in answers],
        "outbox": [
            {
                key: value.replace(f"№{made.id}", "№…") if key == "text" else value
                for key, value in dict(card).items()
                if key not in ("id", "registration_id")
            }
            for card in outbox
        ],
    }


async def forget(db: Database, registration_id: int) -> None:
    async with db.transaction() as connection:
        for table, column in (("outbox", "registration_id"), ("answers", "registration_id")):
            await connection.execute(f"DELETE FROM {table} WHERE {column} = ?", (registration_id,))
        await connection.execute("DELETE FROM registrations WHERE id = ?", (registration_id,))


@pytest.mark.postgres_only
@pytest.mark.parametrize("seat", ["confirmed", "waiting"])
async def test_one_statement_writes_what_the_transaction_writes(
    seat: str, settings: Settings, db: Database, clock: Clock
) -> None:
    toml = EVENTS_TOML + "capacity = 1\n" + QUESTIONS_TOML
    registrations, cards, _ = await repository_for(toml, settings, db, clock)
    outbox = Outbox(db)
    # One organiser chat became a supergroup, whose new id refused the bot: parked there.
    await outbox.chat_moved(SECOND_CHAT, -1009999999999)
    await outbox.fail_chat(-1009999999999, reason="Forbidden: bot was kicked", now=clock())
    if seat == "waiting":
        await registrations.create(person(1), now=clock())
    clock.advance(timedelta(seconds=5))
    new = person(2, answers=(*ANSWERS, ("empty", "")))

    fast = await registrations.create(new, now=clock())
    written = await registration_rows(db, fast)
    await forget(db, fast.id)
    slow = await Registrations(db, in_the_transaction(cards)).create(new, now=clock())

    assert slow.status == seat
    assert fast == Registration(**{**_fields(slow), "id": fast.id})
    assert written == await registration_rows(db, slow)
    assert [card["status"] for card in written["outbox"]] == ["pending", "failed"]


def _fields(registration: Registration) -> dict[str, Any]:
    return {name: getattr(registration, name) for name in Registration.__slots__}


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement sent to PostgreSQL through asyncpg (the library, wrapped), in order."""
    sent: list[str] = []
    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.connection.Connection, name)

        def counted(original: Any = original) -> Any:
            async def method(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
                sent.append(" ".join(query.split()))
                return await original(self, query, *args, **kwargs)

            return method

        monkeypatch.setattr(asyncpg.connection.Connection, name, counted())
    yield sent


@pytest.mark.postgres_only
async def test_a_registration_with_its_cards_is_one_round_trip(
    settings: Settings, db: Database, clock: Clock, statements: list[str]
) -> None:
    registrations, _, _ = await repository_for(
        EVENTS_TOML + "capacity = 1\n" + QUESTIONS_TOML, settings, db, clock
    )
    statements.clear()
    await registrations.create(person(1, answers=ANSWERS), now=clock())
    await registrations.create(person(2, answers=ANSWERS), now=clock())  # waiting
    assert len(statements) == 2
    assert all("create_registration(" in statement for statement in statements)
    assert not any("pg_advisory_xact_lock" in statement for statement in statements)


@pytest.mark.parametrize("tapped", ["one after the other", "at once"])
async def test_a_double_tap_is_already_registered_and_posts_one_card_each(
    tapped: str, settings: Settings, db: Database, clock: Clock
) -> None:
    registrations, _, _ = await repository_for(EVENTS_TOML, settings, db, clock)
    new = person(1, answers=(("note", "x"),))
    if tapped == "at once":
        outcomes = await asyncio.gather(
            registrations.create(new, now=clock()),
            registrations.create(new, now=clock()),
            return_exceptions=True,
        )
        [made] = [outcome for outcome in outcomes if isinstance(outcome, Registration)]
        [refused] = [outcome for outcome in outcomes if isinstance(outcome, AlreadyRegistered)]
        existing = refused.existing
    else:
        made = await registrations.create(new, now=clock())
        with pytest.raises(AlreadyRegistered) as refusal:
            await registrations.create(new, now=clock())
        existing = refusal.value.existing
    assert existing == made
    assert len(await db.fetchall("SELECT id FROM registrations")) == 1
    assert len(await db.fetchall("SELECT value FROM answers")) == 1
    assert len(await cards_of(db, made.id)) == 2


async def test_an_unknown_session_is_a_lookup_error_and_writes_nothing(
    settings: Settings, db: Database, clock: Clock
) -> None:
    registrations, _, _ = await repository_for(EVENTS_TOML, settings, db, clock)
    new = person(1, answers=ANSWERS)
    with pytest.raises(LookupError, match="'gone' is not in the database"):
        await registrations.create(
            NewRegistration(**{**_new_fields(new), "event_id": "gone"}), now=clock()
        )
    assert await db.fetchall("SELECT id FROM registrations") == []
    assert await db.fetchall("SELECT id FROM outbox") == []


def _new_fields(new: NewRegistration) -> dict[str, Any]:
    return {name: getattr(new, name) for name in NewRegistration.__slots__}


async def test_a_card_too_long_for_a_message_is_split_as_before(
    settings: Settings, db: Database, clock: Clock
) -> None:
    registrations, _, catalog = await repository_for(EVENTS_TOML, settings, db, clock)
    # Answers to questions gone from the file, each as long as an answer may be.
    long = tuple((f"gone_{n}", f"{n} <#id> " + "д&" * 490) for n in range(6))
    made = await registrations.create(person(1, answers=long), now=clock())
    parts = split_lines(expected_card(made, catalog, settings, clock))
    assert len(parts) > 1 and all(message_length(part) <= MAX_MESSAGE_LENGTH for part in parts)
    rows = await cards_of(db, made.id)
    assert [(row[0], row[3]) for row in rows] == [
        (chat, part) for part in parts for chat in (ORGANIZER_CHAT_ID, SECOND_CHAT)
    ]


@pytest.mark.postgres_only
async def test_no_oversell_when_both_ways_of_creating_race(
    settings: Settings, db: Database, clock: Clock, tmp_path: Path
) -> None:
    """One statement and the transaction, each on connections of its own, confirming at
    once: the serial lock orders them all, so one seat, and a place each for the others."""
    registrations, cards, _ = await repository_for(
        EVENTS_TOML + "capacity = 1\n", settings, db, clock
    )
    in_transaction = Registrations(db, in_the_transaction(cards))
    made = await asyncio.gather(
        *(
            (registrations if n % 2 else in_transaction).create(person(n), now=clock())
            for n in range(30)
        )
    )
    assert [registration.status for registration in made].count("confirmed") == 1
    places = sorted(registration.place or 0 for registration in made)
    assert places == list(range(30))  # the seat (0), then 1..29 in line
    rows = await db.fetchall("SELECT count(*) FROM registrations WHERE status = 'confirmed'")
    assert rows[0][0] == 1


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_text_of_the_catalogues_has_the_marks_the_database_fills_in(language: str) -> None:
    """The database replaces every CARD_ID and CARD_PLACE in a card: a text of ours with one
    (or with any `<#`) would have it replaced too."""
    catalogue = po_path(language).read_text(encoding="utf-8")
    assert "<#" not in catalogue
    assert CARD_ID.startswith("<#") and CARD_PLACE.startswith("<#")
