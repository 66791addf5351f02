"""A person talking to the bot: builds their updates and reads back what the bot answered."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.fake_telegram import (
    JSON,
    FakeTelegram,
    SentMessage,
    callback_query_update,
    contact_update,
    document_update,
    location_update,
    my_chat_member_update,
    photo_update,
    sticker_update,
    text_update,
    user_json,
    voice_update,
)

if TYPE_CHECKING:
    from aiogram import Bot, Dispatcher

# Delivers one update and returns once the bot has handled it.
Deliver = Callable[[dict[str, Any]], Awaitable[None]]


def http_deliver(
    fake: FakeTelegram, *, timeout: float = 10.0, database: Path | str | None = None
) -> Deliver:
    """`database`: the bot's SQLite file, or its PostgreSQL URL. Our bot confirms an update
    once it is in its inbox and handles it after: handled means gone from the inbox. Without
    it, handled means confirmed (aiogram's own polling, which confirms after handling)."""

    async def deliver(update: dict[str, Any]) -> None:
        update_id = fake.push_update(update)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await fake.wait_confirmed(update_id, timeout=timeout)
        if database is None:
            return
        while (
            await _waiting_in_postgres(database, update_id)
            if isinstance(database, str)
            else _waiting_in_inbox(database, update_id)
        ):
            if loop.time() > deadline:
                raise AssertionError(f"update {update_id} still in the inbox after {timeout} s")
            await asyncio.sleep(0.005)

    return deliver


def _waiting_in_inbox(database: Path, update_id: int) -> bool:
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute(
                "SELECT 1 FROM inbox WHERE update_id = ? AND set_aside IS NULL", (update_id,)
            ).fetchone()
    except sqlite3.OperationalError:
        return True  # the file is being created or migrated: ask again
    return row is not None


async def _waiting_in_postgres(url: str, update_id: int) -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError):
        return True
    try:
        row = await connection.fetchrow(
            "SELECT 1 FROM inbox WHERE update_id = $1 AND set_aside IS NULL", update_id
        )
    except asyncpg.UndefinedTableError:
        return True  # being migrated: ask again
    finally:
        await connection.close()
    return row is not None


def feed_deliver(dispatcher: Dispatcher, bot: Bot) -> Deliver:
    async def deliver(update: dict[str, Any]) -> None:
        await dispatcher.feed_raw_update(bot, update)

    return deliver


def _button_texts(markup: JSON | None) -> list[str]:
    if markup is None:
        return []
    rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
    return [button["text"] for row in rows for button in row]


