"""``ordercore anomalies``: payment anomalies, from identification to resolution."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from ordercore import Actor, Anomaly, AnomalyKind, RefundDestination, ResolutionAction

from ._common import (
    _actor_option,
    _console,
    _core,
    _cursor_int,
    _echo_fields,
    _echo_more,
    _emit_json,
    _page_options,
    deprecated_alias,
    json_option,
)
from ._views import anomaly_view


@click.group()
def anomalies() -> None:
    """Duplicate payments, amount mismatches, payments after cancel..."""


@anomalies.command("list")
@click.option("--status", default=None, help="open, investigating, contacting, resolved")
@click.option("--kind", default=None)
@click.option("--order", "number", default=None)
@_page_options(cursor_help=None)
@json_option
@click.pass_context
def anomalies_list(
    ctx: click.Context,
    status: str | None,
    kind: str | None,
    number: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List anomalies, newest first."""
    core = _core(ctx)
    filters: dict[str, Any] = {"status": status, "kind": kind, "order_number": number}
    items = core.anomalies.list(limit=limit, before_id=_cursor_int(cursor), **filters)
    more = len(items) == limit and bool(
        core.anomalies.list(limit=1, before_id=items[-1].id, **filters)
    )
    next_cursor = str(items[-1].id) if more else None
    if as_json:
        _emit_json({"items": [anomaly_view(a) for a in items], "next_cursor": next_cursor})
        return
    table = Table("id", "kind", "status", "order", "attempt", "created")
    for a in items:
        table.add_row(
            str(a.id),
            a.kind.value,
            a.status.value,
            a.order_number or "",
            a.out_trade_no or "",
            a.created_at.isoformat(timespec="seconds"),
        )
    _console().print(table)
    _echo_more(next_cursor)


@anomalies.command("show")
@click.argument("anomaly_id", type=int)
@json_option
@click.pass_context
def anomalies_show(ctx: click.Context, anomaly_id: int, as_json: bool) -> None:
    """One anomaly with its evidence."""
    view = anomaly_view(_core(ctx).anomalies.get(anomaly_id))
    if as_json:
        _emit_json(view)
    else:
        _echo_fields(view, 14)


def _echo_anomaly(anomaly: Anomaly, as_json: bool, text: str) -> None:
    if as_json:
        _emit_json(anomaly_view(anomaly))
    else:
        click.echo(text)


@anomalies.command("open")
@click.argument("number")
@click.option(
    "--kind",
    required=True,
    type=click.Choice([k.value for k in AnomalyKind]),
    help="What is wrong (payment_not_received: the customer says they paid).",
)
@click.option("--note", required=True, help="What was reported or seen.")
@click.option(
    "--payment", "out_trade_no", default=None, help="The payment attempt (out_trade_no) concerned."
)
@_actor_option()
@json_option
@click.pass_context
def anomalies_open(
    ctx: click.Context,
    number: str,
    kind: str,
    note: str,
    out_trade_no: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Record an anomaly on an order by hand.

    The first step (identify); then `investigate`, `contact` and `resolve`."""
    anomaly = _core(ctx).anomalies.open(
        number, kind=kind, actor=actor, note=note, out_trade_no=out_trade_no
    )
    _echo_anomaly(anomaly, as_json, f"anomaly #{anomaly.id} opened on order {number} ({kind})")


@anomalies.command("investigate")
@click.argument("anomaly_id", type=int)
@click.option("--note", required=True, help="What was found so far.")
@_actor_option()
@json_option
@click.pass_context
def anomalies_investigate(
    ctx: click.Context, anomaly_id: int, note: str, actor: Actor, as_json: bool
) -> None:
    """Mark an anomaly as being looked into, saying what was found."""
    anomaly = _core(ctx).anomalies.investigate(anomaly_id, actor=actor, note=note)
    _echo_anomaly(anomaly, as_json, f"anomaly #{anomaly_id}: {anomaly.status.value}")


@anomalies.command("contact")
@click.argument("anomaly_id", type=int)
@click.option("--note", required=True, help="What the customer was told or asked.")
@click.option("--channel", default="email", show_default=True, help="How: email, phone, chat...")
@_actor_option()
@json_option
@click.pass_context
def anomalies_contact(
    ctx: click.Context, anomaly_id: int, note: str, channel: str, actor: Actor, as_json: bool
) -> None:
    """Record that the customer was contacted.

    Also kept as a communication on the order."""
    anomaly = _core(ctx).anomalies.contact(anomaly_id, actor=actor, note=note, channel=channel)
    _echo_anomaly(anomaly, as_json, f"anomaly #{anomaly_id}: {anomaly.status.value} (by {channel})")


@anomalies.command("resolve")
@click.argument("anomaly_id", type=int)
@click.option(
    "--action",
    default=ResolutionAction.DISMISS.value,
    show_default=True,
    type=click.Choice([a.value for a in ResolutionAction]),
    help="refund: give back a duplicate or after-cancel payment; resend: ask the channel "
    "again for a payment the customer says they made; accept: take a payment of the wrong "
    "amount; fraud: flag the order; dismiss: nothing to do.",
)
@click.option("--note", "--resolution", "note", required=True, help="What was done and why.")
@click.option(
    "--destination",
    default=RefundDestination.ORIGINAL.value,
    show_default=True,
    type=click.Choice([d.value for d in RefundDestination]),
    help="Where --action refund sends the money.",
)
@deprecated_alias(
    "--to", "--destination", "destination", type=click.Choice([d.value for d in RefundDestination])
)
@_actor_option()
@json_option
@click.pass_context
def anomalies_resolve(
    ctx: click.Context,
    anomaly_id: int,
    action: str,
    note: str,
    destination: str,
    actor: Actor,
    as_json: bool,
) -> None:
    """Resolve an anomaly by an action, saying what was done.

    `--resolution` is the old name of `--note`."""
    anomaly = _core(ctx).anomalies.resolve(
        anomaly_id, actor=actor, note=note, action=action, destination=destination
    )
    _echo_anomaly(anomaly, as_json, f"anomaly #{anomaly_id} resolved: {anomaly.resolution}")
