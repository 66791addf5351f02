"""/me: a participant's registrations, each with everything stored in it and its buttons: change
a field (while the session is open), withdraw (asked twice); then, once, what is done with the
data. One handler per button (`MyAction`).

    /me ─▶ card ─┬─ change ─▶ a button per field ─┬─ field ─▶ that question (the form) ─▶ card
                 │                                └─ back ─▶ card
                 ├─ calendar ─▶ <event id>.ics
                 └─ withdraw ─▶ "sure?" ─┬─ yes ─▶ withdrawn
                                         └─ no ──▶ kept
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiogram import BaseMiddleware, Bot, F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot.domain.clock import Clock
from bot.domain.events import MAX_LENGTHS, Event, EventCatalog
from bot.domain.form import Draft, FormFields
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length, pack_blocks
from bot.domain.render import retention_rule
from bot.domain.retention import FORM_KEPT_DAYS
from bot.domain.texts import Html, quantity, t, th
from handlers.keyboards import (
    MyAction,
    MyCallback,
    fields_keyboard,
    registration_keyboard,
    withdraw_keyboard,
)
from handlers.replies import (
    ask,
    ask_question,
    reask,
    remove_buttons,
    send_calendar,
    show_registration,
)
from handlers.states import Form, field_state
from storage.erasure import PersonalData
from storage.fsm import transition
from storage.registrations import Registration, Registrations
from storage.reminders import Reminders

logger = logging.getLogger(__name__)


async def my_registrations(
    message: Message,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    """Each registration with everything stored in it, then once what is done with the data
    (152-FZ art. 14): a person may ask, and /me is where they look."""
    assert message.from_user is not None
    found = await registrations.active_for_user(message.from_user.id)
    current = await state.get_state()
    has_form = current is not None and current.startswith(f"{Form.__full_group_name__}:")
    if not found:
        text = t("my_none")
        if has_form:
            text += "\n\n" + form_kept_text()
        await message.answer(text)
    for registration in found:
        await show_registration(bot, message.chat.id, registration, catalog, clock, form)
    if found:
        events = [catalog.get(registration.event_id) for registration in found]
        for text in privacy_notice(events, catalog, has_form=has_form):
            await message.answer(text)
    if current is not None:
        await reask(bot, message.chat.id, state, catalog, form)


def form_kept_text() -> str:
    return t("my_form_kept", days=quantity(FORM_KEPT_DAYS, "unit_days"))


def operator_lines(events: list[Event | None], catalog: EventCatalog) -> list[str]:
    """Who processes the data: one line when all the sessions share an operator, else a line
    per operator naming its sessions (a line per session when they would not fit one). A
    session without one (gone from the file, or neither `operator` nor `contact` in it) names
    its organisers, with the contacts of the file as the closed-registration message does."""
    contacts = ", ".join(catalog.contacts())
    # No longer than an operator may be, so that a line still fits a message.
    unknown = (
        th("privacy_operator_unknown_contacts", contacts=contacts)
        if contacts and len(contacts) <= MAX_LENGTHS["operator"]
        else th("privacy_operator_unknown")
    )
    sessions: dict[Html, list[str]] = {}
    for event in dict.fromkeys(events):
        operator = (
            th("privacy_operator_name", operator=event.operator)
            if event is not None and event.operator
            else unknown
        )
        sessions.setdefault(operator, []).append(event.title if event else "—")
    if len(sessions) == 1:
        return [t("privacy_operator", operator=operator) for operator in sessions]
    lines = []
    for operator, titles in sessions.items():
        line = operator_line(operator, titles)
        if message_length(line) <= MAX_MESSAGE_LENGTH:
            lines.append(line)
        else:
            lines += [operator_line(operator, [title]) for title in titles]
    return lines


def operator_line(operator: Html, titles: list[str]) -> str:
    quoted = Html(", ".join(t("privacy_title", title=title) for title in titles))
    return t("privacy_operator_for", titles=quoted, operator=operator)


def privacy_notice(
    events: list[Event | None], catalog: EventCatalog, *, has_form: bool
) -> list[str]:
    """What is done with the data of these registrations' sessions, in as few messages as
    fit: operator, purpose, recipients, how long it is kept, how to erase it."""
    blocks = [
        t("privacy_header"),
        *operator_lines(events, catalog),
        t("privacy_purpose"),
        t("privacy_recipients"),
        t("privacy_retention", retention=retention_rule(catalog.retention_days)),
        t("privacy_erase"),
    ]
    if has_form:
        blocks.append(form_kept_text())
    return pack_blocks(blocks, separator="\n")


# --- Guards shared by the buttons -------------------------------------------------------------


class OwnRegistration(BaseMiddleware):
    """Every button of a card is about one registration: each handler gets it as
    `registration`, confirmed and the presser's own, or is not called and the button is
    answered as expired (callback data can be forged or outlive the registration)."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, CallbackQuery)
        callback_data = data["callback_data"]
        registrations = data["registrations"]
        assert isinstance(callback_data, MyCallback)
        assert isinstance(registrations, Registrations)
        registration = await registrations.get(callback_data.registration_id)
        if (
            registration is None
            or registration.user_id != event.from_user.id
            or registration.status not in ("confirmed", "waiting")
        ):
            await event.answer(t("button_expired"))
            await remove_buttons(event)
            return None
        data["registration"] = registration
        return await handler(event, data)


def open_event(registration: Registration, catalog: EventCatalog, clock: Clock) -> Event | None:
    """The registration's session while it takes changes; None once it is closed or gone."""
    event = catalog.get(registration.event_id)
    return event if event is not None and event.is_open(clock()) else None


