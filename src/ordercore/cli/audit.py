"""``ordercore audit``: verify and read the hash-chained audit trail."""

from __future__ import annotations

import click
from rich.table import Table

from ._common import EXIT_CHAIN_BROKEN, _console, _core, _emit_json, json_option
from ._views import audit_record_view


@click.group()
def audit() -> None:
    """The hash-chained audit trail."""


@audit.command("verify")
@json_option
@click.pass_context
def audit_verify(ctx: click.Context, as_json: bool) -> None:
    """Recompute the audit chain; exit 3 and name the first broken record if any."""
    verdict = _core(ctx).audit.verify()
    if as_json:
        _emit_json(
            {
                "ok": verdict.ok,
                "checked": verdict.checked,
                "broken_seq": verdict.broken_seq,
                "problem": verdict.problem,
            }
        )
    elif verdict.ok:
        click.echo(f"audit chain intact: {verdict.checked} records verified")
    else:
        click.echo(
            f"audit chain broken at record {verdict.broken_seq}: {verdict.problem} "
            f"({verdict.checked} records verified before it)",
            err=True,
        )
    if not verdict.ok:
        ctx.exit(EXIT_CHAIN_BROKEN)


@audit.command("log")
@click.argument("entity_kind", type=click.Choice(["order", "customer", "product"]))
@click.argument("entity_id")
@json_option
@click.pass_context
def audit_log(ctx: click.Context, entity_kind: str, entity_id: str, as_json: bool) -> None:
    """Show the audit records of one order, customer or product."""
    records = _core(ctx).audit.records(entity_kind, entity_id)
    if as_json:
        _emit_json({"items": [audit_record_view(r) for r in records], "next_cursor": None})
        return
    table = Table("seq", "at", "actor", "action", "before", "after", "reason")
    for r in records:
        table.add_row(
            str(r.seq),
            r.at.isoformat(),
            f"{r.actor_kind}:{r.actor_id}",
            r.action,
            r.before or "",
            r.after or "",
            r.reason or "",
        )
    _console().print(table)
