"""``ordercore stats``: sales, payments and products over a period, per currency.

Human output is rich tables, a sparkline of the sales trend and bars for shares (plain
characters, no plotting library); ``--json`` prints the views of ``_reports/stats.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal

import click
from rich.table import Table

from ordercore import Actor, Money, OrderCore, StatsPeriod
from ordercore._reports.stats import (
    Granularity,
    TimeToPay,
    payments_view,
    products_view,
    sales_view,
)

from ._common import _console, _core, _emit_json
from ._periods import period_options, stats_period

__all__ = ["demo_summary", "sparkline", "stats"]

_TICKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """One character per value, ``▁`` (0 or the least) to ``█`` (the most)."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return _TICKS[0] * len(values)
    return "".join(_TICKS[(max(v, 0) * (len(_TICKS) - 1) + top // 2) // top] for v in values)


def bar(share: Decimal | None, width: int = 20) -> str:
    """A share (0..1) as a bar of ``width`` cells."""
    if share is None:
        return ""
    cells = int((share * width).to_integral_value())
    return "█" * cells + "·" * (width - cells)


def _rate(value: Decimal | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _money(value: Money | None) -> str:
    return "-" if value is None else str(value)


def _seconds(value: int | None) -> str:
    if value is None:
        return "-"
    hours, rest = divmod(value, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _title(p: StatsPeriod) -> str:
    last = p.after - timedelta(days=1)
    return f"{p.name or 'period'} {p.first} .. {last} ({p.tz}, by {p.by})"


@click.group()
def stats() -> None:
    """Statistics: sales, payments and products, per currency, in a time zone."""


@stats.command("sales")
@period_options
@click.pass_context
def stats_sales(
    ctx: click.Context,
    period: str | None,
    date_from: str | None,
    date_to: str | None,
    tz: str | None,
    by: Granularity,
    currency: str | None,
    excluded: tuple[str, ...],
    actor: Actor,
    as_json: bool,
) -> None:
    """Orders, conversion, sales, refunds, average order value, repurchase, growth, trend."""
    core = _core(ctx)
    p = stats_period(core, period, date_from, date_to, tz, by)
    result = core.stats.sales(
        p,
        currency=currency.upper() if currency else None,
        exclude_channels=excluded,
        actor=actor,
    )
    if as_json:
        _emit_json(sales_view(result))
        return
    console = _console()
    console.print(_title(p))
    if not result.currencies:
        console.print("no orders in this period")
    for f in result.currencies:
        table = Table("figure", f"value ({f.currency.code})", "growth", title=f.currency.code)
        rows: list[tuple[str, str, str]] = [
            ("orders created", str(f.orders_created), "orders_created"),
            ("orders paid (of those)", str(f.orders_paid), "orders_paid"),
            ("conversion rate", _rate(f.conversion_rate), "conversion_rate"),
            ("paid orders", str(f.paid_orders), "paid_orders"),
            ("gross sales", _money(f.gross_sales), "gross_sales"),
            ("refunds", _money(f.refunds), "refunds"),
            ("net sales", _money(f.net_sales), "net_sales"),
            ("average order value", _money(f.average_order_value), "average_order_value"),
            ("repurchase rate", _rate(f.repurchase_rate), "repurchase_rate"),
            ("returning customers", _rate(f.returning_customer_rate), "returning_customer_rate"),
        ]
        for label, value, key in rows:
            change = f.growth.get(key)
            table.add_row(label, value, "-" if change is None else f"{change * 100:+.2f}%")
        console.print(table)
        sales = [b.gross_sales.to_minor() for b in f.trend]
        best = max(f.trend, key=lambda b: b.gross_sales.to_minor())
        console.print(
            f"sales by {p.by}:  {sparkline(sales)}  (best {best.start}: {best.gross_sales})"
        )
        console.print(f"orders by {p.by}: {sparkline([b.orders_created for b in f.trend])}")


@stats.command("payments")
@period_options
@click.pass_context
def stats_payments(
    ctx: click.Context,
    period: str | None,
    date_from: str | None,
    date_to: str | None,
    tz: str | None,
    by: Granularity,
    currency: str | None,
    excluded: tuple[str, ...],
    actor: Actor,
    as_json: bool,
) -> None:
    """Per channel: attempts, success rates, paid orders, amounts and shares, time to pay."""
    core = _core(ctx)
    p = stats_period(core, period, date_from, date_to, tz, by)
    result = core.stats.payments(
        p,
        currency=currency.upper() if currency else None,
        exclude_channels=excluded,
        actor=actor,
    )
    if as_json:
        _emit_json(payments_view(result))
        return
    console = _console()
    console.print(_title(p))
    if not result.currencies:
        console.print("no payments in this period")
    for f in result.currencies:
        table = Table(
            "channel",
            "attempts",
            "success",
            "per order",
            "paid orders",
            "amount",
            "share",
            "p50/p90 to pay",
            title=f"{f.currency.code}: {f.paid_orders} paid orders, {f.amount}",
        )
        for c in f.channels:
            table.add_row(
                c.channel or "(by hand)",
                f"{c.succeeded}/{c.attempts}",
                _rate(c.success_rate),
                _rate(c.order_success_rate),
                f"{c.paid_orders} {_rate(c.order_share)}",
                str(c.amount),
                f"{bar(c.share, 10)} {_rate(c.share)}",
                _ttp(c.time_to_pay),
            )
        console.print(table)
        console.print(f"time to pay, all channels: {_ttp(f.time_to_pay)}")


def _ttp(t: TimeToPay) -> str:
    return f"{_seconds(t.p50_seconds)} / {_seconds(t.p90_seconds)}"


@stats.command("products")
@period_options
@click.option(
    "--sort",
    type=click.Choice(["quantity", "revenue"]),
    default="quantity",
    show_default=True,
)
@click.option("--limit", default=20, show_default=True, type=int, help="Best sellers shown.")
@click.pass_context
def stats_products(
    ctx: click.Context,
    period: str | None,
    date_from: str | None,
    date_to: str | None,
    tz: str | None,
    by: Granularity,
    currency: str | None,
    excluded: tuple[str, ...],
    actor: Actor,
    as_json: bool,
    sort: str,
    limit: int,
) -> None:
    """Best sellers (quantity, revenue net of refunds, share) and the low-stock alert."""
    core = _core(ctx)
    p = stats_period(core, period, date_from, date_to, tz, by)
    result = core.stats.products(
        p,
        currency=currency.upper() if currency else None,
        exclude_channels=excluded,
        sort=sort,
        limit=limit,
        actor=actor,
    )
    if as_json:
        _emit_json(products_view(result))
        return
    console = _console()
    console.print(_title(p))
    if not result.currencies:
        console.print("no products sold in this period")
    for f in result.currencies:
        table = Table(
            "sku",
            "name",
            "quantity",
            "revenue",
            "share",
            "",
            title=f"{f.currency.code}: {f.quantity} sold, {f.revenue}",
        )
        for item in f.products:
            table.add_row(
                item.sku,
                item.name,
                str(item.quantity),
                str(item.revenue),
                _rate(item.revenue_share),
                bar(item.revenue_share),
            )
        console.print(table)
    if result.low_stock:
        table = Table("sku", "name", "stock", "threshold", title="low stock")
        for low in result.low_stock:
            table.add_row(low.sku, low.name, str(low.stock), str(low.threshold))
        console.print(table)
    else:
        console.print("low stock: none")


def demo_summary(core: OrderCore, say: Callable[..., None]) -> None:
    """The demo's last step: what it did, as statistics of the last 30 days in the demo's
    time zone."""
    period = StatsPeriod.named("last-30-days", core.settings.timezone, core.clock())
    sales = core.stats.sales(period)
    view = sales_view(sales)["currencies"]
    for f in sales.currencies:
        say(
            f"statistics, last 30 days in {period.tz}: {f.orders_created} orders created, "
            f"{f.orders_paid} paid ({_rate(f.conversion_rate)}), sales {f.gross_sales}, "
            f"refunds {f.refunds}, net {f.net_sales}, "
            f"average order {_money(f.average_order_value)}",
            stats=view,
        )
    for p in core.stats.payments(period).currencies:
        shares = ", ".join(
            f"{c.channel or 'by hand'} {_rate(c.share)}" for c in p.channels if c.paid_orders
        )
        say(
            f"statistics: paid {p.amount} in {p.paid_orders} orders — {shares}; "
            f"median time to pay {_seconds(p.time_to_pay.p50_seconds)}"
        )
    for c in core.stats.products(period, limit=3).currencies:
        best = ", ".join(f"{i.sku} ×{i.quantity} ({i.revenue})" for i in c.products)
        say(f"statistics: best sellers {best}")
