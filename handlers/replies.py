"""What a person sees, shared by the conversations: a question, the consent request, the summary,
a registration, a refusal with the question again, and the answered message made final.

Every handlers module that puts the form in front of someone comes here, so none of them
reaches into another's internals (the admin refusal re-asks a participant's question too).
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any

from aiogram import Bot
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)

from bot.domain.calendar import calendar_file, calendar_name
from bot.domain.clock import Clock
from bot.domain.events import Event, EventCatalog
from bot.domain.form import Draft, FormFields, question_text
from bot.domain.limits import MAX_MESSAGE_LENGTH, message_length, split_lines
from bot.domain.render import answers, contacts_line, event_card, privacy_policy, shown_value
from bot.domain.retention import kept_until
from bot.domain.texts import LOCALE, Html, t
from bot.domain.timefmt import format_date, format_datetime, zone_label
from handlers.keyboards import (
    consent_keyboard,
    phone_keyboard,
    question_keyboard,
    registration_keyboard,
    summary_keyboard,
)
from handlers.states import Form, state_field
from storage.registrations import Registration
from storage.reminders import Reminders

logger = logging.getLogger(__name__)


def field_question(field: str, draft: Draft, form: FormFields, total: int) -> str:
    question = t(f"ask_{field}")
    current = draft.value(field)
    if draft.editing is not None and current:
        return t("ask_edit", current=shown_value(field, current), question=Html(question))
    if draft.editing is None:
        return t("ask_step", number=form.number(field), total=total, question=Html(question))
    return question


async def ask(
    bot: Bot,
    chat_id: int,
    field: str,
    draft: Draft,
    form: FormFields,
    *,
    preface: str = "",
    remove_keyboard: bool = False,
    catalog: EventCatalog | None = None,
) -> None:
    event = catalog.get(draft.event_id) if catalog is not None else None
    total = len(form) + (len(event.questions) if event else 0)
    question = field_question(field, draft, form, total)
    markup: ReplyKeyboardMarkup | ReplyKeyboardRemove | None = None
    if form[field].keyboard == "phone":
        markup = phone_keyboard()
    elif remove_keyboard:
        markup = ReplyKeyboardRemove()
    await bot.send_message(chat_id, preface + question, reply_markup=markup)


async def ask_question(
    bot: Bot, chat_id: int, event: Event, draft: Draft, form: FormFields, *, preface: str = ""
) -> None:
    """One of the event's own questions (`draft.question`), with its buttons."""
    assert draft.question is not None
    index = draft.question
    question = event.questions[index]
    text = t("question_ask", question=question_text(question, LOCALE.get()))
    hints = []
    if question.kind == "choice":
        hints.append(t("question_hint_choice"))
    elif question.kind == "yes_no":
        hints.append(t("question_hint_yes_no"))
    if not question.required:
        hints.append(t("question_hint_optional"))
    if hints:
        text += "\n\n" + " ".join(hints)
    current = draft.extra_answers().get(question.id)
    if draft.editing is not None and current:
        text = t("ask_edit", current=current, question=Html(text))
    elif draft.editing is None:
        text = t(
            "ask_step",
            number=len(form) + index + 1,
            total=len(form) + len(event.questions),
            question=Html(text),
        )
    await bot.send_message(chat_id, preface + text, reply_markup=question_keyboard(index, question))


def summary_text(draft: Draft, event: Event, form: FormFields) -> str:
    shown = answers(draft.answers(form), event.questions, draft.extra_answers(), LOCALE.get())
    text = t("summary", card=event_card(event), answers=shown)
    if draft.waitlist:
        text += "\n\n" + t("summary_waitlist")
    return text


async def send_long(
    bot: Bot, chat_id: int, text: str, reply_markup: InlineKeyboardMarkup | None = None
) -> None:
    """`text` in one message, or cut between lines into several, the buttons under the last."""
    *parts, last = split_lines(text)
    for part in parts:
        await bot.send_message(chat_id, part)
    await bot.send_message(chat_id, last, reply_markup=reply_markup)


async def show_summary(
    bot: Bot, chat_id: int, draft: Draft, event: Event, form: FormFields
) -> None:
    await send_long(
        bot,
        chat_id,
        summary_text(draft, event, form),
        reply_markup=summary_keyboard(
            event.id, form, waitlist=draft.waitlist, questions=event.questions
        ),
    )


async def show_consent(
    bot: Bot, chat_id: int, event: Event, catalog: EventCatalog, *, preface: str = ""
) -> None:
    text = t("consent_request", policy=privacy_policy(event, catalog.retention_days))
    if preface and message_length(preface + text) > MAX_MESSAGE_LENGTH:
        # A long description and a long policy: two messages rather than a refused one.
        await bot.send_message(chat_id, preface.rstrip())
    elif preface:
        text = preface + text
    await bot.send_message(chat_id, text, reply_markup=consent_keyboard())


