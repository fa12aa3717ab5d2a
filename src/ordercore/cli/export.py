"""``ordercore export``: orders to CSV, Excel or PDF, and the whole database to a backup;
``ordercore import backup``: a backup into an empty database."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from ordercore import Actor
from ordercore._reports.fields import FIELDS, describe

from ._common import (
    _actor_option,
    _core,
    _emit_json,
    json_option,
    order_filter,
    order_filter_options,
)


@contextmanager
def _progress(label: str, *, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A rich progress display on standard error (rows so far, rate), or nothing when
    ``quiet`` or standard error is not a terminal."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda n: bar.advance(task, n)


@click.group()
def export() -> None:
    """Export orders (CSV, Excel, PDF) or back up every table."""


@export.command("orders")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "xlsx", "pdf"]), default="csv", show_default=True
)
@click.option(
    "--output", "-o", required=True, help="The file to write; '-' streams CSV to standard output."
)
@order_filter_options
@click.option(
    "--fields",
    default=None,
    help="Comma-separated field names, in column order (see `export fields`).",
)
@click.option(
    "--mask/--no-mask",
    default=True,
    show_default=True,
    help="Mask personal data; --no-mask needs orders.export_unmasked and is audited.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@_actor_option()
@json_option
@click.pass_context
def export_orders(
    ctx: click.Context,
    /,
    fmt: str,
    output: str,
    fields: str | None,
    mask: bool,
    quiet: bool,
    actor: Actor,
    as_json: bool,
    **filters: Any,
) -> None:
    """Export the orders `orders list` would list (every order without a filter), in the
    same order. Times are written in --tz."""
    core = _core(ctx)
    flt, zone = order_filter(core, filters)
    with _progress("exporting orders", quiet=quiet or output == "-") as progress:
        result = core.export.orders(
            flt, fields, fmt, output, mask=mask, tz=zone, actor=actor, progress=progress
        )
    view = {
        "rows": result.rows,
        "format": result.format,
        "fields": list(result.fields),
        "masked": result.masked,
        "output": result.destination,
        "sheets": result.sheets,
    }
    if as_json:
        if output == "-":
            click.echo(_json_text(view), err=True)
        else:
            _emit_json(view)
    elif output != "-":
        masked = "masked" if result.masked else "NOT masked"
        click.echo(f"exported {result.rows} orders to {result.destination} ({masked})")


def _json_text(view: dict[str, Any]) -> str:
    import json

    return json.dumps(view, ensure_ascii=False)


@export.command("fields")
@json_option
def export_fields(as_json: bool) -> None:
    """List the fields an order export can have."""
    items = describe(list(FIELDS.values()))
    if as_json:
        _emit_json({"items": items})
        return
    for item in items:
        masked = f" [masked as {item['masked']}]" if item["masked"] else ""
        click.echo(f"{item['name']:16} {item['kind']:7} {item['description']}{masked}")


@export.command("backup")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="The backup file to write (a zip).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@_actor_option()
@json_option
@click.pass_context
def export_backup(
    ctx: click.Context, output: str, quiet: bool, actor: Actor, as_json: bool
) -> None:
    """Write every ordercore table to a backup file (JSON Lines in a zip, with a manifest
    and checksums)."""
    with _progress("backing up", quiet=quiet) as progress:
        result = _core(ctx).export.backup(output, actor=actor, progress=progress)
    if as_json:
        _emit_json(
            {
                "output": result.destination,
                "rows": result.rows,
                "tables": result.tables,
                "schema_revision": result.schema_revision,
            }
        )
        return
    click.echo(
        f"backed up {result.rows} rows of {len(result.tables)} tables to {result.destination}"
    )


@click.group("import")
def import_() -> None:
    """Load data into ordercore (a backup)."""


@import_.command("backup")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@_actor_option(default="operator:cli:admin")
@json_option
@click.pass_context
def import_backup(
    ctx: click.Context, source: str, quiet: bool, actor: Actor, as_json: bool
) -> None:
    """Restore a backup into an empty, upgraded database (`ordercore db upgrade` first)."""
    with _progress("restoring", quiet=quiet) as progress:
        result = _core(ctx).export.restore(source, actor=actor, progress=progress)
    if as_json:
        _emit_json(
            {
                "source": result.destination,
                "rows": result.rows,
                "tables": result.tables,
                "schema_revision": result.schema_revision,
            }
        )
        return
    click.echo(
        f"restored {result.rows} rows of {len(result.tables)} tables from {result.destination}"
    )


def demo_export(core: Any, say: Callable[..., None]) -> None:
    """The demo's export step: every order to a masked CSV (in a temporary folder), and
    what a row of it looks like."""
    import csv
    import io

    out = io.StringIO(newline="")
    actor = Actor.operator("fay", "finance")
    result = core.export.orders(
        None,
        "number,status,customer_name,customer_email,products,payable",
        "csv",
        out,
        actor=actor,
    )
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    first = rows[0] if rows else {}
    say(
        f"export: {result.rows} orders to CSV, personal data masked (e.g. "
        f"{first.get('customer_name', '')} {first.get('customer_email', '')}); the export is "
        "in the audit trail",
        export_rows=result.rows,
    )
