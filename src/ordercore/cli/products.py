"""``ordercore products``: the product catalogue."""

from __future__ import annotations

import click
from rich.table import Table

from ordercore import Actor, InvalidField, Money, QuantityTier

from ._common import (
    _actor_option,
    _console,
    _core,
    _echo_fields,
    _echo_more,
    _emit_json,
    _money,
    _page_options,
    json_option,
)
from ._views import product_view


@click.group()
def products() -> None:
    """The product catalogue."""


def _parse_specs(specs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise InvalidField(f"--spec {spec!r} must look like key=value", field="specs")
        out[key] = value
    return out


@products.command("add")
@click.option("--sku", required=True)
@click.option("--name", required=True)
@click.option("--price", required=True, help="Decimal price, e.g. 30.00.")
@click.option("--currency", required=True, help="Currency code, e.g. CNY.")
@click.option("--stock", type=int, default=None, help="Units available (unlimited if omitted).")
@click.option("--low-stock", "low_stock", type=int, default=None, help="Low-stock threshold.")
@click.option("--spec", "specs", multiple=True, help="key=value, repeatable (duration=30d).")
@click.option("--tier", "tiers", multiple=True, help="MIN_QTY:PERCENT_OFF, repeatable (3:10).")
@click.option("--inactive", is_flag=True, help="Add it as not for sale.")
@click.option(
    "--activation",
    type=click.Choice(["auto", "manual", "delayed"]),
    default=None,
    help="How a paid order is activated: at once, by an operator, or after a delay.",
)
@click.option(
    "--activation-delay",
    "activation_delay",
    type=int,
    default=None,
    help="Minutes after payment, for --activation delayed.",
)
@_actor_option()
@json_option
@click.pass_context
def products_add(
    ctx: click.Context,
    sku: str,
    name: str,
    price: str,
    currency: str,
    stock: int | None,
    low_stock: int | None,
    specs: tuple[str, ...],
    tiers: tuple[str, ...],
    inactive: bool,
    activation: str | None,
    activation_delay: int | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Add a product."""
    product = _core(ctx).products.add(
        sku=sku,
        name=name,
        price=_money(price, currency),
        specs=_parse_specs(specs),
        stock=stock,
        low_stock_threshold=low_stock,
        active=not inactive,
        tiers=_parse_tiers(tiers),
        activation=activation or "auto",
        activation_delay_minutes=activation_delay,
        actor=actor,
    )
    if as_json:
        _emit_json(product_view(product))
    else:
        click.echo(f"product {product.sku} added: {product.name} at {product.price}")


@products.command("list")
@_page_options()
@json_option
@click.pass_context
def products_list(ctx: click.Context, limit: int, cursor: str | None, as_json: bool) -> None:
    """List products by sku."""
    core = _core(ctx)
    items = core.products.list(limit=limit, after_sku=cursor)
    more = len(items) == limit and bool(core.products.list(limit=1, after_sku=items[-1].sku))
    next_cursor = items[-1].sku if more else None
    if as_json:
        _emit_json({"items": [product_view(p) for p in items], "next_cursor": next_cursor})
        return
    table = Table("sku", "name", "price", "stock", "active")
    for p in items:
        stock = "∞" if p.stock is None else str(p.stock) + (" (low)" if p.low_on_stock else "")
        table.add_row(p.sku, p.name, str(p.price), stock, "yes" if p.active else "no")
    _console().print(table)
    _echo_more(next_cursor)


@products.command("show")
@click.argument("sku")
@json_option
@click.pass_context
def products_show(ctx: click.Context, sku: str, as_json: bool) -> None:
    """Show one product."""
    view = product_view(_core(ctx).products.get(sku))
    if as_json:
        _emit_json(view)
    else:
        _echo_fields(view, 20)


def _parse_tiers(tiers: tuple[str, ...]) -> list[QuantityTier]:
    out = []
    for tier in tiers:
        qty, sep, pct = tier.partition(":")
        if not sep or not qty.isdigit():
            raise InvalidField(f"--tier {tier!r} must look like MIN_QTY:PERCENT_OFF", field="tiers")
        out.append(QuantityTier(min_quantity=int(qty), percent_off=pct))
    return out


@products.command("update")
@click.argument("sku")
@click.option("--name", default=None)
@click.option("--price", default=None, help="New price (same currency).")
@click.option("--stock", type=int, default=None)
@click.option("--unlimited-stock", is_flag=True, help="Stop counting stock.")
@click.option("--low-stock", "low_stock", type=int, default=None)
@click.option("--spec", "specs", multiple=True, help="key=value; replaces all specs.")
@click.option("--tier", "tiers", multiple=True, help="MIN_QTY:PERCENT_OFF; replaces all tiers.")
@click.option("--no-tiers", is_flag=True, help="Remove all quantity tiers.")
@click.option("--active/--inactive", default=None)
@click.option(
    "--activation",
    type=click.Choice(["auto", "manual", "delayed"]),
    default=None,
    help="How a paid order is activated: at once, by an operator, or after a delay.",
)
@click.option(
    "--activation-delay",
    "activation_delay",
    type=int,
    default=None,
    help="Minutes after payment, for --activation delayed.",
)
@click.option("--reason", default=None)
@_actor_option()
@json_option
@click.pass_context
def products_update(
    ctx: click.Context,
    sku: str,
    name: str | None,
    price: str | None,
    stock: int | None,
    unlimited_stock: bool,
    low_stock: int | None,
    specs: tuple[str, ...],
    tiers: tuple[str, ...],
    no_tiers: bool,
    active: bool | None,
    activation: str | None,
    activation_delay: int | None,
    reason: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Change a product (orders keep the snapshot they were sold with)."""
    core = _core(ctx)
    current = core.products.get(sku)
    product = core.products.update(
        sku,
        name=name,
        price=Money.of(price, current.price.currency) if price is not None else None,
        stock=stock,
        clear_stock=unlimited_stock,
        low_stock_threshold=low_stock,
        specs=_parse_specs(specs) if specs else None,
        tiers=[] if no_tiers else (_parse_tiers(tiers) if tiers else None),
        active=active,
        activation=activation,
        activation_delay_minutes=activation_delay,
        reason=reason,
        actor=actor,
    )
    if as_json:
        _emit_json(product_view(product))
    else:
        click.echo(f"product {product.sku} updated")
