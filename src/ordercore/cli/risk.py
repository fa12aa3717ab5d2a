"""``ordercore risk``: block- and allow-lists, decisions, the manual review queue and the
statistics of risk control."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import click
from rich.table import Table

from ordercore import Actor, InvalidField, OrderCore, RiskDecision, RiskListKind, Verdict

from ._common import (
    _actor_option,
    _console,
    _core,
    _cursor_int,
    _echo_more,
    _emit_json,
    _page_options,
    _parse_time,
    json_option,
)

_TYPES = click.Choice([k.value for k in RiskListKind])


@click.group()
def risk() -> None:
    """Risk control: lists, decisions and the review queue."""


def _expires(core: OrderCore, value: str | None) -> datetime | None:
    """``30d``, ``12h``, ``45m`` from now, or a date / ISO time (in the time zone)."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)([dhm])", value.strip())
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]
        return core.clock() + timedelta(**{unit: int(match.group(1))})
    return _parse_time(value, core.settings.timezone, name="expires")


def _print_decisions(decisions: list[RiskDecision]) -> None:
    table = Table("id", "at", "stage", "verdict", "order", "rules")
    for d in decisions:
        table.add_row(
            str(d.id),
            d.at.isoformat(timespec="seconds"),
            d.stage.value,
            d.verdict.value,
            d.order_number or d.out_trade_no or "",
            "; ".join(f"{h.rule}: {h.reason}" for h in d.hits) or "(no rule fired)",
        )
    _console().print(table)


# ---------------------------------------------------------------------------------- lists
@risk.group("list")
def risk_list() -> None:
    """Block- and allow-list entries (permission risk.lists)."""


@risk_list.command("add")
@click.option("--type", "kind", type=_TYPES, required=True)
@click.option("--value", required=True, help="Customer id, e-mail, domain, IP, CIDR, device...")
@click.option("--reason", default="", help="Why (recorded with the entry).")
@click.option("--expires", default=None, help="30d, 12h, a date or an ISO time.")
@click.option("--allow", is_flag=True, help="Put it on the allow list instead.")
@_actor_option()
@json_option
@click.pass_context
def risk_list_add(
    ctx: click.Context,
    kind: str,
    value: str,
    reason: str,
    expires: str | None,
    allow: bool,
    actor: Actor,
    as_json: bool,
) -> None:
    """Put a value on the block list (or --allow list)."""
    core = _core(ctx)
    entry = core.risk.add_to_list(
        kind, value, actor=actor, reason=reason, allow=allow, expires_at=_expires(core, expires)
    )
    if as_json:
        _emit_json(entry.as_dict())
    else:
        until = f" until {entry.expires_at.isoformat()}" if entry.expires_at else ""
        which = "allow" if entry.allow else "block"
        click.echo(f"{entry.kind.value} {entry.value} added to the {which} list{until}")


@risk_list.command("remove")
@click.option("--type", "kind", type=_TYPES, required=True)
@click.option("--value", required=True)
@click.option("--reason", default=None)
@_actor_option()
@json_option
@click.pass_context
def risk_list_remove(
    ctx: click.Context, kind: str, value: str, reason: str | None, actor: Actor, as_json: bool
) -> None:
    """Take a value off its list."""
    entry = _core(ctx).risk.remove_from_list(kind, value, actor=actor, reason=reason)
    if as_json:
        _emit_json(entry.as_dict())
    else:
        click.echo(f"{entry.kind.value} {entry.value} removed")


@risk_list.command("show")
@click.option("--type", "kind", type=_TYPES, default=None)
@click.option("--all", "include_expired", is_flag=True, help="Expired entries too.")
@click.option("--limit", default=100, show_default=True, type=int)
@_actor_option()
@json_option
@click.pass_context
def risk_list_show(
    ctx: click.Context,
    kind: str | None,
    include_expired: bool,
    limit: int,
    actor: Actor,
    as_json: bool,
) -> None:
    """Show list entries (active ones unless --all)."""
    entries = _core(ctx).risk.list_entries(
        kind=kind, include_expired=include_expired, limit=limit, actor=actor
    )
    if as_json:
        _emit_json({"items": [e.as_dict() for e in entries], "next_cursor": None})
        return
    table = Table("list", "type", "value", "reason", "added by", "expires")
    for e in entries:
        table.add_row(
            "allow" if e.allow else "block",
            e.kind.value,
            e.value,
            e.reason,
            e.added_by,
            e.expires_at.isoformat(timespec="seconds") if e.expires_at else "",
        )
    _console().print(table)


