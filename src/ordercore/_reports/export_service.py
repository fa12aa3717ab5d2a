"""The export use cases: ``core.export.orders``, ``.report``, ``.backup`` and ``.restore``.

An order export reads the orders an :class:`~ordercore._orders.listing.OrderFilter` selects
in the order list's order, chunk by chunk, and hands each chunk to a writer (CSV, Excel,
PDF). It reads through the *reporting* engine (``Settings.reporting_database_url``, a read
replica, or the main database when it is not set), in one read-only snapshot, like the
statistics and the sales report; what it writes — its audit record, the record of a refused
permission — goes to the main database. A backup reads the main database: it is the copy of
record that a restore brings back.
Everything that can be refused is checked before a byte is written: the permission
(``export``; ``orders.export_unmasked`` for personal data in clear), the fields, the format,
the time zone. A file is written beside its destination and renamed into place when
complete, so a failed export leaves nothing behind. Every export is audited: who, the
filter, the fields, the format, masked or not, how many rows.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal

from attrs import frozen

from ordercore._actor import Actor
from ordercore._audit.chain import AuditEntry
from ordercore._context import Service
from ordercore._errors import Conflict, InvalidField
from ordercore._orders.listing import OrderFilter, load_zone
from ordercore._permissions import Permission

from . import backup as backup_format
from .fields import ExportField, needs, resolve_fields
from .pdf import PdfSink
from .report import TOP_PRODUCTS, SalesReport, html_report
from .report_files import write_pdf_report, write_xlsx_report
from .stats import StatsPeriod
from .tabular import SHEET_ROWS, CsvSink, RowSink, XlsxSink

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

__all__ = [
    "FORMATS",
    "BackupResult",
    "ExportFormat",
    "ExportResult",
    "ExportService",
    "describe_filter",
]

ExportFormat = Literal["csv", "xlsx", "pdf"]
FORMATS: Final = ("csv", "xlsx", "pdf")
REPORT_FORMATS: Final = ("pdf", "xlsx", "html")
Destination = str | os.PathLike[str] | IO[str] | IO[bytes]
Progress = Callable[[int], None]


@frozen
class ExportResult:
    """What an order export wrote."""

    rows: int
    fields: tuple[str, ...]
    format: str
    masked: bool
    destination: str
    sheets: int = 1


@frozen
class BackupResult:
    """What a backup wrote or a restore loaded: rows per table."""

    destination: str
    tables: dict[str, int]
    schema_revision: str

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def describe_filter(flt: OrderFilter) -> dict[str, Any]:
    """The criteria of ``flt`` that are set, as JSON-ready values (for the audit record)."""
    out: dict[str, Any] = {}
    for name in (
        "statuses",
        "created_from",
        "created_to",
        "channel",
        "customer_id",
        "sku",
        "min_amount",
        "max_amount",
        "flag",
        "number_prefix",
        "special",
    ):
        value = getattr(flt, name)
        if value is None or value == ():
            continue
        if name == "statuses":
            value = [s.value for s in value]
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif name in ("min_amount", "max_amount"):
            value = str(value)
        out[name] = value
    return out


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ordercore")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _name(destination: Destination) -> str:
    if isinstance(destination, (str, os.PathLike)):
        return os.fspath(destination)
    return str(getattr(destination, "name", "<stream>"))


class _Target:
    """A destination path written through a temporary file renamed into place on success,
    or a stream the caller owns."""

    def __init__(self, destination: Destination, *, binary: bool) -> None:
        self.path: Path | None = None
        self.stream: Any = None
        if isinstance(destination, (str, os.PathLike)):
            self.path = Path(destination)
            if self.path.is_dir():
                raise InvalidField(f"output {self.path} is a directory", field="output")
            if not self.path.parent.is_dir():
                raise InvalidField(f"folder {self.path.parent} does not exist", field="output")
            self.temp = self.path.with_name(f".{self.path.name}.partial")
        else:
            self.stream = destination
        self.binary = binary

    def open(self, *, bom: bool = True) -> Any:
        """The stream to write: the caller's, or the temporary file (text: UTF-8, with a
        byte-order mark when ``bom``)."""
        if self.path is None:
            return self.stream
        if self.binary:
            return str(self.temp)
        # "utf-8-sig" would write the same bytes, through an encoder written in Python that
        # runs on every write (a row of CSV): the mark is written once, and the rest is
        # plain UTF-8, encoded in C
        handle = open(self.temp, "w", encoding="utf-8", newline="", buffering=1 << 16)  # noqa: SIM115
        if bom:
            handle.write("\ufeff")
        return handle

    def done(self, handle: Any) -> None:
        if self.path is None:
            return
        if not self.binary:
            handle.close()
        os.replace(self.temp, self.path)

    def failed(self, handle: Any) -> None:
        if self.path is None:
            return
        if handle is not None and not self.binary:
            handle.close()
        self.temp.unlink(missing_ok=True)


class ExportService(Service):
    """Order exports (CSV, Excel, PDF), backups and restores."""

    def _audit(self, actor: Actor, action: str, target: str, after: dict[str, Any]) -> None:
        def work(uow: UnitOfWork, now: datetime) -> None:
            uow.record(AuditEntry("export", target[:64], action, actor, now, after=after))

        self._run(work)

    def _permit(self, actor: Actor, *permissions: str, target: str) -> None:
        def work(_uow: UnitOfWork, _now: datetime) -> None:
            for permission in permissions:
                self._check(actor, permission, target)

        self._run(work)  # a refusal is recorded by _run

    # -- orders -------------------------------------------------------------------------
    def orders(
        self,
        flt: OrderFilter | None = None,
        fields: Iterable[str] | str | None = None,
        format: ExportFormat | str = "csv",
        destination: Destination = "-",
        *,
        mask: bool = True,
        tz: str | None = None,
        actor: Actor,
        progress: Progress | None = None,
        chunk: int = 2000,
        sheet_rows: int = SHEET_ROWS,
    ) -> ExportResult:
        """Export the orders ``flt`` selects (every order without it), newest first exactly
        as the order list walks them, to ``destination`` (a path, or an open stream: text
        for CSV, binary for Excel and PDF). ``fields`` picks and orders the columns
        (:data:`~ordercore._reports.fields.DEFAULT_FIELDS` when None); personal data is
        masked unless ``mask=False``, which needs ``orders.export_unmasked``."""
        flt = flt or OrderFilter()
        if format not in FORMATS:
            raise InvalidField(
                f"format must be one of {', '.join(FORMATS)}, not {format!r}", field="format"
            )
        chosen = resolve_fields(fields)
        zone_name = tz or self._ctx.settings.timezone
        zone = load_zone(zone_name)
        if not isinstance(chunk, int) or not 1 <= chunk <= 10_000:
            raise InvalidField("chunk must be a whole number from 1 to 10000", field="chunk")
        if isinstance(sheet_rows, bool) or not isinstance(sheet_rows, int) or sheet_rows < 2:
            raise InvalidField("sheet_rows must be at least 2", field="sheet_rows")
        if isinstance(destination, (str, os.PathLike)) and os.fspath(destination) == "-":
            if format != "csv":
                raise InvalidField(f"{format} needs a file: give --output FILE", field="output")
            destination = sys.stdout
        permissions = [Permission.EXPORT]
        if not mask:
            permissions.append(Permission.ORDERS_EXPORT_UNMASKED)
        self._permit(actor, *permissions, target=f"export:orders:{format}")
        target = _Target(destination, binary=format != "csv")
        handle = None
        rows = 0
        try:
            handle = target.open()
            sink = self._sink(format, handle, chosen, zone, sheet_rows, zone_name, mask)
            with self._ctx.export_reader() as reader:
                for records in reader.records(flt, needs(chosen), chunk=chunk):
                    sink.write_records(records)
                    rows += len(records)
                    if progress is not None:
                        progress(len(records))
            sink.close()
            target.done(handle)
        except BaseException:
            target.failed(handle)
            raise
        result = ExportResult(
            rows=rows,
            fields=tuple(f.name for f in chosen),
            format=format,
            masked=mask,
            destination=_name(destination),
            sheets=sink.sheets if isinstance(sink, XlsxSink) else 1,
        )
        self._audit(
            actor,
            "export.orders",
            f"orders:{format}",
            {
                "rows": rows,
                "fields": list(result.fields),
                "format": format,
                "masked": mask,
                "filter": describe_filter(flt),
                "tz": zone_name,
                "destination": result.destination,
            },
        )
        return result

    def _sink(
        self,
        format: str,
        handle: Any,
        fields: tuple[ExportField, ...],
        zone: Any,
        sheet_rows: int,
        zone_name: str,
        masked: bool,
    ) -> RowSink:
        if format == "csv":
            return CsvSink(handle, fields, zone, masked=masked)
        if format == "xlsx":
            return XlsxSink(handle, fields, zone, sheet_rows=sheet_rows, masked=masked)
        return PdfSink(
            handle,
            fields,
            zone,
            masked=masked,
            font_path=self._ctx.settings.pdf_font,
            title="Orders",
            subtitle=f"exported {self._now().astimezone(zone):%Y-%m-%d %H:%M} {zone_name}",
        )

    # -- the sales report ---------------------------------------------------------------
    def report(
        self,
        period: StatsPeriod,
        format: str = "pdf",
        destination: str | os.PathLike[str] | IO[bytes] | IO[str] = "report.pdf",
        *,
        actor: Actor,
        currency: str | None = None,
        exclude_channels: Iterable[str] = (),
        title: str = "Sales report",
    ) -> SalesReport:
        """Write the sales report of ``period`` (``core.stats``: headline figures with their
        growth, the trend, channel shares and success rates, best sellers, low stock) as
        ``pdf``, ``xlsx`` or ``html``. Needs ``export`` and ``stats.view``."""
        if format not in REPORT_FORMATS:
            raise InvalidField(
                f"format must be one of {', '.join(REPORT_FORMATS)}, not {format!r}",
                field="format",
            )
        if isinstance(destination, (str, os.PathLike)) and os.fspath(destination) == "-":
            raise InvalidField("a report needs a file: give --output FILE", field="output")
        self._permit(
            actor, Permission.EXPORT, Permission.STATS_VIEW, target=f"export:report:{format}"
        )
        stats = self._ctx.stats
        common: dict[str, Any] = {"currency": currency, "exclude_channels": exclude_channels}
        report = SalesReport(
            title=title,
            generated_at=self._now(),
            sales=stats.sales(period, **common),
            payments=stats.payments(period, **common),
            products=stats.products(period, limit=TOP_PRODUCTS, **common),
        )
        target = _Target(destination, binary=format != "html")
        handle = None
        try:
            handle = target.open(bom=False)
            if format == "html":
                handle.write(html_report(report))
            elif format == "pdf":
                write_pdf_report(report, handle, font_path=self._ctx.settings.pdf_font)
            else:
                write_xlsx_report(report, handle)
            target.done(handle)
        except BaseException:
            target.failed(handle)
            raise
        self._audit(
            actor,
            "export.report",
            f"report:{format}",
            {
                "format": format,
                "period": report.period_text,
                "currencies": [c.currency.code for c in report.sales.currencies],
                "destination": _name(destination),
            },
        )
        return report

    # -- backup and restore ---------------------------------------------------------------
    def backup(
        self,
        destination: str | os.PathLike[str] | IO[bytes],
        *,
        actor: Actor,
        progress: Progress | None = None,
    ) -> BackupResult:
        """Write every ordercore table to ``destination`` (the format of
        :mod:`ordercore._reports.backup`), from one consistent snapshot on PostgreSQL and
        MariaDB. Needs ``export`` and ``orders.export_unmasked``: a backup holds personal
        data in clear."""
        self._permit(
            actor, Permission.EXPORT, Permission.ORDERS_EXPORT_UNMASKED, target="export:backup"
        )
        target = _Target(destination, binary=True)
        handle = None
        try:
            handle = target.open()
            with self._uow() as uow:
                uow.snapshot()
                store = uow.backup_store()
                manifest = backup_format.write_backup(
                    handle,
                    ((n, store.columns(n), store.rows(n)) for n in store.names()),
                    created_at=self._now(),
                    schema_revision=store.revision(),
                    ordercore_version=_version(),
                    progress=progress,
                )
            target.done(handle)
        except BaseException:
            target.failed(handle)
            raise
        result = BackupResult(
            _name(destination),
            {t.name: t.rows for t in manifest.tables},
            manifest.schema_revision,
        )
        self._audit(
            actor,
            "export.backup",
            "backup",
            {"rows": result.rows, "tables": result.tables, "destination": result.destination},
        )
        return result

    def restore(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        *,
        actor: Actor,
        progress: Progress | None = None,
    ) -> BackupResult:
        """Load a backup into this database, which must have ordercore's tables (``ordercore
        db upgrade``) at the backup's revision and no rows in any of them. All in one
        transaction: a refused or failed restore leaves the database empty."""
        self._permit(actor, Permission.BACKUP_RESTORE, target="import:backup")
        path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        if path is not None and not os.path.isfile(path):
            raise InvalidField(f"backup file {path} does not exist", field="backup")
        stream = path if path is not None else source
        assert not isinstance(stream, os.PathLike)
        manifest, read_rows = backup_format.read_backup(stream)

        def work(uow: UnitOfWork, _now: datetime) -> None:
            store = uow.backup_store()
            if manifest.schema_revision != store.revision():
                raise InvalidField(
                    f"the backup is at schema revision {manifest.schema_revision}, this "
                    f"ordercore at {store.revision()}: restore it with the ordercore version "
                    "that wrote it, then upgrade",
                    field="backup",
                )
            known = store.names()
            for entry in manifest.tables:
                if entry.name not in known:
                    raise InvalidField(
                        f"the backup has an unknown table {entry.name!r}", field="backup"
                    )
                if dict(entry.columns) != store.columns(entry.name):
                    raise InvalidField(
                        f"the backup's columns of {entry.name} are not this database's",
                        field="backup",
                    )
            busy = store.busy()
            if busy:
                raise Conflict(
                    "a backup is restored into an empty database only; these tables have "
                    f"rows: {', '.join(busy)}"
                )
            store.clear_seed()
            by_name = {t.name: t for t in manifest.tables}
            for name in known:  # parents first
                table = by_name.get(name)
                if table is None:
                    continue
                for batch in read_rows(table):
                    store.insert(name, batch)
                    if progress is not None:
                        progress(len(batch))
            store.reset_sequences()

        self._run(work)
        result = BackupResult(
            path or _name(source),
            {t.name: t.rows for t in manifest.tables},
            manifest.schema_revision,
        )
        self._audit(
            actor,
            "import.backup",
            "backup",
            {
                "rows": result.rows,
                "tables": result.tables,
                "source": result.destination,
                "created_at": manifest.created_at,
            },
        )
        return result
