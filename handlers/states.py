"""The conversations' states (aiogram FSM): one state per question of the form; the admin's
broadcast."""

from __future__ import annotations

from typing import Final

from aiogram.fsm.state import State, StatesGroup

from bot.domain.form import FIELDS


class Form(StatesGroup):
    consent = State()
    full_name = State()
    position = State()
    organization = State()
    phone = State()
    email = State()
    # One of the event's own questions (`[[events.questions]]`): which, in the draft.
    question = State()
    summary = State()


class BroadcastForm(StatesGroup):
    writing = State()
    confirming = State()


FIELD_STATES: Final[dict[str, State]] = {name: getattr(Form, name) for name in FIELDS}
STATE_FIELDS: Final[dict[str | None, str]] = {
    state.state: name for name, state in FIELD_STATES.items()
}
