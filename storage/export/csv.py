"""The CSV export: UTF-8 with a BOM, ";"-separated, as Excel opens it."""

from __future__ import annotations

import codecs
import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from bot.domain.cells import CSV_DELIMITER, CSV_RULE, cells, csv_line
from bot.domain.events import EventCatalog
from bot.domain.texts import t
from storage.export.columns import Column, Sessions, answers_text, build_row, parse_answers
from storage.export.files import Target, binary_output
from storage.export.source import (
    snapshot,
)
from storage.export.times import CsvTimes, as_cell

# Rows written at once: few system calls, and each batch (a CSV line is about 700 bytes, an
# XLSX row about 1.5 KB of XML, twice that as a str of Cyrillic) well under glibc's 128 KB
# mmap threshold. Above it every batch is a fresh mmap, zero-filled page by page (measured in
# bench/ANALYSIS.md).
_ROWS_PER_WRITE = 100
# Distinct answer sets whose cells are kept per session: memory stays flat when every
# answer is a text of its own.
_TAILS_KEPT = 10_000


def write_csv(target: Target, header: Sequence[str], batches: Iterable[list[bytes]]) -> int:
    """UTF-8 with a BOM (so Excel recognises the encoding), ";"-separated, CRLF line ends.
    `batches` are lists of lines, each a `csv_line` encoded, as `csv_lines` yields them;
    each batch is written at once. Returns the number of lines."""
    count = 0
    with binary_output(target) as stream:
        stream.write(codecs.BOM_UTF8 + csv_line(cells(header, for_csv=True)).encode() + b"\r\n")
        for lines in batches:
            if lines:
                stream.write(b"\r\n".join(lines) + b"\r\n")
                count += len(lines)
    return count


def csv_lines(
    connection: sqlite3.Connection,
    catalog: EventCatalog,
    event_id: str | None,
    columns: Sequence[Column],
) -> Iterator[list[bytes]]:
    """The CSV lines of an export, UTF-8, a batch at a time: each registration's
    `csv_line(cells(build_row(...)))`.

    A 100,000-row export spends its time per row, so the common row is put together from
    parts that need nothing more: the session and status as made once per session, the
    times from `CsvTimes`, and the registrant's own values as stored with them, made by
    today's rule (`registrant_csv`). `cells` and `csv_line` treat each value on its own, so
    the parts joined by the delimiter are the line. Any other row (no stored text, an
    unknown status, a time that needs more) is read whole and goes the general way. A test
    checks both ways agree on arbitrary rows; a column added to COLUMNS must be added here
    too, in its place.
    """
    sessions = Sessions(connection, catalog, columns)
    delimiter = CSV_DELIMITER.encode()
    unreachable = as_cell(t("export_unreachable_yes"))
    # A source is Latin letters, digits and "_" (the schema's CHECK): it goes into the line as
    # it is; each is checked once all the same.
    sources: dict[str | None, bytes | None] = {None: b""}
    # The stored answers end the line: a cell per standard question kept in `answers`, then
    # a cell per question of one session, or the «Ответы» cell of every session; without
    # answers, empty cells.
    stored = [column.answer for column in columns if column.answer is not None]
    every = event_id is None
    no_answers = delimiter * (len(stored) + every)
    with snapshot(connection) as rows:
        for event in rows.sessions(event_id):
            session = sessions[event]
            # Every session export: the session column, the same for all its rows. (csv.writer
            # writes a lone empty value as "", an empty one among others as nothing.)
            title = b""
            if event_id is None:
                text = csv_line(cells([session.title], for_csv=True)) if session.title else ""
                title = (text + CSV_DELIMITER).encode()
            heads = {
                status: title + label
                for status, text in session.status_labels.items()
                if (label := as_cell(text)) is not None
            }
            times = CsvTimes(session.local_time)
            # Choices repeat: the same answers make the same cells, made once per session.
            tails: dict[str, bytes] = {}
            for batch in rows.csv_rows(event, rule=CSV_RULE, batch=_ROWS_PER_WRITE):
                lines = []
                for (
                    registration_id,
                    status,
                    created_at,
                    consent_at,
                    registrant,
                    blocked,
                    source,
                    answered,
                ) in batch:
                    head = heads.get(status)
                    created = times(created_at)
                    consent = times(consent_at)
                    if source in sources:
                        came_from = sources[source]
                    else:
                        came_from = sources[source] = as_cell(source) if source else None
                    if (
                        head is None
                        or registrant is None
                        or created is None
                        or consent is None
                        or unreachable is None
                        or came_from is None
                    ):
                        record = rows.record(registration_id)
                        line = csv_line(cells(build_row(record, session, columns), for_csv=True))
                        lines.append(line.encode())
                        continue
                    if answered == "{}" or answered is None:
                        tail = no_answers
                    elif answered in tails:
                        tail = tails[answered]
                    else:
                        values = parse_answers(answered)
                        shown = [values.get(key, "") for key in stored]
                        if every:
                            shown.append(answers_text(values, session.questions, session.standard))
                        tail = (CSV_DELIMITER + csv_line(cells(shown, for_csv=True))).encode()
                        if len(tails) >= _TAILS_KEPT:
                            tails.clear()
                        tails[answered] = tail
                    lines.append(
                        delimiter.join(
                            (
                                head,
                                created,
                                registrant,
                                consent,
                                unreachable if blocked else b"",
                                came_from,
                            )
                        )
                        + tail
                    )
                yield lines
