from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from string import Formatter
from zoneinfo import ZoneInfo

import pytest

from bot.domain import render as render_module
from bot.domain.events import parse_events
from bot.domain.render import event_card
from bot.domain.texts import (
    DEFAULT_LOCALE,
    LANGUAGES,
    LOCALE,
    Html,
    entries,
    language_of,
    plural_keys,
    quantity,
    t,
    th,
    tn,
    use_locale,
)
from tests.helpers import EVENTS_TOML, MOSCOW

# Telegram's limit for one message's text, counted after entity parsing; the raw
# template is a safe upper bound.
MESSAGE_LIMIT = 4096

RU = {key: forms[0] for key, forms in entries("ru").items()}
PLURALS = sorted(plural_keys())
NUMBERS = (0, 1, 2, 5, 11, 21, 22, 25, 111)


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
    with pytest.raises(KeyError):
        tn("no_such_text", 2)


def test_t_speaks_the_locale_set_and_russian_by_default() -> None:
    assert LOCALE.get() == DEFAULT_LOCALE
    assert t("button_confirm") == "✅ Подтвердить"
    with use_locale("en"):
        assert t("button_confirm") == "✅ Confirm"
    assert t("button_confirm") == "✅ Подтвердить"


@pytest.mark.parametrize(
    ("code", "expected"),
    [("en", "en"), ("en-GB", "en"), ("EN-us", "en"), ("ru", "ru"), ("de", "ru"), (None, "ru")],
)
def test_language_of_telegram_code_is_english_when_it_starts_with_en(
    code: str | None, expected: str
) -> None:
    assert language_of(code) == expected


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalogue_has_every_key_with_the_same_placeholders(language: str) -> None:
    catalogue = entries(language)

    assert catalogue.keys() == RU.keys(), language
    for key, forms in catalogue.items():
        for form in forms:
            assert form, f"{language}: {key} is empty"
            assert sorted(map(str, fields(form))) == sorted(map(str, fields(RU[key]))), (
                f"{language}: {key}"
            )


@pytest.mark.parametrize("key", sorted(RU))
def test_template_fields_are_named_placeholders(key: str) -> None:
    for name in fields(RU[key]):
        assert name, f"{key}: positional placeholder {{}}"
        assert name.isidentifier(), f"{key}: {{{name}}} is not a plain keyword field"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("key", sorted(RU))
def test_template_formats_when_all_fields_given(language: str, key: str) -> None:
    params = {str(name): f"<{name}>" for name in fields(RU[key])}

    with use_locale(language):
        text = tn(key, 5, **params) if key in PLURALS else t(key, **params)

    for name in params:
        assert f"&lt;{name}&gt;" in text
    assert "{" not in text.replace("{{", "")


@pytest.mark.parametrize("language", LANGUAGES)
def test_template_fits_one_telegram_message(language: str) -> None:
    for key, forms in entries(language).items():
        assert all(len(form) <= MESSAGE_LIMIT for form in forms), key


def test_plural_texts_are_the_same_in_every_language() -> None:
    for language in LANGUAGES:
        assert plural_keys(language) == frozenset(PLURALS), language


# Every plural text, in every language, after each number whose form differs somewhere:
# Russian 1 / 2-4 / 5-20 / 21 / 22 / 25 / 111, English 1 / the rest.
RUSSIAN_FORM = {0: 2, 1: 0, 2: 1, 5: 2, 11: 2, 21: 0, 22: 1, 25: 2, 111: 2}
ENGLISH_FORM = {n: 0 if n == 1 else 1 for n in NUMBERS}
FORM = {"ru": RUSSIAN_FORM, "en": ENGLISH_FORM}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("key", PLURALS)
@pytest.mark.parametrize("n", NUMBERS)
def test_plural_text_takes_the_form_of_its_number(language: str, key: str, n: int) -> None:
    forms = entries(language)[key]
    params = {str(name): n for name in fields(forms[0])}

    with use_locale(language):
        text = tn(key, n, **params)

    assert text == forms[FORM[language][n]].format(**params)


