"""Throughput of the production dispatcher against the framework's floor, in-process.

N participants, C at a time (asyncio tasks interleaved at every await), each fill the whole
form: /start, consent button, five answers, confirm button, eight updates. Ours runs with
everything production has (validators, SQLite FSM storage, the handled-updates guard,
registration and outbox rows for two organiser chats); the floor is `bench/floor_bot.py`
(MemoryStorage, no validation, no database). Both are fed through `feed_raw_update` with the
same `AnsweringSession`, which serialises every call as the bot's own session does
(aiogram's aiohttp session for the floor; ours prepares values as bot/session.py does) and
answers it at once: no network, no fake server, nothing but the bot. Each bot runs in its own
fresh subprocess, so peak RSS (`ru_maxrss`: interpreter, imports, run) is its own.

    python -m bench.bench_throughput [--participants N] [--concurrency C] [--repeat R]
    python -m bench.bench_throughput --profile [--participants N]   # ours, pyinstrument or cProfile

With BENCH_DATABASE_URL=postgresql://… ours runs on PostgreSQL (in a fresh schema, dropped
after), and the CPU of its server processes (its pool's backends, by /proc) is reported apart.

Longer than our ~400-line rule on purpose: a benchmark reads top to bottom as one story (its
driver, its measurement and its report beside the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.base import BaseSession
from aiogram.enums import ParseMode
from aiogram.methods.base import TelegramMethod, TelegramType

TOKEN = "7000000001:AAbench-token-for-benchmarks-onlyxxxx"
BOT_ID = 7000000001
ORGANIZER_CHAT_IDS = (-1001234567890, -1009876543210)
FIRST_USER_ID = 10_000_000
WARM_UP = 20
UPDATES_PER_REGISTRATION = 8
GOAL_SPEED = 1.0
GOAL_RSS = 1.2

JSON = dict[str, Any]

SURNAMES = ("Иванова", "Петров", "Ким", "Нуриева", "Белозерский-Преображенский", "Оганесян")
NAMES = ("Мария Петровна", "Иван Ильич", "Гульнара Рашидовна", "Ян", "Анастасия Сергеевна")
POSITIONS = ("Директор", "Главный специалист", "Журналист", "Волонтёр", "Методист")
ORGANIZATIONS = (
    "ООО «Ромашка»",
    "АНО «Ресурсный центр в сфере национальных отношений»",
    "Министерство внутренней политики и общественных отношений Саратовской области",
    "Редакция газеты «Саратовские вести» & партнёры",
)


def answers_for(number: int) -> list[str]:
    """The five typed answers of participant `number`, valid for our validators."""
    rng = random.Random(number)
    return [
        f"{rng.choice(SURNAMES)} {rng.choice(NAMES)}",
        rng.choice(POSITIONS),
        rng.choice(ORGANIZATIONS),
        f"+7 912 {number % 1000:03d}-{number // 1000 % 100:02d}-{rng.randrange(100):02d}",
        f"participant{number}@example.ru",
    ]


@dataclass(frozen=True)
class Buttons:
    """How a participant recognises the two buttons and the end of the form."""

    consent: str
    confirm: str
    registered: str


def our_buttons() -> Buttons:
    from bot.domain.texts import t

    return Buttons(t("button_consent_agree"), t("button_confirm"), "Вы зарегистрированы")


def floor_buttons() -> Buttons:
    from bench import floor_bot

    return Buttons(floor_bot.CONSENT_BUTTON, floor_bot.CONFIRM_BUTTON, floor_bot.REGISTERED)


# --- a session that answers every call ---------------------------------------------------------


@dataclass
class ChatLog:
    sent: int = 0
    last_text: str = ""
    keyboard_message: JSON | None = None


class AnsweringSession(BaseSession):
    """Answers every Bot API call at once, in-process. Requests are serialised the way
    AiohttpSession.build_form_data does and answers parsed by `check_response`, so aiogram's
    own client-side work is all there; only the network and Telegram are missing."""

    def __init__(self) -> None:
        super().__init__()
        self.chats: defaultdict[int, ChatLog] = defaultdict(ChatLog)
        self.calls: defaultdict[str, int] = defaultdict(int)
        self._message_ids: defaultdict[int, int] = defaultdict(int)

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 (aiogram's signature)
    ) -> TelegramType:
        dumped = method.model_dump(warnings=False)
        files: dict[str, Any] = {}
        for value in dumped.values():
            self.prepare_value(value, bot=bot, files=files)
        name = method.__api_method__
        self.calls[name] += 1
        result = self._answer(name, dumped)
        response = self.check_response(
            bot=bot,
            method=method,
            status_code=200,
            # Telegram's side of the call: written the same way for every bot (a bot's own
            # session may parse it with another JSON library, which is its own work).
            content=json.dumps({"ok": True, "result": result}),
        )
        return cast(TelegramType, response.result)

    def _answer(self, name: str, params: JSON) -> Any:
        if name == "getMe":
            return {"id": BOT_ID, "is_bot": True, "first_name": "Bench", "username": "bench_bot"}
        if name == "sendDocument":  # the calendar file after confirming (issue 13)
            self._message_ids[params["chat_id"]] += 1
            return {
                "message_id": self._message_ids[params["chat_id"]],
                "date": int(time.time()),
                "chat": {"id": params["chat_id"], "type": "private"},
                "document": {"file_id": "ics", "file_unique_id": "ics"},
            }
        if name not in ("sendMessage", "editMessageText", "editMessageReplyMarkup"):
            return True
        chat_id = params["chat_id"]
        chat = self.chats[chat_id]
        if name == "sendMessage":
            self._message_ids[chat_id] += 1
            message_id = self._message_ids[chat_id]
            chat.sent += 1
            chat.last_text = params["text"]
        else:
            message_id = params["message_id"]
            if name == "editMessageText":
                chat.last_text = params["text"]
        message: JSON = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Bench"},
            "text": params.get("text") or "…",
        }
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
            if name == "sendMessage":
                chat.keyboard_message = message
        return message

    async def close(self) -> None:
        pass

    async def stream_content(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise NotImplementedError


def our_answering_session() -> AnsweringSession:
    """The same, preparing values as our bot's session does (bot/session.py: BotSession):
    the serialisation is the bot's own work, the answering the bench's. Made here, so that
    the floor's process imports none of our code."""
    from bot.session import PlainValues, UnechoedAnswers

    class OurAnsweringSession(UnechoedAnswers, PlainValues, AnsweringSession):
        pass

    return OurAnsweringSession()


