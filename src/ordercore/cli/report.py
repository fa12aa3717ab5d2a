"""``ordercore report``: the sales report of a period as PDF, Excel or HTML."""

from __future__ import annotations

import click

from ordercore import Actor
from ordercore._reports.stats import Granularity

from ._common import _core, _emit_json
from ._periods import period_options, stats_period


@click.command("report")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pdf", "xlsx", "html"]),
    default="pdf",
    show_default=True,
)
@click.option(
    "--output", "-o", required=True, type=click.Path(dir_okay=False), help="The file to write."
)
@click.option("--title", default="Sales report", show_default=True)
@period_options
@click.pass_context
def report(
    ctx: click.Context,
    /,
    fmt: str,
    output: str,
    title: str,
    period: str | None,
    date_from: str | None,
    date_to: str | None,
    tz: str | None,
    by: Granularity,
    currency: str | None,
    excluded: tuple[str, ...],
    actor: Actor,
    as_json: bool,
) -> None:
    """Write the sales report of a period: headline figures with growth, the sales trend,
    channel shares and success rates, best sellers and low stock (the statistics of
    `ordercore stats`). PDF charts are vector graphics; HTML is one self-contained file."""
    core = _core(ctx)
    result = core.export.report(
        stats_period(core, period, date_from, date_to, tz, by),
        fmt,
        output,
        actor=actor,
        currency=currency,
        exclude_channels=excluded,
        title=title,
    )
    if as_json:
        _emit_json(
            {
                "output": output,
                "format": fmt,
                "period": result.period_text,
                "currencies": [c.currency.code for c in result.sales.currencies],
            }
        )
        return
    click.echo(f"wrote the {fmt} sales report of {result.period_text} to {output}")
