"""``ordercore demo``: a fresh SQLite database with sample orders (the body is ``_demo``)."""

from __future__ import annotations

import click
from rich.text import Text

from ._common import _console, _emit_json, _State, json_option


@click.command()
@click.option(
    "--database",
    default=None,
    type=click.Path(dir_okay=False),
    help="SQLite file to create (replaced if it exists) [default: the --database-url when "
    "one is given, else ordercore-demo.db].",
)
@json_option
@click.pass_context
def demo(ctx: click.Context, database: str | None, as_json: bool) -> None:
    """Create a fresh database and walk sample orders through their life."""
    from ._demo import run_demo

    state: _State = ctx.ensure_object(_State)
    if database is None:
        database = state.database_url or "ordercore-demo.db"
    steps = run_demo(database)
    if as_json:
        _emit_json({"database": database, "steps": steps})
        return
    console = _console()
    for step in steps:
        console.print(Text.assemble(("•", "bold"), f" {step['text']}"))
    url = database if "://" in database else f"sqlite:///{database}"
    console.print(f"\nexplore it: ordercore --database-url {url} orders show NUMBER")
