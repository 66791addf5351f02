"""How a participant's conversation begins: /start (with a session's link or without), the
choice between open sessions, consent to the processing of personal data; and /help.

    /start [event id[--source]] ─▶ (choose a session) ─▶ consent ─▶ the form
                                                                    (handlers/registration.py)

Consent comes before any personal question (152-FZ); declining stores nothing.
"""

from __future__ import annotations

from dataclasses import replace

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, User

from bot.domain.clock import Clock
from bot.domain.events import Event, EventCatalog
from bot.domain.form import Draft, FormFields
from bot.domain.render import contacts_line, event_card
from bot.domain.sources import parse_start_payload
from bot.domain.texts import t
from handlers.keyboards import ConsentAction, ConsentCallback, EventChoice, events_keyboard
from handlers.replies import (
    closed_text,
    end_form_by_button,
    field_question,
    reask,
    replace_answered,
    show_consent,
    show_registration,
)
from handlers.states import Form, field_state
from storage.fsm import transition
from storage.registrations import Registrations
from storage.seats import Seats


async def offer_event(
    bot: Bot,
    chat_id: int,
    user: User,
    event: Event,
    state: FSMContext,
    registrations: Registrations,
    seats: Seats,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
    source: str | None = None,
) -> None:
    """Start the form for `event`, or show the registration the person already has; the
    link's `source` goes with the draft to the registration."""
    if not event.is_open(clock()):
        await bot.send_message(chat_id, closed_text(event, catalog))
        return
    existing = await registrations.active(event.id, user.id)
    if existing is not None:
        waiting = existing.status == "waiting"
        await bot.send_message(chat_id, t("already_waiting" if waiting else "already_registered"))
        await show_registration(bot, chat_id, existing, catalog, clock, form)
        return
    await transition(state, Form.consent, Draft(event_id=event.id, source=source).to_data())
    greeting = t("greeting", card=event_card(event, deadline=True))
    if event.capacity is not None:
        count = await seats.seats(event.id)
        if count.full:
            greeting += "\n" + t("seats_none")
        elif count.left is not None and count.left * 10 < event.capacity:
            # Fewer than 10% left: worth saying.
            greeting += "\n" + t("seats_left", left=count.left, capacity=count.capacity)
    if event.description:
        greeting += "\n\n" + t("event_description", description=event.description)
    await show_consent(bot, chat_id, event, catalog, preface=greeting + "\n\n")


async def start(
    message: Message,
    command: CommandObject,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    seats: Seats,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    assert message.from_user is not None
    chat_id = message.chat.id
    if await state.get_state() is not None:
        await message.answer(t("form_in_progress"))
        await reask(bot, chat_id, state, catalog, form)
        return
    if command.args:
        link = parse_start_payload(command.args, catalog)
        if link.event is not None:
            await offer_event(
                bot,
                chat_id,
                message.from_user,
                link.event,
                state,
                registrations,
                seats,
                catalog,
                form,
                clock,
                link.source,
            )
            return
        await message.answer(t("event_not_found"))
    open_events = catalog.open_events(clock())
    if not open_events:
        await message.answer(t("no_open_events") + contacts_line(catalog.contacts()))
    elif len(open_events) == 1:
        await offer_event(
            bot,
            chat_id,
            message.from_user,
            open_events[0],
            state,
            registrations,
            seats,
            catalog,
            form,
            clock,
        )
    else:
        await message.answer(t("choose_event"), reply_markup=events_keyboard(open_events))


async def event_chosen(
    callback: CallbackQuery,
    callback_data: EventChoice,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    seats: Seats,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    await callback.answer()
    chat_id = callback.from_user.id
    if await state.get_state() is not None:
        await bot.send_message(chat_id, t("form_in_progress"))
        await reask(bot, chat_id, state, catalog, form)
        return
    event = catalog.get(callback_data.event_id)
    if event is None:
        await bot.send_message(chat_id, t("event_not_found"))
        return
    await offer_event(
        bot, chat_id, callback.from_user, event, state, registrations, seats, catalog, form, clock
    )


async def consent_given(
    callback: CallbackQuery,
    bot: Bot,
    state: FSMContext,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    await callback.answer()
    draft = Draft.from_data(await state.get_data())
    event = catalog.get(draft.event_id)
    now = clock()
    if event is None or not event.is_open(now):
        await state.clear()
        await replace_answered(
            callback, bot, closed_text(event, catalog) if event else t("event_not_found")
        )
        return
    draft = replace(draft, consent_at=now.isoformat(), consent_version=event.privacy_policy_version)
    first = form.ids[0]
    await transition(state, field_state(first), draft.to_data())
    # The consent message becomes the record of it and the first question: one call where
    # removing its buttons and asking would take two.
    record = event_card(event) + "\n\n" + t("consent_given") + "\n\n"
    total = len(form) + len(event.questions)
    await replace_answered(callback, bot, record + field_question(first, draft, form, total))


async def consent_declined(callback: CallbackQuery, bot: Bot, state: FSMContext) -> None:
    await end_form_by_button(callback, bot, state, t("consent_declined"))


async def help_shown(
    message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog, form: FormFields
) -> None:
    await message.answer(t("help"))
    if await state.get_state() is not None:
        await reask(bot, message.chat.id, state, catalog, form)


def create_router() -> Router:
    router = Router(name="start")
    # Commands work in every state: this router comes before the form's (see get_routers).
    router.message.register(start, Command("start"))
    router.message.register(help_shown, Command("help"))
    router.callback_query.register(event_chosen, EventChoice.filter())
    router.callback_query.register(
        consent_given,
        StateFilter(Form.consent),
        ConsentCallback.filter(F.action == ConsentAction.agree),
    )
    router.callback_query.register(
        consent_declined,
        StateFilter(Form.consent),
        ConsentCallback.filter(F.action == ConsentAction.decline),
    )
    return router