@pytest.mark.parametrize(
    ("language", "n", "expected"),
    [
        ("ru", 0, "0 дней"),
        ("ru", 1, "1 день"),
        ("ru", 2, "2 дня"),
        ("ru", 5, "5 дней"),
        ("ru", 11, "11 дней"),
        ("ru", 21, "21 день"),
        ("ru", 22, "22 дня"),
        ("ru", 25, "25 дней"),
        ("ru", 111, "111 дней"),
        ("en", 0, "0 days"),
        ("en", 1, "1 day"),
        ("en", 2, "2 days"),
        ("en", 21, "21 days"),
        ("en", 111, "111 days"),
    ],
)
def test_quantity_writes_the_number_with_its_noun(language: str, n: int, expected: str) -> None:
    with use_locale(language):
        assert quantity(n, "unit_days") == expected


@pytest.mark.parametrize(
    ("language", "n", "expected"),
    [
        ("ru", 1, "✅ Выгрузка готова: 1 строка, файлы CSV и Excel ниже."),
        ("ru", 2, "✅ Выгрузка готова: 2 строки, файлы CSV и Excel ниже."),
        ("ru", 5, "✅ Выгрузка готова: 5 строк, файлы CSV и Excel ниже."),
        ("ru", 21, "✅ Выгрузка готова: 21 строка, файлы CSV и Excel ниже."),
        ("en", 1, "✅ The export is ready: 1 row, CSV and Excel files below."),
        ("en", 2, "✅ The export is ready: 2 rows, CSV and Excel files below."),
    ],
)
def test_plural_sentence_agrees_with_its_number(language: str, n: int, expected: str) -> None:
    with use_locale(language):
        assert tn("export_done", n, rows=n) == expected


def test_a_broken_catalogue_is_one_line_naming_its_file(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.domain.texts as texts

    for language in LANGUAGES:
        folder = tmp_path / language / "LC_MESSAGES"
        folder.mkdir(parents=True)
        (folder / "bot.po").write_bytes(texts.po_path(language).read_bytes())
    broken = tmp_path / "en" / "LC_MESSAGES" / "bot.po"
    broken.write_text(broken.read_text(encoding="utf-8") + '\nmsgid "oops\n', encoding="utf-8")
    monkeypatch.setattr(texts, "LOCALES_DIR", tmp_path)
    texts.translations.cache_clear()
    try:
        with pytest.raises(texts.CatalogueError) as raised:
            texts.load_catalogues()
    finally:
        monkeypatch.undo()
        texts.translations.cache_clear()

    message = str(raised.value)
    assert message.startswith(f"{broken}: ")
    assert "\n" not in message


def test_an_event_card_made_once_is_each_time_the_card_made_afresh() -> None:
    # bot/domain/render.py makes a session's card once per language and kind: every card
    # handed out must be the one made for that very session, language and kind.
    [event] = parse_events(EVENTS_TOML, file=Path("events.toml"), default_zone=MOSCOW)
    variants = (
        event,
        replace(event, title="Другая & сессия"),
        replace(event, location="Зал <2>"),
        replace(event, starts_at=event.starts_at + timedelta(hours=1)),
        replace(event, registration_deadline=event.registration_deadline - timedelta(days=1)),
        replace(event, join_url="https://example.org/other"),
        replace(event, timezone=ZoneInfo("Asia/Yekaterinburg")),
    )
    for _ in range(2):  # the second time from what was made the first
        for variant in variants:
            for language in ("ru", "en"):
                for deadline in (False, True):
                    for join_url in (False, True):
                        with use_locale(language):
                            made = event_card(variant, deadline=deadline, join_url=join_url)
                            afresh = render_module._event_card(
                                variant, deadline=deadline, join_url=join_url
                            )
                        assert made == afresh, (variant, language, deadline, join_url)
