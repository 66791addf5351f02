"""Inputs built to make a backtracking regular expression explode, and every validator that runs
one, with a timer. Shared by tests/test_adversarial.py, tests/test_fuzz.py and
bench/bench_validators.py.

    python -m tests.adversarial [--limit SECONDS]

prints the worst time per validator as JSON and exits with 1 at the first call slower than the
limit: a pattern that backtracks exponentially doubles its time with each character, so the
lengths grow one at a time up to 40 and it is caught within seconds, not days.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import email_validator
import phonenumbers

from bot.domain.cells import cells
from bot.domain.config import load_settings
from bot.domain.events import EVENT_ID_PATTERN, JOIN_URL_PATTERN
from bot.domain.validation import (
    FULL_NAME_PATTERN,
    PHONE_SYMBOLS,
    validate_email_address,
    validate_phone,
    validate_text,
)
from bot.logs import redact

TOKEN = "7000000001:AAtest-token-for-tests-only-xxxxxxxxxx"
SEPARATORS = " .'’‘`-"
# One at a time up to 40 (an exponential pattern passes a second there), then the validators'
# limits on either side (50 phone, 150/200/300 texts, 254 e-mail, 500 join URL, 1000 input)
# and Telegram's 4096, where the validators refuse by length and only the inner logic is left.
LENGTHS = (
    *range(1, 41),
    49,
    50,
    51,
    64,
    128,
    150,
    200,
    254,
    255,
    300,
    500,
    999,
    1000,
    1001,
    2048,
    4096,
)
LIMIT = 1.0


@dataclass(frozen=True, slots=True)
class Family:
    """`prefix`, then `unit` repeated and cut, then `suffix`: `length` characters in all."""

    prefix: str
    unit: str
    suffix: str = ""

    def __call__(self, length: int) -> str:
        body = max(length - len(self.prefix) - len(self.suffix), 0)
        return self.prefix + (self.unit * (body // len(self.unit) + 1))[:body] + self.suffix


def _families() -> dict[str, Family]:
    families: dict[str, Family] = {}
    for name, separator in (
        ("spaces", " "),
        ("dots", "."),
        ("apostrophes", "'"),
        ("right quotes", "’"),
        ("left quotes", "‘"),
        ("backticks", "`"),
        ("hyphens", "-"),
    ):
        families[f"letter, {name}, !"] = Family("И", separator, "!")
        families[f"letter, {name}"] = Family("И", separator)
        families[f"letter and one of {name} in turn, !"] = Family("", "И" + separator, "!")
        families[f"letter and two of {name} in turn, !"] = Family("", "И" + separator * 2, "!")
    families |= {
        "letter, every separator in turn, !": Family("И", SEPARATORS, "!"),
        "letter and every separator in turn, digit": Family("", "И" + SEPARATORS, "5"),
        "letters, !": Family("", "И", "!"),
        "letters, digit": Family("", "И", "5"),
        "letters and combining marks": Family("", "И\u0306"),
        "zero-width spaces, letter": Family("", "\u200b", "И"),
        "digits, letter": Family("", "7", "x"),
        "phone: plus, digit and hyphen in turn, letter": Family("+", "7-", "x"),
        "phone: opening brackets": Family("+7", "(", ")x"),
        "phone: digit and space in turn, !": Family("+", "9 ", "!"),
        "e-mail: dots in the local part": Family("", "a.", "@example.com"),
        "e-mail: dotted domain, !": Family("a@", "b.", "!"),
        "e-mail: hyphens in the domain": Family("a@b", "-", ".ru"),
        "e-mail: at signs": Family("a", "@", "b"),
        "e-mail: quoted local part": Family('"', 'a\\"', '"@b.ru'),
        "URL: host, space": Family("https://", "a", " "),
        "URL: slashes, space": Family("https://a", "/", " "),
        "token: digits, colon, !": Family("1", "1", ":AA!"),
        "token: id, token characters, !": Family("123456789:", "A-", "!"),
        "ids: digit and comma in turn": Family("", "1,", "x"),
        "ids: hyphens": Family("", "-", "1"),
        "time: digits, colon": Family("", "1", ":00"),
        "control characters": Family("a", "\x00\n\u2028", "b"),
        "log: bot ids and short secrets in turn": Family("", "1" * 25 + ":" + "a" * 29 + "!"),
        "log: digit and colon in turn": Family("", "1:"),
    }
    return families


FAMILIES = _families()


def _call(function: Callable[[str], object]) -> Callable[[str], object]:
    # Refusing is the point of most of these inputs; only the time counts.
    def call(text: str) -> object:
        try:
            return function(text)
        except Exception as error:
            return error

    return call


TARGETS: dict[str, Callable[[str], object]] = {
    name: _call(function)
    for name, function in {
        "validate_text(full_name)": lambda text: validate_text("full_name", text),
        "validate_text(position)": lambda text: validate_text("position", text),
        "validate_text(organization)": lambda text: validate_text("organization", text),
        "validate_phone": validate_phone,
        "validate_email_address": validate_email_address,
        # What the validators run behind their length checks, at every length.
        "FULL_NAME_PATTERN": FULL_NAME_PATTERN.fullmatch,
        "PHONE_SYMBOLS": PHONE_SYMBOLS.search,
        "phonenumbers.parse": lambda text: phonenumbers.parse(text, "RU"),
        "email_validator.validate_email": lambda text: email_validator.validate_email(
            text, check_deliverability=False
        ),
        "events file: EVENT_ID_PATTERN": EVENT_ID_PATTERN.fullmatch,
        "events file: JOIN_URL_PATTERN": JOIN_URL_PATTERN.fullmatch,
        "settings: BOT_TOKEN": lambda text: load_settings(_env_file=None, bot_token=text),
        "settings: TELEGRAM_API_URL": lambda text: load_settings(
            _env_file=None, bot_token=TOKEN, telegram_api_url=text
        ),
        "settings: ADMIN_IDS": lambda text: load_settings(
            _env_file=None, bot_token=TOKEN, admin_ids=text
        ),
        "settings: DIGEST_TIME": lambda text: load_settings(
            _env_file=None, bot_token=TOKEN, digest_time=text
        ),
        "export cells": lambda text: cells((text,), for_csv=True),
        "log redaction": lambda text: redact(text, (TOKEN,)),
    }.items()
}


@dataclass(frozen=True, slots=True)
class Worst:
    seconds: float
    family: str
    length: int


@dataclass(slots=True)
class Report:
    worst: dict[str, Worst] = field(default_factory=dict)
    # At the longest length: what a validator costs on Telegram's longest message.
    worst_longest: dict[str, Worst] = field(default_factory=dict)
    # Calls over the limit, the target's name before the family's.
    slow: list[Worst] = field(default_factory=list)


def measure(
    targets: Mapping[str, Callable[[str], object]] = TARGETS,
    *,
    families: Mapping[str, Family] = FAMILIES,
    lengths: Sequence[int] = LENGTHS,
    limit: float = LIMIT,
    stop_at_first: bool = True,
    repeat: int = 1,
) -> Report:
    """The worst time per target over every family and length, and the calls over `limit`.

    A family's longer lengths are skipped once a call exceeds the limit (they would only take
    longer); with `stop_at_first`, everything stops there. With `repeat`, each call's best of
    that many runs counts, so that another process taking the CPU is not blamed on it."""
    report = Report()
    longest = max(lengths)
    for target, function in targets.items():
        for family_name, family in families.items():
            for length in lengths:
                text = family(length)
                seconds = float("inf")
                for _ in range(repeat):
                    began = time.perf_counter()
                    function(text)
                    seconds = min(seconds, time.perf_counter() - began)
                    if seconds > limit:
                        break
                entry = Worst(seconds, family_name, length)
                if target not in report.worst or seconds > report.worst[target].seconds:
                    report.worst[target] = entry
                if length == longest and (
                    target not in report.worst_longest
                    or seconds > report.worst_longest[target].seconds
                ):
                    report.worst_longest[target] = entry
                if seconds > limit:
                    report.slow.append(Worst(seconds, f"{target}: {family_name}", length))
                    if stop_at_first:
                        return report
                    break
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--limit", type=float, default=LIMIT)
    args = parser.parse_args(argv)
    report = measure(limit=args.limit)
    print(json.dumps(asdict(report), ensure_ascii=False))
    return 1 if report.slow else 0


if __name__ == "__main__":
    sys.exit(main())
