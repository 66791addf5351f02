"""`python -m bot try`: a temporary folder, the fake Bot API on 127.0.0.1, the real bot process
against it, and the terminal chat; everything is stopped and removed at the end.

The sandbox never reads BOT_TOKEN or TELEGRAM_API_URL: the bot gets a made-up token and the
fake's address, runs in the temporary folder (so no `.env` is read), and the sandbox refuses
to start if the address it would hand the bot is anything but the loopback.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from bot.domain.config import SettingsError, load_data_settings
from bot.domain.events import EventsFileError, load_events
from bot.domain.texts import LANGUAGES, LOCALE, language_of, t
from bot.sandbox.fake_telegram import GROUP_CHAT_ID, FakeTelegram, serve

# The shape the settings require ("<bot id>:<30+ characters>"), and plainly not a real one.
SANDBOX_TOKEN = "7000000001:sandbox-token-not-a-real-telegram-one"
PARTICIPANT_ID = 100001
ADMIN_ID = 100002
ORGANIZER_CHAT_ID = GROUP_CHAT_ID
DEMO_EVENT_ID = "sandbox-demo"
START_TIMEOUT = 90.0  # importing aiogram takes seconds on a small machine
STOP_TIMEOUT = 15.0
SOURCE_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_EVENTS = SOURCE_ROOT / "events.toml"


class SandboxError(Exception):
    """One line for the person, then a clean stop."""


def say(key: str, **params: object) -> str:
    """A catalogue text for the terminal: `t` escapes for Telegram's HTML, a terminal shows
    the text as typed."""
    return html.unescape(t(key, **params))


def check_loopback(url: str) -> None:
    if urlsplit(url).hostname != "127.0.0.1":
        raise SandboxError(say("sandbox_refused", url=url))


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (the same escapes).
    return json.dumps(value, ensure_ascii=False)


def demo_event_toml(now: datetime, zone: ZoneInfo) -> str:
    starts = (now.astimezone(zone) + timedelta(days=30)).replace(
        hour=12, minute=0, second=0, microsecond=0
    )
    deadline = (starts - timedelta(days=2)).replace(hour=23, minute=59)
    fields = {
        "id": _toml_string(DEMO_EVENT_ID),
        "title": _toml_string(say("sandbox_demo_title")),
        "starts_at": f"{starts:%Y-%m-%dT%H:%M:%S}",
        "timezone": _toml_string(zone.key),
        "registration_deadline": f"{deadline:%Y-%m-%dT%H:%M:%S}",
        "location": _toml_string(say("sandbox_demo_location")),
        "description": _toml_string(say("sandbox_demo_description")),
        "privacy_policy": _toml_string(say("sandbox_demo_policy")),
        "privacy_policy_version": _toml_string("sandbox"),
    }
    return "\n[[events]]\n" + "".join(f"{key} = {value}\n" for key, value in fields.items())


def prepare_events(folder: Path) -> tuple[Path, str, str | None]:
    """The events file the bot will read (a copy with a demo session when none is open), its
    time zone, and the line announcing the demo session (None without one)."""
    try:
        settings = load_data_settings()
        if not settings.events_file.exists() and settings.events_file == Path(SHIPPED_EVENTS.name):
            # Run from another folder: the events file shipped beside the code.
            settings = settings.model_copy(update={"events_file": SHIPPED_EVENTS})
        catalog = load_events(settings.events_file, default_zone=settings.timezone)
    except (SettingsError, EventsFileError) as error:
        raise SandboxError(f"error: {error}") from None
    zone = settings.timezone
    now = datetime.now(zone)
    if catalog.open_events(now):
        return settings.events_file.resolve(), zone.key, None
    events_file = folder / "events.toml"
    text = settings.events_file.read_text(encoding="utf-8")
    events_file.write_text(text + demo_event_toml(now, zone), encoding="utf-8")
    starts = (now + timedelta(days=30)).date()
    announce = say("sandbox_demo_added", file=settings.events_file, date=f"{starts:%d.%m.%Y}")
    return events_file, zone.key, announce


def bot_environment(folder: Path, events_file: Path, zone: str, base_url: str) -> dict[str, str]:
    check_loopback(base_url)
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    # The child runs in the temporary folder: make sure it imports this very code.
    source_root = str(SOURCE_ROOT)
    pythonpath = os.environ.get("PYTHONPATH")
    env.update(
        BOT_TOKEN=SANDBOX_TOKEN,
        TELEGRAM_API_URL=base_url,
        DATABASE_PATH=str(folder / "data" / "bot.sqlite3"),
        EVENTS_FILE=str(events_file),
        TIMEZONE=zone,
        ADMIN_IDS=str(ADMIN_ID),
        ORGANIZER_CHAT_IDS=str(ORGANIZER_CHAT_ID),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=source_root if not pythonpath else f"{source_root}{os.pathsep}{pythonpath}",
    )
    return env


def last_line(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


class BotChild:
    """The real `python -m bot` process, in a session of its own so that the terminal's
    Ctrl-C reaches the sandbox only; the sandbox stops it with SIGTERM."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    def stopped_line(self) -> str:
        return say("sandbox_bot_stopped", code=self.process.returncode, line=last_line(self.log))

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    async def stop(self) -> None:
        if self.exited:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@asynccontextmanager
