"""Where people came from (issue 13, item 5): the source in a session's link, through the form
into the registration, counted in /stats and the digest, and a column of the exports."""

from __future__ import annotations

import csv
import io
import signal
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiogram import Bot, Dispatcher
from openpyxl import load_workbook

from bot.domain.cells import CSV_DELIMITER
from bot.domain.config import Settings
from bot.domain.digest import EventDigest, render_digest
from bot.domain.events import EVENT_ID_PATTERN, Event, EventCatalog
from bot.domain.sources import MAX_PAYLOAD, SOURCE_PATTERN, parse_start_payload, sources_line
from bot.domain.texts import t
from handlers.jobs import BackgroundJobs
from storage.database import Database
from storage.digests import Digests
from storage.erasure import PersonalData
from storage.export import export_to_file
from storage.registrations import NewRegistration, Registrations
from tests.client import TelegramUser, feed_deliver, http_deliver
from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import (
    ADMIN_ID,
    EVENTS_TOML,
    MOSCOW,
    TOKEN,
    Clock,
    bot_process,
    db_file,
    dispatcher_for,
    event_toml,
    expected_rows,
    export_source,
    header,
    upcoming_event_toml,
    wait_until,
)

EVENT_ID = "forum-2026"


def _event(event_id: str) -> Event:
    starts = datetime(2026, 12, 10, 12, 0, tzinfo=MOSCOW)
    return Event(
        id=event_id,
        title=f"Сессия {event_id}",
        starts_at=starts,
        registration_deadline=starts - timedelta(days=2),
        timezone=MOSCOW,
        location="Онлайн",
    )


# "city" and "city--talk" both exist: an id may hold "--", and one id may begin another.
CATALOG = EventCatalog(tuple(_event(i) for i in ("forum-2026", "city", "city--talk", "end-")))


@pytest.mark.parametrize(
    ("payload", "event_id", "source"),
    [
        ("forum-2026", "forum-2026", None),
        ("forum-2026--vk", "forum-2026", "vk"),
        ("forum-2026--Tg_channel_2", "forum-2026", "Tg_channel_2"),
        ("  forum-2026--vk  ", "forum-2026", "vk"),  # as Telegram may pass what a person typed
        (f"forum-2026--{'a' * 30}", "forum-2026", "a" * 30),
        # The session's own id wins: "city--talk" is not "city" with the source "talk".
        ("city--talk", "city--talk", None),
        ("city--talk--vk", "city--talk", "vk"),
        ("city--vk", "city", "vk"),
        ("end---vk", "end-", "vk"),  # split at the last "--"
        # A malformed source is dropped; the session still opens.
        ("forum-2026--", "forum-2026", None),
        ("forum-2026--bad-source", "forum-2026", None),
        ("forum-2026--пост", "forum-2026", None),
        ("forum-2026--a b", "forum-2026", None),
        (f"forum-2026--{'a' * 31}", "forum-2026", None),
        (f"forum-2026--{'a' * 200}", "forum-2026", None),  # longer than any link carries
        # Nothing known on the left of the last "--": no session.
        ("nope--vk", None, None),
        ("forum--vk", None, None),
        ("forum-2026--vk--fb", None, None),
        ("vk", None, None),
        ("x" * 200, None, None),
        ("", None, None),
    ],
)
def test_parse_start_payload(payload: str, event_id: str | None, source: str | None) -> None:
    link = parse_start_payload(payload, CATALOG)
    assert (link.event.id if link.event else None, link.source) == (event_id, source)


def test_the_longest_id_and_source_fit_in_a_link() -> None:
    longest_id = "a" * 32
    assert EVENT_ID_PATTERN.fullmatch(longest_id) and not EVENT_ID_PATTERN.fullmatch("a" * 33)
    assert SOURCE_PATTERN.fullmatch("b" * 30) and not SOURCE_PATTERN.fullmatch("b" * 31)
    assert len(f"{longest_id}--{'b' * 30}") == MAX_PAYLOAD


def test_sources_line() -> None:
    assert sources_line([]) is None
    assert sources_line([(None, 7)]) is None  # nobody came by a link with a source
    assert sources_line([("tg", 2), (None, 5), ("vk", 5)], {"vk": 1}) == (
        "🔗 Откуда пришли: vk — 5 (+1), без метки — 5, tg — 2"
    )


def test_sources_line_names_ten_sources_and_sums_the_rest() -> None:
    counts = [(f"s{n:02d}", 100 - n) for n in range(25)]
    line = sources_line(counts)
    assert line is not None
    assert "s09 — 91" in line and "s10" not in line
    assert line.endswith("ещё источников: 15, в них " + str(sum(100 - n for n in range(10, 25))))


