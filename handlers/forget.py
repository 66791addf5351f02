"""/forget: a person erases everything the bot holds about them (152-FZ art. 21 §5).

/forget ─▶ nothing held ─▶ "we hold nothing"
        └▶ "erase everything?" ─┬─ yes ─▶ erased, in one transaction ─▶ "done"
                                └─ no ──▶ "nothing erased" (and the open question again)
"""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.domain.clock import Clock
from bot.domain.events import EventCatalog
from bot.domain.form import FormFields
from bot.domain.texts import t
from handlers.keyboards import ForgetAction, ForgetCallback, forget_keyboard
from handlers.replies import reask, replace_answered
from storage.database import Connection
from storage.erasure import PersonalData
from storage.fsm import end_in
from storage.languages import Languages

logger = logging.getLogger(__name__)


async def forget_requested(
    message: Message, state: FSMContext, personal_data: PersonalData
) -> None:
    assert message.from_user is not None
    registrations, messages = await personal_data.held(message.from_user.id)
    if not registrations and not messages and await state.get_state() is None:
        await message.answer(t("forget_nothing"))
        return
    text = (
        t("forget_confirm", registrations=registrations)
        if registrations
        else t("forget_confirm_draft")
    )
    await message.answer(text, reply_markup=forget_keyboard())


async def forget_confirmed(
    callback: CallbackQuery,
    bot: Bot,
    state: FSMContext,
    personal_data: PersonalData,
    clock: Clock,
    languages: Languages,
) -> None:
    await callback.answer()

    async def end_conversation(connection: Connection) -> None:
        await end_in(connection, state)

    forgotten = await personal_data.forget(
        callback.from_user.id, now=clock(), within=end_conversation
    )
    # The language chosen goes too (a next message takes Telegram's language again).
    await languages.forget(callback.from_user.id)
    if forgotten.anything:
        text = t("forget_done", registrations=len(forgotten.registrations))
        # Ids only: the log never holds personal data.
        logger.info(
            "Personal data erased on request: registrations %s, %d drafts, %d messages",
            [erased.registration_id for erased in forgotten.registrations],
            forgotten.drafts,
            forgotten.messages,
        )
    else:
        text = t("forget_done_nothing")
    await replace_answered(callback, bot, text)


async def forget_declined(
    callback: CallbackQuery, bot: Bot, state: FSMContext, catalog: EventCatalog, form: FormFields
) -> None:
    await callback.answer()
    await replace_answered(callback, bot, t("forget_kept"))
    if await state.get_state() is not None:
        await reask(bot, callback.from_user.id, state, catalog, form)


def create_router() -> Router:
    router = Router(name="forget")
    router.message.register(forget_requested, Command("forget"))
    router.callback_query.register(
        forget_confirmed, ForgetCallback.filter(F.action == ForgetAction.yes)
    )
    router.callback_query.register(
        forget_declined, ForgetCallback.filter(F.action == ForgetAction.no)
    )
    return router
