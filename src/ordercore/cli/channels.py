"""``ordercore channels``: which payment channels are installed, configured and enabled, and
why one is off; ``check`` validates configuration and key material without a network call."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ordercore import ChannelStatus, OrderCore

from ._common import EXIT_REFUSED, _console, _emit_json, _State, json_option


@click.group()
def channels() -> None:
    """Payment channels: installed, configured, enabled."""


def _core_without_database(ctx: click.Context) -> OrderCore:
    state: _State = ctx.ensure_object(_State)
    return state.core(check_schema=False)


def channel_status_view(status: ChannelStatus) -> dict[str, Any]:
    def money(value: Any) -> str | None:
        return None if value is None else str(value.amount)

    return {
        "name": status.name,
        "plugin": status.plugin,
        "configured": status.configured,
        "enabled": status.enabled,
        "methods": list(status.methods),
        "currencies": list(status.currencies),
        "min_amount": money(status.min_amount),
        "max_amount": money(status.max_amount),
        "limit_currency": next(
            (m.currency.code for m in (status.min_amount, status.max_amount) if m is not None),
            None,
        ),
        "fee_percent": status.fee_percent,
        "fee_fixed": status.fee_fixed,
        "fee_currency": status.fee_currency,
        "fee_borne_by": status.fee_borne_by,
        "problem": status.problem,
    }


def _print(statuses: list[ChannelStatus]) -> None:
    table = Table()
    widest = max((len(s.name) for s in statuses), default=7)
    table.add_column("channel", no_wrap=True, min_width=widest)  # a name is never cut
    table.add_column("plugin", overflow="fold")
    for heading in ("enabled", "methods", "limits", "fees", "why off"):
        table.add_column(heading)
    for s in statuses:
        limits = " – ".join(str(m) for m in (s.min_amount, s.max_amount) if m is not None)
        fees = ", ".join(
            p
            for p in (
                f"{s.fee_percent} %" if s.fee_percent else "",
                f"{s.fee_fixed} {s.fee_currency or ''}".strip() if s.fee_fixed else "",
            )
            if p
        )
        if fees:
            fees += f" ({s.fee_borne_by})"
        table.add_row(
            Text(s.name),
            Text(s.plugin or "-"),
            "yes" if s.enabled else "no",
            Text(", ".join(s.methods)),
            Text(limits),
            Text(fees),
            Text(s.problem or ""),
        )
    _console().print(table)


@channels.command("list")
@json_option
@click.pass_context
def channels_list(ctx: click.Context, as_json: bool) -> None:
    """Every channel an installed plugin offers or the configuration names: enabled or not,
    its methods, limits and fees, and why a channel is off."""
    statuses = _core_without_database(ctx).channel_statuses()
    if as_json:
        _emit_json({"items": [channel_status_view(s) for s in statuses]})
    else:
        _print(statuses)


@channels.command("check")
@click.argument("name", required=False)
@json_option
@click.pass_context
def channels_check(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Load the configuration and key material of channel NAME (or of every configured
    channel) without calling any platform; exit 1 when one of them is broken."""
    statuses = _core_without_database(ctx).channel_statuses()
    if name is not None:
        statuses = [s for s in statuses if s.name == name]
        if not statuses:
            raise click.UsageError(f"no channel {name!r} is installed or configured")
    else:
        statuses = [s for s in statuses if s.configured]
    broken = [s for s in statuses if s.configured and s.problem is not None]
    if name is not None and statuses[0].problem is not None:
        broken = statuses
    if as_json:
        _emit_json({"ok": not broken, "items": [channel_status_view(s) for s in statuses]})
    else:
        for s in statuses:
            if s.problem is None:
                state = "ok" if s.enabled else "ok (switched off)"
                click.echo(f"{s.name}: {state}")
            else:
                click.echo(f"{s.name}: {s.problem}", err=True)
        if not statuses:
            click.echo("no channel is configured")
    if broken:
        ctx.exit(EXIT_REFUSED)