async def bot_child(folder: Path, env: dict[str, str]) -> AsyncIterator[BotChild]:
    log = folder / "bot.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=folder,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
    child = BotChild(process, log)
    try:
        yield child
    finally:
        await child.stop()


async def wait_polling(fake: FakeTelegram, child: BotChild, stop: asyncio.Event) -> bool:
    """True once the bot polls; False if the person stopped the sandbox first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while not fake.calls_of("getUpdates"):
        if stop.is_set():
            return False
        if child.exited:
            raise SandboxError(child.stopped_line())
        if loop.time() > deadline:
            seconds = int(START_TIMEOUT)
            line = last_line(child.log)
            raise SandboxError(say("sandbox_bot_not_started", seconds=seconds, line=line))
        await asyncio.sleep(0.05)
    return True


def sandbox_language(argv: list[str], lang: str | None) -> str:
    """`--language xx`, else the terminal's `LANG` ("en_US.UTF-8": English), else Russian."""
    if argv[:1] == ["--language"] and len(argv) == 2:
        if argv[1] not in LANGUAGES:
            raise SandboxError(f"error: --language: use one of {', '.join(LANGUAGES)}")
        return argv[1]
    if argv:
        raise SandboxError(f"error: unknown arguments {' '.join(argv)!r}; use --language xx")
    return language_of((lang or "").split(".")[0].replace("_", "-"))


async def sandbox(language: str) -> None:
    from bot.sandbox.terminal import Terminal

    terminal = Terminal(output_dir=Path.cwd(), language=language)
    terminal.listen(asyncio.get_running_loop())
    folder = Path(tempfile.mkdtemp(prefix="bot-try-"))
    try:
        terminal.line(say("sandbox_starting"))
        terminal.line(say("sandbox_folder", folder=folder))
        events_file, zone, announce = prepare_events(folder)
        if announce:
            terminal.line(announce)
        fake = FakeTelegram(bot_username="sandbox_registration_bot", token=SANDBOX_TOKEN)
        async with serve(fake) as base_url:
            env = bot_environment(folder, events_file, zone, base_url)
            async with bot_child(folder, env) as child:
                if await wait_polling(fake, child, terminal.stopped):
                    await terminal.chat(fake, child)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    terminal.line(say("sandbox_stopped"))


def main(argv: list[str] | None = None) -> int:
    # The bot's log goes to its file; here only the chat (and warnings) may reach the terminal.
    logging.getLogger().setLevel(logging.WARNING)
    try:
        language = sandbox_language(argv or [], os.environ.get("LANG"))
        # The terminal's own lines in it too: set for this process's one run, which
        # asyncio.run's task inherits.
        LOCALE.set(language)
        asyncio.run(sandbox(language))
    except SandboxError as error:
        print(error, file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C before the terminal's own handler is in place (while Python starts).
        print(say("sandbox_interrupted"), file=sys.stderr, flush=True)
        return 130
    except Exception as error:  # the last resort: one line, never a traceback
        print(say("sandbox_failed", error=f"{type(error).__name__}: {error}"), file=sys.stderr)
        return 1
    return 0