# ------------------------------------------------------------------------------ decisions
@risk.command("decisions")
@click.option("--order", default=None, help="Decisions about this order.")
@click.option("--verdict", type=click.Choice([v.value for v in Verdict]), default=None)
@_page_options(cursor_help="The next_cursor of the previous page (a decision id).")
@json_option
@click.pass_context
def risk_decisions(
    ctx: click.Context,
    order: str | None,
    verdict: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Risk decisions, newest first: the verdict, the rules that fired, what they saw."""
    found = _core(ctx).risk.decisions(
        order=order, verdict=verdict, limit=limit, before_id=_cursor_int(cursor)
    )
    next_cursor = str(found[-1].id) if len(found) == limit and found else None
    if as_json:
        _emit_json({"items": [d.as_dict() for d in found], "next_cursor": next_cursor})
        return
    _print_decisions(found)
    _echo_more(next_cursor)


@risk.command("stats")
@click.option("--hours", default=24, show_default=True, type=int, help="The period: last N hours.")
@json_option
@click.pass_context
def risk_stats(ctx: click.Context, hours: int, as_json: bool) -> None:
    """Decisions of the last --hours by stage and verdict (blocked payments count here)."""
    if hours < 1:
        raise InvalidField("--hours must be ≥ 1", field="hours")
    core = _core(ctx)
    counts = core.risk.statistics(core.clock() - timedelta(hours=hours))
    if as_json:
        _emit_json({"hours": hours, "decisions": counts})
        return
    table = Table("stage", *[v.value for v in Verdict])
    for stage, row in sorted(counts.items()):
        table.add_row(stage, *[str(row.get(v.value, 0)) for v in Verdict])
    _console().print(table)


# --------------------------------------------------------------------------------- review
@risk.group("review")
def risk_review() -> None:
    """The manual review queue (permission risk.review)."""


@risk_review.command("list")
@click.option("--limit", default=50, show_default=True, type=int)
@_actor_option()
@json_option
@click.pass_context
def risk_review_list(ctx: click.Context, limit: int, actor: Actor, as_json: bool) -> None:
    """Orders waiting for review, oldest first, with the rules that held them."""
    found = _core(ctx).risk.review_queue(limit=limit, actor=actor)
    if as_json:
        _emit_json({"items": [d.as_dict() for d in found], "next_cursor": None})
        return
    _print_decisions(found)


def _reviewed(decision: RiskDecision, as_json: bool) -> None:
    if as_json:
        _emit_json(decision.as_dict())
    else:
        hit = decision.hits[0]
        click.echo(hit.reason)


@risk_review.command("approve")
@click.argument("number")
@click.option("--note", default=None)
@_actor_option()
@json_option
@click.pass_context
def risk_review_approve(
    ctx: click.Context, number: str, note: str | None, actor: Actor, as_json: bool
) -> None:
    """Release a held order: it can be paid."""
    _reviewed(_core(ctx).risk.approve(number, actor=actor, note=note), as_json)


@risk_review.command("reject")
@click.argument("number")
@click.option("--reason", required=True, help="Why (recorded; the order is cancelled).")
@_actor_option()
@json_option
@click.pass_context
def risk_review_reject(
    ctx: click.Context, number: str, reason: str, actor: Actor, as_json: bool
) -> None:
    """Refuse a held order: it is cancelled with reason rejected."""
    _reviewed(_core(ctx).risk.reject(number, actor=actor, reason=reason), as_json)


def risk_view(core: OrderCore, number: str) -> list[dict[str, Any]]:
    """The decisions about an order, oldest first (for ``orders show``)."""
    return [d.as_dict() for d in reversed(core.risk.decisions(order=number, limit=100))]


def demo_risk(url: str, customers: tuple[int, int], say: Any) -> None:
    """The demo's risk step: a second ``OrderCore`` on the demo database with a few ``[risk]``
    rules: a velocity block, a block-listed network, an order held for review and approved."""
    from ordercore import Money, RiskBlocked, RiskContext, RiskSettings

    core = OrderCore.from_url(
        url,
        load_entry_points=False,
        risk=RiskSettings.build(max_orders_per_ip_per_hour=2, review_over="500.00"),
    )
    admin = Actor.operator("alice", "admin")
    li, han = customers
    try:
        core.risk.add_to_list("cidr", "198.51.100.0/24", actor=admin, reason="known botnet (demo)")
        ip = RiskContext(ip="203.0.113.7", device_id="demo-device-1")
        for who in (li, han, li):
            try:
                placed = core.orders.create(
                    customer_id=who, items=[("VPN-1M", 1)], actor=admin, risk=ip
                )
                say(f"order {placed.number} from 203.0.113.7: allowed", order=placed.number)
            except RiskBlocked as exc:
                say(f"refused and recorded: {exc}")
        try:
            core.orders.create(
                customer_id=han,
                items=[("VPN-1M", 1)],
                actor=admin,
                risk=RiskContext(ip="198.51.100.23"),
            )
        except RiskBlocked as exc:
            say(f"refused and recorded: {exc}")
        big = core.orders.create(customer_id=li, items=[("VPN-12M", 2)], actor=admin)
        say(
            f"order {big.number}: {big.amounts.payable} is over review_over "
            f"({Money.of('500.00', 'CNY')}), so it is held for review",
            order=big.number,
        )
        core.risk.approve(big.number, actor=admin, note="regular customer (demo)")
        say(f"order {big.number}: approved by {admin}; it can be paid now", order=big.number)
    finally:
        core.close()
