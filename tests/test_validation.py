import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain import validation
from bot.domain.texts import entries
from bot.domain.validation import (
    MAX_INPUT_LENGTH,
    TEXT_LIMITS,
    ValidationError,
    format_phone,
    validate_email_address,
    validate_phone,
    validate_text,
)


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("full_name", "Иванова Мария Петровна", "Иванова Мария Петровна"),
        ("full_name", "  Иванов   Иван\tИванович \n", "Иванов Иван Иванович"),
        ("full_name", "Ива\u200bнов Иван", "Иванов Иван"),
        ("full_name", "Ив\x00анов Иван", "Иванов Иван"),
        ("full_name", "\u202eИванов Иван\u202c", "Иванов Иван"),
        ("full_name", "\ufeffИванов\u2060 Иван", "Иванов Иван"),
        ("full_name", "Салтыков-Щедрин Михаил Евграфович", "Салтыков-Щедрин Михаил Евграфович"),
        ("full_name", "O'Connor Sinead", "O'Connor Sinead"),
        ("full_name", "Д’Артаньян Шарль", "Д’Артаньян Шарль"),
        ("full_name", "John Smith", "John Smith"),
        ("full_name", "Петров И. И.", "Петров И. И."),
        ("full_name", "Ёлкин Андрей", "Ёлкин Андрей"),
        # Pasted text may spell "Ё"/"й" as a letter plus a combining mark.
        ("full_name", unicodedata.normalize("NFD", "Ёлкин Андрей"), "Ёлкин Андрей"),
        ("full_name", "Ли", "Ли"),
        ("position", "Главный специалист-эксперт", "Главный специалист-эксперт"),
        ("position", "  Директор  ГБУК №2 ", "Директор ГБУК №2"),
        ("position", "IT-специалист 1 категории", "IT-специалист 1 категории"),
        (
            "organization",
            'АНО "Ресурсный центр" (г. Саратов)',
            'АНО "Ресурсный центр" (г. Саратов)',
        ),
        ("organization", "МБОУ СОШ № 5", "МБОУ СОШ № 5"),
        ("full_name", "а" * 150, "а" * 150),
        ("position", "а" * 200, "а" * 200),
        ("organization", "а" * 300, "а" * 300),
        ("organization", " " * 500 + "а" * 300, "а" * 300),
    ],
)
def test_validate_text_returns_normalised_value_when_valid(
    field: str, text: str, expected: str
) -> None:
    assert validate_text(field, text) == expected


