"""`python -m bot`: settings, logging, one clear line and exit code 2 on bad start-up.

`python -m bot export --event ID --format csv|xlsx --output FILE` writes an export on the
server, with no Telegram and no token: it reads DATABASE_PATH, EVENTS_FILE and TIMEZONE only.

`python -m bot try` chats with the bot in the terminal against the fake Bot API (bot/sandbox/).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, cast

from bot.domain.config import SettingsError, load_data_settings, load_settings
from bot.domain.events import EventsFileError, load_events
from bot.logs import Redaction
from storage.export.source import open_read_only, stored_events

if TYPE_CHECKING:
    from storage.export import ExportFormat

EXIT_CONFIG = 2


def _export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot export",
        description="Write the registrations of a session (or of all) to a CSV or XLSX file. "
        "Reads DATABASE_PATH, EVENTS_FILE and TIMEZONE from the environment or .env; "
        "needs no BOT_TOKEN and no network.",
    )
    parser.add_argument(
        "--event", default="all", metavar="ID", help="session id, or 'all' (the default)"
    )
    parser.add_argument(
        "--format", choices=("csv", "xlsx"), help="default: from the output file's extension"
    )
    parser.add_argument("--output", required=True, type=Path, metavar="FILE")
    return parser


def export(argv: list[str], redaction: Redaction) -> int:
    args = _export_parser().parse_args(argv)
    output: Path = args.output
    fmt = args.format or output.suffix.lower().removeprefix(".")
    if fmt not in ("csv", "xlsx"):
        redaction.error(
            f"error: cannot tell the format from {str(output)!r}: give --format csv or xlsx"
        )
        return EXIT_CONFIG
    try:
        settings = load_data_settings()
        catalog = load_events(settings.events_file, default_zone=settings.timezone)
    except (SettingsError, EventsFileError) as error:
        redaction.error(f"error: {error}")
        return EXIT_CONFIG
    if not settings.database_path.is_file():
        redaction.error(
            f"error: DATABASE_PATH: {str(settings.database_path)!r} does not exist "
            "(the bot creates it when it first starts; see .env.example)"
        )
        return EXIT_CONFIG
    event_id = None if args.event == "all" else args.event
    try:
        if event_id is not None and catalog.get(event_id) is None:
            with open_read_only(settings.database_path) as connection:
                known = event_id in stored_events(connection)
            if not known:
                in_file = ", ".join(event.id for event in catalog)
                redaction.error(
                    f"error: unknown session {event_id!r}: neither in {settings.events_file} "
                    f"nor in the database (sessions in the file: {in_file}; or --event all)"
                )
                return EXIT_CONFIG
        # Imported only now: the writers and phonenumbers' metadata take a moment to import,
        # which a mistyped session id should not wait for.
        from storage.export import export_to_file

        count = export_to_file(
            settings.database_path, catalog, event_id, cast("ExportFormat", fmt), output
        )
    except sqlite3.Error as error:
        redaction.error(f"error: cannot read {str(settings.database_path)!r}: {error}")
        return 1
    except OSError as error:
        redaction.error(f"error: cannot write {str(output)!r}: {error}")
        return 1
    print(f"{count} rows written to {output}")
    return 0


def main(argv: list[str]) -> int:
    redaction = Redaction()
    redaction.configure(logging.INFO)
    # aiogram logs a line per update ("Update id=... is handled"): a cost on every update, and a
    # busy day's log would be little else. Its warnings and errors still come through.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
    if argv[:1] == ["export"]:
        return export(argv[1:], redaction)
    if argv == ["try"]:
        from bot.sandbox.run import main as sandbox

        return sandbox()
    if argv:
        redaction.error(
            f"error: unknown arguments {' '.join(argv)!r}; run `python -m bot` or "
            "`python -m bot export --help`, or `python -m bot try`"
        )
        return EXIT_CONFIG
    try:
        # Checked before aiogram is imported (seconds on a small machine): a typo in the
        # settings or the events file is reported at once.
        settings = load_settings()
        catalog = load_events(settings.events_file, default_zone=settings.timezone)
    except (SettingsError, EventsFileError) as error:
        redaction.error(f"error: {error}")
        return EXIT_CONFIG
    redaction.keep_secret(settings.bot_token.get_secret_value())

    from aiogram.exceptions import TelegramNetworkError

    from bot.app import StartupError, run
    from storage.database import MigrationError

    try:
        asyncio.run(run(settings, catalog))
    except (MigrationError, StartupError) as error:
        redaction.error(f"error: {error}")
        return EXIT_CONFIG
    except TelegramNetworkError as error:
        redaction.error(f"error: cannot reach the Bot API: {error}")
        return 1
    except KeyboardInterrupt:
        pass
    return 0
