from string import Formatter

import pytest

from bot.domain.texts import CATALOGUES, RU, Html, plural, quantity, t, th

# Telegram's limit for one message's text, counted after entity parsing; the raw
# template is a safe upper bound.
MESSAGE_LIMIT = 4096


def fields(template: str) -> list[str | None]:
    return [name for _, name, _, _ in Formatter().parse(template) if name is not None]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<b>Иван</b> & Co", "&lt;b&gt;Иван&lt;/b&gt; &amp; Co"),
        ('"O\'Connor"', '"O\'Connor"'),  # Telegram needs only &lt; &gt; &amp;
        ("{title}", "{title}"),
        (42, "42"),
    ],
)
def test_t_escapes_parameter_when_plain_value(value: object, expected: str) -> None:
    assert t("event_description", description=value) == expected


def test_t_escapes_every_parameter_when_several_given() -> None:
    text = t("answer_line", question="<i>Иван</i> & <script>", answer="+7 <912>")

    assert "<i>Иван" not in text
    assert "&lt;i&gt;Иван&lt;/i&gt; &amp; &lt;script&gt;" in text
    assert "+7 &lt;912&gt;" in text
    assert text.startswith("<b>")


def test_t_passes_html_parameter_unescaped_when_wrapped() -> None:
    card = Html("<b>Сессия</b> &amp; практика")

    assert t("greeting", card=card).endswith("\n\n<b>Сессия</b> &amp; практика")


def test_th_returns_html_that_nests_unescaped() -> None:
    card = th("event_card", title="A & B", when="24 ноября", location="<Онлайн>")

    assert isinstance(card, Html)
    assert t("greeting", card=card).endswith("<b>A &amp; B</b>\n📅 24 ноября\n📍 &lt;Онлайн&gt;")


def test_t_raises_key_error_when_key_unknown() -> None:
    with pytest.raises(KeyError):
        t("no_such_text")


@pytest.mark.parametrize("key", sorted(RU))
def test_template_fields_are_named_placeholders(key: str) -> None:
    for name in fields(RU[key]):
        assert name, f"{key}: positional placeholder {{}}"
        assert name.isidentifier(), f"{key}: {{{name}}} is not a plain keyword field"


@pytest.mark.parametrize("key", sorted(RU))
def test_template_formats_when_all_fields_given(key: str) -> None:
    params = {str(name): f"<{name}>" for name in fields(RU[key])}

    text = t(key, **params)

    for name in params:
        assert f"&lt;{name}&gt;" in text
    assert "{" not in text.replace("{{", "")


@pytest.mark.parametrize("key", sorted(RU))
def test_template_fits_one_telegram_message(key: str) -> None:
    assert len(RU[key]) <= MESSAGE_LIMIT


def test_catalogues_share_keys_when_several_languages() -> None:
    for language, catalogue in CATALOGUES.items():
        assert catalogue.keys() == RU.keys(), language


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "дней"),
        (1, "день"),
        (2, "дня"),
        (4, "дня"),
        (5, "дней"),
        (11, "дней"),
        (12, "дней"),
        (14, "дней"),
        (21, "день"),
        (22, "дня"),
        (25, "дней"),
        (101, "день"),
        (111, "дней"),
        (112, "дней"),
        (1001, "день"),
        (3650, "дней"),
        (-1, "день"),
    ],
)
def test_plural_picks_the_russian_form_after_a_number(n: int, expected: str) -> None:
    assert plural(n, "день", "дня", "дней") == expected


@pytest.mark.parametrize(("n", "expected"), [(1, "1 день"), (3, "3 дня"), (30, "30 дней")])
def test_quantity_writes_the_number_with_the_catalogues_noun(n: int, expected: str) -> None:
    assert quantity(n, "unit_days") == expected


@pytest.mark.parametrize("key", [key for key in sorted(RU) if key.startswith("unit_")])
def test_units_give_three_forms(key: str) -> None:
    assert len(RU[key].split("|")) == 3
