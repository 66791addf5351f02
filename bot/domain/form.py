"""The registration form: its questions, its draft, and the rules for each answer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final, Literal

from bot.domain.validation import (
    MAX_INPUT_LENGTH,
    ValidationError,
    clean_text,
    validate_email_address,
    validate_phone,
    validate_text,
)

# The reply keyboard a standard question comes with: none, or "share my number".
KeyboardKind = Literal["none", "phone"]


@dataclass(frozen=True, slots=True)
class StandardField:
    """A question every session asks, before its own (`Question`). Its texts are `ask_<id>`
    (the question) and `field_<id>` (its name in summaries and buttons) in the catalogue; its
    value is a column of `registrations`."""

    id: str
    validator: Callable[[str], str]
    keyboard: KeyboardKind = "none"


# The standard questions, in the order asked: their states, edit buttons, the summary's lines
# and the card's come from this table.
STANDARD_FIELDS: Final = (
    StandardField("full_name", lambda text: validate_text("full_name", text)),
    StandardField("position", lambda text: validate_text("position", text)),
    StandardField("organization", lambda text: validate_text("organization", text)),
    StandardField("phone", validate_phone, keyboard="phone"),
    StandardField("email", validate_email_address),
)
FIELDS: Final = tuple(field.id for field in STANDARD_FIELDS)
VALIDATORS: Final = {field.id: field.validator for field in STANDARD_FIELDS}
KEYBOARDS: Final = {field.id: field.keyboard for field in STANDARD_FIELDS}


QuestionKind = Literal["text", "choice", "yes_no"]
# What a yes/no question stores, whatever the person pressed or typed (exports count these).
YES, NO = "Да", "Нет"
YES_NO_TYPED: Final = {
    "да": YES, "yes": YES, "д": YES, "y": YES, "нет": NO, "no": NO, "н": NO, "n": NO,
}  # fmt: skip
DEFAULT_MAX_LENGTH = 300


@dataclass(frozen=True, slots=True)
class Question:
    """One of an event's own questions (`[[events.questions]]`), asked after the e-mail."""

    id: str
    text: str
    kind: QuestionKind = "text"
    options: tuple[str, ...] = ()
    required: bool = True
    max_length: int = DEFAULT_MAX_LENGTH
    text_en: str | None = None
    options_en: tuple[str, ...] = ()

    def choices(self) -> tuple[str, ...]:
        """The stored values of its buttons, in order (a yes/no question's too)."""
        return (YES, NO) if self.kind == "yes_no" else self.options


def question_text(question: Question, locale: str = "ru") -> str:
    """The question as the person reads it: English where the file gives it, else Russian."""
    if locale == "en" and question.text_en:
        return question.text_en
    return question.text


def option_labels(question: Question, locale: str = "ru") -> tuple[str, ...]:
    """The buttons' labels; a yes/no question's come from the catalogue (handlers)."""
    if locale == "en" and question.options_en:
        return question.options_en
    return question.options


def validate_answer(question: Question, text: str) -> str:
    """A typed answer: a text within `max_length`, or one of the options (Russian or English,
    any case, or its number), stored as the option's Russian text."""
    if len(text) > MAX_INPUT_LENGTH:
        raise ValidationError("too_long", {"limit": question.max_length, "length": len(text)})
    value = clean_text(text)
    if not value:
        raise ValidationError("empty")
    if question.kind == "text":
        if len(value) > question.max_length:
            raise ValidationError("too_long", {"limit": question.max_length, "length": len(value)})
        return value
    typed = value.casefold()
    if question.kind == "yes_no":
        if typed in YES_NO_TYPED:
            return YES_NO_TYPED[typed]
        raise ValidationError("not_an_option")
    for labels in (question.options, question.options_en):
        for index, label in enumerate(labels):
            if label.casefold() == typed:
                return question.options[index]
    if typed.isdecimal() and 1 <= int(typed) <= len(question.options):
        return question.options[int(typed) - 1]
    raise ValidationError("not_an_option")


@dataclass(frozen=True, slots=True)
class Draft:
    """The FSM data of one conversation. Only JSON types, and only here typed."""

    event_id: str
    # Where the person came from: the source in the session's link (bot/domain/sources.py).
    source: str | None = None
    consent_at: str | None = None  # ISO, UTC
    consent_version: str | None = None
    full_name: str | None = None
    position: str | None = None
    organization: str | None = None
    phone: str | None = None  # E.164
    email: str | None = None
    # The field being changed from the summary; after it, back to the summary.
    editing: str | None = None
    # Set when changing a saved registration (from /me) rather than filling a new one.
    registration_id: int | None = None
    # The session was full when the summary was shown: its confirm joins the waiting list.
    waitlist: bool = False
    # Answers to the event's own questions by question id; "" for one skipped.
    extra: dict[str, str] | None = None
    # The index (in the event's questions) of the event question being asked, if one is.
    question: int | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Draft:
        return cls(**{key: value for key, value in data.items() if key in _DRAFT_KEYS})

    def to_data(self) -> dict[str, Any]:
        # Every field is a JSON scalar: no deep copy (dataclasses.asdict) needed.
        return {key: getattr(self, key) for key in _DRAFT_KEYS}

    def answers(self) -> dict[str, str]:
        return {name: getattr(self, name) or "" for name in FIELDS}

    def next_question(self) -> str | None:
        """The next field to ask, or None when the summary is due."""
        if self.editing is not None:
            return None
        return next((name for name in FIELDS if getattr(self, name) is None), None)

    def extra_answers(self) -> dict[str, str]:
        return dict(self.extra or {})

    def next_extra(self, questions: tuple[Question, ...]) -> int | None:
        """The index of the next event question to ask, once the standard ones are done."""
        if self.editing is not None:
            return None
        extra = self.extra or {}
        return next((i for i, q in enumerate(questions) if q.id not in extra), None)

    def with_extra(self, question: Question, value: str) -> Draft:
        return replace(self, extra={**(self.extra or {}), question.id: value})

    def with_answer(self, field: str, value: str) -> Draft:
        if field not in FIELDS:
            raise ValueError(f"{field!r} is not a question of the form")
        return replace(self, **{field: value})  # type: ignore[arg-type]


_DRAFT_KEYS: Final = tuple(field.name for field in fields(Draft))
