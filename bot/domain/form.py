"""The registration form: its questions, its draft, and the rules for each answer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from bot.domain.validation import validate_email_address, validate_phone, validate_text

FIELDS: Final = ("full_name", "position", "organization", "phone", "email")


VALIDATORS: Final[dict[str, Callable[[str], str]]] = {
    "full_name": lambda text: validate_text("full_name", text),
    "position": lambda text: validate_text("position", text),
    "organization": lambda text: validate_text("organization", text),
    "phone": validate_phone,
    "email": validate_email_address,
}


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

    def with_answer(self, field: str, value: str) -> Draft:
        if field not in FIELDS:
            raise ValueError(f"{field!r} is not a question of the form")
        return replace(self, **{field: value})  # type: ignore[arg-type]


_DRAFT_KEYS: Final = tuple(field.name for field in fields(Draft))
