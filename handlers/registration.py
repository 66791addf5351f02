"""The participant's conversation: choose a session, consent, five questions, summary, confirm;
and /me to see, change or withdraw a registration.

    /start [event id] ─▶ consent ─▶ full_name ─▶ position ─▶ organization ─▶ phone ─▶ email
                                        ▲                                              │
                                        └──── "change <field>" ◀── summary ◀───────────┘
                                                                      │ confirm
                                                                      ▼
                                                              registrations row

Each step saves the move first (`transition`, stamped with the update), then replies: what
the person sees is never ahead of what is stored. A kill in between makes Telegram deliver
the update again; it is not applied twice, the current question is simply asked again
(`repeat_question`). A reply may come twice; an answer is never applied twice.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import replace
from datetime import datetime
from typing import Any

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
    User,
)

from bot.domain.clock import Clock
from bot.domain.events import Event, EventCatalog
from bot.domain.form import FIELDS, VALIDATORS, Draft
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length
from bot.domain.render import answers, contacts_line, event_card, shown_value
from bot.domain.texts import Html, t
from bot.domain.timefmt import format_datetime
from bot.domain.validation import ValidationError, validate_phone
from handlers.filters import Magic
from handlers.keyboards import (
    ConsentAction,
    ConsentCallback,
    EventChoice,
    MyAction,
    MyCallback,
    SummaryAction,
    SummaryCallback,
    consent_keyboard,
    events_keyboard,
    fields_keyboard,
    phone_keyboard,
    registration_keyboard,
    summary_keyboard,
    withdraw_keyboard,
)
from handlers.states import FIELD_STATES, STATE_FIELDS, Form
from storage.fsm import transition
from storage.registrations import AlreadyRegistered, NewRegistration, Registration, Registrations

logger = logging.getLogger(__name__)

NON_TEXT_KINDS = ("sticker", "photo", "voice", "video", "document", "location", "contact")


# --- What the person sees ------------------------------------------------------------------


def question_text(field: str, draft: Draft) -> str:
    question = t(f"ask_{field}")
    current = getattr(draft, field)
    if draft.editing is not None and current:
        return t("ask_edit", current=shown_value(field, current), question=Html(question))
    if draft.editing is None:
        number = FIELDS.index(field) + 1
        return t("ask_step", number=number, total=len(FIELDS), question=Html(question))
    return question


async def ask(
    bot: Bot,
    chat_id: int,
    field: str,
    draft: Draft,
    *,
    preface: str = "",
    remove_keyboard: bool = False,
) -> None:
    question = question_text(field, draft)
    markup: ReplyKeyboardMarkup | ReplyKeyboardRemove | None = None
    if field == "phone":
        markup = phone_keyboard()
    elif remove_keyboard:
        markup = ReplyKeyboardRemove()
    await bot.send_message(chat_id, preface + question, reply_markup=markup)


async def show_summary(bot: Bot, chat_id: int, draft: Draft, event: Event) -> None:
    text = t("summary", card=event_card(event), answers=answers(draft.answers()))
    await bot.send_message(chat_id, text, reply_markup=summary_keyboard(event.id))


async def show_consent(bot: Bot, chat_id: int, event: Event, *, preface: str = "") -> None:
    policy = event.privacy_policy or t("consent_default_policy")
    text = t("consent_request", policy=policy)
    if preface and message_length(preface + text) > MAX_MESSAGE_LENGTH:
        # A long description and a long policy: two messages rather than a refused one.
        await bot.send_message(chat_id, preface.rstrip())
    elif preface:
        text = preface + text
    await bot.send_message(chat_id, text, reply_markup=consent_keyboard())


def registration_text(registration: Registration, event: Event | None, can_change: bool) -> str:
    card = event_card(event, join_url=True) if event else t("event_card_unknown")
    text = t(
        "my_registration",
        card=Html(card),
        answers=answers({field: getattr(registration, field) for field in FIELDS}),
        registered_at=format_datetime(registration.created_at, event.timezone if event else None),
    )
    return text if can_change else text + "\n\n" + t("my_registration_closed")


async def show_registration(
    bot: Bot, chat_id: int, registration: Registration, catalog: EventCatalog, clock: Clock
) -> None:
    event = catalog.get(registration.event_id)
    can_change = event is not None and event.is_open(clock())
    await bot.send_message(
        chat_id,
        registration_text(registration, event, can_change),
        reply_markup=registration_keyboard(registration.id, can_change=can_change),
    )


async def reask(bot: Bot, chat_id: int, state: FSMContext, catalog: EventCatalog) -> None:
    """Put the current question (or button choice) in front of the person again."""
    current = await state.get_state()
    if current is None or not current.startswith(f"{Form.__full_group_name__}:"):
        return
    draft = Draft.from_data(await state.get_data())
    event = catalog.get(draft.event_id)
    if current == Form.consent.state and event:
        await bot.send_message(chat_id, t("consent_press_button"))
        await show_consent(bot, chat_id, event)
    elif current == Form.summary.state and event:
        await bot.send_message(chat_id, t("summary_press_button"))
        await show_summary(bot, chat_id, draft, event)
    elif current in STATE_FIELDS:
        await ask(bot, chat_id, STATE_FIELDS[current], draft)


async def repeat_question(update: Update, data: dict[str, Any]) -> None:
    """For an update that already moved the form (delivered again after a crash): its
    reply may have been lost with the process, so the person gets the question again."""
    state, bot, catalog = data.get("state"), data.get("bot"), data.get("catalog")
    if not isinstance(state, FSMContext) or not isinstance(bot, Bot) or catalog is None:
        return
    if update.callback_query is not None:
        with suppress(TelegramAPIError):
            await update.callback_query.answer()
    chat = update.message.chat if update.message else None
    if chat is None and update.callback_query is not None:
        chat = update.callback_query.message.chat if update.callback_query.message else None
    if chat is not None and chat.type == ChatType.PRIVATE:
        await reask(bot, chat.id, state, catalog)


async def reject(
    bot: Bot, chat_id: int, state: FSMContext, catalog: EventCatalog, reason: str, **params: object
) -> None:
    await bot.send_message(chat_id, t("rejected", reason=Html(t(f"reason_{reason}", **params))))
    await reask(bot, chat_id, state, catalog)


def closed_text(event: Event, catalog: EventCatalog) -> str:
    text = t(
        "event_closed",
        title=event.title,
        deadline=format_datetime(event.registration_deadline),
    )
    return text + contacts_line([event.contact] if event.contact else catalog.contacts())


# --- Starting ------------------------------------------------------------------------------


async def offer_event(
    bot: Bot,
    chat_id: int,
    user: User,
    event: Event,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    """Start the form for `event`, or show the registration the person already has."""
    if not event.is_open(clock()):
        await bot.send_message(chat_id, closed_text(event, catalog))
        return
    existing = await registrations.active(event.id, user.id)
    if existing is not None:
        await bot.send_message(chat_id, t("already_registered"))
        await show_registration(bot, chat_id, existing, catalog, clock)
        return
    await transition(state, Form.consent, Draft(event_id=event.id).to_data())
    greeting = t("greeting", card=event_card(event, deadline=True))
    if event.description:
        greeting += "\n\n" + t("event_description", description=event.description)
    await show_consent(bot, chat_id, event, preface=greeting + "\n\n")


async def start(
    message: Message,
    command: CommandObject,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    assert message.from_user is not None
    chat_id = message.chat.id
    if await state.get_state() is not None:
        await message.answer(t("form_in_progress"))
        await reask(bot, chat_id, state, catalog)
        return
    if command.args:
        event = catalog.get(command.args.strip())
        if event is not None:
            await offer_event(
                bot, chat_id, message.from_user, event, state, registrations, catalog, clock
            )
            return
        await message.answer(t("event_not_found"))
    open_events = catalog.open_events(clock())
    if not open_events:
        await message.answer(t("no_open_events") + contacts_line(catalog.contacts()))
    elif len(open_events) == 1:
        await offer_event(
            bot, chat_id, message.from_user, open_events[0], state, registrations, catalog, clock
        )
    else:
        await message.answer(t("choose_event"), reply_markup=events_keyboard(open_events))


async def event_chosen(
    callback: CallbackQuery,
    callback_data: EventChoice,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    await callback.answer()
    chat_id = callback.from_user.id
    if await state.get_state() is not None:
        await bot.send_message(chat_id, t("form_in_progress"))
        await reask(bot, chat_id, state, catalog)
        return
    event = catalog.get(callback_data.event_id)
    if event is None:
        await bot.send_message(chat_id, t("event_not_found"))
        return
    await offer_event(bot, chat_id, callback.from_user, event, state, registrations, catalog, clock)


# --- Consent -------------------------------------------------------------------------------


async def consent_given(
    callback: CallbackQuery, bot: Bot, state: FSMContext, catalog: EventCatalog, clock: Clock
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
    await transition(state, Form.full_name, draft.to_data())
    # The consent message becomes the record of it and the first question: one call where
    # removing its buttons and asking would take two.
    record = event_card(event) + "\n\n" + t("consent_given") + "\n\n"
    await replace_answered(callback, bot, record + question_text("full_name", draft))


async def consent_declined(callback: CallbackQuery, bot: Bot, state: FSMContext) -> None:
    await end_form_by_button(callback, bot, state, t("consent_declined"))


async def end_form_by_button(
    callback: CallbackQuery, bot: Bot, state: FSMContext, farewell: str
) -> None:
    """The draft goes, nothing is stored, and the pressed buttons go too."""
    await callback.answer()
    await remove_buttons(callback)
    await state.clear()
    await bot.send_message(callback.from_user.id, farewell)


# --- Answers -------------------------------------------------------------------------------


async def answer_typed(
    message: Message,
    text: str,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    field = STATE_FIELDS[await state.get_state()]
    try:
        value = VALIDATORS[field](text)
    except ValidationError as error:
        await reject(bot, message.chat.id, state, catalog, error.reason, **error.params)
        return
    await accept(message, field, value, bot, state, registrations, catalog, clock)


async def contact_shared(
    message: Message,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    assert message.contact is not None and message.from_user is not None
    # Anyone's card can be forwarded as a contact; only one's own number was verified
    # by Telegram.
    if message.contact.user_id != message.from_user.id:
        await reject(bot, message.chat.id, state, catalog, "contact_not_own")
        return
    number = message.contact.phone_number
    try:
        value = validate_phone(number if number.startswith("+") else "+" + number)
    except ValidationError as error:
        await reject(bot, message.chat.id, state, catalog, error.reason, **error.params)
        return
    await accept(message, "phone", value, bot, state, registrations, catalog, clock)


async def accept(
    message: Message,
    field: str,
    value: str,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    """Store a valid answer and move on: next question, back to the summary, or save."""
    chat_id = message.chat.id
    draft = Draft.from_data(await state.get_data()).with_answer(field, value)
    next_field = None if draft.registration_id is not None else draft.next_question()
    preface = ""
    if field == "phone":
        # The "share my number" keyboard has done its job: it goes with the next question,
        # or alone before a summary (a message has one keyboard).
        preface = t("phone_saved", phone=shown_value("phone", value))
        if next_field is None:
            await message.answer(preface, reply_markup=ReplyKeyboardRemove())
    if draft.registration_id is not None:
        await save_change(message, draft, field, value, bot, state, registrations, catalog, clock)
        return
    if next_field is not None:
        await transition(state, FIELD_STATES[next_field], draft.to_data())
        await ask(
            bot,
            chat_id,
            next_field,
            draft,
            preface=preface + "\n\n" if preface else "",
            remove_keyboard=bool(preface),
        )
        return
    draft = replace(draft, editing=None)
    event = catalog.get(draft.event_id)
    if event is None:
        await state.clear()
        await message.answer(t("event_not_found"))
        return
    await transition(state, Form.summary, draft.to_data())
    await show_summary(bot, chat_id, draft, event)


async def save_change(
    message: Message,
    draft: Draft,
    field: str,
    value: str,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
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
    changed = await registrations.update_field(
        draft.registration_id, user_id=message.from_user.id, field=field, value=value, now=now
    )
    await state.clear()
    if changed is None:
        await message.answer(t("my_none"))
        return
    logger.info("Registration %d: %s changed", draft.registration_id, field)
    await message.answer(t("field_updated"))
    await show_registration(bot, message.chat.id, changed[1], catalog, clock)


async def command_in_form(
    message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog
) -> None:
    command = (message.text or "").split(maxsplit=1)[0]
    await reject(bot, message.chat.id, state, catalog, "unknown_command", command=command[:64])


async def not_text_in_form(
    message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog
) -> None:
    kind = next((kind for kind in NON_TEXT_KINDS if getattr(message, kind, None)), "other")
    current = await state.get_state()
    if current in (Form.consent.state, Form.summary.state):
        await reask(bot, message.chat.id, state, catalog)
        return
    await reject(bot, message.chat.id, state, catalog, "not_text", kind=Html(t(f"kind_{kind}")))


async def text_instead_of_button(
    message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog
) -> None:
    await reask(bot, message.chat.id, state, catalog)


# --- Summary -------------------------------------------------------------------------------


async def registration_confirmed(
    callback: CallbackQuery,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
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
    if draft.next_question() is not None or draft.consent_at is None:
        # Cannot happen through the buttons; a corrupted draft is asked again, not saved.
        await callback.answer()
        await reask(bot, user.id, state, catalog)
        return
    answers_ = draft.answers()
    new = NewRegistration(
        event_id=event.id,
        user_id=user.id,
        username=user.username,
        telegram_name=user.full_name,
        consent_at=datetime.fromisoformat(draft.consent_at),
        consent_version=draft.consent_version or "",
        full_name=answers_["full_name"],
        position=answers_["position"],
        organization=answers_["organization"],
        phone=answers_["phone"],
        email=answers_["email"],
    )
    try:
        registration = await registrations.create(new, now=now)
    except AlreadyRegistered as error:
        # A second device, or a re-delivered update after a crash: one row, one confirmation.
        await callback.answer()
        await state.clear()
        await remove_buttons(callback)
        await bot.send_message(user.id, t("already_registered"))
        await show_registration(bot, user.id, error.existing, catalog, clock)
        return
    logger.info("Registration %d confirmed for event %s", registration.id, event.id)
    await callback.answer()
    # The summary becomes the confirmation (its buttons go with the edit).
    await replace_answered(callback, bot, t("confirmed", card=event_card(event, join_url=True)))
    await state.clear()


async def summary_edit(
    callback: CallbackQuery,
    callback_data: SummaryCallback,
    bot: Bot,
    state: FSMContext,
) -> None:
    await callback.answer()
    assert callback_data.field is not None
    field = str(callback_data.field)
    draft = replace(Draft.from_data(await state.get_data()), editing=field)
    await transition(state, FIELD_STATES[field], draft.to_data())
    await ask(bot, callback.from_user.id, field, draft)


async def form_cancelled_by_button(callback: CallbackQuery, bot: Bot, state: FSMContext) -> None:
    await end_form_by_button(callback, bot, state, t("cancelled"))


async def stale_summary_button(
    callback: CallbackQuery,
    callback_data: SummaryCallback,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
) -> None:
    """A summary button pressed when the summary is no longer current: a double tap on
    "confirm", or a button of an old summary while a question is open."""
    if await state.get_state() is not None:
        await callback.answer(t("answer_current_question"), show_alert=True)
        await reask(bot, callback.from_user.id, state, catalog)
        return
    registered = await registrations.active(callback_data.event_id, callback.from_user.id)
    await callback.answer(t("already_confirmed" if registered else "button_expired"))
    await remove_buttons(callback)


# --- /me -----------------------------------------------------------------------------------


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


async def my_registration_action(
    callback: CallbackQuery,
    callback_data: MyCallback,
    bot: Bot,
    state: FSMContext,
    registrations: Registrations,
    catalog: EventCatalog,
    clock: Clock,
) -> None:
    user = callback.from_user
    registration = await registrations.get(callback_data.registration_id)
    if (
        registration is None
        or registration.user_id != user.id
        or (registration.status != "confirmed")
    ):
        await callback.answer(t("button_expired"))
        await remove_buttons(callback)
        return
    event = catalog.get(registration.event_id)
    can_change = event is not None and event.is_open(clock())
    action = callback_data.action
    message = callback.message if isinstance(callback.message, Message) else None

    if action in (MyAction.change, MyAction.change_field) and not can_change:
        await callback.answer(t("change_closed"), show_alert=True)
        return
    if action in (MyAction.change_field, MyAction.withdraw_yes) and (
        await state.get_state() is not None
    ):
        await callback.answer(t("finish_form_first"), show_alert=True)
        await reask(bot, user.id, state, catalog)
        return

    await callback.answer()
    if action is MyAction.show and message:
        await message.edit_reply_markup(
            reply_markup=registration_keyboard(registration.id, can_change=can_change)
        )
    elif action is MyAction.change and message:
        await message.edit_reply_markup(reply_markup=fields_keyboard(registration.id))
    elif action is MyAction.change_field and callback_data.field is not None:
        field = str(callback_data.field)
        draft = Draft(
            event_id=registration.event_id,
            registration_id=registration.id,
            editing=field,
            **{name: getattr(registration, name) for name in FIELDS},
        )
        await transition(state, FIELD_STATES[field], draft.to_data())
        await ask(bot, user.id, field, draft)
    elif action is MyAction.withdraw:
        title = event.title if event else registration.event_id
        await bot.send_message(
            user.id,
            t("withdraw_confirm", title=title),
            reply_markup=withdraw_keyboard(registration.id),
        )
    elif action is MyAction.withdraw_yes:
        withdrawn = await registrations.withdraw(registration.id, user_id=user.id, now=clock())
        title = event.title if event else registration.event_id
        if message:
            await message.edit_text(t("withdrawn" if withdrawn else "button_expired", title=title))
        if withdrawn:
            logger.info("Registration %d withdrawn", registration.id)
    elif action is MyAction.withdraw_no and message:
        await message.edit_text(t("withdraw_kept"))


# --- /cancel, /help ------------------------------------------------------------------------


async def form_cancelled(message: Message, state: FSMContext) -> None:
    if await state.get_state() is None:
        await message.answer(t("nothing_to_cancel"), reply_markup=ReplyKeyboardRemove())
        return
    await state.clear()
    await message.answer(t("cancelled"), reply_markup=ReplyKeyboardRemove())


async def help_shown(message: Message, bot: Bot, state: FSMContext, catalog: EventCatalog) -> None:
    await message.answer(t("help"))
    if await state.get_state() is not None:
        await reask(bot, message.chat.id, state, catalog)


async def replace_answered(callback: CallbackQuery, bot: Bot, text: str) -> None:
    """Turn the message whose button was pressed into `text`, without buttons, so it cannot
    be answered twice; a message that cannot be edited (too old, deleted) gets a new one."""
    message = callback.message
    if isinstance(message, Message) and message_length(text) <= MAX_MESSAGE_LENGTH:
        try:
            await message.edit_text(text)
            return
        except TelegramBadRequest as error:
            logger.info("Message %d not edited (%s); sending anew", message.message_id, error)
    await remove_buttons(callback)
    await bot.send_message(callback.from_user.id, text)


async def remove_buttons(callback: CallbackQuery) -> None:
    """Take the buttons off the message that was answered, so it cannot be answered twice."""
    if isinstance(callback.message, Message) and callback.message.reply_markup:
        await callback.message.edit_reply_markup(reply_markup=None)


def create_router() -> Router:
    router = Router(name="registration")
    # The participant flow runs only in private chats (groups: see handlers/common.py).
    router.message.filter(Magic(F.chat.type == ChatType.PRIVATE))
    router.callback_query.filter(Magic(F.message.chat.type == ChatType.PRIVATE))

    # Commands first: they work in every state.
    router.message.register(start, Command("start"))
    router.message.register(form_cancelled, Command("cancel"))
    router.message.register(help_shown, Command("help"))
    router.message.register(my_registrations, Command("me"))

    in_form = StateFilter(Form)
    field_states = StateFilter(*FIELD_STATES.values())
    router.message.register(command_in_form, in_form, Magic(F.text.startswith("/")))
    router.message.register(answer_typed, field_states, Magic(F.text.as_("text")))
    router.message.register(contact_shared, StateFilter(Form.phone), Magic(F.contact))
    router.message.register(
        text_instead_of_button, StateFilter(Form.consent, Form.summary), Magic(F.text)
    )
    router.message.register(not_text_in_form, in_form)

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
    router.callback_query.register(
        registration_confirmed,
        StateFilter(Form.summary),
        SummaryCallback.filter(F.action == SummaryAction.confirm),
    )
    router.callback_query.register(
        summary_edit,
        StateFilter(Form.summary),
        SummaryCallback.filter((F.action == SummaryAction.edit) & F.field),
    )
    router.callback_query.register(
        form_cancelled_by_button,
        StateFilter(Form.summary),
        SummaryCallback.filter(F.action == SummaryAction.cancel),
    )
    router.callback_query.register(stale_summary_button, SummaryCallback.filter())
    router.callback_query.register(my_registration_action, MyCallback.filter())
    return router
