"""Exports of registrations to CSV and XLSX, on a read-only connection of their own.

`columns` says what each cell holds and `times` how stored times read; `csv` and `xlsx` are the
writers; `files` writes beside the target and renames; `source` reads the database; `process`
runs an export in a child process. Exports stream: rows go from the SQLite cursor to the file
in batches, so memory stays flat whatever the number of registrations.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bot.domain.events import EventCatalog
from bot.domain.form import FORM
from bot.domain.texts import DEFAULT_LOCALE, t, use_locale
from storage.export.columns import (
    FORMATS,
    Column,
    ExportFormat,
    columns_for,
    export_filename,
    export_rows,
    header_row,
    session_questions,
)
from storage.export.csv import csv_lines, write_csv
from storage.export.files import Target, UnknownEvent
from storage.export.source import open_read_only, stored_events
from storage.export.xlsx import write_xlsx

__all__ = ["FORMATS", "Column", "ExportFormat", "UnknownEvent", "export_filename", "export_to_file"]


def export_to_file(
    database_path: Path | str,
    catalog: EventCatalog,
    event_id: str | None,
    fmt: ExportFormat,
    output: Target,
    *,
    language: str = DEFAULT_LOCALE,
    standard: Sequence[str] = FORM.in_answers,
) -> int:
    """Write the registrations of one session (or of all, when `event_id` is None) to
    `output`, its headers and labels in `language` (the organisers'); returns the number of
    rows written. Blocking: the bot runs it in a child process (`storage.export.process`).
    `standard`: the standard questions kept in `answers` (`FormFields.in_answers`), a column
    each.

    Raises UnknownEvent for a session neither in the events file nor in the database, before
    `output` is touched.
    """
    with use_locale(language):
        return _export_to_file(database_path, catalog, event_id, fmt, output, tuple(standard))


def _export_to_file(
    database_path: Path | str,
    catalog: EventCatalog,
    event_id: str | None,
    fmt: ExportFormat,
    output: Target,
    standard: tuple[str, ...],
) -> int:
    with open_read_only(database_path) as connection:
        if (
            event_id is not None
            and catalog.get(event_id) is None
            and event_id not in stored_events(connection)
        ):
            raise UnknownEvent(event_id)
        questions = (
            [] if event_id is None else session_questions(connection, catalog, event_id, standard)
        )
        columns = columns_for(event_id, questions, standard)
        header = header_row(columns)
        if fmt == "csv":
            return write_csv(output, header, csv_lines(connection, catalog, event_id, columns))
        return write_xlsx(
            output,
            header,
            export_rows(connection, catalog, event_id, columns),
            widths=[column.width for column in columns],
            sheet_name=t("export_sheet_name"),
        )
