"""The XLSX export: our own streaming writer (README, "Which XLSX writer, and why")."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence

from bot.domain.cells import cells
from storage.export.files import Target, binary_output

# Rows per write, kept under glibc's mmap threshold as in csv.py (an XLSX row is longer).
_XLSX_ROWS_PER_WRITE = 20

_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_CONTENT_TYPES = (
    _XML_DECLARATION
    + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "</Types>"
)
_ROOT_RELS = (
    _XML_DECLARATION + f'<Relationships xmlns="{_PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK_RELS = (
    _XML_DECLARATION + f'<Relationships xmlns="{_PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_REL_NS}/styles" Target="styles.xml"/>'
    "</Relationships>"
)
# Style 1: the header, bold; style 2: the data. Both use number format 49 ("@", Text), so a
# phone typed over in Excel stays text as well.
_STYLES = (
    _XML_DECLARATION + f'<styleSheet xmlns="{_MAIN_NS}">'
    '<fonts count="2">'
    '<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    "</fonts>"
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="3">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="49" fontId="1" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" '
    'applyFont="1"/>'
    '<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)


def _column_letters(count: int) -> list[str]:
    letters = []
    for number in range(1, count + 1):
        name = ""
        while number:
            number, rest = divmod(number - 1, 26)
            name = chr(ord("A") + rest) + name
        letters.append(name)
    return letters


def _xml_text(value: str) -> str:
    if "&" in value or "<" in value or ">" in value:
        value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value


def _xml_row(number: int, letters: Sequence[str], values: Sequence[str], style: int) -> str:
    texts = cells(values, for_csv=False)
    joined = "".join(texts)
    if "&" in joined or "<" in joined or ">" in joined:
        texts = [_xml_text(text) for text in texts]
    # Rows are built as one string per cell and joined: the common case, with no value
    # starting or ending with white space, has no per-cell attribute to decide.
    head = f'{number}" s="{style}" t="inlineStr"><is><t>'
    if any([text.strip() != text for text in texts]):
        # XML readers may drop white space at the ends of an element without this.
        spaced = f'{number}" s="{style}" t="inlineStr"><is><t xml:space="preserve">'
        opened = [spaced if text.strip() != text else head for text in texts]
    else:
        opened = [head] * len(texts)
    row = "".join(
        [
            f'<c r="{letter}{middle}{text}</t></is></c>'
            for letter, middle, text in zip(letters, opened, texts, strict=True)
        ]
    )
    return f'<row r="{number}">{row}</row>'


def write_xlsx(
    target: Target,
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    widths: Sequence[float],
    sheet_name: str,
) -> int:
    """One sheet: a bold header row, frozen; fixed column widths; every value an inline text
    cell (never a formula, never a number). Streams the sheet into the zip row by row, so
    memory stays flat; returns the number of data rows.

    Inline strings rather than a shared-strings table: that table would have to be held in
    memory whole and written after the sheet. Spreadsheet programs read both alike.
    """
    letters = _column_letters(len(header))
    if len(widths) != len(header):
        raise ValueError("one width per column")
    workbook = (
        _XML_DECLARATION + f'<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}"><sheets>'
        f'<sheet name="{_xml_text(sheet_name)}" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    columns = "".join(
        f'<col min="{number}" max="{number}" width="{width}" customWidth="1" style="2"/>'
        for number, width in enumerate(widths, start=1)
    )
    sheet_start = (
        _XML_DECLARATION + f'<worksheet xmlns="{_MAIN_NS}">'
        '<sheetViews><sheetView tabSelected="1" workbookViewId="0">'
        '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
        '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
        "</sheetView></sheetViews>"
        f'<sheetFormatPr defaultRowHeight="15"/><cols>{columns}</cols><sheetData>'
    )
    # Ids and phones are text on purpose: no green "number stored as text" triangles.
    sheet_end = (
        "</sheetData><ignoredErrors>"
        f'<ignoredError sqref="A1:{letters[-1]}1048576" numberStoredAsText="1"/>'
        "</ignoredErrors></worksheet>"
    )
    count = 0
    with (
        binary_output(target) as stream,
        # Level 1: the sheet is repetitive XML, so the fastest level is barely larger.
        zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
    ):
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", workbook)
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        archive.writestr("xl/styles.xml", _STYLES)
        with archive.open("xl/worksheets/sheet1.xml", "w") as sheet:
            chunk = [sheet_start, _xml_row(1, letters, header, 1)]
            for count, row in enumerate(rows, start=1):
                chunk.append(_xml_row(count + 1, letters, row, 2))
                if len(chunk) >= _XLSX_ROWS_PER_WRITE:
                    sheet.write("".join(chunk).encode())
                    chunk.clear()
            chunk.append(sheet_end)
            sheet.write("".join(chunk).encode())
    return count
