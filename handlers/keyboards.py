"""Every keyboard and callback factory, participants' and admins': inline buttons (CallbackData
with StrEnum fields) and the one reply keyboard."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from functools import lru_cache
from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiogram.utils.keyboard import InlineKeyboardBuilder
from pydantic import AfterValidator, Field, field_validator

from bot.domain.events import MAX_OPTIONS, MAX_QUESTIONS, Event
from bot.domain.form import FIELD_ID_PATTERN, FormFields, Question, option_labels, question_text
from bot.domain.texts import LANGUAGES, LOCALE, t, template
from bot.domain.validation import MAX_ROW_ID

# A row id as SQLite stores it (rowids start at 1, 64-bit). Callback data comes from the
# client and can be forged: an id outside this range would make the query raise
# OverflowError, so the button's filter refuses it and it is answered as an expired button.
RowId = Annotated[int, Field(ge=1, le=2**63 - 1)]
# An event question's index in its event's list, and an option's in its question's: buttons
# carry these, never ids or labels (Cyrillic takes two of callback data's 64 bytes a letter).
QuestionIndex = Annotated[int, Field(ge=0, lt=MAX_QUESTIONS)]
OptionIndex = Annotated[int, Field(ge=0, lt=MAX_OPTIONS)]


def _field_id(value: str) -> str:
    if not FIELD_ID_PATTERN.fullmatch(value):
        raise ValueError("not a standard question's id")
    return value


# A standard question, by its id; whether the bot's form has it, the handler asks (the
# form's table is the bot's, bot/domain/form.py: FormFields).
FormField = Annotated[str, AfterValidator(_field_id)]


def _rows_of_two(count: int) -> tuple[int, ...]:
    return (2,) * (count // 2) + (1,) * (count % 2)


class EventChoice(CallbackData, prefix="event"):
    event_id: str


class ConsentAction(StrEnum):
    agree = "agree"
    decline = "decline"


class ConsentCallback(CallbackData, prefix="consent"):
    action: ConsentAction


class SummaryAction(StrEnum):
    confirm = "confirm"
    edit = "edit"
    cancel = "cancel"


class SummaryCallback(CallbackData, prefix="summary"):
    action: SummaryAction
    event_id: str
    field: FormField | None = None
    question: QuestionIndex | None = None


class QuestionAction(StrEnum):
    answer = "a"
    skip = "s"


class QuestionCallback(CallbackData, prefix="q"):
    """A button under one of the event's own questions: its option, or "skip"."""

    action: QuestionAction
    question: QuestionIndex
    option: OptionIndex = 0


class MyAction(StrEnum):
    show = "show"
    change = "change"
    change_field = "field"
    withdraw = "withdraw"
    withdraw_yes = "yes"
    withdraw_no = "no"
    calendar = "ics"


class MyCallback(CallbackData, prefix="my"):
    action: MyAction
    registration_id: RowId
    field: FormField | None = None
    question: QuestionIndex | None = None


class OfferAction(StrEnum):
    take = "take"


class OfferCallback(CallbackData, prefix="offer"):
    action: OfferAction
    registration_id: RowId


class ForgetAction(StrEnum):
    yes = "yes"
    no = "no"


class ForgetCallback(CallbackData, prefix="forget"):
    action: ForgetAction


class EraseAction(StrEnum):
    yes = "yes"
    no = "no"


class EraseCallback(CallbackData, prefix="erase"):
    """The registrations an admin's /erase listed, by number ("12.40.311"): the button
    erases exactly what its message showed, however old it is. Forged, it could name other
    numbers, but only an admin gets past the router, and /erase <number> is theirs anyway."""

    action: EraseAction
    ids: str

    @field_validator("ids")
    @classmethod
    def _numbers(cls, value: str) -> str:
        parts = value.split(".")
        if not all(part.isascii() and part.isdigit() and len(part) <= 19 for part in parts):
            raise ValueError("registration numbers separated by dots")
        if not all(1 <= int(part) <= MAX_ROW_ID for part in parts):
            raise ValueError("a registration number out of range")
        return value

    @property
    def registration_ids(self) -> list[int]:
        return [int(part) for part in self.ids.split(".")]


def erase_callbacks(registration_ids: Iterable[int]) -> tuple[EraseCallback, EraseCallback] | None:
    """The yes and no buttons' data for these registrations; None if they do not fit in
    Telegram's 64 bytes."""
    ids = ".".join(str(registration_id) for registration_id in registration_ids)
    buttons = (
        EraseCallback(action=EraseAction.yes, ids=ids),
        EraseCallback(action=EraseAction.no, ids=ids),
    )
    try:
        for button in buttons:
            button.pack()
    except ValueError:  # aiogram refuses data longer than Telegram's 64 bytes
        return None
    return buttons


