"""``ordercore payments``: payment attempts and transfer reviews."""

from __future__ import annotations

import click
from rich.table import Table

from ordercore import Actor

from ._common import (
    _actor_option,
    _console,
    _core,
    _cursor_int,
    _echo_fields,
    _echo_more,
    _emit_json,
    _page_options,
    json_option,
)
from ._views import attempt_view


@click.group()
def payments() -> None:
    """Payment attempts and transfer reviews."""


@payments.command("list")
@click.option("--status", default=None, help="created, pending, awaiting_review, unknown, ...")
@click.option("--order", "number", default=None, help="Only this order's attempts.")
@_page_options(cursor_help=None)
@json_option
@click.pass_context
def payments_list(
    ctx: click.Context,
    status: str | None,
    number: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List payment attempts, newest first."""
    core = _core(ctx)
    if number:
        items = core.payments.attempts(number)
        next_cursor = None
    else:
        items = core.payments.list(limit=limit, before_id=_cursor_int(cursor), status=status)
        more = len(items) == limit and bool(
            core.payments.list(limit=1, before_id=items[-1].id, status=status)
        )
        next_cursor = str(items[-1].id) if more else None
    if as_json:
        _emit_json({"items": [attempt_view(a) for a in items], "next_cursor": next_cursor})
        return
    table = Table("attempt", "order", "channel", "status", "amount", "created")
    for a in items:
        table.add_row(
            a.out_trade_no,
            a.order_number,
            a.channel,
            a.status.value,
            str(a.amount),
            a.created_at.isoformat(timespec="seconds"),
        )
    _console().print(table)
    _echo_more(next_cursor)


@payments.command("show")
@click.argument("attempt")
@json_option
@click.pass_context
def payments_show(ctx: click.Context, attempt: str, as_json: bool) -> None:
    """Show one attempt with its platform operations."""
    core = _core(ctx)
    view = attempt_view(core.payments.attempt(attempt))
    view["operations"] = [
        {**op, "created_at": str(op["created_at"]), "finished_at": str(op["finished_at"])}
        for op in core.payments.operations(attempt)
    ]
    if as_json:
        _emit_json(view)
    else:
        _echo_fields(view, 16)


@payments.command("proof")
@click.argument("attempt")
@click.option("--reference", required=True, help="The transfer's reference or receipt number.")
@click.option("--file", "file", default=None, help="Where the receipt is stored.")
@_actor_option()
@json_option
@click.pass_context
def payments_proof(
    ctx: click.Context,
    attempt: str,
    reference: str,
    file: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Attach proof of a bank transfer; the attempt then awaits review."""
    result = _core(ctx).payments.submit_proof(attempt, reference=reference, file=file, actor=actor)
    if as_json:
        _emit_json(attempt_view(result))
    else:
        click.echo(f"attempt {attempt}: {result.status.value}")


@payments.command("approve")
@click.argument("attempt")
@click.option("--note", default=None)
@_actor_option()
@json_option
@click.pass_context
def payments_approve(
    ctx: click.Context, attempt: str, note: str | None, actor: Actor, as_json: bool
) -> None:
    """Confirm a transfer under review: the order is paid."""
    result = _core(ctx).payments.approve(attempt, actor=actor, note=note)
    if as_json:
        _emit_json(attempt_view(result))
    else:
        click.echo(f"attempt {attempt}: approved, order {result.order_number} paid")


@payments.command("reject")
@click.argument("attempt")
@click.option("--reason", required=True)
@_actor_option()
@json_option
@click.pass_context
def payments_reject(
    ctx: click.Context, attempt: str, reason: str, actor: Actor, as_json: bool
) -> None:
    """Refuse a transfer's proof: the order is cancelled (reason rejected)."""
    result = _core(ctx).payments.reject(attempt, actor=actor, reason=reason)
    if as_json:
        _emit_json(attempt_view(result))
    else:
        click.echo(f"attempt {attempt}: rejected, order {result.order_number} canceled")
