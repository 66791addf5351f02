"""/language: the bot's language for this person, between Russian and English, remembered.

In the middle of a form the current question is asked again in the new language; the
answers given so far stay as they are (they are the person's, not the bot's texts).
"""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

from bot.domain.events import EventCatalog
from bot.domain.form import FormFields
from bot.domain.texts import LANGUAGES, LOCALE, t, use_locale
from handlers.replies import reask
from storage.languages import Languages


def next_language(current: str) -> str:
    """The language after `current`: with two, the other one."""
    index = LANGUAGES.index(current) if current in LANGUAGES else -1
    return LANGUAGES[(index + 1) % len(LANGUAGES)]


async def language_switched(
    message: Message,
    bot: Bot,
    state: FSMContext,
    catalog: EventCatalog,
    form: FormFields,
    languages: Languages,
) -> None:
    assert message.from_user is not None
    language = next_language(LOCALE.get())
    await languages.choose(message.from_user.id, language)
    with use_locale(language):
        await message.answer(t("language_switched"))
        await reask(bot, message.chat.id, state, catalog, form)


def create_router() -> Router:
    router = Router(name="language")
    # Works in every state, like the other commands: the form's question comes again.
    router.message.register(language_switched, Command("language"))
    return router
