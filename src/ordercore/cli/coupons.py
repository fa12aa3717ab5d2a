"""``ordercore coupons``: add, list, show and disable coupons."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import click
from rich.table import Table

from ordercore import Actor, InvalidField, Money, OrderCoreError
from ordercore._money import to_decimal

from ._common import (
    _actor_option,
    _console,
    _core,
    _echo_fields,
    _echo_more,
    _emit_json,
    _page_options,
    _parse_time,
    json_option,
)
from ._views import coupon_view


@click.group()
def coupons() -> None:
    """Coupons."""


def _when(value: str | None, name: str, zone: str) -> datetime | None:
    if value is None:
        return None
    return _parse_time(value, zone, end=name == "valid_until", name=name)


@coupons.command("add")
@click.option("--code", required=True)
@click.option("--percent", default=None, help="Percent off (exclusive with --amount).")
@click.option("--amount", default=None, help="Fixed amount off.")
@click.option("--currency", default="CNY", show_default=True)
@click.option("--max-discount", default=None, help="Cap of a percent coupon.")
@click.option("--min-amount", default=None, help="Minimum amount of eligible products.")
@click.option("--valid-from", default=None, help="YYYY-MM-DD or ISO time (in the time zone).")
@click.option("--valid-until", default=None, help="YYYY-MM-DD (inclusive) or ISO time.")
@click.option("--limit-total", type=int, default=None)
@click.option("--limit-per-customer", type=int, default=None)
@click.option("--product", "skus", multiple=True, help="Restrict to this sku, repeatable.")
@_actor_option()
@json_option
@click.pass_context
def coupons_add(
    ctx: click.Context,
    code: str,
    percent: str | None,
    amount: str | None,
    currency: str,
    max_discount: str | None,
    min_amount: str | None,
    valid_from: str | None,
    valid_until: str | None,
    limit_total: int | None,
    limit_per_customer: int | None,
    skus: tuple[str, ...],
    actor: Actor,
    as_json: bool,
) -> None:
    """Add a coupon."""
    core = _core(ctx)
    cur = currency.upper()
    zone = core.settings.timezone

    def money(value: str | None) -> Money | None:
        return None if value is None else Money.of(value, cur)

    if percent is not None:
        try:
            pct: Decimal | None = to_decimal(percent, what="percent")
        except OrderCoreError:
            raise InvalidField(f"--percent {percent!r} is not a number", field="percent") from None
    else:
        pct = None
    coupon = core.coupons.add(
        code=code,
        currency=cur,
        percent=pct,
        amount=money(amount),
        max_discount=money(max_discount),
        min_amount=money(min_amount),
        valid_from=_when(valid_from, "valid_from", zone),
        valid_until=_when(valid_until, "valid_until", zone),
        limit_total=limit_total,
        limit_per_customer=limit_per_customer,
        skus=skus,
        actor=actor,
    )
    if as_json:
        _emit_json(coupon_view(coupon, 0))
    else:
        click.echo(f"coupon {coupon.code} added")


@coupons.command("list")
@_page_options()
@json_option
@click.pass_context
def coupons_list(ctx: click.Context, limit: int, cursor: str | None, as_json: bool) -> None:
    """List coupons by code."""
    core = _core(ctx)
    items = core.coupons.list(limit=limit, after_code=cursor)
    more = len(items) == limit and bool(core.coupons.list(limit=1, after_code=items[-1][0].code))
    next_cursor = items[-1][0].code if more else None
    if as_json:
        _emit_json({"items": [coupon_view(c, u) for c, u in items], "next_cursor": next_cursor})
        return
    table = Table("code", "off", "min", "valid until", "uses", "limit", "active")
    for c, uses in items:
        off = f"{c.percent}%" if c.percent is not None else str(c.amount)
        table.add_row(
            c.code,
            off,
            str(c.min_amount or ""),
            c.valid_until.isoformat() if c.valid_until else "",
            str(uses),
            str(c.limit_total or "∞"),
            "yes" if c.active else "no",
        )
    _console().print(table)
    _echo_more(next_cursor)


@coupons.command("show")
@click.argument("code")
@json_option
@click.pass_context
def coupons_show(ctx: click.Context, code: str, as_json: bool) -> None:
    """Show one coupon and its uses."""
    coupon, uses = _core(ctx).coupons.get(code)
    view = coupon_view(coupon, uses)
    if as_json:
        _emit_json(view)
    else:
        _echo_fields(view, 20)


@coupons.command("disable")
@click.argument("code")
@click.option("--reason", default=None)
@_actor_option()
@json_option
@click.pass_context
def coupons_disable(
    ctx: click.Context, code: str, reason: str | None, actor: Actor, as_json: bool
) -> None:
    """Disable a coupon (orders holding a use keep it)."""
    core = _core(ctx)
    coupon = core.coupons.disable(code, actor=actor, reason=reason)
    if as_json:
        _emit_json(coupon_view(coupon, core.coupons.get(code)[1]))
    else:
        click.echo(f"coupon {code} disabled")
