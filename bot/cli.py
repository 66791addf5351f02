"""`python -m bot`: settings, logging, one clear line and exit code 2 on bad start-up."""

from __future__ import annotations

import asyncio
import logging
import sys

from bot.config import SettingsError, load_settings
from bot.events import EventsFileError, load_events

EXIT_CONFIG = 2


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if argv:
        print(f"error: unknown arguments {' '.join(argv)!r}; run `python -m bot`", file=sys.stderr)
        return EXIT_CONFIG
    try:
        # Checked before aiogram is imported (seconds on a small machine): a typo in the
        # settings or the events file is reported at once.
        settings = load_settings()
        catalog = load_events(settings.events_file, default_zone=settings.timezone)
    except (SettingsError, EventsFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG

    from aiogram.exceptions import TelegramNetworkError

    from bot.app import StartupError, run
    from storage.database import MigrationError

    try:
        asyncio.run(run(settings, catalog))
    except (MigrationError, StartupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except TelegramNetworkError as error:
        print(f"error: cannot reach the Bot API: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