# --- participants ------------------------------------------------------------------------------


@dataclass
class Counter:
    update_id: int = 0
    updates: int = 0
    query_id: int = 0


def user_json(user_id: int) -> JSON:
    return {"id": user_id, "is_bot": False, "first_name": "Участник", "language_code": "ru"}


def button_data(message: JSON | None, text: str) -> str | None:
    """The callback data of the inline button of `message` whose label contains `text`."""
    rows = (message or {}).get("reply_markup", {}).get("inline_keyboard", [])
    return next((b["callback_data"] for row in rows for b in row if text in b["text"]), None)


def find_button(session: AnsweringSession, chat_id: int, text: str) -> tuple[JSON, str]:
    message = session.chats[chat_id].keyboard_message
    data = button_data(message, text)
    if message is None or data is None:
        msg = f"chat {chat_id}: no button {text!r} in the bot's last keyboard"
        raise AssertionError(msg)
    return message, data


async def register(
    feed: Callable[[JSON], Awaitable[Any]],
    session: AnsweringSession,
    buttons: Buttons,
    number: int,
    counter: Counter,
) -> None:
    user_id = FIRST_USER_ID + number
    user = user_json(user_id)
    message_id = 0

    async def send(text: str) -> None:
        nonlocal message_id
        message_id += 1
        message: JSON = {
            "message_id": message_id,
            "from": user,
            "chat": {"id": user_id, "type": "private", "first_name": user["first_name"]},
            "date": int(time.time()),
            "text": text,
        }
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text)}]
        counter.update_id += 1
        counter.updates += 1
        await feed({"update_id": counter.update_id, "message": message})

    async def click(text: str) -> None:
        message, data = find_button(session, user_id, text)
        counter.update_id += 1
        counter.query_id += 1
        counter.updates += 1
        query = {
            "id": str(counter.query_id),
            "from": user,
            "message": message,
            "chat_instance": str(user_id * 7919),
            "data": data,
        }
        await feed({"update_id": counter.update_id, "callback_query": query})

    await send("/start")
    await click(buttons.consent)
    for answer in answers_for(number):
        await send(answer)
    await click(buttons.confirm)
    last = session.chats[user_id].last_text
    if buttons.registered not in last:
        msg = f"participant {number} did not end registered; the bot's last words: {last[:200]!r}"
        raise AssertionError(msg)


