"""Every user-facing text, in one gettext catalogue per language.

The sources are `bot/locales/<language>/LC_MESSAGES/bot.po`; each is compiled with Babel the
first time it is needed (at start-up, in memory), so there is no compiled file to rebuild or to
forget. The msgids are the keys (`ask_phone`), not the Russian texts: a key says where a text
is used, a call site stays `t("ask_phone")` whatever the wording, and a change of a Russian
sentence does not orphan its translations. A text that depends on a number is an ngettext
entry (`msgid_plural`), its forms chosen by the language's plural rule, which Babel writes into
the catalogue's header from CLDR: 1 день, 2 дня, 5 дней, 21 день; 1 day, 2 days.

Handlers call `t(key, **params)` (or `tn(key, n, **params)`); they never hold a text.
Parameters are HTML-escaped here, in one place, so a value a person typed ("<b>Иван</b> & Co")
is always shown as typed. A fragment that is already HTML (built from escaped parts) is passed
wrapped in `Html`. The language is the `LOCALE` context variable: a middleware sets it for an
update from the person's choice; whatever runs outside an update (the sender, digest,
reminders, exports) sets it explicitly with `use_locale`.
"""

from __future__ import annotations

import gettext
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from html import escape
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "bot"
DEFAULT_LOCALE = "ru"


def found_languages(folder: Path) -> tuple[str, ...]:
    """The languages with a catalogue in `folder` (`<code>/LC_MESSAGES/bot.po`), the
    default first, then by code."""
    codes = {path.parent.parent.name for path in folder.glob(f"*/LC_MESSAGES/{DOMAIN}.po")}
    return (DEFAULT_LOCALE, *sorted(codes - {DEFAULT_LOCALE}))


# The languages a person can choose (/language lists them), the first the default: those
# whose catalogue is there when the bot starts. A third language is its `.po` file, and what
# README's "Languages" lists besides.
LANGUAGES = found_languages(LOCALES_DIR)
LOCALE: ContextVar[str] = ContextVar("LOCALE", default=DEFAULT_LOCALE)


class Html(str):
    """A fragment that is already safe HTML."""

    __slots__ = ()


def po_path(locale: str) -> Path:
    return LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(locale: str) -> Catalog:
    with po_path(locale).open("rb") as source:
        return read_po(source, locale=locale, domain=DOMAIN, abort_invalid=True)


def entries(locale: str) -> dict[str, tuple[str, ...]]:
    """Each key's text (a plural entry: its forms), as the `.po` source has them."""
    found: dict[str, tuple[str, ...]] = {}
    for message in read_catalog(locale):
        key = message.id[0] if isinstance(message.id, tuple | list) else message.id
        forms = message.string if isinstance(message.string, tuple | list) else (message.string,)
        if key:
            found[str(key)] = tuple(str(form or "") for form in forms)
    return found


def plural_keys(locale: str = DEFAULT_LOCALE) -> frozenset[str]:
    return frozenset(
        message.id[0] for message in read_catalog(locale) if isinstance(message.id, tuple)
    )


@cache
def translations(locale: str) -> gettext.GNUTranslations:
    """The language's catalogue, compiled from its `.po` source once per process."""
    catalog = read_catalog(locale)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


class CatalogueError(Exception):
    """A `.po` file that cannot be read: one line naming the file and what is wrong."""


def load_catalogues() -> None:
    """Compile every language's catalogue now, at start-up, so that a broken `.po` file stops
    the bot at once, with one line, rather than at the first message in that language."""
    for locale in LANGUAGES:
        try:
            translations(locale)
        except Exception as error:  # Babel's and gettext's errors have no common base
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CatalogueError(f"{po_path(locale)}: {reason}") from None


def language_of(code: str | None) -> str:
    """The language for a Telegram `language_code` ("en-GB" → "en"); Russian otherwise."""
    base = (code or "").split("-")[0].lower()
    return base if base in LANGUAGES else DEFAULT_LOCALE


@contextmanager
def use_locale(locale: str) -> Iterator[None]:
    """Texts made inside are in `locale`: for work outside an update, which has no person's
    language to go by (cards, digests, exports in the organisers' language)."""
    token = LOCALE.set(locale)
    try:
        yield
    finally:
        LOCALE.reset(token)


def _render(template: str, params: dict[str, Any]) -> str:
    safe = {
        # Telegram's HTML needs <, > and & escaped (aiogram's html.quote does the same); the
        # standard library keeps this module, and the server-side export, free of aiogram.
        name: value if isinstance(value, Html) else escape(str(value), quote=False)
        for name, value in params.items()
    }
    return template.format(**safe)


def template(key: str, locale: str | None = None) -> str:
    text = translations(locale or LOCALE.get()).gettext(key)
    # gettext answers a missing msgid with the msgid itself; no text is its own key.
    if text == key:
        raise KeyError(key)
    return text


def t(key: str, /, **params: Any) -> str:
    """The text for `key` in the current locale, with parameters escaped."""
    return _render(template(key), params)


def tn(key: str, n: int, /, **params: Any) -> str:
    """The plural text for `key` in the form the number `n` takes, parameters escaped."""
    text = translations(LOCALE.get()).ngettext(key, key, n)
    if text == key:
        raise KeyError(key)
    return _render(text, params)


def th(key: str, /, **params: Any) -> Html:
    """`t` for a fragment that goes into another text."""
    return Html(t(key, **params))


def quantity(n: int, unit: str) -> str:
    """`n` with the catalogue's noun `unit` in its form: "30 дней", "1 day"."""
    return tn(unit, n, n=n)
