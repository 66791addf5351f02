"""Pure checks for the form's answers: each returns the normalised value or raises."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers.phonemetadata import PhoneMetadata

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


def clean_text(text: str) -> str:
    return _clean(text)


def _clean(text: str) -> str:
    # Drop control and format characters (NUL, zero-width, RTL overrides) that make a
    # value look different from what it is, then collapse runs of white space. NFC last:
    # text pasted from a PDF may spell "й"/"ё" as a letter plus a combining mark, with a
    # soft hyphen between them that only goes here.
    # A printable text (nearly every answer) has no character the walk below drops or
    # turns into a space: none of the "Other" or "Separator" categories but the ASCII space,
    # so the walk would give it back as it is (tests/test_validation.py compares the two).
    kept = text if text.isprintable() else _visible(text)
    return unicodedata.normalize("NFC", " ".join(kept.split()))


def _visible(text: str) -> str:
    return "".join(
        " " if character.isspace() else character
        for character in text
        if character.isspace() or unicodedata.category(character)[0] != "C"
    )


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


def format_phone_by_parsing(e164: str) -> str:
    """A stored phone for a person: "+7 912 345-67-89", by phonenumbers itself (the reference
    `format_phone` is checked against, and its way for anything unusual)."""
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


class _PhoneRule(NamedTuple):
    leading: re.Pattern[str] | None
    pattern: re.Pattern[str]
    rule: str  # "\\1 \\2-\\3-\\4", as phonenumbers passes it to re.sub
    template: str | None  # the same as str.format template: "{0} {1}-{2}-{3}"


def _format_template(rule: str) -> str | None:
    parts = re.split(r"\\([1-9])", rule)
    literals = parts[::2]
    if any("\\" in literal for literal in literals):
        return None
    escaped = [literal.replace("{", "{{").replace("}", "}}") for literal in literals]
    groups = [f"{{{int(number) - 1}}}" for number in parts[1::2]]
    return "".join(part for pair in zip(escaped, [*groups, ""], strict=True) for part in pair)


@functools.cache
def _international_rules(country_code: int) -> tuple[_PhoneRule, ...]:
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region.upper())
    if metadata is None:
        return ()
    formats = metadata.intl_number_format or metadata.number_format
    return tuple(
        _PhoneRule(
            re.compile(rule.leading_digits_pattern[-1]) if rule.leading_digits_pattern else None,
            re.compile(rule.pattern),
            rule.format,
            _format_template(rule.format),
        )
        for rule in formats
        if rule.pattern is not None and rule.format is not None
    )


def format_phone(e164: str) -> str:
    """A stored phone for a person: "+7 912 345-67-89".

    What `format_phone_by_parsing` gives, about 8× faster (bench/ANALYSIS.md): parsing the
    number anew would dominate a large export, and cost every summary and card ~50 µs. A
    stored phone is E.164 already, so this applies phonenumbers' own INTERNATIONAL rule (the
    first format whose leading digits and pattern fit the national number, then `re.sub`)
    with the patterns compiled once and the substitution as a str.format. Anything unusual
    falls back to `format_phone_by_parsing`; a test checks that both
    agree on every example number phonenumbers has.
    """
    digits = e164[1:]
    if e164[:1] != "+" or not (digits.isascii() and digits.isdigit()) or digits[0] == "0":
        return format_phone_by_parsing(e164)
    # Country calling codes are prefix-free, 1 to 3 digits, never starting with 0.
    for length in (1, 2, 3):
        code = int(digits[:length])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return format_phone_by_parsing(e164)
    national = digits[length:]
    rules = _international_rules(code)
    if not national or not rules:
        return format_phone_by_parsing(e164)
    for leading, pattern, rule, template in rules:
        if leading is not None and not leading.match(national):
            continue
        # phonenumbers takes the first rule whose pattern matches the whole number, then
        # re.sub()s it, which replaces what match() finds first. When that match is the whole
        # number, the rule fits and the result is the template filled with its groups ("" for
        # a group not taken).
        match = pattern.match(national)
        if match is not None and match.end() == len(national) and template is not None:
            return f"+{code} " + template.format(*match.groups(""))
        if pattern.fullmatch(national):
            return f"+{code} {pattern.sub(rule, national)}"
    return f"+{code} {national}"
