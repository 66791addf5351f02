"""The tests import aiogram as `python -m bot` does (bot/aiogram_import.py), so the in-process
tests run the same deferred types as the bot."""

from bot.aiogram_import import import_aiogram

import_aiogram()