class LanguageCallback(CallbackData, prefix="lang"):
    """A language of /language's chooser, by its catalogue's folder name ("en")."""

    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")]


def language_keyboard(current: str) -> InlineKeyboardMarkup:
    """A button per language found at start-up (`texts.LANGUAGES`), each named in itself
    ("English", "Русский"), the current one marked."""
    builder = InlineKeyboardBuilder()
    for language in LANGUAGES:
        name = template("language_name", language)
        builder.button(
            text=t("button_language_current", name=name) if language == current else name,
            callback_data=LanguageCallback(language=language),
        )
    builder.adjust(1)
    return builder.as_markup()


class AdminAction(StrEnum):
    export_event = "export"
    broadcast_event = "bevent"
    broadcast_send = "bsend"
    broadcast_cancel = "bcancel"


class AdminCallback(CallbackData, prefix="admin"):
    action: AdminAction
    event_id: str = ""


# The event id of the export's "all sessions" button.
ALL_EVENTS = "*"


def events_keyboard(
    events: Iterable[Event], admin_action: AdminAction | None = None, *, all_events: bool = False
) -> InlineKeyboardMarkup:
    """A button per session: a participant's choice, or with `admin_action` an admin's (the
    export's, with an "all sessions" button when `all_events`; the broadcast's)."""
    builder = InlineKeyboardBuilder()
    for event in events:
        choice: CallbackData = (
            EventChoice(event_id=event.id)
            if admin_action is None
            else AdminCallback(action=admin_action, event_id=event.id)
        )
        builder.button(text=event.title[:60], callback_data=choice)
    if admin_action is not None and all_events:
        builder.button(
            text=t("button_all_events"),
            callback_data=AdminCallback(action=admin_action, event_id=ALL_EVENTS),
        )
    builder.adjust(1)
    return builder.as_markup()


# The keyboards every participant gets are built once per language and reused: building
# one deep-copies every button (InlineKeyboardBuilder.export), a cost per message.
def consent_keyboard() -> InlineKeyboardMarkup:
    return _consent_keyboard(LOCALE.get())


@lru_cache(maxsize=8)
def _consent_keyboard(locale: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("button_consent_agree"), callback_data=ConsentCallback(action=ConsentAction.agree)
    )
    builder.button(
        text=t("button_consent_decline"),
        callback_data=ConsentCallback(action=ConsentAction.decline),
    )
    builder.adjust(1)
    return builder.as_markup()


def phone_keyboard() -> ReplyKeyboardMarkup:
    return _phone_keyboard(LOCALE.get())


@lru_cache(maxsize=8)
def _phone_keyboard(locale: str) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=t("button_share_phone"), request_contact=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
        input_field_placeholder="+7 912 345-67-89",
    )


# A question's text on its edit button: Telegram shows a short button label whole.
BUTTON_LABEL = 40


def button_label(text: str) -> str:
    return text if len(text) <= BUTTON_LABEL else text[: BUTTON_LABEL - 1] + "…"


def summary_keyboard(
    event_id: str,
    form: FormFields,
    *,
    waitlist: bool = False,
    questions: tuple[Question, ...] = (),
) -> InlineKeyboardMarkup:
    locale = LOCALE.get()
    labels = tuple(button_label(question_text(question, locale)) for question in questions)
    return _summary_keyboard(event_id, locale, form.ids, waitlist, labels)


