"""/language: the bot's language for this person, chosen from the languages it has a catalogue
for (found at start-up: `texts.LANGUAGES`), remembered.

In the middle of a form the current question is asked again in the new language once one is
chosen; the answers given so far stay as they are (they are the person's, not the bot's
texts).
"""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.domain.events import EventCatalog
from bot.domain.form import FormFields
from bot.domain.texts import LANGUAGES, LOCALE, t, use_locale
from handlers.keyboards import LanguageCallback, language_keyboard
from handlers.replies import reask, replace_answered
from storage.languages import Languages


async def languages_offered(message: Message) -> None:
    await message.answer(t("language_choose"), reply_markup=language_keyboard(LOCALE.get()))


async def language_chosen(
    callback: CallbackQuery,
    callback_data: LanguageCallback,
    bot: Bot,
    state: FSMContext,
    catalog: EventCatalog,
    form: FormFields,
    languages: Languages,
) -> None:
    language = callback_data.language
    if language not in LANGUAGES:  # a button of a language since removed, or forged
        await callback.answer(t("button_expired"))
        return
    await languages.choose(callback.from_user.id, language)
    await callback.answer()
    with use_locale(language):
        # The chooser becomes the record of the choice; the form's question follows.
        await replace_answered(callback, bot, t("language_switched"))
        await reask(bot, callback.from_user.id, state, catalog, form)


def create_router() -> Router:
    router = Router(name="language")
    # Works in every state, like the other commands; the form's question comes again after
    # the choice.
    router.message.register(languages_offered, Command("language"))
    router.callback_query.register(language_chosen, LanguageCallback.filter())
    return router
