"""The registration form: its questions, its draft, and the rules for each answer."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
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

# The standard questions kept in columns of `registrations` (read by /find, the digest and
# the CSV export's stored text); any other is stored in `answers` under its id.
COLUMN_FIELDS: Final = ("full_name", "position", "organization", "phone", "email")
# A standard question's id: its texts' keys, its state ("Form:<id>") and its edit buttons'
# data, which Telegram holds to 64 bytes ("summary:edit:<event id of 32>:<id>:").
FIELD_ID_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{0,15}")
# The form's other states (handlers/states.py): no question may take their names.
RESERVED_IDS: Final = ("consent", "question", "summary")
DEFAULT_MAX_LENGTH = 300


def text_within(text: str, limit: int) -> str:
    """A text answer, cleaned: not empty, at most `limit` characters."""
    if len(text) > MAX_INPUT_LENGTH:
        raise ValidationError("too_long", {"limit": limit, "length": len(text)})
    value = clean_text(text)
    if not value:
        raise ValidationError("empty")
    if len(value) > limit:
        raise ValidationError("too_long", {"limit": limit, "length": len(value)})
    return value


def short_text(text: str) -> str:
    """A standard question's answer unless its entry names a check: a text of at most
    DEFAULT_MAX_LENGTH characters."""
    return text_within(text, DEFAULT_MAX_LENGTH)


@dataclass(frozen=True, slots=True)
class StandardField:
    """A question every session asks, before its own (`Question`). Its texts are `ask_<id>`
    (the question) and `field_<id>` (its name in summaries, cards, buttons and the export's
    header) in the catalogue. Its value is a column of `registrations` when the id names one
    (COLUMN_FIELDS), else a row of `answers` under its id, written with the registration."""

    id: str
    validator: Callable[[str], str] = short_text
    keyboard: KeyboardKind = "none"

    @property
    def column(self) -> bool:
        return self.id in COLUMN_FIELDS


# The standard questions, in the order asked: their states, edit buttons, the summary's,
# /me's and the card's lines and the export's columns come from this table. A new one is an
# entry here plus its two texts (README, "How to add a standard field").
STANDARD_FIELDS: Final = (
    StandardField("full_name", lambda text: validate_text("full_name", text)),
    StandardField("position", lambda text: validate_text("position", text)),
    StandardField("organization", lambda text: validate_text("organization", text)),
    StandardField("phone", validate_phone, keyboard="phone"),
    StandardField("email", validate_email_address),
)


class FormFields:
    """The standard questions of a running bot: STANDARD_FIELDS, or the table given to
    `create_dispatcher` (tests add a sixth that way)."""

    def __init__(self, fields: Iterable[StandardField] = STANDARD_FIELDS) -> None:
        self.fields = tuple(fields)
        self.ids = tuple(field.id for field in self.fields)
        for field in self.fields:
            if not FIELD_ID_PATTERN.fullmatch(field.id) or field.id in RESERVED_IDS:
                raise ValueError(
                    f"standard field {field.id!r}: use a Latin letter, then up to 15 lowercase "
                    f"letters, digits or '_', other than {', '.join(RESERVED_IDS)}"
                )
            if self.ids.count(field.id) > 1:
                raise ValueError(f"standard field {field.id!r}: listed twice")
        self._by_id = {field.id: field for field in self.fields}
        # Stored in `answers` under their ids: not columns of `registrations`.
        self.in_answers = tuple(field.id for field in self.fields if not field.column)

    def __iter__(self) -> Iterator[StandardField]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __contains__(self, field_id: object) -> bool:
        return field_id in self._by_id

    def __getitem__(self, field_id: str) -> StandardField:
        return self._by_id[field_id]

    def number(self, field_id: str) -> int:
        """The question's step in the form, from 1."""
        return self.ids.index(field_id) + 1

    def values(self, columns: object, stored: Mapping[str, str]) -> dict[str, str]:
        """Each field's value ("" if none), in order: a column's the attribute of `columns` (a
        draft, a registration), the others from `stored` (answers by id)."""
        return {
            field.id: (getattr(columns, field.id) if field.column else stored.get(field.id)) or ""
            for field in self.fields
        }

    def answers(self, values: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """What goes into `answers` of these values: the fields not kept in columns."""
        return tuple((key, values[key]) for key in self.in_answers if values.get(key))


FORM: Final = FormFields()
# The default table's ids and checks (tests and benchmarks read them).
FIELDS: Final = FORM.ids
VALIDATORS: Final = {field.id: field.validator for field in STANDARD_FIELDS}


QuestionKind = Literal["text", "choice", "yes_no"]
# What a yes/no question stores, whatever the person pressed or typed (exports count these).
YES, NO = "Да", "Нет"
YES_NO_TYPED: Final = {
    "да": YES, "yes": YES, "д": YES, "y": YES, "нет": NO, "no": NO, "н": NO, "n": NO,
}  # fmt: skip


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
    if question.kind == "text":
        return text_within(text, question.max_length)
    if len(text) > MAX_INPUT_LENGTH:
        raise ValidationError("too_long", {"limit": question.max_length, "length": len(text)})
    value = clean_text(text)
    if not value:
        raise ValidationError("empty")
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
    # Answers to the standard questions not kept in columns (`StandardField.column`), by id.
    more: dict[str, str] | None = None
    # The index (in the event's questions) of the event question being asked, if one is.
    question: int | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Draft:
        return cls(**{key: value for key, value in data.items() if key in _DRAFT_KEYS})

    def to_data(self) -> dict[str, Any]:
        # Every field is a JSON scalar: no deep copy (dataclasses.asdict) needed.
        return {key: getattr(self, key) for key in _DRAFT_KEYS}

    def value(self, field: str) -> str | None:
        """A standard question's answer; None while unanswered."""
        if field in COLUMN_FIELDS:
            value: str | None = getattr(self, field)
            return value
        return (self.more or {}).get(field)

    def answers(self, form: FormFields) -> dict[str, str]:
        return form.values(self, self.more or {})

    def next_question(self, form: FormFields) -> str | None:
        """The next field to ask, or None when the summary is due."""
        if self.editing is not None:
            return None
        return next((field for field in form.ids if self.value(field) is None), None)

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
        if field in COLUMN_FIELDS:
            return replace(self, **{field: value})  # type: ignore[arg-type]
        return replace(self, more={**(self.more or {}), field: value})


_DRAFT_KEYS: Final = tuple(field.name for field in fields(Draft))
