"""The conversations' states (aiogram FSM): one state per question of the form; the admin's
broadcast."""

from __future__ import annotations

from typing import Final

from aiogram.fsm.state import State, StatesGroup

from bot.domain.form import FIELDS, KEYBOARDS


class Form(StatesGroup):
    consent = State()
    # A state per standard question, from the form's table, named after it ("Form:phone"):
    # a form in progress, stored under that name, goes on after an upgrade.
    locals().update({name: State() for name in FIELDS})
    # One of the event's own questions (`[[events.questions]]`): which, in the draft.
    question = State()
    summary = State()


class BroadcastForm(StatesGroup):
    writing = State()
    confirming = State()


FIELD_STATES: Final[dict[str, State]] = {name: getattr(Form, name) for name in FIELDS}
# The states whose question offers "share my number": a shared contact answers them.
CONTACT_STATES: Final = tuple(FIELD_STATES[name] for name in FIELDS if KEYBOARDS[name] == "phone")
STATE_FIELDS: Final[dict[str | None, str]] = {
    state.state: name for name, state in FIELD_STATES.items()
}
