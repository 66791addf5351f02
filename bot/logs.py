"""Logging for the process, with the bot token taken out of everything it writes.

aiohttp's errors name the request URL, and the Bot API puts the token in the path
(`/bot<token>/sendMessage`): a logged error or its traceback would print the key to the bot.
Redaction is in the formatter, because a filter on one logger misses aiohttp's and asyncio's
records, and a traceback becomes text only in the formatter.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Iterable
from types import TracebackType

REDACTED = "<token redacted>"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# "<bot id>:<secret>" as @BotFather makes them (config.TOKEN_PATTERN's shape), also inside a
# URL's "/bot<token>/". Possessive and over disjoint parts, so it is linear however long the
# text. A 30-character run after a number and a colon is nothing else the bot logs.
TOKEN_LIKE = re.compile(r"\d{3,20}+:[A-Za-z0-9_-]{30,}+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return TOKEN_LIKE.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """`format()` returns the whole record (message, exception text, stack) redacted."""

    def __init__(self, fmt: str | None = FORMAT, *, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        self.secrets: tuple[str, ...] = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


class Redaction:
    """The process's logging and its direct writes to stderr, redacted the same way. The token
    is known only once the settings are read, after logging is set up: `keep_secret`."""

    def __init__(self) -> None:
        self.formatter = RedactingFormatter()

    def configure(self, level: int = logging.INFO) -> None:
        logging.basicConfig(level=level, format=FORMAT)
        # Every handler, whoever added it: one left with a plain formatter would leak.
        for handler in logging.getLogger().handlers:
            handler.setFormatter(self.formatter)
        # An exception nothing caught is printed by the interpreter, not by logging.
        sys.excepthook = self._excepthook

    def keep_secret(self, secret: str) -> None:
        self.formatter.secrets = (*self.formatter.secrets, secret)

    def error(self, message: str) -> None:
        print(redact(message, self.formatter.secrets), file=sys.stderr)

    def _excepthook(
        self,
        kind: type[BaseException],
        value: BaseException,
        trace: TracebackType | None,
    ) -> None:
        text = "".join(traceback.format_exception(kind, value, trace))
        sys.stderr.write(redact(text, self.formatter.secrets))
