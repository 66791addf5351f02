"""`python -m bot`: settings, logging, one clear line and exit code 2 on bad start-up.

`python -m bot export --event ID --format csv|xlsx --output FILE` writes an export on the
server, with no Telegram and no token: it reads DATABASE_PATH, EVENTS_FILE and TIMEZONE only.

`python -m bot erase <phone | e-mail | number> [--yes]` erases a participant's personal data on
a request that came by other channels, and `python -m bot audit --since DATE` prints the record
of erasures and reads as CSV: on the server, with no token (the organisers' cards an erasure
queues go out when the bot runs).

`python -m bot try` chats with the bot in the terminal against the fake Bot API (bot/sandbox/).

Each command that reads or erases personal data leaves its line in the audit, as the bot does.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import sqlite3
import sys
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from pydantic import field_validator

from bot.aiogram_import import import_aiogram
from bot.domain.cells import CSV_DELIMITER
from bot.domain.clock import utc_now
from bot.domain.config import (
    DataSettings,
    IdList,
    Settings,
    SettingsError,
    _load,
    load_data_settings,
    load_settings,
)
from bot.domain.events import EventCatalog, EventsFileError, load_events
from bot.domain.texts import CatalogueError, load_catalogues
from bot.domain.validation import PersonKey, ValidationError, parse_person_key
from bot.logs import Redaction
from storage.audit import OPERATOR, AuditEntry, AuditLog, Reason, csv_lines
from storage.database import open_database
from storage.export.source import open_read_only, stored_events

if TYPE_CHECKING:
    from storage.export import ExportFormat

EXIT_CONFIG = 2
# How long `erase` waits for the WAL to be cut (a reader, such as the bot's export, may hold
# an old snapshot that long) before it says the copy is still there.
SCRUB_TIMEOUT = 120.0


class OperatorSettings(DataSettings):
    """What the operator's commands need: the data, and where organisers' cards go."""

    organizer_chat_ids: IdList = ()

    @field_validator("organizer_chat_ids", mode="before")
    @classmethod
    def _ids(cls, value: object) -> object:
        return Settings._comma_list(value)  # as the bot reads it


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
    if settings.database_dsn is not None:
        redaction.keep_secret(settings.database_dsn)
    elif not settings.database_path.is_file():
        redaction.error(
            f"error: DATABASE_PATH: {str(settings.database_path)!r} does not exist "
            "(the bot creates it when it first starts; see .env.example)"
        )
        return EXIT_CONFIG
    event_id = None if args.event == "all" else args.event
    try:
        if event_id is not None and catalog.get(event_id) is None:
            with open_read_only(settings.database_dsn or settings.database_path) as connection:
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
            settings.database_dsn or settings.database_path,
            catalog,
            event_id,
            cast("ExportFormat", fmt),
            output,
            language=settings.organizer_language,
        )
    except sqlite3.Error as error:
        redaction.error(f"error: cannot read {_database_name(settings)}: {error}")
        return 1
    except OSError as error:
        redaction.error(f"error: cannot write {str(output)!r}: {error}")
        return 1
    entry = AuditEntry(utc_now(), "export", OPERATOR, event_id=event_id, row_count=count)
    try:
        asyncio.run(_record(settings, entry))
    except sqlite3.Error as error:
        redaction.error(
            f"error: {count} rows written to {output}, but the export could not be recorded "
            f"in the audit of {_database_name(settings)}: {error}"
        )
        return 1
    print(f"{count} rows written to {output}")
    return 0


async def _record(settings: DataSettings, entry: AuditEntry) -> None:
    async with open_database(settings.database_path, url=settings.database_dsn) as db:
        await AuditLog(db).record(entry)


S = TypeVar("S", bound=DataSettings)


def _database_name(settings: DataSettings) -> str:
    """How an error names the database: never DATABASE_URL itself (it may hold a password)."""
    if settings.database_url is not None:
        return "the PostgreSQL database of DATABASE_URL"
    return repr(str(settings.database_path))


def _open_data(kind: type[S], redaction: Redaction) -> tuple[S, EventCatalog] | int:
    """Settings, the events file, and a database file at this code's schema; else the exit
    code, after one line saying why. The database is never created nor migrated here."""
    try:
        settings = _load(kind, {})
        catalog = load_events(settings.events_file, default_zone=settings.timezone)
    except (SettingsError, EventsFileError) as error:
        redaction.error(f"error: {error}")
        return EXIT_CONFIG
    if settings.database_dsn is not None:
        redaction.keep_secret(settings.database_dsn)
        return settings, catalog  # reached (and checked) when the command opens it
    if not settings.database_path.is_file():
        redaction.error(
            f"error: DATABASE_PATH: {str(settings.database_path)!r} does not exist "
            "(the bot creates it when it first starts; see .env.example)"
        )
        return EXIT_CONFIG
    try:
        with open_read_only(settings.database_path):
            pass
    except sqlite3.Error as error:
        redaction.error(f"error: cannot read {str(settings.database_path)!r}: {error}")
        return 1
    return settings, catalog


# --- python -m bot erase -----------------------------------------------------------------------


def _erase_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot erase",
        description="Erase the personal data of a participant's registrations on their request "
        "(a letter, a call): lists what matches, asks, erases in one transaction, records it in "
        "the audit and queues the organisers' cards (sent when the bot runs). Reads "
        "DATABASE_PATH, EVENTS_FILE, TIMEZONE and ORGANIZER_CHAT_IDS; needs no BOT_TOKEN.",
    )
    parser.add_argument(
        "who",
        metavar="PHONE|E-MAIL|NUMBER",
        help="a phone in any usual form, an e-mail (any case) or a registration number",
    )
    parser.add_argument("--yes", action="store_true", help="erase without asking")
    return parser


def erase(argv: list[str], redaction: Redaction) -> int:
    args = _erase_parser().parse_args(argv)
    try:
        key = parse_person_key(args.who)
    except ValidationError:
        redaction.error(
            f"error: {args.who!r} is neither a phone, an e-mail nor a registration number"
        )
        return EXIT_CONFIG
    opened = _open_data(OperatorSettings, redaction)
    if isinstance(opened, int):
        return opened
    settings, catalog = opened
    try:
        return asyncio.run(_erase(settings, catalog, key, confirmed=args.yes))
    except sqlite3.Error as error:
        redaction.error(f"error: cannot erase in {_database_name(settings)}: {error}")
        return 1


async def _erase(
    settings: OperatorSettings, catalog: EventCatalog, key: PersonKey, *, confirmed: bool
) -> int:
    # Imported here: the wiring of cards (and what it imports) only for an erasure.
    from storage.cards import CardPublisher
    from storage.erasure import PersonalData
    from storage.outbox import Outbox
    from storage.stats import AdminQueries

    async with open_database(settings.database_path, url=settings.database_dsn) as db:
        found = await AdminQueries(db).holding(key)
        if not found:
            print("nothing to erase: no registration holding personal data matches")
            return 0
        print(f"{len(found)} registration(s) holding personal data:")
        for registration in found:
            event = catalog.get(registration.event_id)
            title = event.title if event else registration.event_id
            print(f"  #{registration.id}  {title}  {registration.full_name}  {registration.status}")
        if not confirmed and not await _ask("erase their personal data? this cannot be undone"):
            print("nothing erased")
            return 0
        cards = CardPublisher(Outbox(db), settings.organizer_chat_ids, catalog)
        erased = await PersonalData(db, cards).erase(
            [registration.id for registration in found],
            reason=Reason.admin,
            actor=OPERATOR,
            now=utc_now(),
        )
        numbers = ", ".join(f"#{entry.registration_id}" for entry in erased)
        print(f"erased the personal data of {len(erased)} registration(s): {numbers or '-'}")
        if erased and settings.organizer_chat_ids:
            print("the organisers' cards are queued: they go out when the bot runs")
        try:
            # Until the WAL no longer holds the erased values (a reader's old snapshot, say
            # the bot's export, may hold it up a while); on PostgreSQL, the tables vacuumed.
            await asyncio.wait_for(db.erased_scrubbed(db.scrub_erased()), SCRUB_TIMEOUT)
        except TimeoutError:
            print(
                f"warning: the WAL of {str(settings.database_path)!r} may still hold the "
                "erased values: a reader (an export?) kept it in use for two minutes. Restart "
                "the bot once that is done: closing the database removes the WAL"
            )
            return 1
    return 0


async def _ask(question: str) -> bool:
    try:
        answer = await asyncio.to_thread(input, f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


# --- python -m bot audit -----------------------------------------------------------------------


def _audit_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot audit",
        description="Print the record of erasures, exports, searches and broadcasts since a "
        "day (its start in TIMEZONE) as CSV, times in UTC. Reads DATABASE_PATH, EVENTS_FILE "
        "and TIMEZONE; needs no BOT_TOKEN.",
    )
    parser.add_argument("--since", required=True, metavar="YYYY-MM-DD")
    return parser


def audit(argv: list[str], redaction: Redaction) -> int:
    args = _audit_parser().parse_args(argv)
    try:
        day = date.fromisoformat(args.since)
    except ValueError:
        redaction.error(f"error: --since {args.since!r} is not a date in YYYY-MM-DD")
        return EXIT_CONFIG
    opened = _open_data(DataSettings, redaction)
    if isinstance(opened, int):
        return opened
    settings, _ = opened
    since = datetime.combine(day, time(), settings.timezone)
    try:
        entries = asyncio.run(_audit_since(settings, since))
    except sqlite3.Error as error:
        redaction.error(f"error: cannot read {_database_name(settings)}: {error}")
        return 1
    writer = csv.writer(sys.stdout, delimiter=CSV_DELIMITER, lineterminator="\n")
    writer.writerows(csv_lines(entries))
    return 0


async def _audit_since(settings: DataSettings, since: datetime) -> list[AuditEntry]:
    async with open_database(settings.database_path, url=settings.database_dsn) as db:
        return await AuditLog(db).since(since)


# --- python -m bot migrate-to-postgres ---------------------------------------------------------


def _migrate_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="python -m bot migrate-to-postgres",
        description="Copy every table of the SQLite file at DATABASE_PATH into the PostgreSQL "
        "database at DATABASE_URL, in one transaction, and check the row counts of each. Run "
        "it with the bot stopped. Running it again adds nothing twice. Needs no BOT_TOKEN.",
    )


def migrate_to_postgres(argv: list[str], redaction: Redaction) -> int:
    _migrate_parser().parse_args(argv)
    try:
        settings = load_data_settings()
    except SettingsError as error:
        redaction.error(f"error: {error}")
        return EXIT_CONFIG
    if settings.database_dsn is None:
        redaction.error(
            "error: DATABASE_URL: set it to the PostgreSQL database to move to "
            "(postgresql://user:password@host/database)"
        )
        return EXIT_CONFIG
    redaction.keep_secret(settings.database_dsn)
    if not settings.database_path.is_file():
        redaction.error(
            f"error: DATABASE_PATH: {str(settings.database_path)!r} does not exist: nothing to move"
        )
        return EXIT_CONFIG
    from storage.lease import DatabaseInUse, hold_lease

    try:
        # The bot must be stopped: what it wrote after the copy would stay behind.
        with hold_lease(settings.database_path):
            return asyncio.run(_migrate_to_postgres(settings))
    except DatabaseInUse as error:
        redaction.error(f"error: {error}; stop the bot before moving its data")
        return EXIT_CONFIG
    except (OSError, sqlite3.Error) as error:
        redaction.error(
            f"error: the move failed, nothing was changed: {type(error).__name__}: {error}"
        )
        return 1


async def _migrate_to_postgres(settings: DataSettings) -> int:
    import asyncpg

    from storage.postgres import PostgresDatabase
    from storage.transfer import TransferError, copy_to_postgres

    assert settings.database_dsn is not None
    # Both at this code's schema version first (each migrated as the bot would).
    async with open_database(settings.database_path):
        pass
    try:
        async with open_database(settings.database_path, url=settings.database_dsn) as target:
            assert isinstance(target, PostgresDatabase)
            counts = await copy_to_postgres(settings.database_path, target)
    except (TransferError, asyncpg.PostgresError) as error:
        print(f"error: the move failed, nothing was changed: {error}", file=sys.stderr)
        return 1
    for count in counts:
        mark = "ok" if count.verified else "MISMATCH"
        print(
            f"{count.table:<20} sqlite {count.source:>8}  postgres {count.target:>8}  "
            f"(added {count.added})  {mark}"
        )
    wrong = [count.table for count in counts if not count.verified]
    if wrong:
        print(
            f"error: row counts differ in {', '.join(wrong)}: PostgreSQL held rows of its own "
            "before the move (a bot ran on it?)",
            file=sys.stderr,
        )
        return 1
    print(
        f"moved {sum(count.source for count in counts)} rows in {len(counts)} tables; "
        "now start the bot with DATABASE_URL set"
    )
    return 0


def main(argv: list[str]) -> int:
    redaction = Redaction()
    redaction.configure(logging.INFO)
    # aiogram logs a line per update ("Update id=... is handled"): a cost on every update, and a
    # busy day's log would be little else. Its warnings and errors still come through.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
    if argv[:1] == ["export"]:
        return export(argv[1:], redaction)
    if argv[:1] == ["erase"]:
        return erase(argv[1:], redaction)
    if argv[:1] == ["audit"]:
        return audit(argv[1:], redaction)
    if argv[:1] == ["migrate-to-postgres"]:
        return migrate_to_postgres(argv[1:], redaction)
    if argv[:1] == ["try"]:
        import_aiogram()
        from bot.sandbox.run import main as sandbox

        return sandbox(argv[1:])
    if argv:
        redaction.error(
            f"error: unknown arguments {' '.join(argv)!r}; run `python -m bot`, "
            "`python -m bot export|erase|audit|migrate-to-postgres --help`, or `python -m bot try`"
        )
        return EXIT_CONFIG
    try:
        # Checked before aiogram is imported (seconds on a small machine): a typo in the
        # settings or the events file is reported at once.
        settings = load_settings()
        catalog = load_events(settings.events_file, default_zone=settings.timezone)
        load_catalogues()
    except (SettingsError, EventsFileError, CatalogueError) as error:
        redaction.error(f"error: {error}")
        return EXIT_CONFIG
    redaction.keep_secret(settings.bot_token.get_secret_value())
    if settings.webhook_secret is not None:
        redaction.keep_secret(settings.webhook_secret.get_secret_value())
    if settings.database_dsn is not None:
        redaction.keep_secret(settings.database_dsn)

    import_aiogram()
    from aiogram.exceptions import TelegramNetworkError

    from bot.app import StartupError, run
    from storage.database import DatabaseUnavailable, MigrationError

    try:
        asyncio.run(run(settings, catalog))
    except (MigrationError, StartupError, DatabaseUnavailable) as error:
        redaction.error(f"error: {error}")
        return EXIT_CONFIG
    except TelegramNetworkError as error:
        redaction.error(f"error: cannot reach the Bot API: {error}")
        return 1
    except KeyboardInterrupt:
        pass
    return 0
