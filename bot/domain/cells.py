"""What each cell of an export holds: the one rule, for CSV and XLSX alike.

Kept apart from the writers (storage/export/) because the storage layer uses it too: the
registrant's own values are stored as CSV text when they are written (`registrant_csv`), so an
export of 100,000 rows does not redo this row by row.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Sequence

# Excel opens a .csv by double-click with the system's list separator, which is ";" wherever
# the decimal separator is "," (ru-RU among them): with "," every row would land in one
# column. A "sep=;" first line would force it too, but Excel then ignores the BOM and shows
# Cyrillic as mojibake, so the separator is ";" and the BOM stays.
CSV_DELIMITER = ";"

# Line breaks, tabs and every other control character (XML 1.0 forbids most of them outright),
# plus the Unicode line/paragraph separators, lone surrogates and the two non-characters.
_FLATTEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]+")
# Spreadsheets read a cell starting with = + - @ as a formula (OWASP "CSV injection"), and
# some skip white space before looking; a leading tab or CR is white space once flattened.
# So: those four, and every white space character that flattening leaves (a test checks the
# list is complete).
CSV_RISKY_FIRST = frozenset(
    ("=", "+", "-", "@", *" \xa0\u1680\u202f\u205f\u3000", *map(chr, range(0x2000, 0x200B)))
)


def cells(values: Sequence[object], *, for_csv: bool) -> list[str]:
    """What the cells of one row hold: the one place that decides it, for both formats.

    Runs of line breaks, tabs and other control characters become one space (one line per
    registration; XML cannot carry most control characters at all). In CSV a value starting
    with = + - @ or white space (a tab or CR before flattening) gets a leading apostrophe, so
    Excel and LibreOffice show it as text instead of evaluating it. XLSX needs no prefix:
    every value is written as a text cell there, never a formula, so "+7 912 …" stays as is.
    """
    texts = [v if v.__class__ is str else ("" if v is None else str(v)) for v in values]
    # One C-speed scan of the whole row: the rare row with something to flatten goes value by
    # value (isprintable() is also False for a no-break space, which is left as it is).
    if not "".join(texts).isprintable():
        texts = [text if text.isprintable() else _FLATTEN.sub(" ", text) for text in texts]
    if for_csv:
        texts = ["'" + text if text[:1] in CSV_RISKY_FIRST else text for text in texts]
    return texts


def cell(value: object, *, for_csv: bool) -> str:
    """`cells` for a single value."""
    return cells((value,), for_csv=for_csv)[0]


class _Lines(list[str]):
    """A csv.writer target that keeps the lines."""

    write = list.append


def csv_line(texts: Sequence[str]) -> str:
    """One CSV line, without its end, of values that went through `cells`: as csv.writer
    writes it (quoting a value that holds the delimiter or a quote)."""
    line = _Lines()
    csv.writer(line, delimiter=CSV_DELIMITER, lineterminator="").writerow(texts)
    return line[0]


def registrant_csv(
    full_name: str,
    position: str,
    organization: str,
    phone_display: str,
    email: str,
    user_id: int,
    username: str | None,
) -> str:
    """The registrant's own values, full name to username, as the middle of their CSV line:
    each through `cells`, joined by `csv_line`. Stored with the registration (with
    `CSV_RULE`) when they are written."""
    values = (full_name, position, organization, phone_display, email, str(user_id), username)
    return csv_line(cells(values, for_csv=True))


# Values that take every turn of the rule: flattening, each character that starts a formula,
# quoting, no-break and other spaces, Cyrillic, an empty username.
_RULE_SAMPLES = (
    ("Иванова\tМария\r\nПетровна", "=1+1", "+7", "+7 912 345-67-89", "-5", 0, None),
    ('ООО "Ромашка"; филиал', "@x", " x", "\xa0y", "a\u2028b\x85c", -1, "user_1"),
    ("\u2003z", "\u3000", "a;b", "", '"', 2**40, ""),
)


def rule_fingerprint() -> str:
    """Which rule a stored text was made by: the rule's own output on the samples. Any change
    to `cells`, `csv_line` or the delimiter that shows on them changes it, and texts stored
    under another rule are never used: they are made again (at start-up), and meanwhile the
    export makes those lines itself."""
    made = "\n".join(registrant_csv(*sample) for sample in _RULE_SAMPLES)
    return hashlib.sha256(made.encode()).hexdigest()[:16]


CSV_RULE = rule_fingerprint()
