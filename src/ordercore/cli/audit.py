"""``ordercore audit``: verify, seal, checkpoint and read the hash-chained audit trail."""

from __future__ import annotations

import json

import click
from rich.table import Table

from ordercore import AuditChainError, AuditRecord, Checkpoint
from ordercore._audit.chain import KEYLESS_LIMITS

from ._common import EXIT_CHAIN_BROKEN, _console, _core, _emit_json, json_option
from ._views import audit_record_view


@click.group()
def audit() -> None:
    """The hash-chained audit trail."""


@audit.command("verify")
@click.option(
    "--since-checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="A checkpoint from `audit checkpoint`: also prove nothing it covers was removed "
    "or rewritten.",
)
@json_option
@click.pass_context
def audit_verify(ctx: click.Context, checkpoint_file: str | None, as_json: bool) -> None:
    """Check every record of the audit chain, its head, and the entries not sealed yet; exit 3
    and name every record that does not belong."""
    core = _core(ctx)
    if checkpoint_file is None:
        verdict = core.audit.verify()
    else:
        with open(checkpoint_file, "rb") as handle:
            checkpoint = Checkpoint.from_json(handle.read(64 * 1024))
        verdict = core.audit.verify_since(checkpoint)
    if as_json:
        _emit_json(
            {
                "ok": verdict.ok,
                "checked": verdict.checked,
                "pending": verdict.pending,
                "keyed": verdict.keyed,
                "broken_seq": verdict.broken_seq,
                "problem": verdict.problem,
                "problems": list(verdict.problems),
                "limits": None if verdict.keyed else KEYLESS_LIMITS,
            }
        )
    elif verdict.ok:
        click.echo(
            f"audit chain intact: {verdict.checked} records verified, "
            f"{verdict.pending} entries waiting to be sealed"
        )
    else:
        click.echo(f"audit chain broken at record {verdict.broken_seq}:", err=True)
        for problem in verdict.problems:
            click.echo(f"  {problem}", err=True)
    if not as_json and not verdict.keyed:
        click.echo(f"note: {KEYLESS_LIMITS}", err=True)
    if not verdict.ok:
        ctx.exit(EXIT_CHAIN_BROKEN)


@audit.command("seal")
@json_option
@click.pass_context
def audit_seal(ctx: click.Context, as_json: bool) -> None:
    """Link the entries written since the last seal into the chain (the job runner does this
    every pass). Exit 3 when the chain shows tampering: it is not extended then."""
    try:
        sealed = _core(ctx).audit.seal_all()
    except AuditChainError as exc:
        if as_json:
            _emit_json({"sealed": 0, "problem": str(exc)})
        else:
            click.echo(str(exc), err=True)
        ctx.exit(EXIT_CHAIN_BROKEN)
    if as_json:
        _emit_json({"sealed": sealed, "problem": None})
    else:
        click.echo(f"sealed {sealed} audit entries")


@audit.command("checkpoint")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the checkpoint to this file (keep it outside the database).",
)
@json_option
@click.pass_context
def audit_checkpoint(ctx: click.Context, output: str | None, as_json: bool) -> None:
    """Seal, then print a signed copy of the chain head (HMAC with the audit key) to keep
    elsewhere; `audit verify --since-checkpoint FILE` proves nothing it covers was removed."""
    try:
        checkpoint = _core(ctx).audit.checkpoint()
    except AuditChainError as exc:
        click.echo(str(exc), err=True)
        ctx.exit(EXIT_CHAIN_BROKEN)
    text = checkpoint.to_json()
    if output is not None:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    if as_json:
        _emit_json(json.loads(text))
    else:
        click.echo(text)
        if checkpoint.mac is None:
            click.echo(
                "note: no audit key is configured, so this checkpoint is not signed: only "
                "where you keep it vouches for it",
                err=True,
            )


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
            str(r.seq) if isinstance(r, AuditRecord) else "pending",
            r.at.isoformat(),
            f"{r.actor_kind}:{r.actor_id}",
            r.action,
            r.before or "",
            r.after or "",
            r.reason or "",
        )
    _console().print(table)
