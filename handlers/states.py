"""The conversations' states (aiogram FSM): consent, a state per standard question, one for the
event's own questions, the summary; the admin's broadcast."""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup

from bot.domain.form import FormFields


class Form(StatesGroup):
    consent = State()
    # One of the event's own questions (`[[events.questions]]`): which, in the draft.
    question = State()
    summary = State()


class BroadcastForm(StatesGroup):
    writing = State()
    confirming = State()


_FORM = Form.__full_group_name__


def field_state(field: str) -> State:
    """A standard question's state, named after it ("Form:phone"): a form in progress,
    stored under that name, goes on after an upgrade. Made from the form's table (the bot's
    `FormFields`), not listed in `Form`."""
    return State(field, group_name=_FORM)


def state_field(state: str | None, form: FormFields) -> str | None:
    """The standard question a state asks, if it asks one of `form`."""
    if state is None or not state.startswith(f"{_FORM}:"):
        return None
    field = state[len(_FORM) + 1 :]
    return field if field in form else None


def field_states(form: FormFields) -> tuple[State, ...]:
    return tuple(field_state(field.id) for field in form)


def contact_states(form: FormFields) -> tuple[State, ...]:
    """The states whose question offers "share my number": a shared contact answers them."""
    return tuple(field_state(field.id) for field in form if field.keyboard == "phone")


def form_states(form: FormFields) -> tuple[str, ...]:
    """Every state of the registration form (an unfinished form is one of these)."""
    return (*Form.__all_states_names__, *(state.state or "" for state in field_states(form)))