def test_render_digest_shows_sources_seats_and_the_waiting_list() -> None:
    now = datetime(2026, 11, 26, 6, 0, tzinfo=MOSCOW)
    event = _event("forum-2026")
    digest = EventDigest(
        event=event,
        new=[("Иванова Мария", "НКО")],
        new_count=1,
        confirmed=118,
        withdrawn=0,
        per_day=[],
        final=False,
        sources=(("vk", 60, 1), (None, 58, 0)),
        capacity=120,
        seats_left=2,
        waiting=0,
    )
    (message,) = render_digest(now.date(), [digest], now)
    lines = message.split("\n")
    totals = lines.index("👥 Всего зарегистрированы: 118, отменили регистрацию: 0")
    assert lines[totals + 1 : totals + 3] == [
        "💺 Свободных мест: 2 из 120",
        "📋 В листе ожидания: 0",
    ]
    assert lines[totals + 3] == "🔗 Откуда пришли: vk — 60 (+1), без метки — 58"

    full = EventDigest(
        event=event, new=[], new_count=0, confirmed=120, withdrawn=3, per_day=[], final=False,
        capacity=120, seats_left=0, waiting=7,
    )  # fmt: skip
    assert render_digest(now.date(), [full], now) == [
        "📊 Сводка за 26 ноября 2026: новых регистраций нет. Всего зарегистрированы: "
        "«Сессия forum-2026» — 120 (💺 Свободных мест нет (всего 120); 📋 В листе ожидания: 7)."
    ]
    # Without a capacity (or before seats exist) the digest is as it was.
    plain = EventDigest(
        event=event, new=[], new_count=0, confirmed=3, withdrawn=0, per_day=[], final=False
    )
    assert render_digest(now.date(), [plain], now) == [
        "📊 Сводка за 26 ноября 2026: новых регистраций нет. Всего зарегистрированы: "
        "«Сессия forum-2026» — 3."
    ]


# --- through the production Dispatcher --------------------------------------------------------


async def register(user: TelegramUser, start: str) -> None:
    await user.send(start)
    await user.click("Даю согласие")
    await user.send("Иванова Мария Петровна")
    await user.send("Главный специалист")
    await user.send("Министерство культуры")
    await user.share_contact("79123456789")
    await user.send(f"user{user.user_id}@example.ru")
    await user.click("Подтвердить")
    assert "Вы зарегистрированы" in user.last_message_text


async def sources_of(db: Database) -> dict[int, str | None]:
    rows = await db.fetchall("SELECT user_id, source FROM registrations ORDER BY id")
    return {row["user_id"]: row["source"] for row in rows}


async def test_a_link_with_a_source_is_stored_counted_and_exported(
    make_user, db: Database, dispatcher: Dispatcher, fake: FakeTelegram, clock: Clock
) -> None:
    await register(make_user(2001), f"/start {EVENT_ID}--vk_post")
    await register(make_user(2002), f"/start {EVENT_ID}--vk_post")
    await register(make_user(2003), f"/start {EVENT_ID}--tg")
    await register(make_user(2004), f"/start {EVENT_ID}")
    await register(make_user(2005), "/start")
    # A malformed source is ignored: the registration goes on without it.
    malformed = make_user(2006)
    replies = await malformed.send(f"/start {EVENT_ID}--bad-source!")
    assert "152-ФЗ" in (replies[0].text or "")
    await register(malformed, f"/start {EVENT_ID}--bad-source!")

    assert await sources_of(db) == {
        2001: "vk_post", 2002: "vk_post", 2003: "tg", 2004: None, 2005: None, 2006: None
    }  # fmt: skip

    admin: TelegramUser = make_user(ADMIN_ID)
    text = (await admin.send("/stats"))[0].text or ""
    assert "🔗 Откуда пришли: без метки — 3, vk_post — 2, tg — 1" in text

    text = "\n".join(message.text or "" for message in await admin.send("/digest"))
    assert "🔗 Откуда пришли: без метки — 3 (+3), vk_post — 2 (+2), tg — 1 (+1)" in text

    await admin.send("/export")
    jobs: BackgroundJobs = dispatcher["background_jobs"]
    await jobs.idle()
    documents = {m.filename: m.document for m in fake.messages_to(ADMIN_ID) if m.document}
    csv_bytes = next(data for name, data in documents.items() if name.endswith(".csv"))
    assert csv_bytes is not None
    rows = list(csv.reader(io.StringIO(csv_bytes.decode("utf-8-sig")), delimiter=CSV_DELIMITER))
    assert rows[0][-1] == "Источник"
    assert [row[-1] for row in rows[1:]] == ["vk_post", "vk_post", "tg", "", "", ""]


