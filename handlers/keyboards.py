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
from pydantic import Field

from bot.domain.events import Event
from bot.domain.form import FIELDS
from bot.domain.texts import LOCALE, t

# A row id as SQLite stores it (rowids start at 1, 64-bit). Callback data comes from the
# client and can be forged: an id outside this range would make the query raise
# OverflowError, so the button's filter refuses it and it is answered as an expired button.
RowId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class FormField(StrEnum):
    full_name = "full_name"
    position = "position"
    organization = "organization"
    phone = "phone"
    email = "email"


assert tuple(FormField) == FIELDS


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


class ForgetAction(StrEnum):
    yes = "yes"
    no = "no"


class ForgetCallback(CallbackData, prefix="forget"):
    action: ForgetAction


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


def summary_keyboard(event_id: str) -> InlineKeyboardMarkup:
    return _summary_keyboard(event_id, LOCALE.get())


@lru_cache(maxsize=64)
def _summary_keyboard(event_id: str, locale: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("button_confirm"),
        callback_data=SummaryCallback(action=SummaryAction.confirm, event_id=event_id),
    )
    for field in FormField:
        builder.button(
            text=t("button_edit_field", field=t(f"field_{field}")),
            callback_data=SummaryCallback(
                action=SummaryAction.edit, event_id=event_id, field=field
            ),
        )
    builder.button(
        text=t("button_cancel_form"),
        callback_data=SummaryCallback(action=SummaryAction.cancel, event_id=event_id),
    )
    builder.adjust(1, 2, 2, 1, 1)
    return builder.as_markup()


def registration_keyboard(registration_id: int, *, can_change: bool) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    if can_change:
        builder.button(
            text=t("button_change"),
            callback_data=MyCallback(action=MyAction.change, registration_id=registration_id),
        )
    builder.button(
        text=t("button_calendar"),
        callback_data=MyCallback(action=MyAction.calendar, registration_id=registration_id),
    )
    builder.button(
        text=t("button_withdraw"),
        callback_data=MyCallback(action=MyAction.withdraw, registration_id=registration_id),
    )
    builder.adjust(1)
    return builder.as_markup()


def fields_keyboard(registration_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for field in FormField:
        builder.button(
            text=t("button_edit_field", field=t(f"field_{field}")),
            callback_data=MyCallback(
                action=MyAction.change_field, registration_id=registration_id, field=field
            ),
        )
    builder.button(
        text=t("button_back"),
        callback_data=MyCallback(action=MyAction.show, registration_id=registration_id),
    )
    builder.adjust(2, 2, 1, 1)
    return builder.as_markup()


def withdraw_keyboard(registration_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("button_withdraw_yes"),
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