@pytest.mark.parametrize(
    ("field", "text", "reason", "params"),
    [
        ("full_name", "", "empty", {}),
        ("full_name", "   \t\n ", "empty", {}),
        ("full_name", "\u200b\u200b", "empty", {}),
        ("full_name", "И", "too_short", {"minimum": 2}),
        ("position", " Я ", "too_short", {"minimum": 2}),
        ("organization", "\x00А\u200b", "too_short", {"minimum": 2}),
        ("full_name", "а" * 151, "too_long", {"limit": 150, "length": 151}),
        ("position", "а" * 201, "too_long", {"limit": 200, "length": 201}),
        ("organization", "а" * 301, "too_long", {"limit": 300, "length": 301}),
        ("full_name", "а" * 5000, "too_long", {"limit": MAX_INPUT_LENGTH, "length": 5000}),
        ("organization", "\x00" * 5000, "too_long", {"limit": MAX_INPUT_LENGTH, "length": 5000}),
        ("full_name", "12", "no_letters", {}),
        ("position", "---", "no_letters", {}),
        ("organization", "№ 5", "no_letters", {}),
        ("full_name", "Иванов Иван 2", "name_digits", {}),
        ("full_name", "Иван0в Иван", "name_digits", {}),
        ("full_name", "Иванов Иван!", "name_symbols", {}),
        ("full_name", "Иванов@Иван", "name_symbols", {}),
        ("full_name", "Иванов_Иван", "name_symbols", {}),
        ("full_name", "-Иванов Иван", "name_symbols", {}),
        ("full_name", "Иванов, Иван", "name_symbols", {}),
        ("full_name", "<b>Иванов</b>", "name_symbols", {}),
    ],
)
def test_validate_text_rejects_with_reason_when_invalid(
    field: str, text: str, reason: str, params: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_text(field, text)

    assert caught.value.reason == reason
    assert caught.value.params == params


def test_validate_text_rejects_huge_input_before_cleaning_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def must_not_run(text: str) -> str:
        raise AssertionError("a 5000-character input must be rejected before cleaning")

    monkeypatch.setattr(validation, "_clean", must_not_run)

    with pytest.raises(ValidationError) as caught:
        validate_text("full_name", "Иван " * 1000)

    assert caught.value.reason == "too_long"


@pytest.mark.parametrize("field", sorted(TEXT_LIMITS))
def test_validate_text_accepts_bounds_exactly_when_at_limits(field: str) -> None:
    minimum, maximum = TEXT_LIMITS[field]

    assert validate_text(field, "Я" * minimum) == "Я" * minimum
    assert validate_text(field, "Я" * maximum) == "Я" * maximum


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8 (912) 345-67-89", "+79123456789"),
        ("+7 912 345 67 89", "+79123456789"),
        ("89123456789", "+79123456789"),
        ("+7 (912) 345-67-89", "+79123456789"),
        ("  +7\u200b912.345.67.89 ", "+79123456789"),
        ("8 (8452) 12-34-56", "+78452123456"),
        ("+375 29 123-45-67", "+375291234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 650 253 0000", "+16502530000"),
    ],
)
def test_validate_phone_returns_e164_when_valid(text: str, expected: str) -> None:
    assert validate_phone(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("12345", "phone_invalid"),
        ("+7 912 345 67", "phone_invalid"),
        ("+7 000 000 00 00", "phone_invalid"),
        ("+7 912 345 67 89 00", "phone_invalid"),
        ("abc", "phone_symbols"),
        ("+7 (912) 345-67-89 доб. 5", "phone_symbols"),
        ("+7 912 345 67 89, +7 912 345 67 80", "phone_symbols"),
        ("()", "phone_unparsable"),
        ("", "empty"),
        ("   ", "empty"),
        ("+7 912 345 67 89" * 10, "too_long"),
    ],
)
def test_validate_phone_rejects_with_reason_when_invalid(text: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_phone(text)

    assert caught.value.reason == reason


def test_validate_phone_uses_region_when_number_has_no_country_code() -> None:
    assert validate_phone("029 123-45-67", region="BY") == "+375291234567"


@pytest.mark.parametrize(
    ("e164", "expected"),
    [
        ("+79123456789", "+7 912 345-67-89"),
        ("+375291234567", "+375 29 123-45-67"),
        ("+442079460958", "+44 20 7946 0958"),
        ("+16502530000", "+1 650-253-0000"),
        ("not a phone", "not a phone"),
    ],
)
def test_format_phone_groups_digits_for_people(e164: str, expected: str) -> None:
    assert format_phone(e164) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ivan@example.ru", "ivan@example.ru"),
        ("  Ivan.Petrov@Example.RU ", "Ivan.Petrov@example.ru"),
        ("ivan@\u200bexample.ru", "ivan@example.ru"),
        ("first+tag@mail.example.com", "first+tag@mail.example.com"),
        ("почта@пример.рф", "почта@пример.рф"),
        ("Почта@ПРИМЕР.РФ", "Почта@пример.рф"),
    ],
)
def test_validate_email_address_returns_normalised_value_when_valid(
    text: str, expected: str
) -> None:
    assert validate_email_address(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" \u200b ", "empty"),
        ("ivan.example.ru", "email_no_at"),
        ("ivan@petrov@example.ru", "email_many_at"),
        ("@example.ru", "email_no_local"),
        ("ivan@localhost", "email_domain"),
        ("ivan@", "email_domain"),
        ("ivan petrov@example.ru", "email_spaces"),
        ("ivan@example .ru", "email_spaces"),
        ("a..b@example.ru", "email_invalid"),
        ("ivan@example..ru", "email_invalid"),
        ("ivan@-example.ru", "email_invalid"),
        ("ivan@example.ru.", "email_invalid"),
        ("a" * 250 + "@example.ru", "too_long"),
    ],
)
def test_validate_email_address_rejects_with_reason_when_invalid(text: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_email_address(text)

    assert caught.value.reason == reason


def test_validation_reasons_have_texts_when_raised_anywhere_in_module() -> None:
    source = Path(validation.__file__).read_text(encoding="utf-8")
    reasons = set(re.findall(r'ValidationError\(\s*"(\w+)"', source))

    assert reasons >= {"empty", "too_long", "too_short", "phone_invalid", "email_invalid"}
    assert sorted(reason for reason in reasons if f"reason_{reason}" not in entries("ru")) == []


def _clean_by_each_character(text: str) -> str:
    # bot/domain/validation.py's cleaning without its short way for printable text.
    kept = "".join(
        " " if character.isspace() else character
        for character in text
        if character.isspace() or unicodedata.category(character)[0] != "C"
    )
    return unicodedata.normalize("NFC", " ".join(kept.split()))


@pytest.mark.parametrize(
    "text",
    [
        "Иванова  Мария",
        "Иван\u00a0Петров",  # no-break space: a separator, not printable
        "Ива\u200bнова",  # zero-width space: a format character
        "Ива\u00adнова",  # soft hyphen
        "и\u0306",  # й as a letter and a combining mark: printable, not NFC
        "line\u2028break\u2029",
        "\x00\x1f\x7f\x85",
        "\u202eRTL",
        "",
        " ",
    ],
)
def test_cleaning_printable_text_the_short_way_gives_what_the_walk_gives(text: str) -> None:
    assert validation._clean(text) == _clean_by_each_character(text)


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=60))
def test_cleaning_any_text_gives_what_the_walk_gives(text: str) -> None:
    assert validation._clean(text) == _clean_by_each_character(text)