@lru_cache(maxsize=64)
def _summary_keyboard(
    event_id: str,
    locale: str,
    fields: tuple[str, ...],
    waitlist: bool,
    labels: tuple[str, ...] = (),
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    # Full: the same button joins the waiting list (the database decides either way).
    builder.button(
        text=t("button_join_waitlist" if waitlist else "button_confirm"),
        callback_data=SummaryCallback(action=SummaryAction.confirm, event_id=event_id),
    )
    for field in fields:
        builder.button(
            text=t("button_edit_field", field=t(f"field_{field}")),
            callback_data=SummaryCallback(
                action=SummaryAction.edit, event_id=event_id, field=field
            ),
        )
    for index, label in enumerate(labels):
        builder.button(
            text=t("button_edit_field", field=label),
            callback_data=SummaryCallback(
                action=SummaryAction.edit, event_id=event_id, question=index
            ),
        )
    builder.button(
        text=t("button_cancel_form"),
        callback_data=SummaryCallback(action=SummaryAction.cancel, event_id=event_id),
    )
    builder.adjust(1, *_rows_of_two(len(fields)), *(1 for _ in labels), 1)
    return builder.as_markup()


def question_keyboard(index: int, question: Question) -> InlineKeyboardMarkup | None:
    """The buttons of the event's question at `index`: its options (yes and no), and "skip"
    when it is optional; None for a required text question."""
    builder = InlineKeyboardBuilder()
    if question.kind == "yes_no":
        labels: tuple[str, ...] = (t("button_yes"), t("button_no"))
    else:
        labels = option_labels(question, LOCALE.get())
    for option, label in enumerate(labels):
        builder.button(
            text=label,
            callback_data=QuestionCallback(
                action=QuestionAction.answer, question=index, option=option
            ),
        )
    if not question.required:
        builder.button(
            text=t("button_skip"),
            callback_data=QuestionCallback(action=QuestionAction.skip, question=index),
        )
    if not labels and question.required:
        return None
    builder.adjust(*((2,) if question.kind == "yes_no" else (1 for _ in labels)), 1)
    return builder.as_markup()


def registration_keyboard(
    registration_id: int, *, can_change: bool, waiting: bool = False, offered: bool = False
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    if offered:
        builder.button(
            text=t("button_take_seat"),
            callback_data=OfferCallback(action=OfferAction.take, registration_id=registration_id),
        )
    if can_change:
        builder.button(
            text=t("button_change"),
            callback_data=MyCallback(action=MyAction.change, registration_id=registration_id),
        )
    if not waiting:  # the calendar is for a seat, not a place in line
        builder.button(
            text=t("button_calendar"),
            callback_data=MyCallback(action=MyAction.calendar, registration_id=registration_id),
        )
    builder.button(
        text=t("button_leave_waitlist" if waiting else "button_withdraw"),
        callback_data=MyCallback(action=MyAction.withdraw, registration_id=registration_id),
    )
    builder.adjust(1)
    return builder.as_markup()


def offer_keyboard(registration_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("button_take_seat"),
        callback_data=OfferCallback(action=OfferAction.take, registration_id=registration_id),
    )
    return builder.as_markup()


def offer_markup_json(registration_id: int) -> str:
    """The offer's keyboard as the outbox stores it (the sender sends it with the text)."""
    return offer_keyboard(registration_id).model_dump_json(exclude_none=True)


def fields_keyboard(
    registration_id: int, form: FormFields, questions: tuple[Question, ...] = ()
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for field in form.ids:
        builder.button(
            text=t("button_edit_field", field=t(f"field_{field}")),
            callback_data=MyCallback(
                action=MyAction.change_field, registration_id=registration_id, field=field
            ),
        )
    locale = LOCALE.get()
    for index, question in enumerate(questions):
        builder.button(
            text=t("button_edit_field", field=button_label(question_text(question, locale))),
            callback_data=MyCallback(
                action=MyAction.change_field, registration_id=registration_id, question=index
            ),
        )
    builder.button(
        text=t("button_back"),
        callback_data=MyCallback(action=MyAction.show, registration_id=registration_id),
    )
    builder.adjust(*_rows_of_two(len(form)), *(1 for _ in questions), 1)
    return builder.as_markup()


def withdraw_keyboard(registration_id: int, *, waiting: bool = False) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("button_leave_yes" if waiting else "button_withdraw_yes"),
        callback_data=MyCallback(action=MyAction.withdraw_yes, registration_id=registration_id),
    )
    builder.button(
        text=t("button_withdraw_no"),
        callback_data=MyCallback(action=MyAction.withdraw_no, registration_id=registration_id),
    )
    builder.adjust(2)
    return builder.as_markup()


def broadcast_keyboard(event_id: str, count: int) -> InlineKeyboardMarkup:
    # One row: "send" and "cancel" side by side under the preview.
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("button_broadcast_send", count=count),
        callback_data=AdminCallback(action=AdminAction.broadcast_send, event_id=event_id),
    )
    builder.button(
        text=t("button_broadcast_cancel"),
        callback_data=AdminCallback(action=AdminAction.broadcast_cancel, event_id=event_id),
    )
    return builder.as_markup()


def forget_keyboard() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("button_forget_yes"), callback_data=ForgetCallback(action=ForgetAction.yes)
    )
    builder.button(text=t("button_forget_no"), callback_data=ForgetCallback(action=ForgetAction.no))
    builder.adjust(1)
    return builder.as_markup()


def erase_keyboard(yes: EraseCallback, no: EraseCallback) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("button_erase_yes"), callback_data=yes)
    builder.button(text=t("button_erase_no"), callback_data=no)
    builder.adjust(2)
    return builder.as_markup()
