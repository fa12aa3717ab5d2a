"""``ordercore callbacks``: the log of payment notifications."""

from __future__ import annotations

from typing import Any

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


@click.group()
def callbacks() -> None:
    """The log of payment notifications: list, show why one was refused, replay."""


def _inbox_view(entry: dict[str, Any], *, with_body: bool) -> dict[str, Any]:
    view = {
        "id": entry["id"],
        "channel": entry["channel"],
        "received_at": entry["received_at"].isoformat(),
        "remote_addr": entry["remote_addr"],
        "status": entry["status"],
        "reason": entry["reason"],
        "out_trade_no": entry["out_trade_no"],
        "order": entry["order_number"],
        "replay_of": entry["replay_of"],
    }
    if with_body:
        view["headers"] = entry["headers"]
        view["header_summary"] = entry.get("header_summary")
        view["body"] = entry["body"].decode("utf-8", "replace")
    return view


@callbacks.command("list")
@click.option(
    "--status",
    default=None,
    help="applied, duplicate, anomaly, rejected, ignored, error, received, replaying, "
    "replayed, stalled",
)
@click.option("--order", "number", default=None)
@click.option("--channel", default=None)
@_page_options(cursor_help=None)
@json_option
@click.pass_context
def callbacks_list(
    ctx: click.Context,
    status: str | None,
    number: str | None,
    channel: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Stored notifications, newest first."""
    core = _core(ctx)
    filters: dict[str, Any] = {"status": status, "order_number": number, "channel": channel}
    items = core.payments.notifications(limit=limit, before_id=_cursor_int(cursor), **filters)
    more = len(items) == limit and bool(
        core.payments.notifications(limit=1, before_id=items[-1]["id"], **filters)
    )
    next_cursor = str(items[-1]["id"]) if more else None
    views = [_inbox_view(e, with_body=False) for e in items]
    if as_json:
        _emit_json({"items": views, "next_cursor": next_cursor})
        return
    table = Table("id", "received", "channel", "status", "order", "reason")
    for v in views:
        table.add_row(
            str(v["id"]),
            v["received_at"],
            v["channel"],
            v["status"],
            v["order"] or "",
            v["reason"] or "",
        )
    _console().print(table)
    _echo_more(next_cursor)


@callbacks.command("show")
@click.argument("inbox_id", type=int)
@json_option
@click.pass_context
def callbacks_show(ctx: click.Context, inbox_id: int, as_json: bool) -> None:
    """One stored notification: headers, raw body, outcome and why."""
    view = _inbox_view(_core(ctx).payments.notification(inbox_id), with_body=True)
    if as_json:
        _emit_json(view)
    else:
        _echo_fields(view, 14)


@callbacks.command("replay")
@click.argument("inbox_id", type=int)
@_actor_option()
@json_option
@click.pass_context
def callbacks_replay(ctx: click.Context, inbox_id: int, actor: Actor, as_json: bool) -> None:
    """Process a stored notification again (manually trigger callback processing); an
    unfinished original (received, stalled, error) becomes replayed, naming the new row."""
    reply = _core(ctx).payments.replay(inbox_id, actor=actor)
    data = {"status": reply.status, "body": reply.body.decode("utf-8", "replace")}
    if as_json:
        _emit_json(data)
    else:
        click.echo(f"replayed #{inbox_id}: HTTP {reply.status} {data['body']}")
