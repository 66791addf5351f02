"""The framework's floor: the same form as ours, written the way aiogram's own
examples/finite_state_machine.py is, and nothing else.

/start -> consent button -> full name -> position -> organisation -> phone -> e-mail ->
summary -> confirm button: the same eight updates a registration takes in our bot. Magic `F`
filters (sync, so aiogram runs each through `asyncio.to_thread`), MemoryStorage, no
validation, no database, plain `message.answer`. The benchmarks compare our bot with this.

    BOT_TOKEN=... TELEGRAM_API_URL=http://127.0.0.1:8081 python -m bench.floor_bot
"""

from __future__ import annotations

import asyncio
import logging
import sys
from os import getenv

from aiogram import Bot, Dispatcher, F, Router, html
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardRemove,
)

CONSENT_BUTTON = "I agree"
CONFIRM_BUTTON = "Confirm"
REGISTERED = "You are registered. See you soon."

form_router = Router()


class Form(StatesGroup):
    consent = State()
    full_name = State()
    position = State()
    organization = State()
    phone = State()
    email = State()
    confirm = State()


def one_button(text: str, data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=text, callback_data=data)]]
    )


@form_router.message(CommandStart())
async def command_start(message: Message, state: FSMContext) -> None:
    await state.set_state(Form.consent)
    await message.answer(
        "Hi there! We will store your answers to register you. Do you agree?",
        reply_markup=one_button(CONSENT_BUTTON, "agree"),
    )


@form_router.message(Command("cancel"))
@form_router.message(F.text.casefold() == "cancel")
async def cancel_handler(message: Message, state: FSMContext) -> None:
    current_state = await state.get_state()
    if current_state is None:
        return
    await state.clear()
    await message.answer("Cancelled.", reply_markup=ReplyKeyboardRemove())


@form_router.callback_query(Form.consent, F.data == "agree")
async def process_consent(callback: CallbackQuery, state: FSMContext) -> None:
    await callback.answer()
    await state.set_state(Form.full_name)
    await callback.message.answer("Thank you! What is your full name?")  # type: ignore[union-attr]


@form_router.message(Form.full_name)
async def process_full_name(message: Message, state: FSMContext) -> None:
    await state.update_data(full_name=message.text)
    await state.set_state(Form.position)
    await message.answer(f"Nice to meet you, {html.quote(message.text or '')}! Your position?")


@form_router.message(Form.position)
async def process_position(message: Message, state: FSMContext) -> None:
    await state.update_data(position=message.text)
    await state.set_state(Form.organization)
    await message.answer("Where do you work?")


@form_router.message(Form.organization)
async def process_organization(message: Message, state: FSMContext) -> None:
    await state.update_data(organization=message.text)
    await state.set_state(Form.phone)
    await message.answer("Your phone number?")


@form_router.message(Form.phone)
async def process_phone(message: Message, state: FSMContext) -> None:
    await state.update_data(phone=message.text)
    await state.set_state(Form.email)
    await message.answer("Your e-mail?")


@form_router.message(Form.email)
async def process_email(message: Message, state: FSMContext) -> None:
    data = await state.update_data(email=message.text)
    await state.set_state(Form.confirm)
    summary = "\n".join(
        f"{name}: {html.quote(str(value))}" for name, value in data.items() if value is not None
    )
    await message.answer(
        f"Please check your answers:\n{summary}",
        reply_markup=one_button(CONFIRM_BUTTON, "confirm"),
    )


@form_router.callback_query(Form.confirm, F.data == "confirm")
async def process_confirm(callback: CallbackQuery, state: FSMContext) -> None:
    await callback.answer()
    await state.clear()
    await callback.message.answer(REGISTERED)  # type: ignore[union-attr]


def create_dispatcher() -> Dispatcher:
    # `form_router` is module-level, as in the example, so one Dispatcher per process.
    dp = Dispatcher()
    dp.include_router(form_router)
    return dp


async def main() -> None:
    session = AiohttpSession(
        api=TelegramAPIServer.from_base(getenv("TELEGRAM_API_URL", "https://api.telegram.org"))
    )
    bot = Bot(
        token=getenv("BOT_TOKEN", ""),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )
    await create_dispatcher().start_polling(bot)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    asyncio.run(main())
