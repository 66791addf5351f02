"""/me: a participant's registrations, each with its buttons: change a field (while the session
is open), withdraw (asked twice). One handler per button (`MyAction`).

    /me ─▶ card ─┬─ change ─▶ a button per field ─┬─ field ─▶ that question (the form) ─▶ card
                 │                                └─ back ─▶ card
                 └─ withdraw ─▶ "sure?" ─┬─ yes ─▶ withdrawn
                                         └─ no ──▶ kept
"""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.domain.clock import Clock
from bot.domain.events import Event, EventCatalog
from bot.domain.form import FIELDS, Draft
from bot.domain.texts import t
from handlers.keyboards import (
    MyAction,
    MyCallback,
    fields_keyboard,
    registration_keyboard,
    withdraw_keyboard,
)
from handlers.replies import ask, reask, remove_buttons, show_registration
from handlers.states import FIELD_STATES
from storage.fsm import transition
from storage.registrations import Registration, Registrations

logger = logging.getLogger(__name__)


async def my_registrations(
    message: Message,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    assert message.from_user is not None
    found = await registrations.active_for_user(message.from_user.id)
    if not found:
        await message.answer(t("my_none"))
    for registration in found:
        await show_registration(bot, message.chat.id, registration, catalog, clock)
    if await state.get_state() is not None:
        await reask(bot, message.chat.id, state, catalog)


# --- Guards shared by the buttons -------------------------------------------------------------


async def own_registration(
    callback: CallbackQuery, callback_data: MyCallback, registrations: Registrations
) -> Registration | None:
    """The confirmed registration the button is about, or None once the button has been
    answered as expired: callback data can be forged or outlive the registration."""
    registration = await registrations.get(callback_data.registration_id)
    if (
        registration is None
        or registration.user_id != callback.from_user.id
        or registration.status != "confirmed"
    ):
        await callback.answer(t("button_expired"))
        await remove_buttons(callback)
        return None
    return registration


def open_event(registration: Registration, catalog: EventCatalog, clock: Clock) -> Event | None:
    """The registration's session while it takes changes; None once it is closed or gone."""
    event = catalog.get(registration.event_id)
    return event if event is not None and event.is_open(clock()) else None


async def refused_mid_form(
    callback: CallbackQuery, bot: Bot, state: FSMContext, catalog: EventCatalog
) -> bool:
    """A change or a withdrawal waits until the open form is finished: one draft at a time."""
    if await state.get_state() is None:
        return False
    await callback.answer(t("finish_form_first"), show_alert=True)
    await reask(bot, callback.from_user.id, state, catalog)
    return True


def title_of(registration: Registration, catalog: EventCatalog) -> str:
    event = catalog.get(registration.event_id)
    return event.title if event else registration.event_id


# --- One handler per button -------------------------------------------------------------------


async def registration_shown(
    callback: CallbackQuery,
    callback_data: MyCallback,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    """The card's own buttons again ("back" from the field buttons)."""
    registration = await own_registration(callback, callback_data, registrations)
    if registration is None:
        return
    can_change = open_event(registration, catalog, clock) is not None
    await callback.answer()
    if isinstance(callback.message, Message):
        await callback.message.edit_reply_markup(
            reply_markup=registration_keyboard(registration.id, can_change=can_change)
        )


async def change_requested(
    callback: CallbackQuery,
    callback_data: MyCallback,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    registration = await own_registration(callback, callback_data, registrations)
    if registration is None:
        return
    if open_event(registration, catalog, clock) is None:
        await callback.answer(t("change_closed"), show_alert=True)
        return
    await callback.answer()
    if isinstance(callback.message, Message):
        await callback.message.edit_reply_markup(reply_markup=fields_keyboard(registration.id))


async def field_change_requested(
    callback: CallbackQuery,
    callback_data: MyCallback,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    """The field's question, as in the form; the answer is saved at once (no summary)."""
    registration = await own_registration(callback, callback_data, registrations)
    if registration is None:
        return
    if open_event(registration, catalog, clock) is None:
        await callback.answer(t("change_closed"), show_alert=True)
        return
    if await refused_mid_form(callback, bot, state, catalog):
        return
    await callback.answer()
    if callback_data.field is None:
        return
    field = str(callback_data.field)
    draft = Draft(
        event_id=registration.event_id,
        registration_id=registration.id,
        editing=field,
        **{name: getattr(registration, name) for name in FIELDS},
    )
    await transition(state, FIELD_STATES[field], draft.to_data())
    await ask(bot, callback.from_user.id, field, draft)


async def withdrawal_requested(
    callback: CallbackQuery,
    callback_data: MyCallback,
    bot: Bot,
    registrations: Registrations,
    catalog: EventCatalog,
) -> None:
    registration = await own_registration(callback, callback_data, registrations)
    if registration is None:
        return
    await callback.answer()
    await bot.send_message(
        callback.from_user.id,
        t("withdraw_confirm", title=title_of(registration, catalog)),
        reply_markup=withdraw_keyboard(registration.id),
    )


async def withdrawal_confirmed(
    callback: CallbackQuery,
    callback_data: MyCallback,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    registration = await own_registration(callback, callback_data, registrations)
    if registration is None:
        return
    if await refused_mid_form(callback, bot, state, catalog):
        return
    await callback.answer()
    withdrawn = await registrations.withdraw(
        registration.id, user_id=callback.from_user.id, now=clock()
    )
    if isinstance(callback.message, Message):
        await callback.message.edit_text(
            t("withdrawn" if withdrawn else "button_expired", title=title_of(registration, catalog))
        )
    if withdrawn:
        logger.info("Registration %d withdrawn", registration.id)


async def withdrawal_declined(
    callback: CallbackQuery, callback_data: MyCallback, registrations: Registrations
) -> None:
    registration = await own_registration(callback, callback_data, registrations)
    if registration is None:
        return
    await callback.answer()
    if isinstance(callback.message, Message):
        await callback.message.edit_text(t("withdraw_kept"))


def create_router() -> Router:
    router = Router(name="my_registrations")
    router.message.register(my_registrations, Command("me"))
    on_button = router.callback_query.register
    on_button(registration_shown, MyCallback.filter(F.action == MyAction.show))
    on_button(change_requested, MyCallback.filter(F.action == MyAction.change))
    on_button(field_change_requested, MyCallback.filter(F.action == MyAction.change_field))
    on_button(withdrawal_requested, MyCallback.filter(F.action == MyAction.withdraw))
    on_button(withdrawal_confirmed, MyCallback.filter(F.action == MyAction.withdraw_yes))
    on_button(withdrawal_declined, MyCallback.filter(F.action == MyAction.withdraw_no))
    return router
