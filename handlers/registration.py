"""The form: the five standard questions, the event's own, the summary, confirm; /cancel.
Starting and consent are in handlers/start.py; /me in handlers/my_registrations.py, whose
"change a field" asks that question here and saves the answer at once (`save_change`,
`save_answer`).

    /start [event id] ─▶ consent ─▶ full_name ─▶ position ─▶ organization ─▶ phone ─▶ email
                                        ▲                                              │
                                        │       the event's own questions (`question`) ◀┘
                                        │       one state; which one, and the answers,
                                        │       in the draft          │
                                        └── "change <field>" ◀── summary ◀┘
                                                                      │ confirm
                                                                      ▼
                                                    registrations row + its answers

Each step saves the move first (`transition`, stamped with the update), then replies: what
the person sees is never ahead of what is stored. A kill in between makes Telegram deliver
the update again; it is not applied twice, the current question is simply asked again
(`repeat_question`). A reply may come twice; an answer is never applied twice.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, ReplyKeyboardRemove

from bot.domain.clock import Clock
from bot.domain.events import EventCatalog
from bot.domain.form import Draft, FormFields, validate_answer
from bot.domain.render import event_card, shown_value
from bot.domain.sources import valid_source
from bot.domain.texts import Html, t
from bot.domain.validation import ValidationError, validate_phone
from handlers.filters import AnswerIn, HasText, Magic, TextStartsWith
from handlers.keyboards import (
    OfferCallback,
    QuestionAction,
    QuestionCallback,
    SummaryAction,
    SummaryCallback,
)
from handlers.replies import (
    ask,
    ask_question,
    closed_text,
    end_form_by_button,
    reask,
    reject,
    remove_buttons,
    replace_answered,
    send_calendar,
    show_registration,
    show_summary,
)
from handlers.states import (
    Form,
    contact_states,
    field_state,
    field_states,
    form_states,
    state_field,
)
from storage.fsm import transition
from storage.registrations import AlreadyRegistered, NewRegistration, Registrations
from storage.reminders import Reminders
from storage.seats import Seats

logger = logging.getLogger(__name__)

NON_TEXT_KINDS = ("sticker", "photo", "voice", "video", "document", "location", "contact")


# --- Answers -------------------------------------------------------------------------------


async def answer_typed(
    message: Message,
    text: str,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    seats: Seats,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    field = state_field(await state.get_state(), form)
    assert field is not None  # the router's filter: one of the form's states
    try:
        value = form[field].validator(text)
    except ValidationError as error:
        await reject(bot, message.chat.id, state, catalog, form, error.reason, **error.params)
        return
    await accept(message, field, value, bot, state, registrations, seats, catalog, form, clock)


async def contact_shared(
    message: Message,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    seats: Seats,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    assert message.contact is not None and message.from_user is not None
    # Anyone's card can be forwarded as a contact; only one's own number was verified
    # by Telegram.
    if message.contact.user_id != message.from_user.id:
        await reject(bot, message.chat.id, state, catalog, form, "contact_not_own")
        return
    number = message.contact.phone_number
    try:
        value = validate_phone(number if number.startswith("+") else "+" + number)
    except ValidationError as error:
        await reject(bot, message.chat.id, state, catalog, form, error.reason, **error.params)
        return
    field = state_field(await state.get_state(), form) or "phone"
    await accept(message, field, value, bot, state, registrations, seats, catalog, form, clock)


async def accept(
    message: Message,
    field: str,
    value: str,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    seats: Seats,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    """Store a valid answer and move on: next question, back to the summary, or save."""
    chat_id = message.chat.id
    draft = Draft.from_data(await state.get_data()).with_answer(field, value)
    next_field = None if draft.registration_id is not None else draft.next_question(form)
    preface = ""
    if field == "phone":
        # The "share my number" keyboard has done its job: it goes with the next question,
        # or alone before a summary (a message has one keyboard).
        preface = t("phone_saved", phone=shown_value("phone", value))
        if next_field is None:
            await message.answer(preface, reply_markup=ReplyKeyboardRemove())
    if draft.registration_id is not None:
        await save_change(
            message, draft, field, value, bot, state, registrations, catalog, form, clock
        )
        return
    if next_field is not None:
        await transition(state, field_state(next_field), draft.to_data())
        await ask(
            bot,
            chat_id,
            next_field,
            draft,
            form,
            preface=preface + "\n\n" if preface else "",
            remove_keyboard=bool(preface),
            catalog=catalog,
        )
        return
    await next_or_summary(chat_id, draft, bot, state, seats, catalog, form)


async def next_or_summary(
    chat_id: int,
    draft: Draft,
    bot: Bot,
    state: FSMContext,
    seats: Seats,
    catalog: EventCatalog,
    form: FormFields,
) -> None:
    """After an answer: the event's next own question, or the summary."""
    event = catalog.get(draft.event_id)
    if event is None:
        await state.clear()
        await bot.send_message(chat_id, t("event_not_found"))
        return
    index = draft.next_extra(event.questions)
    if index is not None:
        draft = replace(draft, question=index)
        await transition(state, Form.question, draft.to_data())
        await ask_question(bot, chat_id, event, draft, form)
        return
    # What the summary offers: a seat, or the waiting list. The database decides again on
    # confirming (a seat may free or go meanwhile). Without a capacity there is no list, and
    # no count of the session's registrations to make (it grows with them).
    waitlist = event.capacity is not None and (await seats.seats(event.id)).full
    draft = replace(draft, editing=None, question=None, waitlist=waitlist)
    await transition(state, Form.summary, draft.to_data())
    await show_summary(bot, chat_id, draft, event, form)


