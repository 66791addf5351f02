"""Admin commands and buttons from someone who is not an admin: refused, saying nothing about
the data. Access is declared in handlers.get_routers: this router sees only private chats of
people outside ADMIN_IDS, and comes right after the admins' own, before the participant flow
(else a participant's /stats mid-form would be taken for a wrong answer)."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.domain.events import EventCatalog
from bot.domain.form import FormFields
from bot.domain.texts import t
from handlers.keyboards import AdminCallback, EraseCallback
from handlers.menu import ADMIN_COMMANDS
from handlers.replies import reask


async def admin_refused(
    message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog, form: FormFields
) -> None:
    await message.answer(t("admin_only"))
    # A participant in the middle of the form gets their question back.
    await reask(bot, message.chat.id, state, catalog, form)


async def admin_button_refused(callback: CallbackQuery) -> None:
    await callback.answer(t("admin_only"), show_alert=True)


def create_router() -> Router:
    router = Router(name="admin_refusals")
    router.message.register(admin_refused, Command(*(name for name, _ in ADMIN_COMMANDS)))
    router.callback_query.register(admin_button_refused, AdminCallback.filter())
    router.callback_query.register(admin_button_refused, EraseCallback.filter())
    return router