async def drive(
    feed: Callable[[JSON], Awaitable[Any]],
    session: AnsweringSession,
    buttons: Buttons,
    numbers: range,
    concurrency: int,
    counter: Counter,
) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(number: int) -> None:
        async with gate:
            await register(feed, session, buttons, number, counter)

    await asyncio.gather(*(one(number) for number in numbers))


# --- CPU by thread -----------------------------------------------------------------------------


def thread_kind(thread: threading.Thread) -> str:
    if thread is threading.main_thread():
        return "event loop"
    if "_connection_worker_thread" in thread.name:
        return "aiosqlite"
    if thread.name.startswith("asyncio_"):
        return "to_thread pool"
    return "other"


def cpu_by_thread() -> dict[int, tuple[str, float]]:
    """CPU seconds of each live thread of this process (Linux /proc), by native id."""
    ticks = os.sysconf("SC_CLK_TCK")
    kinds = {thread.native_id: thread_kind(thread) for thread in threading.enumerate()}
    result: dict[int, tuple[str, float]] = {}
    task_dir = Path("/proc/self/task")
    if not task_dir.exists():
        return result
    for task in task_dir.iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        result[int(task.name)] = (kinds.get(int(task.name), "other"), seconds)
    return result


def cpu_split(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> JSON:
    split: defaultdict[str, float] = defaultdict(float)
    for tid, (kind, seconds) in after.items():
        split[kind] += seconds - before.get(tid, (kind, 0.0))[1]
    return dict(split)


# --- one bot in this process -------------------------------------------------------------------


@dataclass
class Prepared:
    dispatcher: Dispatcher
    bot: Bot
    session: AnsweringSession
    buttons: Buttons
    verify: Callable[[int], Awaitable[JSON]]
    close: Callable[[], Awaitable[None]] = field(default=lambda: _nothing())
    # CPU seconds of the database server's processes serving ours (PostgreSQL), else None.
    server_cpu: Callable[[], Awaitable[float | None]] = field(default=lambda: _no_server())


async def _nothing() -> None:
    return None


async def _no_server() -> float | None:
    return None


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def events_toml() -> str:
    # Both bots run on the real clock: the session is always a few days ahead. Imported here,
    # not at the top, so that the floor bot's process loads none of the bot's modules.
    from tests.helpers import upcoming_event_toml

    return upcoming_event_toml(
        title="Стратегическая сессия «ЭтНик»",
        privacy_policy="Данные обрабатываются по 152-ФЗ.",
        privacy_policy_version="v1",
    )


async def prepare_ours(directory: Path) -> Prepared:
    from contextlib import AsyncExitStack

    from bot.app import create_bot, create_dispatcher, open_app, settle_heap
    from bot.domain.config import load_settings

    (directory / "events.toml").write_text(events_toml(), encoding="utf-8")
    database_url = os.environ.get("BENCH_DATABASE_URL") or None
    server = database_url
    schema = f"bench_{os.getpid()}"
    if server is not None:
        import asyncpg

        connection = await asyncpg.connect(server)
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        await connection.close()
        separator = "&" if "?" in server else "?"
        database_url = f"{server}{separator}search_path={schema}&application_name={schema}"
    settings = load_settings(
        _env_file=None,
        bot_token=TOKEN,
        database_path=directory / "bot.sqlite3",
        database_url=database_url,
        events_file=directory / "events.toml",
        admin_ids="500",
        organizer_chat_ids=",".join(str(chat) for chat in ORGANIZER_CHAT_IDS),
    )
    stack = AsyncExitStack()
    opened = await stack.enter_async_context(open_app(settings))
    db, catalog = opened.db, opened.catalog
    session = our_answering_session()
    bot = create_bot(settings, session=session)
    dispatcher = create_dispatcher(settings=settings, db=db, catalog=catalog)
    # As `python -m bot` does once its dispatcher is built (bot/app.py: run); the floor, a
    # bare aiogram form, does not.
    settle_heap()

    async def verify(expected: int) -> JSON:
        # Through the bot's own database: either engine.
        [(rows,)] = await db.fetchall("SELECT COUNT(*) FROM registrations")
        [(outbox,)] = await db.fetchall("SELECT COUNT(*) FROM outbox")
        [(duplicates,)] = await db.fetchall(
            "SELECT COUNT(*) FROM (SELECT 1 FROM registrations "
            "GROUP BY event_id, user_id HAVING COUNT(*) > 1) AS twice"
        )
        problems = []
        if rows != expected:
            problems.append(f"{rows} registrations stored, expected {expected}")
        if outbox != expected * len(ORGANIZER_CHAT_IDS):
            problems.append(f"{outbox} outbox rows, expected {expected * len(ORGANIZER_CHAT_IDS)}")
        if duplicates:
            problems.append(f"{duplicates} people registered twice")
        return {
            "rows": rows,
            "outbox": outbox,
            "duplicates": duplicates,
            "problems": problems,
        }

    async def server_cpu() -> float | None:
        if server is None:
            return None
        rows = await db.fetchall(
            "SELECT pid FROM pg_stat_activity WHERE application_name = ?", (schema,)
        )
        return sum(_process_cpu(row[0]) for row in rows)

    async def close() -> None:
        await stack.aclose()
        if server is not None:
            import asyncpg

            connection = await asyncpg.connect(server)
            await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await connection.close()

    return Prepared(dispatcher, bot, session, our_buttons(), verify, close, server_cpu)


async def prepare_floor(directory: Path) -> Prepared:
    from bench.floor_bot import create_dispatcher

    session = AnsweringSession()
    bot = Bot(TOKEN, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    dispatcher = create_dispatcher()

    async def verify(expected: int) -> JSON:
        # Every participant's last message was checked to be the confirmation in `register`.
        done = sum(
            1 for chat in session.chats.values() if floor_buttons().registered in chat.last_text
        )
        problems = [] if done == expected else [f"{done} confirmations, expected {expected}"]
        return {"rows": done, "problems": problems}

    return Prepared(dispatcher, bot, session, floor_buttons(), verify)


async def measure(kind: str, participants: int, concurrency: int, profile: bool) -> JSON:
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
        prepare = prepare_ours if kind == "ours" else prepare_floor
        prepared = await prepare(Path(tmp))
        try:
            return await _measure(prepared, participants, concurrency, profile)
        finally:
            await prepared.close()


async def _measure(prepared: Prepared, participants: int, concurrency: int, profile: bool) -> JSON:
    dispatcher, bot = prepared.dispatcher, prepared.bot

    async def feed(update: JSON) -> Any:
        return await dispatcher.feed_raw_update(bot, update)

    counter = Counter()
    warm_up = min(WARM_UP, participants)
    await drive(feed, prepared.session, prepared.buttons, range(warm_up), concurrency, counter)
    counter.updates = 0
    numbers = range(warm_up, warm_up + participants)

    profiler: Any = None
    if profile:
        profiler = start_profiler()
    counting = os.environ.get(CALLGRIND_ENV) == "1"
    if counting:
        # bench/bench_instructions.py: count only the timed part, with the start-up's objects
        # out of the collector's sight as production has them (bot/app.py: run).
        gc.collect()
        gc.freeze()
        callgrind_instrumentation("on")
    threads_before = cpu_by_thread()
    server_before = await prepared.server_cpu()
    cpu_before = time.process_time()
    began = time.perf_counter()
    await drive(feed, prepared.session, prepared.buttons, numbers, concurrency, counter)
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu_before
    server_after = await prepared.server_cpu()
    threads = cpu_split(threads_before, cpu_by_thread())
    if counting:
        callgrind_instrumentation("off")
    if profiler is not None:
        stop_profiler(profiler)

    checks = await prepared.verify(warm_up + participants)
    return {
        "participants": participants,
        "concurrency": concurrency,
        "updates": counter.updates,
        "wall": wall,
        "cpu": cpu,
        "server_cpu": (
            None if server_before is None or server_after is None else server_after - server_before
        ),
        "threads": threads,
        "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "calls": dict(prepared.session.calls),
        "checks": checks,
    }


CALLGRIND_ENV = "BENCH_CALLGRIND"


def callgrind_instrumentation(switch: str) -> None:
    """Turn callgrind's counting on or off in this process (run under
    `valgrind --tool=callgrind --instr-atstart=no`); callgrind_control returns once the
    running process has obeyed."""
    subprocess.run(
        ["callgrind_control", "--instr=" + switch, str(os.getpid())],
        check=True,
        capture_output=True,
    )


def start_profiler() -> Any:
    try:
        from pyinstrument import Profiler  # type: ignore[import-not-found]
    except ImportError:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        return profiler
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    return profiler


def stop_profiler(profiler: Any) -> None:
    if hasattr(profiler, "output_text"):
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False), file=sys.stderr)
        return
    import pstats

    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stderr).strip_dirs()
    print("\n--- cProfile, by own time ---", file=sys.stderr)
    stats.sort_stats("tottime").print_stats(25)
    print("\n--- cProfile, by cumulative time ---", file=sys.stderr)
    stats.sort_stats("cumulative").print_stats(40)


