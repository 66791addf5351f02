"""The real `python -m bot` process over real HTTP against the fake Bot API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import csv as csv_module
import io
import signal
import sqlite3
import stat
import sys
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bot.domain.cells import CSV_DELIMITER
from tests.client import TelegramUser, http_deliver
from tests.fake_telegram import FakeTelegram, serve
from tests.helpers import (
    ENGLISH_FIELDS,
    MOSCOW,
    QUESTIONS_TOML,
    TOKEN,
    assert_no_trace_in,
    bot_env,
    bot_process,
    card_numbers,
    database_bytes,
    db_file,
    expected_rows,
    header,
    register_over_http,
    upcoming_event_toml,
    wait_until,
)

# Every test here starts the real bot process (`make test-fast` leaves them out).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "events.toml").write_text(upcoming_event_toml(), encoding="utf-8")
    return tmp_path


def stored(tmp_path: Path) -> list[dict[str, object]]:
    with sqlite3.connect(f"file:{db_file(tmp_path)}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM registrations")]


async def test_participant_registers_over_http_and_bot_stops_gracefully(workdir: Path) -> None:
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url, bot_process(workdir, fake, base_url) as bot:
        user = TelegramUser(
            fake,
            http_deliver(fake, timeout=20, database=db_file(workdir)),
            user_id=1001,
            first_name="Мария",
        )
        await user.send("/start")
        assert "Сессия «ЭтНик»" in fake.messages_to(1001)[0].text  # type: ignore[operator]
        await user.click("Даю согласие")
        await user.send("Иванова Мария Петровна")
        await user.send("<b>Директор</b> & Co")
        await user.send("Министерство культуры")
        await user.share_contact("79123456789")
        await user.send("maria@example.ru")
        assert "<b>Директор</b> & Co" in user.last_text
        replies = await user.click("Подтвердить")
        assert "Вы зарегистрированы" in (replies[0].text or "")
        assert replies[1].filename == "forum.ics"  # the calendar file follows

        commands = fake.calls_of("setMyCommands")
        assert commands, "the command menu is set at start-up"

        bot.process.send_signal(signal.SIGTERM)
        assert await bot.wait() == 0
        output = bot.output

    [row] = stored(workdir)
    assert (row["full_name"], row["position"], row["phone"]) == (
        "Иванова Мария Петровна",
        "<b>Директор</b> & Co",
        "+79123456789",
    )
    database = workdir / "data" / "bot.sqlite3"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert "Stopped cleanly" in output
    assert "Traceback" not in output
    for personal in ("Иванова", "79123456789", "maria@example.ru", "Директор"):
        assert personal not in output, f"personal data in the log: {personal}"


async def test_form_continues_after_sigkill_at_the_same_question(workdir: Path) -> None:
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url:
        user = TelegramUser(
            fake, http_deliver(fake, timeout=20, database=db_file(workdir)), user_id=1002
        )
        async with bot_process(workdir, fake, base_url, run=1) as bot:
            await user.send("/start")
            await user.click("Даю согласие")
            await user.send("Петров Пётр Петрович")
            await user.send("Журналист")
            bot.process.kill()  # SIGKILL: no chance to clean up
            assert await bot.wait() == -signal.SIGKILL

        async with bot_process(workdir, fake, base_url, run=2) as bot:
            replies = await user.send("/start")
            assert "Вы уже заполняете анкету" in (replies[0].text or "")
            assert "Место работы" in user.last_text  # the third question, where it stopped
            await user.send("Газета «Саратовские вести»")
            await user.send("+7 912 345-67-89")
            await user.send("petrov@example.ru")
            assert "Петров Пётр Петрович" in user.last_text  # earlier answers kept
            replies = await user.click("Подтвердить")
            assert "Вы зарегистрированы" in (replies[0].text or "")
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0

    [row] = stored(workdir)
    assert row["full_name"] == "Петров Пётр Петрович"
    assert row["position"] == "Журналист"
    assert row["organization"] == "Газета «Саратовские вести»"


async def run_to_exit(tmp_path: Path, **env: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=tmp_path,
        env={**bot_env(tmp_path, TELEGRAM_API_URL="http://127.0.0.1:9"), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BOT_TOKEN": ""}, ["BOT_TOKEN is malformed", "@BotFather", ".env.example"]),
        ({"ADMIN_IDS": "12,abc"}, ["ADMIN_IDS", "'abc' is not an integer id"]),
        ({"EVENTS_FILE": "missing.toml"}, ["missing.toml", "file not found"]),
        ({"RETENTION_DAYS": "-5"}, ["RETENTION_DAYS", "'-5' is not a number of days"]),
    ],
)
# Every rule is tested on load_settings in test_settings.py; here, that the process obeys.
async def test_bad_settings_stop_the_bot_with_one_clear_line(
    workdir: Path, env: dict[str, str], expected: list[str]
) -> None:
    code, output = await run_to_exit(workdir, **env)
    assert code == 2
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ")
    for part in expected:
        assert part in lines[0]
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"ends_at": "yesterday"}, ["event 'forum'", "key 'ends_at'", "'yesterday'"]),
        ({"operator": ""}, ["event 'forum'", "key 'operator'", "non-empty string"]),
    ],
)
async def test_bad_ends_at_or_operator_stops_the_bot_with_one_clear_line(
    workdir: Path, extra: dict[str, str], expected: list[str]
) -> None:
    (workdir / "events.toml").write_text(upcoming_event_toml(**extra), encoding="utf-8")
    code, output = await run_to_exit(workdir)
    assert code == 2
    [line] = output.strip().splitlines()
    assert line.startswith(f"error: {workdir / 'events.toml'}: ")
    for part in expected:
        assert part in line


async def test_missing_token_variable_points_at_botfather(workdir: Path) -> None:
    env = bot_env(workdir)
    del env["BOT_TOKEN"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=workdir, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert output.decode().strip() == (
        "error: BOT_TOKEN is missing: get a token from @BotFather in Telegram and put it in "
        ".env (see .env.example), e.g. BOT_TOKEN=123456789:AA..."
    )


async def test_broken_events_file_names_file_event_and_key(workdir: Path) -> None:
    (workdir / "events.toml").write_text(
        upcoming_event_toml().replace('timezone = "Europe/Moscow"', 'timezone = "Europe/Mosсow"'),
        encoding="utf-8",
    )
    code, output = await run_to_exit(workdir)
    assert code == 2
    assert "events.toml: event 'forum': key 'timezone': unknown IANA time zone" in output


async def test_sigterm_lets_the_update_in_hand_finish(workdir: Path) -> None:
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url, bot_process(workdir, fake, base_url) as bot:
        fake.slow("sendMessage", 1.5)
        sent_before = len(fake.calls_of("sendMessage"))
        pushed: list[int] = []

        async def push_only(update: dict[str, object]) -> None:
            pushed.append(fake.push_update(update))

        await TelegramUser(fake, push_only, user_id=1003).send("/help")
        [update_id] = pushed
        await wait_until(lambda: len(fake.calls_of("sendMessage")) > sent_before)
        bot.process.send_signal(signal.SIGTERM)  # while the answer is still on its way
        assert await bot.wait() == 0
        assert "/cancel" in fake.last_message(1003).text  # type: ignore[operator]
        # ...and the update was confirmed, so a restart will not handle it again.
        await fake.wait_confirmed(update_id, timeout=0.1)


GROUP, PRIVATE, BLOCKED = -100111, 600, 700


async def test_cards_survive_sigkill_and_a_blocked_chat_holds_up_no_one(workdir: Path) -> None:
    fake = FakeTelegram(token=TOKEN)
    chats = f"{GROUP},{PRIVATE},{BLOCKED}"
    fake.block(BLOCKED)
    # The first card to the group is lost on the way: the bot is killed while waiting.
    fake.hang("sendMessage", chat_id=GROUP, times=1)
    async with serve(fake) as base_url:
        async with bot_process(workdir, fake, base_url, run=1, ORGANIZER_CHAT_IDS=chats) as bot:
            for user_id in (1001, 1002, 1003):
                await register_over_http(fake, workdir, user_id)
            await wait_until(lambda: any(c.error_code == 0 for c in fake.calls_of("sendMessage")))
            bot.process.kill()
            await bot.wait()
        delivered_before = card_numbers(fake, GROUP) + card_numbers(fake, PRIVATE)

        async with bot_process(workdir, fake, base_url, run=2, ORGANIZER_CHAT_IDS=chats) as bot:
            everything = {1: 1, 2: 1, 3: 1}
            await wait_until(
                lambda: (
                    set(card_numbers(fake, GROUP)) == set(everything)
                    and set(card_numbers(fake, PRIVATE)) == set(everything)
                ),
                timeout=40,
            )
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0

    group, private = card_numbers(fake, GROUP), card_numbers(fake, PRIVATE)
    duplicates = sum(group.values()) + sum(private.values()) - 6
    print(f"cards before kill: {dict(delivered_before)}; duplicates after restart: {duplicates}")
    # At most one duplicate per chat per kill (a kill between Telegram's answer and the mark).
    assert all(count <= 2 for count in group.values()) and sum(group.values()) <= 4
    assert all(count <= 2 for count in private.values()) and sum(private.values()) <= 4
    assert card_numbers(fake, BLOCKED) == {}
    with sqlite3.connect(workdir / "data" / "bot.sqlite3") as db:
        statuses = dict(
            db.execute("SELECT chat_id, group_concat(DISTINCT status) FROM outbox GROUP BY chat_id")
        )
    assert statuses == {GROUP: "sent", PRIVATE: "sent", BLOCKED: "failed"}


async def test_broadcast_resumes_after_sigkill_and_reports_what_telegram_saw(
    workdir: Path,
) -> None:
    from storage.database import open_database
    from storage.registrations import NewRegistration, Registrations

    recipients = list(range(2001, 2031))
    blocked = {2005, 2017}
    async with open_database(workdir / "data" / "bot.sqlite3") as db:
        from bot.domain.events import parse_events
        from storage.events import EventsRepository

        now = datetime.now(MOSCOW)
        catalog = parse_events(
            upcoming_event_toml(), file=workdir / "events.toml", default_zone=MOSCOW
        )
        await EventsRepository(db).sync(catalog, now=now)
        for user_id in recipients:
            await Registrations(db).create(
                NewRegistration(
                    event_id="forum",
                    user_id=user_id,
                    username=None,
                    telegram_name="У",
                    full_name="Участник Тестовый",
                    position="Специалист",
                    organization="НКО",
                    phone="+79123456789",
                    email=f"u{user_id}@example.ru",
                    consent_at=now,
                    consent_version="v1",
                ),
                now=now,
            )
    fake = FakeTelegram(token=TOKEN)
    for user_id in blocked:
        fake.block(user_id)
    fake.fail("sendMessage", code=429, description="Too Many Requests: retry after 1",
              retry_after=1, chat_id=2010)  # fmt: skip
    fake.slow("sendMessage", 0.1)
    text = "Сессия переносится на 13:00 (МСК, UTC+3)"
    async with serve(fake) as base_url:
        admin = TelegramUser(
            fake, http_deliver(fake, timeout=20, database=db_file(workdir)), user_id=500
        )
        async with bot_process(workdir, fake, base_url, run=1) as bot:
            await admin.send("/broadcast")
            await admin.send(text)
            await admin.click("Отправить (30)")
            await wait_until(
                lambda: sum(1 for m in fake.messages if m.text == text) >= 8, timeout=30
            )
            bot.process.kill()
            await bot.wait()
        got_before = sum(1 for m in fake.messages if m.text == text)
        async with bot_process(workdir, fake, base_url, run=2) as bot:
            await wait_until(lambda: "завершена" in (admin.last_text or ""), timeout=60)
            bot.process.send_signal(signal.SIGTERM)
            assert await bot.wait() == 0

    received = {user_id: len([m for m in fake.messages_to(user_id) if m.text == text])
                for user_id in recipients}  # fmt: skip
    duplicates = sum(count - 1 for count in received.values() if count > 1)
    print(f"delivered before the kill: {got_before}; duplicates: {duplicates}")
    assert all(received[user_id] >= 1 for user_id in recipients if user_id not in blocked)
    assert all(received[user_id] == 0 for user_id in blocked)
    # A duplicate needs a kill between Telegram's answer and the mark: at most one per chat
    # per kill, only for the chats that had a message in flight.
    assert max(received.values()) <= 2
    report = admin.last_text
    assert f"Доставлено: {len(recipients) - len(blocked)}" in report
    assert f"Заблокировали бота: {len(blocked)}" in report
    assert "Не удалось отправить: 0" in report


async def test_export_documents_match_the_database_row_by_row(workdir: Path) -> None:
    import io

    from openpyxl import load_workbook

    from bot.domain.events import parse_events
    from storage.database import open_database
    from storage.events import EventsRepository
    from storage.registrations import NewRegistration, Registrations

    database = workdir / "data" / "bot.sqlite3"
    tricky = [
        ("Иванова Мария Петровна", "<html>Директор</html>", '=HYPERLINK("http://x","y")'),
        ("Ким Ия", "+7 специалист", "НКО\nс переносом строки"),
        ("O'Connor Sean", "@lead", "-5 отдел\tи табуляция"),
    ]
    async with open_database(database) as db:
        now = datetime.now(MOSCOW)
        catalog = parse_events(
            upcoming_event_toml(), file=workdir / "events.toml", default_zone=MOSCOW
        )
        await EventsRepository(db).sync(catalog, now=now)
        for user_id, (name, position, organization) in enumerate(tricky, start=2001):
            await Registrations(db).create(
                NewRegistration(
                    event_id="forum", user_id=user_id, username=f"user{user_id}",
                    telegram_name="У", full_name=name, position=position,
                    organization=organization, phone="+79123456789",
                    email=f"u{user_id}@example.ru", consent_at=now, consent_version="v1",
                ),
                now=now,
            )  # fmt: skip
        # A row whose stored CSV text an older cell rule made, one with none (from before
        # schema 8): the bot makes them again at start-up.
        await db.execute("UPDATE registrations SET csv_rule = 'older' WHERE user_id = 2002")
        await db.execute("UPDATE registrations SET csv_cells = NULL WHERE user_id = 2003")
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url, bot_process(workdir, fake, base_url):
        admin = TelegramUser(
            fake, http_deliver(fake, timeout=30, database=db_file(workdir)), user_id=500
        )
        await admin.send("/export")
        # The update ends at "preparing…"; the files follow from a background job.
        await wait_until(lambda: any(m.edits for m in fake.messages_to(500)))
        [progress] = [m for m in fake.messages_to(500) if m.edits]
        assert progress.edits == ["⏳ Готовлю выгрузку…"]  # edited into the result
        assert "Выгрузка готова: 3 строк" in (progress.text or "")
        documents = {m.filename: m.document for m in fake.messages_to(500) if m.document}

    day = datetime.now(MOSCOW).date().isoformat()
    csv_bytes = documents[f"registrations_forum_{day}.csv"]
    xlsx_bytes = documents[f"registrations_forum_{day}.xlsx"]
    assert csv_bytes is not None and xlsx_bytes is not None
    assert csv_bytes.startswith("\ufeff".encode())  # BOM: Excel reads Cyrillic right
    import csv as csv_module

    from bot.domain.cells import CSV_DELIMITER, CSV_RULE

    csv_rows = list(
        csv_module.reader(io.StringIO(csv_bytes.decode("utf-8-sig")), delimiter=CSV_DELIMITER)
    )
    assert csv_rows == [header("forum"), *expected_rows(database, "forum", for_csv=True)]
    sheet = load_workbook(io.BytesIO(xlsx_bytes)).active
    assert sheet is not None
    xlsx_rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert xlsx_rows == [header("forum"), *expected_rows(database, "forum", for_csv=False)]
    assert all(cell.data_type == "s" for row in sheet.iter_rows() for cell in row)
    async with open_database(database) as db:
        rules = await db.fetchall("SELECT csv_rule, csv_cells FROM registrations")
    assert [row["csv_rule"] for row in rules] == [CSV_RULE] * 3
    assert all(row["csv_cells"] for row in rules)


SECRET = TOKEN.split(":", 1)[1]


async def test_garbled_answers_are_logged_without_the_token(workdir: Path) -> None:
    # aiohttp's error for an answer that is not HTTP names the URL, /bot<token>/ in it.
    fake = FakeTelegram(token=TOKEN)
    async with serve(fake) as base_url, bot_process(workdir, fake, base_url) as bot:
        fake.garble("getUpdates")
        # Every attempt of the reply fails, so the error handler logs the traceback.
        fake.garble("sendMessage", times=4)
        user = TelegramUser(
            fake, http_deliver(fake, timeout=30, database=db_file(workdir)), user_id=1001
        )
        await user.send("/start")
        assert "что-то пошло не так" in user.last_text
        await wait_until(lambda: "Update " in bot.output and "getUpdates failed" in bot.output)
        bot.process.send_signal(signal.SIGTERM)
        assert await bot.wait() == 0
    log = bot.output
    assert "getUpdates failed (TelegramNetworkError" in log
    assert "Traceback" in log
    assert log.count("ClientResponseError: 400") >= 2
    assert "/bot<token redacted>/getUpdates" in log
    assert "/bot<token redacted>/sendMessage" in log
    assert TOKEN not in log
    assert SECRET not in log


async def test_a_garbled_answer_at_start_up_is_one_line_without_the_token(
    workdir: Path,
) -> None:
    fake = FakeTelegram(token=TOKEN)
    fake.garble("getMe", times=10)
    async with serve(fake) as base_url:
        code, output = await run_to_exit(workdir, TELEGRAM_API_URL=base_url)
    assert code == 1
    assert "error: cannot reach the Bot API: " in output
    assert "/bot<token redacted>/getMe" in output
    assert SECRET not in output


async def test_english_participant_registers_over_http_and_the_card_stays_russian(
    tmp_path: Path,
) -> None:
    (tmp_path / "events.toml").write_text(
        upcoming_event_toml(
            **ENGLISH_FIELDS, privacy_policy="Политика", privacy_policy_version="v2"
        ),
        encoding="utf-8",
    )
    fake = FakeTelegram(token=TOKEN)
    async with (
        serve(fake) as base_url,
        bot_process(tmp_path, fake, base_url, ORGANIZER_CHAT_IDS=str(GROUP)) as bot,
    ):
        user = TelegramUser(
            fake,
            http_deliver(fake, timeout=20, database=db_file(tmp_path)),
            user_id=1001,
            first_name="Mary",
            language_code="en-US",
        )
        [greeting] = await user.send("/start")
        assert (greeting.text or "").startswith("Hello! Here you can register for an event.")
        assert "Strategy session “EtNik”" in (greeting.text or "")
        assert "The data is processed under Federal Law 152-FZ." in (greeting.text or "")
        assert "(MSK, UTC+3)" in (greeting.text or "")
        await user.click("I agree")
        assert "Step 1 of 5" in user.last_text
        await user.send("Mary Smith")
        await user.send("/language")
        replies = await user.click("Русский")  # mid-form: the question again, in Russian
        assert "Шаг 2 из 5" in (replies[-1].text or "")
        await user.send("/language")
        await user.click("English")
        assert "Step 2 of 5" in user.last_text
        await user.send("Director")
        await user.send("Ministry of Culture")
        await user.send("+44 7911 123456")
        await user.send("mary@example.com")
        assert user.last_text.startswith("Please check your details:")
        assert "Mary Smith" in user.last_text  # the answer before the switches is kept
        replies = await user.click("Confirm")
        assert "You are registered" in (replies[0].text or "")
        assert "You are registered" in user.last_message_text  # the calendar file follows
        await user.send("/me")
        assert "Your personal data" in user.last_message_text

        await wait_until(lambda: bool(card_numbers(fake, GROUP)))
        [card] = [m.text or "" for m in fake.messages_to(GROUP)]
        assert "Новая регистрация" in card and "Mary Smith" in card
        english_menu = fake.commands_for({"type": "default"}, "en")
        assert english_menu and english_menu[0]["description"] == "Register"

        bot.process.send_signal(signal.SIGTERM)
        assert await bot.wait() == 0

    [row] = stored(tmp_path)
    assert (row["full_name"], row["consent_version"]) == ("Mary Smith", "v2+en")


async def test_event_questions_over_http_asked_stored_carded_exported_and_erased(
    workdir: Path,
) -> None:
    """A session with a choice, a yes/no and an optional text question, with the real process:
    answered by button and by typing, skipped, edited from the summary and from /me, in the
    organisers' card, in both export files, and gone from the file's bytes after /forget."""
    (workdir / "events.toml").write_text(upcoming_event_toml() + QUESTIONS_TOML, encoding="utf-8")
    organizers = -100777
    topic = "Сохранение родных языков"
    fake = FakeTelegram(token=TOKEN)
    path = db_file(workdir)
    async with (
        serve(fake) as base_url,
        bot_process(workdir, fake, base_url, ORGANIZER_CHAT_IDS=str(organizers)) as bot,
    ):
        user = TelegramUser(
            fake, http_deliver(fake, timeout=20, database=path), user_id=1001, first_name="Мария"
        )
        await user.send("/start")
        await user.click("Даю согласие")
        await user.send("Иванова Мария Петровна")
        await user.send("Главный специалист")
        await user.send("Министерство культуры")
        await user.send("+7 912 345-67-89")
        await user.send("maria@example.ru")
        assert "Кого вы представляете?" in user.last_text
        await user.send("Журналисты")  # no such option: the options again
        assert user.buttons(fake.last_message(1001)) == ["Орган власти", "СМИ", "НКО", "Другое"]
        await user.click("Орган власти")
        await user.send("нет")  # the yes/no question, typed
        await user.click("Пропустить")
        assert "Тема выступления: —" in user.last_text
        await user.click("✏️ Тема выступления")
        await user.send(topic)
        assert f"Тема выступления: {topic}" in user.last_text
        await user.click("Подтвердить")
        assert "Вы зарегистрированы" in user.last_message_text
        await wait_until(lambda: any(topic in (m.text or "") for m in fake.messages_to(organizers)))

        await user.send("/me")
        await user.click("Изменить")
        await user.click("✏️ Кого вы представляете?")
        await user.click("НКО")
        assert "Кого вы представляете?: НКО" in user.last_message_text

        admin = TelegramUser(fake, http_deliver(fake, timeout=30, database=path), user_id=500)
        await admin.send("/export")
        await wait_until(lambda: sum(1 for m in fake.messages_to(500) if m.document) == 2)
        documents = {m.filename or "": m.document for m in fake.messages_to(500) if m.document}
        [csv_bytes] = [data for name, data in documents.items() if name.endswith(".csv")]
        [xlsx_bytes] = [data for name, data in documents.items() if name.endswith(".xlsx")]
        assert csv_bytes is not None and xlsx_bytes is not None
        rows = list(
            csv_module.reader(io.StringIO(csv_bytes.decode("utf-8-sig")), delimiter=CSV_DELIMITER)
        )
        sheet = load_workbook(io.BytesIO(xlsx_bytes)).active
        assert sheet is not None
        cells = [["" if c.value is None else c.value for c in row] for row in sheet.iter_rows()]
        for table in (rows, cells):
            assert table[0][-3:] == [
                "Кого вы представляете?",
                "Будете выступать?",
                "Тема выступления",
            ]
            assert table[1][-3:] == ["НКО", "Нет", topic]

        assert any(topic.encode() in content for content in database_bytes(path).values())
        await user.send("/forget")
        await user.click("Да, удалить всё")
        assert "ваши данные удалены" in user.last_text
        await wait_until(
            lambda: not any(topic.encode() in c for c in database_bytes(path).values()),
            timeout=10,
        )
        bot.process.send_signal(signal.SIGTERM)
        assert await bot.wait() == 0

    assert_no_trace_in(path, (topic, "Иванова Мария Петровна", "maria@example.ru"))
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM answers").fetchone() == (0,)
