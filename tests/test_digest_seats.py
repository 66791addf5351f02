"""The digest's seats and waiting list (issue 13, item 6) through the production Dispatcher:
the numbers a newcomer would see (everyone waiting holds a seat), beside the sources."""

from __future__ import annotations

from aiogram import Bot

from bot.domain.config import Settings
from storage.database import Database
from tests.client import TelegramUser, feed_deliver
from tests.fake_telegram import FakeTelegram
from tests.helpers import ADMIN_ID, EVENTS_TOML, Clock, dispatcher_for, fill_form


async def digest_text(admin: TelegramUser) -> str:
    return "\n".join(message.text or "" for message in await admin.send("/digest"))


async def test_digest_shows_seats_left_the_waiting_list_and_sources(
    settings: Settings, db: Database, clock: Clock, fake: FakeTelegram, bot: Bot
) -> None:
    dispatcher = await dispatcher_for(EVENTS_TOML + "capacity = 3\n", settings, db, clock)
    deliver = feed_deliver(dispatcher, bot)
    admin = TelegramUser(fake, deliver, user_id=ADMIN_ID)

    async def register(user_id: int, start: str, button: str = "Подтвердить") -> None:
        user = TelegramUser(fake, deliver, user_id=user_id)
        await user.send(start)
        await fill_form(user)
        await user.click(button)

    await register(2001, "/start forum-2026--vk")
    await register(2002, "/start forum-2026")
    text = await digest_text(admin)
    assert "💺 Свободных мест: 1 из 3" in text
    assert "📋 В листе ожидания: 0" in text
    assert "🔗 Откуда пришли: vk — 1 (+1), без метки — 1 (+1)" in text

    await register(2003, "/start forum-2026--tg")
    await register(2004, "/start forum-2026--vk", "Встать в лист ожидания")
    text = await digest_text(admin)
    assert "💺 Свободных мест нет (всего 3)" in text
    assert "📋 В листе ожидания: 1" in text
    # The waiting one is not counted as registered, nor by source.
    assert "👥 Всего зарегистрированы: 3" in text
    assert "🔗 Откуда пришли: tg — 1 (+1), vk — 1 (+1), без метки — 1 (+1)" in text


async def test_digest_without_capacity_says_nothing_of_seats(
    settings: Settings, db: Database, clock: Clock, fake: FakeTelegram, bot: Bot
) -> None:
    dispatcher = await dispatcher_for(EVENTS_TOML, settings, db, clock)
    deliver = feed_deliver(dispatcher, bot)
    user = TelegramUser(fake, deliver, user_id=2001)
    await fill_form(user)
    await user.click("Подтвердить")
    text = await digest_text(TelegramUser(fake, deliver, user_id=ADMIN_ID))
    assert "Всего зарегистрированы: 1" in text
    assert "мест" not in text and "лист" not in text.lower()