# --- the parent: one subprocess per bot and run ------------------------------------------------


def run_child(kind: str, participants: int, concurrency: int, profile: bool = False) -> JSON:
    command = [sys.executable, "-m", "bench.bench_throughput", "--child", kind]
    command += ["--participants", str(participants), "--concurrency", str(concurrency)]
    if profile:
        command.append("--profile")
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{kind} failed (exit {completed.returncode}):\n{completed.stderr}")
    if profile:
        print(completed.stderr, file=sys.stderr)
    return cast(JSON, json.loads(completed.stdout.strip().splitlines()[-1]))


@dataclass
class Figures:
    updates_per_s: list[float] = field(default_factory=list)
    registrations_per_s: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    threads_us: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    checks: list[JSON] = field(default_factory=list)

    def add(self, result: JSON) -> None:
        updates = result["updates"]
        self.updates_per_s.append(updates / result["wall"])
        self.registrations_per_s.append(result["participants"] / result["wall"])
        self.cpu_us.append(result["cpu"] / updates * 1e6)
        self.rss_mb.append(result["rss_kb"] / 1024)
        for kind, seconds in result["threads"].items():
            self.threads_us[kind].append(seconds / updates * 1e6)
        self.checks.append(result["checks"])


def cell(values: Sequence[float], digits: int = 0) -> str:
    middle = statistics.median(values)
    text = f"{middle:,.{digits}f}"
    if len(values) > 1:
        text += f" ({min(values):,.{digits}f}–{max(values):,.{digits}f})"
    return text


