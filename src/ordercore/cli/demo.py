"""``ordercore demo``: a fresh SQLite database with sample orders (the body is ``_demo``)."""

from __future__ import annotations

import click
from rich.text import Text

from ._common import _console, _emit_json, json_option


@click.command()
@click.option(
    "--database",
    default="ordercore-demo.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="SQLite file to create (replaced if it exists).",
)
@json_option
def demo(database: str, as_json: bool) -> None:
    """Create a fresh SQLite database and walk sample orders through their life."""
    from ._demo import run_demo

    steps = run_demo(database)
    if as_json:
        _emit_json({"database": database, "steps": steps})
        return
    console = _console()
    for step in steps:
        console.print(Text.assemble(("•", "bold"), f" {step['text']}"))
    console.print(f"\nexplore it: ordercore --database-url sqlite:///{database} orders show NUMBER")
