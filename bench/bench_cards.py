"""A burst of registrations and their organiser cards, delivered to a group and a private chat.

The real outbox sender with the production `Limits()` and a real aiohttp Bot talk over HTTP to
the fake Bot API, which answers 429 to anything that breaks Telegram's limits. The baseline is
the naive sender: one message per card at the permitted rate.

    python -m bench.bench_cards [--registrations N | --quick]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.app import create_bot, open_app
from bot.domain.clock import utc_now
from bot.domain.config import load_settings
from bot.domain.events import parse_events
from bot.sender import Limits, Sender
from storage.cards import CardPublisher
from storage.outbox import Outbox
from storage.registrations import NewRegistration, Registrations
from tests.fake_telegram import FakeTelegram, serve

TOKEN = "7000000001:AAbench-token-for-benchmarks-onlyxxxx"
GROUP_ID = -1001234567890
PRIVATE_ID = 500
# Telegram's permitted rates, messages a second (https://core.telegram.org/bots/faq).
PERMITTED = {GROUP_ID: 20 / 60, PRIVATE_ID: 1.0}
CHAT_NAMES = {PRIVATE_ID: "private chat", GROUP_ID: "group"}
GOAL_RATE = 0.9
PROGRESS_EVERY = 10.0
CARD_NUMBER = re.compile(r"Новая регистрация №(\d+)")

EVENTS_TOML = """
[[events]]
id = "etnik-pfo-2026"
title = "Стратегическая онлайн-сессия в ПФО «ЭтНик: стратегия в практике»"
starts_at = 2026-11-24T12:00:00
timezone = "Europe/Moscow"
registration_deadline = 2026-11-22T23:59:00
location = "Онлайн"
privacy_policy = "Данные обрабатываются по 152-ФЗ."
privacy_policy_version = "2026-01-01"
"""

# (male, female) forms.
SURNAMES = (
    ("Иванов", "Иванова"),
    ("Ким", "Ким"),
    ("Смирнов", "Смирнова"),
    ("Ли", "Ли"),
    ("Кузнецов", "Кузнецова"),
    ("Нуриев", "Нуриева"),
    ("Абдурахманов", "Абдурахманова"),
    ("Воскресенский", "Воскресенская"),
    ("Гайнутдинов", "Гайнутдинова"),
    ("Петров-Водкин", "Петрова-Водкина"),
    ("Цой", "Цой"),
    ("Хабибуллин", "Хабибуллина"),
    ("Оганесян", "Оганесян"),
    ("Белозерский-Преображенский", "Белозерская-Преображенская"),
)
FIRST_NAMES = (
    ("Иван", "Мария"),
    ("Ян", "Ия"),
    ("Александр", "Александра"),
    ("Рустам", "Гульнара"),
    ("Константин", "Екатерина"),
    ("Пётр", "Анастасия"),
    ("Ильдар", "Айгуль"),
)
PATRONYMICS = (
    ("Петрович", "Петровна"),
    ("Ильич", "Ильинична"),
    ("Рашидович", "Рашидовна"),
    ("Александрович", "Александровна"),
    ("Вячеславович", "Вячеславовна"),
)
POSITIONS = (
    "Директор",
    "Главный специалист",
    "Председатель правления",
    "Волонтёр",
    "Консультант отдела по взаимодействию с институтами гражданского общества",
    "Заместитель начальника управления по делам национальностей и межрелигиозных отношений "
    "министерства внутренней политики",
    "Журналист",
    "Методист",
)
ORGANIZATIONS = (
    "ООО «Ромашка»",
    "Саратовская областная общественная организация «Татарский культурный центр»",
    "АНО «Ресурсный центр в сфере национальных отношений»",
    "МБОУ «Школа №57»",
    "Министерство внутренней политики и общественных отношений Саратовской области",
    "Государственное бюджетное учреждение культуры «Областной Дом народного творчества "
    "имени Л. А. Руслановой» & филиалы",
    "ИП Оганесян",
    "Местная национально-культурная автономия корейцев г. Энгельса",
    "Редакция газеты «Саратовские вести»",
    "Региональное отделение Общероссийской общественной организации «Ассамблея народов "
    "России» в Саратовской области, Приволжский федеральный округ, Российская Федерация",
)
# fmt: off
TRANSLIT = dict(zip(
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    ("a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p",
     "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "sch", "", "y", "", "e", "yu", "ya"),
    strict=True,
))
# fmt: on


def latin(text: str) -> str:
    return "".join(TRANSLIT.get(char, "") for char in text.lower())


def people(count: int, *, seed: int = 2026) -> list[NewRegistration]:
    rng = random.Random(seed)
    consent_at = utc_now()
    result = []
    for number in range(count):
        female = rng.random() < 0.5
        surname, first, patronymic = (
            rng.choice(options)[female] for options in (SURNAMES, FIRST_NAMES, PATRONYMICS)
        )
        full_name = (
            f"{surname} {first} {patronymic}" if rng.random() < 0.9 else f"{surname} {first}"
        )
        user_id = 100_000_000 + number
        result.append(
            NewRegistration(
                event_id="etnik-pfo-2026",
                user_id=user_id,
                username=f"{latin(first)}_{number}" if rng.random() < 0.7 else None,
                telegram_name=first if rng.random() < 0.5 else f"{first} {surname}",
                full_name=full_name,
                position=rng.choice(POSITIONS),
                organization=rng.choice(ORGANIZATIONS),
                phone=f"+79{rng.randrange(10**9):09d}",
                email=f"{latin(first)}.{latin(surname)}{number}@example.ru",
                consent_at=consent_at,
                consent_version="2026-01-01",
            )
        )
    return result


@dataclass
class ChatFigures:
    messages: int
    cards: Counter[int]
    elapsed: float  # from the sender's start to this chat's last accepted message
    longest: int  # characters in the longest message


def chat_figures(fake: FakeTelegram, chat_id: int, start: float) -> ChatFigures:
    accepted = [
        call
        for call in fake.calls_of("sendMessage")
        if call.error_code is None and call.params.get("chat_id") == chat_id
    ]
    messages = fake.messages_to(chat_id)
    cards: Counter[int] = Counter()
    for message in messages:
        cards.update(int(n) for n in CARD_NUMBER.findall(message.text or ""))
    return ChatFigures(
        messages=len(messages),
        cards=cards,
        elapsed=max((call.time for call in accepted), default=start) - start,
        longest=max((len(message.text or "") for message in messages), default=0),
    )


async def progress(fake: FakeTelegram, sender: Sender, start: float) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        parts = []
        for chat_id, name in CHAT_NAMES.items():
            figures = chat_figures(fake, chat_id, start)
            parts.append(f"{name} {figures.messages} msgs / {sum(figures.cards.values())} cards")
        print(
            f"[{time.monotonic() - start:6.0f} s] {'; '.join(parts)}; "
            f"429s {fake.limit_violations}, errors {sender.stats.errors}",
            file=sys.stderr,
            flush=True,
        )


@dataclass
class Results:
    registrations: int
    insert_seconds: float
    total_seconds: float
    finished: bool
    chats: dict[int, ChatFigures]
    expected_ids: set[int]
    retry_after: int
    violations: int
    errors: int


async def run(count: int, directory: Path) -> Results:
    zone = ZoneInfo("Europe/Moscow")
    catalog = parse_events(EVENTS_TOML, file=Path("bench-events.toml"), default_zone=zone)
    fake = FakeTelegram(token=TOKEN)
    fake.enforce_limits()
    async with serve(fake) as base_url:
        settings = load_settings(
            _env_file=None,
            bot_token=TOKEN,
            telegram_api_url=base_url,
            database_path=directory / "bench.sqlite3",
            organizer_chat_ids=f"{GROUP_ID},{PRIVATE_ID}",
        )
        # The bot's own start-up: the database migrated, the sessions mirrored.
        async with open_app(settings, catalog=catalog) as opened:
            db, catalog = opened.db, opened.catalog
            outbox = Outbox(db)
            publisher = CardPublisher(outbox, (GROUP_ID, PRIVATE_ID), catalog)
            registrations = Registrations(db, publisher)
            new = people(count)

            began = time.perf_counter()
            # A burst: every registration at once, as if all confirmed in the same instant.
            created = await asyncio.gather(*(registrations.create(n, now=utc_now()) for n in new))
            insert_seconds = time.perf_counter() - began

            bot = create_bot(settings)
            sender = Sender(bot, outbox, utc_now, Limits())
            # Never worse than the naive sender, or something is stuck.
            deadline = count * 3.0 + 60
            start = time.monotonic()
            await sender.start()
            reporter = asyncio.create_task(progress(fake, sender, start))
            try:
                await asyncio.wait_for(sender.idle(), deadline)
                finished = True
            except TimeoutError:
                finished = False
            total_seconds = time.monotonic() - start
            reporter.cancel()
            await sender.stop(grace=5)
            await bot.session.close()

    return Results(
        registrations=count,
        insert_seconds=insert_seconds,
        total_seconds=total_seconds,
        finished=finished,
        chats={chat_id: chat_figures(fake, chat_id, start) for chat_id in CHAT_NAMES},
        expected_ids={registration.id for registration in created},
        retry_after=sender.stats.retry_after,
        violations=fake.limit_violations,
        errors=sender.stats.errors,
    )


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s ({timedelta(seconds=round(seconds))})"


def report(results: Results) -> bool:
    """Print the figures; True if every card arrived exactly once in every chat."""
    n = results.registrations
    order = list(CHAT_NAMES)
    complete = True
    rows: list[Sequence[str]] = [("Figure", *(CHAT_NAMES[c] for c in order), "Goal")]

    def row(label: str, values: Sequence[str], goal: str) -> None:
        rows.append((label, *values, goal))

    row("Messages sent", [str(results.chats[c].messages) for c in order], "—")
    row(
        "Cards per message (mean)",
        [
            f"{sum(results.chats[c].cards.values()) / max(1, results.chats[c].messages):.1f}"
            for c in order
        ],
        "—",
    )
    row("Longest message, chars", [str(results.chats[c].longest) for c in order], "≤ 4096")
    card_cells = []
    for chat_id in order:
        cards = results.chats[chat_id].cards
        missing = len(results.expected_ids - cards.keys())
        duplicates = sum(times - 1 for times in cards.values() if times > 1)
        strangers = len(cards.keys() - results.expected_ids)
        complete &= missing == duplicates == strangers == 0
        card_cells.append(
            f"{len(cards.keys() & results.expected_ids)}/{n}, "
            f"{missing} missing, {duplicates} duplicated"
        )
    row("Cards delivered", card_cells, f"{n}/{n}, each once")
    row("Time to deliver", [duration(results.chats[c].elapsed) for c in order], "—")
    rate_cells = []
    for chat_id in order:
        figures = results.chats[chat_id]
        achieved = figures.messages / (max(figures.elapsed, 1e-9) * PERMITTED[chat_id])
        verdict = "met" if achieved >= GOAL_RATE else "MISSED"
        rate_cells.append(f"{achieved:.2f} ({verdict})")
    row("Achieved rate / permitted", rate_cells, f"≥ {GOAL_RATE}")
    baseline = {chat_id: n / PERMITTED[chat_id] for chat_id in order}
    row(
        "Baseline: one message per card",
        [f"{duration(baseline[c])}, {n} msgs" for c in order],
        "—",
    )
    row(
        "Saved against the baseline",
        [f"{baseline[c] / max(results.chats[c].elapsed, 1e-9):.1f}× faster" for c in order],
        "—",
    )

    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) + " |"
        for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")

    print(f"## Organiser cards: {n} registrations in a burst, two organiser chats\n")
    print("\n".join(lines))
    no_429 = results.retry_after == results.violations == 0
    print(
        f"\n- 429s received: {results.retry_after} by the sender, {results.violations} answered "
        f"by the fake (goal 0: {'met' if no_429 else 'MISSED'}); other send errors: "
        f"{results.errors}"
    )
    state = "" if results.finished else " (NOT finished: gave up at the deadline)"
    print(f"- Wall time to deliver everything: {duration(results.total_seconds)}{state}")
    print(
        f"- Inserts: {n} registrations with their {2 * n} outbox rows in "
        f"{results.insert_seconds:.2f} s ({n / results.insert_seconds:.0f} registrations/s)"
    )
    print(
        "- Achieved rate = messages / (time to this chat's last message × permitted rate: "
        "1/s private, 20/min group); the first message is free, so a perfect sender scores "
        "slightly above 1."
    )
    return complete and results.finished


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registrations", type=int, default=1000, metavar="N")
    parser.add_argument("--quick", action="store_true", help="200 registrations")
    args = parser.parse_args(argv)
    count = 200 if args.quick else args.registrations
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-cards-") as directory:
        results = asyncio.run(run(count, Path(directory)))
    return 0 if report(results) else 1


if __name__ == "__main__":
    sys.exit(main())