async def question_answered_typed(
    message: Message,
    text: str,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    seats: Seats,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    """A typed answer to one of the event's own questions (a choice's option counts)."""
    draft = Draft.from_data(await state.get_data())
    event = catalog.get(draft.event_id)
    if event is None:
        await state.clear()
        await message.answer(t("event_not_found"))
        return
    if draft.question is None or draft.question >= len(event.questions):
        # The question left the events file (a restart) while it was open: on with the form.
        await next_or_summary(
            message.chat.id, replace(draft, question=None), bot, state, seats, catalog, form
        )
        return
    try:
        value = validate_answer(event.questions[draft.question], text)
    except ValidationError as error:
        await reject(bot, message.chat.id, state, catalog, form, error.reason, **error.params)
        return
    await accept_question(
        message.chat.id, draft, value, bot, state, registrations, seats, catalog, form, clock
    )


async def question_pressed(
    callback: CallbackQuery,
    callback_data: QuestionCallback,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    seats: Seats,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    """An option, or "skip", under the question being asked. A button of another question
    (an old message, a double tap after the form moved on) is answered and changes nothing."""
    draft = Draft.from_data(await state.get_data())
    event = catalog.get(draft.event_id)
    if (
        event is None
        or draft.question != callback_data.question
        or draft.question >= len(event.questions)
    ):
        await callback.answer(t("question_button_stale"))
        await remove_buttons(callback)
        return
    question = event.questions[draft.question]
    if callback_data.action == QuestionAction.skip:
        if question.required:
            await callback.answer(t("reason_required"), show_alert=True)
            return
        value = ""
    else:
        choices = question.choices()
        if callback_data.option >= len(choices):
            await callback.answer(t("question_button_stale"))
            await reask(bot, callback.from_user.id, state, catalog, form)
            return
        value = choices[callback_data.option]
    await callback.answer()
    await remove_buttons(callback)
    await accept_question(
        callback.from_user.id, draft, value, bot, state, registrations, seats, catalog, form, clock
    )


async def accept_question(
    chat_id: int,
    draft: Draft,
    value: str,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    seats: Seats,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    event = catalog.get(draft.event_id)
    assert event is not None and draft.question is not None
    question = event.questions[draft.question]
    draft = draft.with_extra(question, value)
    if draft.registration_id is not None:
        await save_answer(
            chat_id, draft, question.id, value, bot, state, registrations, catalog, form, clock
        )
        return
    await next_or_summary(chat_id, draft, bot, state, seats, catalog, form)


async def save_answer(
    chat_id: int,
    draft: Draft,
    question_id: str,
    value: str,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    """From /me: the answer is saved at once, as a field's change is (`save_change`)."""
    assert draft.registration_id is not None
    event = catalog.get(draft.event_id)
    now = clock()
    if event is None or not event.is_open(now):
        await state.clear()
        await bot.send_message(chat_id, t("change_closed"))
        return
    changed = await registrations.update_answer(
        draft.registration_id, user_id=chat_id, question_id=question_id, value=value, now=now
    )
    await state.clear()
    if changed is None:
        await bot.send_message(chat_id, t("my_none"))
        return
    logger.info("Registration %d: answer %s changed", draft.registration_id, question_id)
    await bot.send_message(chat_id, t("field_updated"))
    await show_registration(bot, chat_id, changed[1], catalog, clock, form)


async def save_change(
    message: Message,
    draft: Draft,
    field: str,
    value: str,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    assert draft.registration_id is not None and message.from_user is not None
    event = catalog.get(draft.event_id)
    now = clock()
    if event is None or not event.is_open(now):
        await state.clear()
        await message.answer(t("change_closed"))
        return
    # The change first, the form's end after: a failed write leaves the question open for
    # another try. Delivered again after a crash in between, the same change changes
    # nothing and makes no second card.
    user_id = message.from_user.id
    if form[field].column:
        changed = await registrations.update_field(
            draft.registration_id, user_id=user_id, field=field, value=value, now=now
        )
    else:
        changed = await registrations.update_answer(
            draft.registration_id, user_id=user_id, question_id=field, value=value, now=now
        )
    await state.clear()
    if changed is None:
        await message.answer(t("my_none"))
        return
    logger.info("Registration %d: %s changed", draft.registration_id, field)
    await message.answer(t("field_updated"))
    await show_registration(bot, message.chat.id, changed[1], catalog, clock, form)


async def command_in_form(
    message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog, form: FormFields
) -> None:
    command = (message.text or "").split(maxsplit=1)[0]
    await reject(
        bot, message.chat.id, state, catalog, form, "unknown_command", command=command[:64]
    )


async def not_text_in_form(
    message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog, form: FormFields
) -> None:
    kind = next((kind for kind in NON_TEXT_KINDS if getattr(message, kind, None)), "other")
    current = await state.get_state()
    if current in (Form.consent.state, Form.summary.state):
        await reask(bot, message.chat.id, state, catalog, form)
        return
    await reject(
        bot, message.chat.id, state, catalog, form, "not_text", kind=Html(t(f"kind_{kind}"))
    )


async def text_instead_of_button(
    message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog, form: FormFields
) -> None:
    await reask(bot, message.chat.id, state, catalog, form)


# --- Summary -------------------------------------------------------------------------------


async def registration_confirmed(
    callback: CallbackQuery,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    reminders: Reminders,
    catalog: EventCatalog,
    form: FormFields,
    clock: Clock,
) -> None:
    user = callback.from_user
    draft = Draft.from_data(await state.get_data())
    event = catalog.get(draft.event_id)
    now = clock()
    if event is None or not event.is_open(now):
        await callback.answer()
        await state.clear()
        await remove_buttons(callback)
        text = closed_text(event, catalog) if event else t("event_not_found")
        await bot.send_message(user.id, t("confirm_failed_closed") + "\n\n" + text)
        return
    if (
        draft.next_question(form) is not None
        or draft.next_extra(event.questions) is not None
        or draft.consent_at is None
    ):
        # Cannot happen through the buttons; a corrupted draft is asked again, not saved.
        await callback.answer()
        await reask(bot, user.id, state, catalog, form)
        return
    answers_ = draft.answers(form)
    new = NewRegistration(
        event_id=event.id,
        user_id=user.id,
        username=user.username,
        telegram_name=user.full_name,
        consent_at=datetime.fromisoformat(draft.consent_at),
        consent_version=draft.consent_version or "",
        full_name=answers_.get("full_name", ""),
        position=answers_.get("position", ""),
        organization=answers_.get("organization", ""),
        phone=answers_.get("phone", ""),
        email=answers_.get("email", ""),
        source=valid_source(draft.source),
        # The standard answers not kept in columns, then the event's own.
        answers=form.answers(answers_)
        + tuple(
            (question.id, value)
            for question in event.questions
            if (value := draft.extra_answers().get(question.id, ""))
        ),
    )
    try:
        registration = await registrations.create(new, now=now)
    except AlreadyRegistered as error:
        # A second device, or a re-delivered update after a crash: one row, one confirmation.
        await callback.answer()
        await state.clear()
        await remove_buttons(callback)
        waiting = error.existing.status == "waiting"
        await bot.send_message(user.id, t("already_waiting" if waiting else "already_registered"))
        await show_registration(bot, user.id, error.existing, catalog, clock, form)
        return
    await callback.answer()
    if registration.status == "waiting":
        logger.info("Registration %d waits for a seat at event %s", registration.id, event.id)
        text = t("waitlisted", place=registration.place or "—", card=event_card(event))
        await replace_answered(callback, bot, text)
        await state.clear()
        return
    logger.info("Registration %d confirmed for event %s", registration.id, event.id)
    # The summary becomes the confirmation (its buttons go with the edit).
    await replace_answered(callback, bot, t("confirmed", card=event_card(event, join_url=True)))
    await state.clear()
    await send_calendar(bot, user.id, event, reminders, clock)


async def summary_edit(
    callback: CallbackQuery,
    callback_data: SummaryCallback,
    bot: Bot,
    state: FSMContext,
    catalog: EventCatalog,
    form: FormFields,
) -> None:
    await callback.answer()
    draft = Draft.from_data(await state.get_data())
    if callback_data.question is not None:
        event = catalog.get(draft.event_id)
        if event is None or callback_data.question >= len(event.questions):
            await reask(bot, callback.from_user.id, state, catalog, form)
            return
        question = event.questions[callback_data.question]
        draft = replace(draft, editing=question.id, question=callback_data.question)
        await transition(state, Form.question, draft.to_data())
        await ask_question(bot, callback.from_user.id, event, draft, form)
        return
    field = str(callback_data.field)
    if field not in form:  # a button of a question the bot no longer asks
        await reask(bot, callback.from_user.id, state, catalog, form)
        return
    draft = replace(draft, editing=field)
    await transition(state, field_state(field), draft.to_data())
    await ask(bot, callback.from_user.id, field, draft, form, catalog=catalog)


async def form_cancelled_by_button(callback: CallbackQuery, bot: Bot, state: FSMContext) -> None:
    await end_form_by_button(callback, bot, state, t("cancelled"))


async def stale_summary_button(
    callback: CallbackQuery,
    callback_data: SummaryCallback,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    form: FormFields,
) -> None:
    """A summary button pressed when the summary is no longer current: a double tap on
    "confirm", or a button of an old summary while a question is open."""
    if await state.get_state() is not None:
        await callback.answer(t("answer_current_question"), show_alert=True)
        await reask(bot, callback.from_user.id, state, catalog, form)
        return
    registered = await registrations.active(callback_data.event_id, callback.from_user.id)
    if registered is None:
        answer = t("button_expired")
    else:
        answer = t("already_in_line" if registered.status == "waiting" else "already_confirmed")
    await callback.answer(answer)
    await remove_buttons(callback)


async def stale_question_button(callback: CallbackQuery) -> None:
    await callback.answer(t("question_button_stale"))
    await remove_buttons(callback)


# --- A freed seat offered from the waiting list -----------------------------------------------


async def seat_taken(
    callback: CallbackQuery,
    callback_data: OfferCallback,
    bot: Bot,
    seats: Seats,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    """The offer's button: the seat is taken once; a second press, or one after the offer ran
    out, says so (with the place in line)."""
    taken = await seats.take(
        callback_data.registration_id, user_id=callback.from_user.id, now=clock()
    )
    registration = taken.registration
    if taken.outcome == "taken":
        assert registration is not None
        await callback.answer()
        event = catalog.get(registration.event_id)
        card = event_card(event, join_url=True) if event else t("event_card_unknown")
        await replace_answered(callback, bot, t("offer_taken", card=Html(card)))
        return
    if taken.outcome == "expired":
        assert registration is not None
        await callback.answer()
        await remove_buttons(callback)
        await bot.send_message(
            callback.from_user.id, t("offer_expired", place=registration.place or "—")
        )
        return
    await callback.answer(t("offer_already" if taken.outcome == "already" else "offer_gone"))
    await remove_buttons(callback)


# --- /cancel ------------------------------------------------------------------------------


async def form_cancelled(message: Message, state: FSMContext) -> None:
    if await state.get_state() is None:
        await message.answer(t("nothing_to_cancel"), reply_markup=ReplyKeyboardRemove())
        return
    await state.clear()
    await message.answer(t("cancelled"), reply_markup=ReplyKeyboardRemove())


def create_command_router(form: FormFields) -> Router:
    """The form's commands, last of the commands (handlers/__init__.py), whose router only
    messages that look like one reach: /cancel, which works in every state, then any other
    command during the form, refused. An answer, which is no command, meets neither check."""
    router = Router(name="form_commands")
    router.message.register(form_cancelled, Command("cancel"))
    router.message.register(command_in_form, TextStartsWith("/"), _in_form(form))
    return router


def _in_form(form: FormFields) -> StateFilter:
    """The form's own states and a state per standard question of the bot's table."""
    return StateFilter(Form, *field_states(form))


def create_router(form: FormFields) -> Router:
    """The form itself: any message in its states that is no command (handlers/__init__.py
    asks it first), and its buttons."""
    router = Router(name="registration")
    router.message.filter(AnswerIn(form_states(form)))
    in_form = _in_form(form)
    asking_field = StateFilter(*field_states(form))
    router.message.register(answer_typed, asking_field, HasText("text"))
    router.message.register(question_answered_typed, StateFilter(Form.question), HasText("text"))
    router.message.register(contact_shared, StateFilter(*contact_states(form)), Magic(F.contact))
    router.message.register(
        text_instead_of_button, StateFilter(Form.consent, Form.summary), HasText()
    )
    router.message.register(not_text_in_form, in_form)

    router.callback_query.register(
        registration_confirmed,
        StateFilter(Form.summary),
        SummaryCallback.filter(F.action == SummaryAction.confirm),
    )
    router.callback_query.register(
        summary_edit,
        StateFilter(Form.summary),
        SummaryCallback.filter(
            (F.action == SummaryAction.edit) & (F.field | F.question.is_not(None))
        ),
    )
    router.callback_query.register(
        form_cancelled_by_button,
        StateFilter(Form.summary),
        SummaryCallback.filter(F.action == SummaryAction.cancel),
    )
    router.callback_query.register(stale_summary_button, SummaryCallback.filter())
    router.callback_query.register(
        question_pressed, StateFilter(Form.question), QuestionCallback.filter()
    )
    router.callback_query.register(stale_question_button, QuestionCallback.filter())
    router.callback_query.register(seat_taken, OfferCallback.filter())
    return router
