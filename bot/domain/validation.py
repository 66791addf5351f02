"""Pure checks for the form's answers: each returns the normalised value or raises."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

# Bounds generous enough for real Russian names and organisation titles
# ("Государственное бюджетное учреждение культуры ... имени ...").
TEXT_LIMITS: dict[str, tuple[int, int]] = {
    "full_name": (2, 150),
    "position": (2, 200),
    "organization": (2, 300),
}
# Longer than any sensible answer: reject before parsing at all.
MAX_INPUT_LENGTH = 1000

# Words of letters joined by runs of separators (spaces, dots, apostrophes, hyphens), any
# separators at the end. Letters and separators are disjoint classes and every quantifier is
# possessive, so a refusal never backtracks: the match is linear in the length. (The earlier
# `[^\W\d_]+(?:[ .'’‘`-]+[^\W\d_]*)*\.?` accepted the same strings but took seconds on
# "Иван" + 24 hyphens + "!", doubling with each hyphen.)
FULL_NAME_PATTERN = re.compile(r"[^\W\d_]++(?:[ .'’‘`-]++[^\W\d_]++)*+[ .'’‘`-]*+")
PHONE_SYMBOLS = re.compile(r"[^\d\s()+\-.]")


@dataclass(frozen=True)
class ValidationError(Exception):
    """`reason` is a key of the text catalogue; `params` fill its placeholders."""

    reason: str
    params: dict[str, Any] = field(default_factory=dict)


def _clean(text: str) -> str:
    # Drop control and format characters (NUL, zero-width, RTL overrides) that make a
    # value look different from what it is, then collapse runs of white space. NFC last:
    # text pasted from a PDF may spell "й"/"ё" as a letter plus a combining mark, with a
    # soft hyphen between them that only goes here.
    kept = "".join(
        " " if character.isspace() else character
        for character in text
        if character.isspace() or unicodedata.category(character)[0] != "C"
    )
    return unicodedata.normalize("NFC", " ".join(kept.split()))


def _too_long(text: str, limit: int) -> None:
    if len(text) > limit:
        raise ValidationError("too_long", {"limit": limit, "length": len(text)})


def validate_text(field_name: str, text: str) -> str:
    minimum, maximum = TEXT_LIMITS[field_name]
    _too_long(text, MAX_INPUT_LENGTH)
    value = _clean(text)
    if not value:
        raise ValidationError("empty")
    _too_long(value, maximum)
    if len(value) < minimum:
        raise ValidationError("too_short", {"minimum": minimum})
    if not any(character.isalpha() for character in value):
        raise ValidationError("no_letters")
    if field_name == "full_name":
        if any(character.isdigit() for character in value):
            raise ValidationError("name_digits")
        if not FULL_NAME_PATTERN.fullmatch(value):
            raise ValidationError("name_symbols")
    return value


def validate_phone(text: str, *, region: str = "RU") -> str:
    """A phone number in E.164 ("+79123456789")."""
    _too_long(text, 50)
    raw = _clean(text)
    if not raw:
        raise ValidationError("empty")
    if PHONE_SYMBOLS.search(raw):
        raise ValidationError("phone_symbols")
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValidationError("phone_unparsable") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError("phone_invalid")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def format_phone(e164: str) -> str:
    """A stored phone for a person: "+7 912 345-67-89"."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def validate_email_address(text: str, *, check_deliverability: bool = False) -> str:
    _too_long(text, 254)
    raw = _clean(text)
    if not raw:
        raise ValidationError("empty")
    if " " in raw:
        raise ValidationError("email_spaces")
    # email-validator explains in English; the common mistakes get a reason of our own.
    local, _, domain = raw.rpartition("@")
    if "@" not in raw:
        raise ValidationError("email_no_at")
    if raw.count("@") > 1:
        raise ValidationError("email_many_at")
    if not local:
        raise ValidationError("email_no_local")
    if "." not in domain:
        raise ValidationError("email_domain")
    try:
        result = validate_email(raw, check_deliverability=check_deliverability)
    except EmailNotValidError:
        raise ValidationError("email_invalid") from None
    return str(result.normalized)


# The largest rowid SQLite gives; a bigger "number" would overflow its integer.
MAX_ROW_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PersonKey:
    """How a request by other channels (a letter, a call) names whose data to erase: one
    of a phone (E.164), an e-mail (casefolded) or a registration number."""

    phone: str | None = None
    email: str | None = None
    registration_id: int | None = None


def parse_person_key(text: str) -> PersonKey:
    """ "+7 912 345-67-89", "8 (912) 345-67-89", "Ivanova@Example.ru", "123", "№123" or
    "#123"; a number of up to nine digits is a registration's (no phone is that short).
    Raises ValidationError("person_key_unclear") for anything else."""
    if len(text) > 300:
        raise ValidationError("person_key_unclear")
    raw = _clean(text)
    number = raw.removeprefix("№").removeprefix("#").strip()
    if number.isascii() and number.isdigit() and (raw != number or len(number) <= 9):
        if 1 <= int(number) <= MAX_ROW_ID:
            return PersonKey(registration_id=int(number))
        raise ValidationError("person_key_unclear")
    if "@" in raw:
        try:
            email = validate_email_address(raw)
        except ValidationError:
            email = raw  # never stored as such: it matches nothing, and the admin is told so
        return PersonKey(email=email.casefold())
    try:
        return PersonKey(phone=validate_phone(raw))
    except ValidationError:
        raise ValidationError("person_key_unclear") from None
