import logging
import sys

import pytest

from bot.logs import REDACTED, RedactingFormatter, Redaction, redact
from tests.helpers import TOKEN

SECRET = TOKEN.split(":", 1)[1]
URL = f"http://127.0.0.1:8081/bot{TOKEN}/sendMessage"


def record_with_exception(message: str, *args: object) -> logging.LogRecord:
    try:
        raise ConnectionError(f"400, message='Bad status line', url='{URL}'")
    except ConnectionError:
        exc_info = sys.exc_info()
    return logging.LogRecord("aiohttp.client", logging.ERROR, __file__, 1, message, args, exc_info)


def test_formatter_redacts_message_arguments_and_traceback() -> None:
    formatter = RedactingFormatter("%(levelname)s %(name)s: %(message)s", secrets=[TOKEN])
    record = record_with_exception("Request to %s failed", URL)
    record.stack_info = f"Stack (most recent call last):\n  token {TOKEN} in a frame"
    text = formatter.format(record)
    assert "Traceback" in text
    assert "ConnectionError: 400, message='Bad status line'" in text
    assert text.count(f"/bot{REDACTED}/sendMessage") == 2
    assert f"token {REDACTED} in a frame" in text
    assert SECRET not in text


@pytest.mark.parametrize(
    "token",
    [
        "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",  # the shape @BotFather gives
        "7000000001:AAtest-token-for-tests-only-xxxxxxxxxx",
        "12345678901234567890:" + "a_-" * 20,
    ],
)
def test_a_token_not_configured_is_redacted_by_its_shape(token: str) -> None:
    assert redact(f"GET /bot{token}/getMe failed") == f"GET /bot{REDACTED}/getMe failed"


@pytest.mark.parametrize(
    "text",
    [
        "Update 12345 failed: TelegramNetworkError",
        "e.g. BOT_TOKEN=123456789:AA...",
        "12:30:00 digest sent to -1001234567890",
        "chat 123: " + "x" * 29,
    ],
)
def test_ordinary_log_lines_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_uncaught_exception_is_printed_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    redaction = Redaction()
    redaction.keep_secret(TOKEN)
    try:
        raise RuntimeError(f"cannot reach {URL}")
    except RuntimeError as error:
        redaction._excepthook(type(error), error, error.__traceback__)
    redaction.error(f"error: cannot reach the Bot API: {URL}")
    err = capsys.readouterr().err
    assert "RuntimeError: cannot reach" in err
    assert err.count(f"/bot{REDACTED}/sendMessage") == 2
    assert SECRET not in err
