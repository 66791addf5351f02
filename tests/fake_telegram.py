"""The fake Telegram Bot API the tests and benchmarks talk to; it lives in
`bot/sandbox/fake_telegram/` so that `python -m bot try` can use it too. Its `__all__` is the
list of what it offers."""

from bot.sandbox.fake_telegram import *  # noqa: F403
from bot.sandbox.fake_telegram import __all__ as __all__