class TelegramUser:
    def __init__(
        self,
        fake: FakeTelegram,
        deliver: Deliver,
        *,
        user_id: int,
        first_name: str = "Иван",
        last_name: str | None = None,
        username: str | None = None,
        chat_id: int | None = None,
        language_code: str = "ru",
    ) -> None:
        self.fake = fake
        self.deliver = deliver
        self.user_id = user_id
        self.first_name = first_name
        self.last_name = last_name
        self.chat_id = user_id if chat_id is None else chat_id
        self.user = user_json(
            user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
        )

    # --- acting ---------------------------------------------------------------------------

    async def send(self, text: str) -> list[SentMessage]:
        return await self._deliver(text_update(self.user, text, **self._message_fields()))

    async def send_sticker(self) -> list[SentMessage]:
        return await self._deliver(sticker_update(self.user, **self._message_fields()))

    async def send_photo(
        self, caption: str | None = None, *, caption_entities: list[JSON] | None = None
    ) -> list[SentMessage]:
        update = photo_update(
            self.user, caption=caption, caption_entities=caption_entities, **self._message_fields()
        )
        return await self._deliver(update)

    async def send_document(
        self, caption: str | None = None, *, caption_entities: list[JSON] | None = None
    ) -> list[SentMessage]:
        update = document_update(
            self.user, caption=caption, caption_entities=caption_entities, **self._message_fields()
        )
        return await self._deliver(update)

    async def send_voice(self) -> list[SentMessage]:
        return await self._deliver(voice_update(self.user, **self._message_fields()))

    async def send_location(self) -> list[SentMessage]:
        return await self._deliver(location_update(self.user, **self._message_fields()))

    async def share_contact(self, phone: str, *, user_id: int | None = None) -> list[SentMessage]:
        # Sharing someone else's card from the attachment menu carries their user_id, or none.
        update = contact_update(
            self.user,
            phone,
            contact_user_id=self.user_id if user_id is None else user_id,
            first_name=self.first_name,
            last_name=self.last_name,
            **self._message_fields(),
        )
        return await self._deliver(update)

    async def click(self, text: str) -> list[SentMessage]:
        message, callback_data = self._find_button(text)
        return await self.click_data(message, callback_data)

    async def click_data(self, message: SentMessage, callback_data: str) -> list[SentMessage]:
        # The query carries the message as it is now, which is what a stale second tap sees.
        update = callback_query_update(
            self.user,
            self.fake.message_json(message),
            callback_data,
            query_id=self.fake.new_callback_query_id(),
        )
        return await self._deliver(update)

    async def send_update(self, update: JSON) -> list[SentMessage]:
        """An update made by hand: a message as an earlier press carried it, say."""
        return await self._deliver(update)

    async def block_bot(self) -> list[SentMessage]:
        self.fake.block(self.chat_id)
        update = my_chat_member_update(
            self.user,
            self.fake.bot_user,
            old_status="member",
            new_status="kicked",
            chat_id=self.chat_id,
        )
        return await self._deliver(update)

    # --- reading --------------------------------------------------------------------------

    @property
    def last_text(self) -> str:
        message = self.fake.last_message(self.chat_id)
        return message.text if message.text is not None else message.caption or ""

    @property
    def last_message_text(self) -> str:
        """The last text message, past files sent after it (the calendar file follows the
        confirmation)."""
        for message in reversed(self.fake.messages_to(self.chat_id)):
            if message.text is not None and not message.deleted:
                return message.text
        return ""

    @property
    def reply_keyboard(self) -> JSON | None:
        keyboard: JSON | None = None
        for message in self.fake.messages_to(self.chat_id):
            markup = message.reply_markup or {}
            if "keyboard" in markup:
                keyboard = markup
            elif markup.get("remove_keyboard"):
                keyboard = None
        return keyboard

    def buttons(self, message: SentMessage) -> list[str]:
        return _button_texts(message.reply_markup)

    # --- internals ------------------------------------------------------------------------

    def _message_fields(self) -> dict[str, Any]:
        return {
            "message_id": self.fake.next_message_id(self.chat_id),
            "chat_id": self.chat_id,
        }

    async def _deliver(self, update: JSON) -> list[SentMessage]:
        mark = self.fake.mark()
        await self.deliver({"update_id": self.fake.next_update_id(), **update})
        return self.fake.touched_since(mark, self.chat_id)

    def _find_button(self, text: str) -> tuple[SentMessage, str]:
        seen: list[str] = []
        for message in reversed(self.fake.messages_to(self.chat_id)):
            buttons = [button for row in message.inline_keyboard for button in row]
            if message.deleted or not buttons:
                continue
            seen.append(f"#{message.message_id}: {[button['text'] for button in buttons]}")
            exact = [button for button in buttons if button["text"] == text]
            matches = exact or [button for button in buttons if text in button["text"]]
            if len(matches) > 1:
                found = [button["text"] for button in matches]
                msg = f"{text!r} matches several buttons of message #{message.message_id}: {found}"
                raise AssertionError(msg)
            if matches:
                data = matches[0].get("callback_data")
                if data is None:
                    msg = f"button {matches[0]['text']!r} has no callback_data"
                    raise AssertionError(msg)
                return message, data
        available = "; ".join(seen) or "none"
        msg = f"no inline button containing {text!r} in chat {self.chat_id}; buttons: {available}"
        raise AssertionError(msg)