async def refused_mid_form(
    callback: CallbackQuery, bot: Bot, state: FSMContext, catalog: EventCatalog, form: FormFields
) -> bool:
    """A change or a withdrawal waits until the open form is finished: one draft at a time."""
    if await state.get_state() is None:
        return False
    await callback.answer(t("finish_form_first"), show_alert=True)
    await reask(bot, callback.from_user.id, state, catalog, form)
    return True


def title_of(registration: Registration, catalog: EventCatalog) -> str:
    event = catalog.get(registration.event_id)
    return event.title if event else registration.event_id


# --- One handler per button -------------------------------------------------------------------


async def registration_shown(
    callback: CallbackQuery,
    registration: Registration,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    """The card's own buttons again ("back" from the field buttons)."""
    can_change = open_event(registration, catalog, clock) is not None
    await callback.answer()
    if isinstance(callback.message, Message):
        await callback.message.edit_reply_markup(
            reply_markup=registration_keyboard(
                registration.id,
                can_change=can_change,
                waiting=registration.status == "waiting",
                offered=registration.offer_expires_at is not None,
            )
        )


async def change_requested(
    callback: CallbackQuery,
    registration: Registration,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    if open_event(registration, catalog, clock) is None:
        await callback.answer(t("change_closed"), show_alert=True)
        return
    await callback.answer()
    if isinstance(callback.message, Message):
        event = catalog.get(registration.event_id)
        questions = event.questions if event else ()
        await callback.message.edit_reply_markup(
            reply_markup=fields_keyboard(registration.id, form, questions)
        )


async def field_change_requested(
    callback: CallbackQuery,
    registration: Registration,
    callback_data: MyCallback,
    bot: Bot,
    state: FSMContext,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    """The field's question, as in the form; the answer is saved at once (no summary)."""
    if open_event(registration, catalog, clock) is None:
        await callback.answer(t("change_closed"), show_alert=True)
        return
    if await refused_mid_form(callback, bot, state, catalog, form):
        return
    await callback.answer()
    stored = registration.answer_map()
    draft = Draft(
        event_id=registration.event_id,
        registration_id=registration.id,
        extra={key: value for key, value in stored.items() if key not in form},
    )
    for field, value in form.values(registration, stored).items():
        draft = draft.with_answer(field, value)
    event = catalog.get(registration.event_id)
    if callback_data.question is not None and event is not None:
        if callback_data.question >= len(event.questions):
            return
        question = event.questions[callback_data.question]
        draft = replace(draft, editing=question.id, question=callback_data.question)
        await transition(state, Form.question, draft.to_data())
        await ask_question(bot, callback.from_user.id, event, draft, form)
        return
    field = str(callback_data.field)
    if callback_data.field is None or field not in form:
        return
    draft = replace(draft, editing=field)
    await transition(state, field_state(field), draft.to_data())
    await ask(bot, callback.from_user.id, field, draft, form, catalog=catalog)


async def calendar_requested(
    callback: CallbackQuery,
    registration: Registration,
    bot: Bot,
    reminders: Reminders,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    event = catalog.get(registration.event_id)
    if event is None or not event.in_file:
        # Known only from the database: its times may be stale, so no file.
        await callback.answer(t("button_expired"))
        return
    await callback.answer()
    await send_calendar(bot, callback.from_user.id, event, reminders, clock)


async def withdrawal_requested(
    callback: CallbackQuery,
    registration: Registration,
    bot: Bot,
    catalog: EventCatalog,
) -> None:
    await callback.answer()
    waiting = registration.status == "waiting"
    await bot.send_message(
        callback.from_user.id,
        t(
            "leave_confirm" if waiting else "withdraw_confirm",
            title=title_of(registration, catalog),
        ),
        reply_markup=withdraw_keyboard(registration.id, waiting=waiting),
    )


async def withdrawal_confirmed(
    callback: CallbackQuery,
    registration: Registration,
    bot: Bot,
    state: FSMContext,
    personal_data: PersonalData,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    if await refused_mid_form(callback, bot, state, catalog, form):
        return
    await callback.answer()
    # Consent withdrawn: the personal data goes with the registration (152-FZ art. 21 §5).
    withdrawn = await personal_data.withdraw(
        registration.id, user_id=callback.from_user.id, now=clock()
    )
    done = "left_waitlist" if registration.status == "waiting" else "withdrawn"
    if isinstance(callback.message, Message):
        await callback.message.edit_text(
            t(done if withdrawn else "button_expired", title=title_of(registration, catalog))
        )
    if withdrawn:
        logger.info("Registration %d withdrawn and its personal data erased", registration.id)


async def withdrawal_declined(
    callback: CallbackQuery,
    registration: Registration,
) -> None:
    await callback.answer()
    if isinstance(callback.message, Message):
        await callback.message.edit_text(t("withdraw_kept"))


def create_router() -> Router:
    router = Router(name="my_registrations")
    router.message.register(my_registrations, Command("me"))
    router.callback_query.middleware(OwnRegistration())
    on_button = router.callback_query.register
    on_button(registration_shown, MyCallback.filter(F.action == MyAction.show))
    on_button(change_requested, MyCallback.filter(F.action == MyAction.change))
    on_button(field_change_requested, MyCallback.filter(F.action == MyAction.change_field))
    on_button(calendar_requested, MyCallback.filter(F.action == MyAction.calendar))
    on_button(withdrawal_requested, MyCallback.filter(F.action == MyAction.withdraw))
    on_button(withdrawal_confirmed, MyCallback.filter(F.action == MyAction.withdraw_yes))
    on_button(withdrawal_declined, MyCallback.filter(F.action == MyAction.withdraw_no))
    return router