async def test_me_shows_the_source_with_what_is_stored(make_user) -> None:
    with_source: TelegramUser = make_user(2001)
    await register(with_source, f"/start {EVENT_ID}--vk_post")
    card = (await with_source.send("/me"))[0].text or ""
    assert "Источник ссылки, по которой вы пришли: vk_post" in card

    without: TelegramUser = make_user(2002)
    await register(without, f"/start {EVENT_ID}")
    card = (await without.send("/me"))[0].text or ""
    assert "Источник" not in card


async def test_the_source_survives_a_restart_in_the_middle_of_the_form(
    make_user, db: Database, settings: Settings, clock: Clock, fake: FakeTelegram, bot: Bot
) -> None:
    before: TelegramUser = make_user(2001)
    await before.send(f"/start {EVENT_ID}--mail")
    await before.click("Даю согласие")
    await before.send("Иванова Мария Петровна")

    restarted = await dispatcher_for(EVENTS_TOML, settings, db, clock)
    after = TelegramUser(fake, feed_deliver(restarted, bot), user_id=2001)
    await after.send("Главный специалист")
    await after.send("Министерство культуры")
    await after.share_contact("79123456789")
    await after.send("user2001@example.ru")
    await after.click("ФИО")  # a change from the summary keeps it too
    await after.send("Петрова Мария Петровна")
    await after.click("Подтвердить")

    assert await sources_of(db) == {2001: "mail"}


async def test_a_source_on_a_session_id_with_dashes(
    make_user, db: Database, settings: Settings, clock: Clock, fake: FakeTelegram, bot: Bot
) -> None:
    starts = datetime(2026, 12, 10, 12, 0, tzinfo=MOSCOW)
    two = "".join(
        event_toml(
            id=event_id, title=title, starts_at=starts, timezone="Europe/Moscow",
            registration_deadline=starts - timedelta(days=2), location="Онлайн",
        )
        for event_id, title in (("city", "Город"), ("city--talk", "Городской разговор"))
    )  # fmt: skip
    restarted = await dispatcher_for(two, settings, db, clock)
    deliver = feed_deliver(restarted, bot)

    await register(TelegramUser(fake, deliver, user_id=2001), "/start city--talk--vk")
    await register(TelegramUser(fake, deliver, user_id=2002), "/start city--talk")
    await register(TelegramUser(fake, deliver, user_id=2003), "/start city--talk2")

    rows = await db.fetchall("SELECT user_id, event_id, source FROM registrations ORDER BY id")
    assert [tuple(row) for row in rows] == [
        (2001, "city--talk", "vk"),
        (2002, "city--talk", None),
        (2003, "city", "talk2"),
    ]


async def test_a_payload_too_long_for_a_link(make_user, db: Database) -> None:
    typed: TelegramUser = make_user(2001)
    await register(typed, f"/start {EVENT_ID}--{'x' * 100}")
    assert await sources_of(db) == {2001: None}

    other: TelegramUser = make_user(2002)
    replies = await other.send(f"/start {'x' * 100}")
    assert replies[0].text == t("event_not_found")
    assert "152-ФЗ" in other.last_message_text  # then the open session is offered, as for any link


async def test_the_schema_refuses_a_source_of_another_shape(
    db: Database, registrations: Registrations, clock: Clock
) -> None:
    def new(user_id: int, source: str | None) -> NewRegistration:
        return NewRegistration(
            event_id=EVENT_ID, user_id=user_id, username=None, telegram_name="У",
            full_name="Иванова Мария", position="Директор", organization="НКО",
            phone="+79123456789", email="u@example.ru", consent_at=clock(),
            consent_version="v1", source=source,
        )  # fmt: skip

    for user_id, source in enumerate(("a-b", "", "ы", "x" * 31, "a b"), start=1):
        with pytest.raises(sqlite3.IntegrityError):
            await registrations.create(new(user_id, source), now=clock())
    created = await registrations.create(new(10, "x" * 30), now=clock())
    assert (await sources_of(db))[created.user_id] == "x" * 30


async def test_an_erasure_keeps_the_source_and_its_count(
    make_user, db: Database, personal_data: PersonalData, clock: Clock
) -> None:
    await register(make_user(2001), f"/start {EVENT_ID}--vk")
    (registration_id,) = [row["id"] for row in await db.fetchall("SELECT id FROM registrations")]
    await personal_data.withdraw(registration_id, user_id=2001, now=clock())
    row = await db.fetchone("SELECT source, erased_at FROM registrations")
    assert row is not None and row["erased_at"] is not None and row["source"] == "vk"