def ratio(ours: Sequence[float], floor: Sequence[float]) -> float:
    return statistics.median(ours) / statistics.median(floor)


def report(ours: Figures, floor: Figures, participants: int, concurrency: int, runs: int) -> None:
    speed = ratio(ours.updates_per_s, floor.updates_per_s)
    rss = ratio(ours.rss_mb, floor.rss_mb)
    cpu = ratio(ours.cpu_us, floor.cpu_us)
    runs_note = f", median of {runs} runs (min–max)" if runs > 1 else ""
    print(
        f"## Throughput in-process: {participants:,} participants, {concurrency} at a time, "
        f"{UPDATES_PER_REGISTRATION} updates each{runs_note}\n"
    )
    print("| | floor (bench/floor_bot.py) | ours | ours / floor | goal |")
    print("|---|---:|---:|---:|---|")
    mark = "met" if speed >= GOAL_SPEED else "missed"
    print(
        f"| updates/s | {cell(floor.updates_per_s)} | {cell(ours.updates_per_s)} "
        f"| {speed:.2f}× | ≥ {GOAL_SPEED:.1f}× ({mark}) |"
    )
    print(
        f"| registrations/s | {cell(floor.registrations_per_s)} "
        f"| {cell(ours.registrations_per_s)} "
        f"| {ratio(ours.registrations_per_s, floor.registrations_per_s):.2f}× | |"
    )
    print(f"| CPU µs per update | {cell(floor.cpu_us)} | {cell(ours.cpu_us)} | {cpu:.2f}× | |")
    capacity_floor = [1e6 / us for us in floor.cpu_us]
    capacity_ours = [1e6 / us for us in ours.cpu_us]
    print(
        f"| updates/s one core could do (10⁶ / CPU µs) | {cell(capacity_floor)} "
        f"| {cell(capacity_ours)} | {1 / cpu:.2f}× | |"
    )
    kinds = sorted(set(ours.threads_us) | set(floor.threads_us))
    for kind in kinds:
        floor_cell = cell(floor.threads_us[kind]) if floor.threads_us[kind] else "—"
        ours_cell = cell(ours.threads_us[kind]) if ours.threads_us[kind] else "—"
        print(f"| … of which {kind} thread(s) | {floor_cell} | {ours_cell} | | |")
    mark = "met" if rss <= GOAL_RSS else "missed"
    print(
        f"| peak RSS, MB | {cell(floor.rss_mb, 1)} | {cell(ours.rss_mb, 1)} | {rss:.2f}× "
        f"| ≤ {GOAL_RSS:.1f}× ({mark}) |"
    )
    last = ours.checks[-1]
    print(
        f"\n- Ours stored {last['rows']:,} registrations and {last['outbox']:,} outbox rows "
        f"({len(ORGANIZER_CHAT_IDS)} organiser chats) for {participants:,} + {WARM_UP} warm-up "
        f"participants, {last['duplicates']} duplicates; the floor confirmed "
        f"{floor.checks[-1]['rows']:,}."
    )
    print(
        "- Same process kind for both: a fresh interpreter, the bot fed through "
        "`Dispatcher.feed_raw_update` with an in-process session that serialises requests as "
        "the bot's own session does (ours prepares values as bot/session.py does) and parses "
        "answers like aiogram's aiohttp session; the outbox sender is not started."
    )
    print(
        "- CPU is `time.process_time()` (all threads) over the timed run; by thread from "
        "/proc/self/task. Peak RSS is the child's `ru_maxrss`. "
        f"{os.cpu_count()} cores, shared with whatever else runs: wall-clock figures are noisy; "
        "CPU per update (and the one-core rate derived from it) much less so."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--participants", type=int, default=2000, metavar="N")
    parser.add_argument("--concurrency", type=int, default=100, metavar="C")
    parser.add_argument("--repeat", type=int, default=1, metavar="R", help="runs of each bot")
    parser.add_argument("--profile", action="store_true", help="profile ours, print the top")
    parser.add_argument("--child", choices=("ours", "floor"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = asyncio.run(measure(args.child, args.participants, args.concurrency, args.profile))
        print(json.dumps(result))
        return 1 if result["checks"]["problems"] else 0
    if args.profile:
        result = run_child("ours", args.participants, args.concurrency, profile=True)
        print(f"ours: {result['updates'] / result['wall']:,.0f} updates/s while profiled")
        return 0

    ours, floor = Figures(), Figures()
    for run in range(args.repeat):
        # Alternate which goes first, so a neighbour's burst does not always hit the same one.
        order = ("floor", "ours") if run % 2 == 0 else ("ours", "floor")
        for kind in order:
            result = run_child(kind, args.participants, args.concurrency)
            (ours if kind == "ours" else floor).add(result)
            print(
                f"run {run + 1} {kind}: {result['updates'] / result['wall']:,.0f} updates/s, "
                f"{result['cpu'] / result['updates'] * 1e6:,.0f} µs CPU/update, "
                f"{result['rss_kb'] / 1024:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
    report(ours, floor, args.participants, args.concurrency, args.repeat)
    problems = [p for checks in ours.checks + floor.checks for p in checks["problems"]]
    for problem in problems:
        print(f"- PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
