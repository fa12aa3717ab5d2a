"""``ordercore db``: create, migrate and inspect the database schema."""

from __future__ import annotations

import click

from ordercore.adapters.sqlalchemy import migrate

from ._common import _emit_json, _State, json_option


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate ordercore's tables to the newest revision."""
    core = ctx.ensure_object(_State).core(check_schema=False)
    core.upgrade()
    click.echo(f"database is at revision {migrate.head_revision()}")


@db.command("current")
@json_option
@click.pass_context
def db_current(ctx: click.Context, as_json: bool) -> None:
    """Show the database's revision and the newest one."""
    core = ctx.ensure_object(_State).core(check_schema=False)
    s = core.settings
    current = migrate.current_revision(core.engine, prefix=s.table_prefix, schema=s.schema)
    data = {"current": current, "head": migrate.head_revision()}
    if as_json:
        _emit_json(data)
    else:
        click.echo(f"current {current or '(none)'}, newest {data['head']}")