async def test_digest_storage_counts_sources_all_and_new(db: Database, clock: Clock) -> None:
    registrations = Registrations(db)
    for user_id, source, days_ago in ((1, "vk", 3), (2, "vk", 0), (3, None, 0), (4, "tg", 3)):
        at = clock() - timedelta(days=days_ago)
        await registrations.create(
            NewRegistration(
                event_id=EVENT_ID, user_id=user_id, username=None, telegram_name="У",
                full_name="Иванова Мария", position="Директор", organization="НКО",
                phone="+79123456789", email="u@example.ru", consent_at=at,
                consent_version="v1", source=source,
            ),
            now=at,
        )  # fmt: skip
    catalog_event = _event(EVENT_ID)
    stats = await Digests(db).stats(catalog_event, clock() - timedelta(days=1), clock())
    assert sorted(stats.sources, key=str) == sorted(
        [("vk", 2, 1), (None, 1, 1), ("tg", 1, 0)], key=str
    )


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        return list(csv.reader(file, delimiter=CSV_DELIMITER))


def read_xlsx(path: Path) -> list[list[object]]:
    sheet = load_workbook(path).active
    assert sheet is not None
    return [[c.value for c in row] for row in sheet.iter_rows()]


async def test_both_export_files_show_the_source_as_stored(
    make_user, db: Database, catalog: EventCatalog, tmp_path: Path
) -> None:
    await register(make_user(2001), f"/start {EVENT_ID}--vk")
    await register(make_user(2002), f"/start {EVENT_ID}")
    csv_path, xlsx_path = tmp_path / "out.csv", tmp_path / "out.xlsx"

    for event_id in (EVENT_ID, None):
        export_to_file(export_source(db), catalog, event_id, "csv", csv_path)
        export_to_file(export_source(db), catalog, event_id, "xlsx", xlsx_path)
        assert read_csv(csv_path) == [
            header(event_id),
            *expected_rows(export_source(db), event_id, for_csv=True),
        ]
        assert read_xlsx(xlsx_path) == [
            header(event_id),
            *expected_rows(export_source(db), event_id, for_csv=False),
        ]
        # The source column, before an every-session export's «Ответы».
        source = read_csv(csv_path)[0].index("Источник")
        assert [row[source] for row in read_csv(csv_path)] == ["Источник", "vk", ""]


# --- the real process over HTTP ---------------------------------------------------------------


@pytest.mark.slow
async def test_sources_and_seats_over_http_stored_counted_exported_and_kept_off_the_log(
    tmp_path: Path,
) -> None:
    events = upcoming_event_toml() + "capacity = 6\n"
    (tmp_path / "events.toml").write_text(events, encoding="utf-8")
    fake = FakeTelegram(token=TOKEN)
    starts = {
        1001: "/start forum--vk_post",
        1002: "/start forum--vk_post",
        1003: "/start forum--bad-source!",  # malformed: ignored
        1004: f"/start forum--{'x' * 100}",  # longer than a link carries: ignored
        1005: "/start forum",
    }
    async with serve(fake) as base_url, bot_process(tmp_path, fake, base_url) as bot:
        deliver = http_deliver(fake, timeout=30, database=db_file(tmp_path))
        for user_id, start in starts.items():
            await register(TelegramUser(fake, deliver, user_id=user_id), start)
        admin = TelegramUser(fake, deliver, user_id=ADMIN_ID)
        stats = (await admin.send("/stats"))[0].text or ""
        digest = "\n".join(message.text or "" for message in await admin.send("/digest"))
        await admin.send("/export")
        await wait_until(lambda: len([m for m in fake.messages_to(ADMIN_ID) if m.document]) == 2)
        documents = {m.filename: m.document for m in fake.messages_to(ADMIN_ID) if m.document}
        bot.process.send_signal(signal.SIGTERM)
        assert await bot.wait() == 0
        output = bot.output

    database = db_file(tmp_path)
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        stored = connection.execute("SELECT user_id, source FROM registrations ORDER BY id")
        assert dict(stored.fetchall()) == {
            1001: "vk_post", 1002: "vk_post", 1003: None, 1004: None, 1005: None
        }  # fmt: skip
    assert "🔗 Откуда пришли: без метки — 3, vk_post — 2" in stats
    assert "🔗 Откуда пришли: без метки — 3 (+3), vk_post — 2 (+2)" in digest
    assert "💺 Свободных мест: 1 из 6" in digest and "📋 В листе ожидания: 0" in digest
    for name, data in documents.items():
        assert data is not None
        path = tmp_path / name
        path.write_bytes(data)
        rows = read_csv(path) if name.endswith(".csv") else read_xlsx(path)
        for_csv = name.endswith(".csv")
        assert rows == [header("forum"), *expected_rows(database, "forum", for_csv=for_csv)]
        assert [row[-1] for row in rows] == ["Источник", "vk_post", "vk_post", "", "", ""]
    assert "vk_post" not in output and "bad-source" not in output
    assert "Traceback" not in output
