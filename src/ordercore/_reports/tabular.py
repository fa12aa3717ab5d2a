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

Every sink takes whole chunks of :class:`~.fields.OrderRecord` (:meth:`RowSink.write_records`).
The CSV sink turns each record into its cells through one function per column, chosen once
per export from the field's kind (:func:`csv_cells`), rather than building the row's
values and testing each value's type: it is the export's inner loop, run once a cell. What
it writes is by definition :func:`csv_cell` of :func:`~.fields.row_values` (a test checks
the two agree).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import IO, Any, Final, Protocol
from zoneinfo import ZoneInfo

from .cells import FORMULA_STARTS, csv_text, local_text, minor_text
from .fields import ExportField, OrderRecord, Value, row_values
from .masking import MASKS

__all__ = ["SHEET_ROWS", "CsvSink", "RowSink", "XlsxSink", "csv_cell", "csv_cells"]

#: Excel's row limit: a sheet holds the header and 1,048,575 rows.
SHEET_ROWS: Final = 1_048_576


class RowSink(Protocol):
    """Where export rows go."""

    def write_records(self, records: Sequence[OrderRecord]) -> None:
        """Write one row per record (personal data masked if the sink was made so)."""
        ...

    def close(self) -> None: ...


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


_UNITS: Final = OrderRecord._fields.index("minor_units")
_INDEX: Final = {name: i for i, name in enumerate(OrderRecord._fields)}


def _cell_source(i: int, field: ExportField, masked: bool, env: dict[str, Any]) -> str:
    """The Python expression of ``field``'s CSV text, for the ``i``-th column of
    :func:`csv_cells` (``r`` the record; ``env`` gets the names it uses)."""
    x = f"x{i}"
    if field.column is not None:
        value = f"r[{_INDEX[field.column]}]"
    else:
        env[f"get{i}"] = field.get
        value = f"get{i}(r)"
    if field.kind == "text":
        if masked and field.mask is not None:
            env[f"mask{i}"] = MASKS[field.mask]
            y = f"y{i}"
            return (
                f'("\'" + {y} if ({y} := mask{i}({x})) and {y}[0] in STARTS else {y}) '
                f"if ({x} := {value}) else ''"
            )
        return f"(\"'\" + {x} if {x}[0] in STARTS else {x}) if ({x} := {value}) else ''"
    if field.kind == "amount" and field.minor is not None:
        if field.column is not None:
            return f"minor_text({value}, r[{_UNITS}])"
        env[f"minor{i}"] = field.minor
        return f"minor_text(minor{i}(r), r[{_UNITS}])"
    if field.kind == "time":
        return f"'' if ({x} := {value}) is None else local_text({x}, ZONE)"
    if field.kind == "bool":
        return f"'' if ({x} := {value}) is None else ('true' if {x} else 'false')"
    return f"csv_cell({value}, ZONE)"


def csv_cells(
    fields: Sequence[ExportField], zone: ZoneInfo, *, masked: bool
) -> Callable[[OrderRecord], list[str]]:
    """The function giving a record's CSV row: the same text as ``[csv_cell(v, zone) for v
    in row_values(fields, record, masked=masked)]``.

    It is written for the fields asked for, as one list display of one expression a column
    (the way ``attrs`` and ``dataclasses`` write their methods): the export's inner loop
    then makes no call per cell beyond the formatting itself. The source is built from the
    catalogue's kinds alone: no text from the database or the caller reaches it.
    """
    env: dict[str, Any] = {
        "STARTS": FORMULA_STARTS,
        "ZONE": zone,
        "minor_text": minor_text,
        "local_text": local_text,
        "csv_cell": csv_cell,
    }
    cells = [_cell_source(i, f, masked, env) for i, f in enumerate(fields)]
    source = "def row(r):\n    return [\n" + "".join(f"        {c},\n" for c in cells) + "    ]\n"
    exec(compile(source, "<ordercore export row>", "exec"), env)
    row: Callable[[OrderRecord], list[str]] = env["row"]
    return row


class CsvSink:
    """CSV rows into a text stream (the caller opens it with ``newline=""``)."""

    def __init__(
        self,
        out: IO[str],
        fields: Sequence[ExportField],
        zone: ZoneInfo,
        *,
        masked: bool = True,
    ) -> None:
        self._writer = csv.writer(out)
        self._zone = zone
        self._row = csv_cells(fields, zone, masked=masked)
        self._writer.writerow([f.name for f in fields])

    def write_records(self, records: Sequence[OrderRecord]) -> None:
        self._writer.writerows(map(self._row, records))

    def write(self, values: Sequence[Value]) -> None:
        """One row of values (already masked)."""
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
        masked: bool = True,
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
        self._masked = masked
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

    def write_records(self, records: Sequence[OrderRecord]) -> None:
        fields, masked = self._fields, self._masked
        for record in records:
            self.write(row_values(fields, record, masked=masked))

    def write(self, values: Sequence[Value]) -> None:
        """One row of values (already masked)."""
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