def registration_text(
    registration: Registration,
    event: Event | None,
    can_change: bool,
    retention_days: int,
    form: FormFields,
) -> str:
    """A registration as its person sees it: everything stored about them in it (152-FZ
    art. 14), and the day its data goes."""
    card = event_card(event, join_url=True) if event else t("event_card_unknown")
    zone = event.timezone if event else None
    stored = t(
        "my_stored",
        user_id=registration.user_id,
        username=f"@{registration.username}" if registration.username else t("my_no_username"),
        name=registration.telegram_name,
        consent_at=format_datetime(registration.consent_at, zone),
        version=registration.consent_version,
    )
    if registration.source is not None:
        stored += "\n" + t("my_source", source=registration.source)
    if event is not None:
        # The last day kept, with its zone: a day starts at a different moment in each.
        last_day = kept_until(event.end(), retention_days)
        stored += "\n" + t("my_kept_until", date=format_date(last_day), zone=zone_label(last_day))
    text = t(
        "my_registration",
        card=Html(card),
        answers=answers(
            form.values(registration, registration.answer_map()),
            event.questions if event else (),
            registration.answer_map(),
            LOCALE.get(),
        ),
        registered_at=format_datetime(registration.created_at, zone),
        stored=Html(stored),
    )
    if registration.status == "waiting":
        text += "\n\n" + t("waiting_place", place=registration.place or "—")
        if registration.offer_expires_at is not None:
            until = format_datetime(registration.offer_expires_at, zone)
            text += "\n" + t("waiting_offer_open", until=until)
    return text if can_change else text + "\n\n" + t("my_registration_closed")


async def show_registration(
    bot: Bot,
    chat_id: int,
    registration: Registration,
    catalog: EventCatalog,
    clock: Clock,
    form: FormFields,
) -> None:
    event = catalog.get(registration.event_id)
    can_change = event is not None and event.is_open(clock())
    await send_long(
        bot,
        chat_id,
        registration_text(registration, event, can_change, catalog.retention_days, form),
        reply_markup=registration_keyboard(
            registration.id,
            can_change=can_change,
            waiting=registration.status == "waiting",
            offered=registration.offer_expires_at is not None,
        ),
    )


def closed_text(event: Event, catalog: EventCatalog) -> str:
    text = t(
        "event_closed",
        title=event.title,
        deadline=format_datetime(event.registration_deadline),
    )
    return text + contacts_line([event.contact] if event.contact else catalog.contacts())


async def reask(
    bot: Bot, chat_id: int, state: FSMContext, catalog: EventCatalog, form: FormFields
) -> None:
    """Put the current question (or button choice) in front of the person again."""
    current = await state.get_state()
    if current is None or not current.startswith(f"{Form.__full_group_name__}:"):
        return
    draft = Draft.from_data(await state.get_data())
    event = catalog.get(draft.event_id)
    if current == Form.consent.state and event:
        await bot.send_message(chat_id, t("consent_press_button"))
        await show_consent(bot, chat_id, event, catalog)
    elif current == Form.summary.state and event:
        await bot.send_message(chat_id, t("summary_press_button"))
        await show_summary(bot, chat_id, draft, event, form)
    elif current == Form.question.state and event and draft.question is not None:
        if draft.question < len(event.questions):
            await ask_question(bot, chat_id, event, draft, form)
    elif (field := state_field(current, form)) is not None:
        await ask(bot, chat_id, field, draft, form, catalog=catalog)


async def repeat_question(
    update: Update, data: dict[str, Any], *, catalog: EventCatalog, form: FormFields
) -> None:
    """For an update that already moved the form (delivered again after a crash): its
    reply may have been lost with the process, so the person gets the question again."""
    state, bot = data.get("state"), data.get("bot")
    if not isinstance(state, FSMContext) or not isinstance(bot, Bot):
        return
    if update.callback_query is not None:
        with suppress(TelegramAPIError):
            await update.callback_query.answer()
    chat = update.message.chat if update.message else None
    if chat is None and update.callback_query is not None:
        chat = update.callback_query.message.chat if update.callback_query.message else None
    if chat is not None and chat.type == ChatType.PRIVATE:
        await reask(bot, chat.id, state, catalog, form)


async def reject(
    bot: Bot,
    chat_id: int,
    state: FSMContext,
    catalog: EventCatalog,
    form: FormFields,
    reason: str,
    **params: object,
) -> None:
    await bot.send_message(chat_id, t("rejected", reason=Html(t(f"reason_{reason}", **params))))
    await reask(bot, chat_id, state, catalog, form)


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
    await send_long(bot, callback.from_user.id, text)


async def remove_buttons(callback: CallbackQuery) -> None:
    """Take the buttons off the message that was answered, so it cannot be answered twice.

    The update carries the message as it was when the button was pressed: delivered again
    after a crash, it may show buttons already taken off, which Telegram refuses to take off
    twice ("message is not modified"). Nothing is lost then: they are gone."""
    if isinstance(callback.message, Message) and callback.message.reply_markup:
        try:
            await callback.message.edit_reply_markup(reply_markup=None)
        except TelegramBadRequest as error:
            if "message is not modified" not in error.message:
                raise


async def end_form_by_button(
    callback: CallbackQuery, bot: Bot, state: FSMContext, farewell: str
) -> None:
    """The draft goes, nothing is stored, and the pressed buttons go too."""
    await callback.answer()
    await remove_buttons(callback)
    await state.clear()
    await bot.send_message(callback.from_user.id, farewell)


async def send_calendar(
    bot: Bot, chat_id: int, event: Event, reminders: Reminders, clock: Clock
) -> bool:
    """The session's calendar file (`<event id>.ics`), as it is now; False if Telegram
    refused it (the person can ask again from /me)."""
    sequence = await reminders.sequence(event.id)
    content = calendar_file(event, sequence=sequence, now=clock())
    try:
        await bot.send_document(
            chat_id,
            BufferedInputFile(content, filename=calendar_name(event)),
            caption=t("calendar_caption", title=event.title),
        )
    except TelegramAPIError as error:
        logger.warning("Calendar file for event %s not sent: %s", event.id, error.message)
        return False
    return True
