"""The CSV and Excel writers of an order export: one row at a time, nothing kept.

CSV: UTF-8 (with a byte-order mark when written to a file, so that Excel reads the Chinese
text right; none on standard output), a header row of field names, amounts as exact decimal
text (``12.30``), times as ISO 8601 in the export's time zone, formula-safe text
(:mod:`.cells`).

Excel: XlsxWriter in ``constant_memory`` mode (each row goes to the sheet's XML file as it is
written: memory stays flat whatever the row count), a header row of titles, amounts as
numbers with the currency's decimals as their number format (XlsxWriter writes the Decimal's
own digits into the file, so no binary float sits between the amount and the cell), times
as Excel date-times in the export's time zone, text always as string cells (never a
formula), a new sheet every :data:`SHEET_ROWS` rows.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import IO, Any, Final, Protocol
from zoneinfo import ZoneInfo

from .cells import csv_text
from .fields import ExportField, Value

__all__ = ["SHEET_ROWS", "CsvSink", "RowSink", "XlsxSink", "csv_cell", "local_time"]

#: Excel's row limit: a sheet holds the header and 1,048,575 rows.
SHEET_ROWS: Final = 1_048_576


class RowSink(Protocol):
    """Where export rows go."""

    def write(self, values: Sequence[Value]) -> None: ...

    def close(self) -> None: ...


def local_time(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone)


def csv_cell(value: Value, zone: ZoneInfo) -> str:
    """The CSV text of one value."""
    if value is None:
        return ""
    if isinstance(value, str):
        return csv_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(zone).isoformat(timespec="seconds")
    return str(value)


class CsvSink:
    """CSV rows into a text stream (the caller opens it with ``newline=""``)."""

    def __init__(self, out: IO[str], fields: Sequence[ExportField], zone: ZoneInfo) -> None:
        self._writer = csv.writer(out)
        self._zone = zone
        self._writer.writerow([f.name for f in fields])

    def write(self, values: Sequence[Value]) -> None:
        zone = self._zone
        self._writer.writerow([csv_cell(v, zone) for v in values])

    def close(self) -> None:
        pass


class XlsxSink:
    """Rows into an .xlsx file (a path or a binary stream), streamed sheet by sheet."""

    def __init__(
        self,
        out: str | IO[bytes],
        fields: Sequence[ExportField],
        zone: ZoneInfo,
        *,
        sheet_rows: int = SHEET_ROWS,
        title: str = "Orders",
    ) -> None:
        import xlsxwriter  # an optional part of the export: imported when used

        self._book: Any = xlsxwriter.Workbook(
            out,
            {
                "constant_memory": True,
                "in_memory": False,
                "remove_timezone": True,
                "strings_to_formulas": False,
                "strings_to_numbers": False,
                "strings_to_urls": False,
            },
        )
        self._fields = list(fields)
        self._zone = zone
        self._sheet_rows = sheet_rows
        self._title = title
        self._bold = self._book.add_format({"bold": True})
        self._time = self._book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self._amounts: dict[int, Any] = {}
        self._sheets = 0
        self._row = 0
        self._new_sheet()

    def _amount_format(self, decimals: int) -> Any:
        fmt = self._amounts.get(decimals)
        if fmt is None:
            pattern = "0" if decimals <= 0 else "0." + "0" * decimals
            fmt = self._amounts[decimals] = self._book.add_format({"num_format": pattern})
        return fmt

    def _new_sheet(self) -> None:
        self._sheets += 1
        name = self._title if self._sheets == 1 else f"{self._title} {self._sheets}"
        self._sheet = self._book.add_worksheet(name)
        for col, f in enumerate(self._fields):
            self._sheet.write_string(0, col, f.title, self._bold)
            width = 20 if f.kind in ("time", "text") else 12
            self._sheet.set_column(col, col, width)
        self._row = 1

    def write(self, values: Sequence[Value]) -> None:
        if self._row >= self._sheet_rows:
            self._new_sheet()
        sheet, row = self._sheet, self._row
        for col, value in enumerate(values):
            if value is None:
                continue
            if isinstance(value, str):
                sheet.write_string(row, col, value)
            elif isinstance(value, bool):
                sheet.write_boolean(row, col, value)
            elif isinstance(value, Decimal):
                exponent = value.as_tuple().exponent
                decimals = -exponent if isinstance(exponent, int) else 0
                sheet.write_number(row, col, value, self._amount_format(decimals))
            elif isinstance(value, datetime):
                local = value.astimezone(self._zone).replace(tzinfo=None)
                sheet.write_datetime(row, col, local, self._time)
            else:
                sheet.write_number(row, col, value)
        self._row += 1

    @property
    def sheets(self) -> int:
        return self._sheets

    def close(self) -> None:
        self._book.close()
