"""The terminal side of the sandbox: three seats (the participant, the admin, the organisers'
group), the bot's messages as plain text, buttons pressed by number."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.domain.texts import DEFAULT_LOCALE
from bot.sandbox.fake_telegram import (
    JSON,
    FakeTelegram,
    SentMessage,
    callback_query_update,
    contact_update,
    text_update,
    user_json,
)
from bot.sandbox.run import ADMIN_ID, ORGANIZER_CHAT_ID, PARTICIPANT_ID, say

if TYPE_CHECKING:
    from bot.sandbox.run import BotChild

# A made-up number of the person's own, shared by the "share my number" button.
SHARED_PHONE = "79123456789"
# Up to three digits is a button; a longer number is an answer (a phone typed by hand).
BUTTON_NUMBER = re.compile(r"\d{1,3}")
REFRESH = 0.05  # seconds between looks at what the bot sent


@dataclass(frozen=True)
class Seat:
    name: str  # as typed: ":me"
    chat_id: int
    user: JSON  # who types in this seat
    title: str
    prompt: str


def seats(language: str) -> dict[str, Seat]:
    """The three seats; the participant's and the admin's Telegram app in `language`, so the
    bot speaks it to them (its `language_code`)."""
    participant = user_json(
        PARTICIPANT_ID, first_name="Гость", username="sandbox_guest", language_code=language
    )
    admin = user_json(
        ADMIN_ID, first_name="Админ", username="sandbox_admin", language_code=language
    )
    return {
        seat.name: seat
        for seat in (
            Seat(":me", PARTICIPANT_ID, participant, "sandbox_seat_me", "sandbox_prompt_me"),
            Seat(":admin", ADMIN_ID, admin, "sandbox_seat_admin", "sandbox_prompt_admin"),
            # In the group the admin types; the bot answers there only /start, as in Telegram.
            Seat(":org", ORGANIZER_CHAT_ID, admin, "sandbox_seat_org", "sandbox_prompt_org"),
        )
    }


@dataclass(frozen=True)
class Button:
    text: str
    message: SentMessage | None = None  # an inline button's message
    callback_data: str | None = None
    request_contact: bool = False


class Terminal:
    def __init__(self, output_dir: Path, language: str = DEFAULT_LOCALE) -> None:
        self.output_dir = output_dir
        self.stopped = asyncio.Event()
        self._inputs: asyncio.Queue[str | None] = asyncio.Queue()
        self._seats = seats(language)
        self._seat = self._seats[":me"]
        self._buttons: list[Button] = []
        self._shown: set[tuple[int, int]] = set()
        self._pending: dict[int, list[SentMessage]] = {
            seat.chat_id: [] for seat in self._seats.values()
        }
        self._saved: dict[tuple[int, int], Path] = {}
        self._prompted = False
        # A chat whose new messages are shown in the current seat too: /digest typed under
        # :org is asked in the admin's private chat, where the bot answers it.
        self._mirrored: int | None = None

    # --- input ----------------------------------------------------------------------------

    def listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ctrl-C and stdin's lines (None at its end) become inputs of the event loop."""
        loop.add_signal_handler(signal.SIGINT, self._interrupt)

        def read() -> None:
            while True:
                try:
                    line = sys.stdin.readline()
                except (OSError, ValueError):
                    line = ""
                loop.call_soon_threadsafe(self._inputs.put_nowait, line or None)
                if not line:
                    return

        # A daemon: a thread blocked in readline must not hold the exit.
        threading.Thread(target=read, name="stdin", daemon=True).start()

    def _interrupt(self) -> None:
        if not self.stopped.is_set():
            self.line(say("sandbox_interrupted"), prompt=False)
            self.stopped.set()

    # --- output ---------------------------------------------------------------------------

    def line(self, text: str, *, prompt: bool = True) -> None:
        if self._prompted:
            # The prompt stands alone at the end of the last line: write over it.
            sys.stdout.write("\r\x1b[K" if sys.stdout.isatty() else "\n")
            self._prompted = False
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def prompt(self) -> None:
        if not self._prompted and not self.stopped.is_set():
            sys.stdout.write(say(self._seat.prompt))
            sys.stdout.flush()
            self._prompted = True

    # --- the chat -------------------------------------------------------------------------

    async def chat(self, fake: FakeTelegram, child: BotChild) -> None:
        self.fake = fake
        self.line(say("sandbox_help"))
        self.line(say(self._seat.title))
        self._mark = fake.mark()
        watcher = asyncio.create_task(self._watch(child))
        reader = asyncio.create_task(self._read())
        try:
            await self._act("/start")
            done, _ = await asyncio.wait(
                {watcher, reader, asyncio.create_task(self.stopped.wait())},
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                task.result()  # an error in a task stops the sandbox with its one line
        finally:
            self.stopped.set()
            for task in (watcher, reader):
                task.cancel()
            await asyncio.gather(watcher, reader, return_exceptions=True)

    async def _read(self) -> None:
        while not self.stopped.is_set():
            text = await self._inputs.get()
            self._prompted = False  # the person's Enter ended the prompt's line
            if text is None:
                self.line(say("sandbox_end_of_input"))
                return
            text = text.strip()
            if not text:
                self.prompt()
                continue
            if text == ":quit":
                return
            if text.startswith(":"):
                if text in self._seats:
                    self._switch(self._seats[text])
                else:
                    self.line(say("sandbox_unknown_command", command=text.split()[0]))
                self.prompt()
                continue
            await self._act(text)

    async def _act(self, text: str) -> None:
        if BUTTON_NUMBER.fullmatch(text):
            number = int(text)
            if not 1 <= number <= len(self._buttons):
                self.line(say("sandbox_no_button", number=number))
                self.prompt()
                return
            await self._press(self._buttons[number - 1])
            return
        self._buttons = []
        seat = self._seat
        self._mirrored = None
        if seat.name == ":org" and text.split()[0] == "/digest":
            # In Telegram an organiser asks for the digest in their private chat with the
            # bot (it answers admin commands there only); the answer is shown here.
            self.line(say("sandbox_digest_via_admin"))
            seat = self._seats[":admin"]
            self._mirrored = seat.chat_id
        message_id = self.fake.next_message_id(seat.chat_id)
        update = text_update(seat.user, text, message_id=message_id, chat_id=seat.chat_id)
        self.fake.push_update(update)

    async def _press(self, button: Button) -> None:
        seat = self._seat
        self._buttons = []
        if button.message is not None and button.callback_data is not None:
            self.line(say("sandbox_pressed", text=button.text))
            update = callback_query_update(
                seat.user,
                self.fake.message_json(button.message),
                button.callback_data,
                query_id=self.fake.new_callback_query_id(),
            )
        elif button.request_contact:
            self.line(say("sandbox_shared", phone=f"+{SHARED_PHONE}"))
            update = contact_update(
                seat.user,
                SHARED_PHONE,
                contact_user_id=seat.user["id"],
                first_name=seat.user["first_name"],
                message_id=self.fake.next_message_id(seat.chat_id),
                chat_id=seat.chat_id,
            )
        else:  # a plain reply-keyboard button sends its text
            self.line(say("sandbox_pressed", text=button.text))
            update = text_update(
                seat.user,
                button.text,
                message_id=self.fake.next_message_id(seat.chat_id),
                chat_id=seat.chat_id,
            )
        self.fake.push_update(update)

    def _switch(self, seat: Seat) -> None:
        self._seat = seat
        self._buttons = []
        self._mirrored = None
        self.line(say(seat.title))
        pending = self._pending[seat.chat_id]
        self._pending[seat.chat_id] = []
        # A message touched twice while away (sent, then edited) is shown once, as it is now.
        for message in {id(message): message for message in pending}.values():
            self._show(message)

    # --- what the bot sent ----------------------------------------------------------------

    async def _watch(self, child: BotChild) -> None:
        while True:
            if child.exited:
                self.line(child.stopped_line())
                return
            mark = self.fake.mark()
            if mark != self._mark:
                news: set[str] = set()
                for seat in self._seats.values():
                    touched = self.fake.touched_since(self._mark, seat.chat_id)
                    for message in touched:
                        self._save_document(message)
                    if seat.chat_id in (self._seat.chat_id, self._mirrored):
                        for message in touched:
                            self._show(message)
                    elif touched:
                        self._pending[seat.chat_id] += touched
                        news.add(seat.name)
                for name in sorted(news):
                    self.line(say("sandbox_news", seat=name))
                self._mark = mark
                self.prompt()
            await asyncio.sleep(REFRESH)

    def _show(self, message: SentMessage) -> None:
        if message.deleted:
            return
        key = (message.chat_id, message.message_id)
        self.line(say("sandbox_bot_edited" if key in self._shown else "sandbox_bot"))
        self._shown.add(key)
        body = message.text if message.text is not None else message.caption
        if body:
            self.line(body)
        if key in self._saved:
            self.line(say("sandbox_file_saved", name=message.filename, path=self._saved[key]))
        for button in self._buttons_of(message):
            self._buttons.append(button)
            self.line(f"  [{len(self._buttons)}] {button.text}")
        for row in message.inline_keyboard:
            for item in row:
                if "url" in item:
                    self.line(say("sandbox_url_button", text=item["text"], url=item["url"]))

    @staticmethod
    def _buttons_of(message: SentMessage) -> list[Button]:
        markup = message.reply_markup or {}
        buttons = [
            Button(item["text"], message=message, callback_data=item["callback_data"])
            for row in markup.get("inline_keyboard", [])
            for item in row
            if "callback_data" in item
        ]
        buttons += [
            Button(item["text"], request_contact=bool(item.get("request_contact")))
            for row in markup.get("keyboard", [])
            for item in row
        ]
        return buttons

    def _save_document(self, message: SentMessage) -> None:
        key = (message.chat_id, message.message_id)
        if message.document is None or key in self._saved:
            return
        name = Path(message.filename or "document").name
        path = self.output_dir / name
        counter = 1
        while path.exists():
            counter += 1
            path = self.output_dir / f"{Path(name).stem} ({counter}){Path(name).suffix}"
        path.touch(mode=0o600)  # the registrations: personal data
        path.write_bytes(message.document)
        self._saved[key] = path.resolve()
