"""The ``ordercore`` command line.

Every command that shows data takes ``--json`` and then prints one JSON document (amounts as
decimal strings, times as ISO 8601). Errors go to stderr as one sentence with a non-zero exit
status (1 for a refused request, 2 for a usage error, 3 for a broken audit chain); set
``ORDERCORE_DEBUG=1`` to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError, SQLAlchemyError

from ordercore import (
    Actor,
    ActorKind,
    Anomaly,
    AnomalyKind,
    CancelReason,
    ConfigurationError,
    InvalidField,
    IssueEvent,
    ManualDiscount,
    Money,
    NewCustomer,
    OrderCore,
    OrderCoreError,
    OrderDetails,
    OrderFilter,
    OrderStatus,
    QuantityTier,
    Refund,
    RefundDeadlinePassed,
    RefundDestination,
    RefundStatus,
    RefundUnavailable,
    ResolutionAction,
    Settings,
    UseAll,
)
from ordercore._money import to_decimal
from ordercore._orders.listing import _parse_bound, date_range, load_zone, period_range
from ordercore.adapters.sqlalchemy import migrate

from ._views import (
    after_sales_view,
    anomaly_view,
    attempt_view,
    audit_record_view,
    coupon_view,
    customer_view,
    issue_view,
    ledger_entry_view,
    listed_order_view,
    order_view,
    product_view,
    refund_history_view,
    refund_view,
    wallet_view,
)

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_REFUSED = 1
EXIT_CHAIN_BROKEN = 3


class _State:
    def __init__(self, database_url: str | None, config: str | None) -> None:
        self.database_url = database_url
        self.config = config
        self._core: OrderCore | None = None

    def settings(self) -> Settings:
        return Settings.load(self.config, database_url=self.database_url)

    def core(self, *, check_schema: bool = True) -> OrderCore:
        if self._core is None:
            settings = self.settings()
            core = OrderCore.from_settings(settings)
            if check_schema:
                current = migrate.current_revision(
                    core.engine, prefix=settings.table_prefix, schema=settings.schema
                )
                if current != migrate.head_revision():
                    raise ConfigurationError(
                        f"the database at {core.engine.url.render_as_string(hide_password=True)} "
                        "is not initialised or not up to date; run `ordercore db upgrade` first"
                    )
            self._core = core
        return self._core


def _console() -> Console:
    # markup off: names, notes, reasons are user text; "[/x]" in one must not crash a table
    return Console(highlight=False, soft_wrap=True, markup=False)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False))


def _actor_option(default: str = "operator:cli:admin") -> Callable[[F], F]:
    def parse(_ctx: click.Context, _param: click.Parameter, value: str) -> Actor:
        try:
            return Actor.parse(value)
        except OrderCoreError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option(
        "--actor",
        default=default,
        show_default=True,
        callback=parse,
        help="Who acts: kind:id[:role], e.g. operator:alice:admin or customer:42.",
    )


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def _core(ctx: click.Context) -> OrderCore:
    state: _State = ctx.ensure_object(_State)
    return state.core()


def _money(amount: str, currency: str) -> Money:
    return Money.of(amount, currency.upper())


class _Group(click.Group):
    """Turns library errors into one sentence on stderr instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OrderCoreError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_REFUSED)
        except (OperationalError, ProgrammingError) as exc:
            if os.environ.get("ORDERCORE_DEBUG"):
                raise
            detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            click.echo(
                f"error: the database refused the request ({detail}); is the URL right and "
                "has `ordercore db upgrade` been run?",
                err=True,
            )
            ctx.exit(EXIT_REFUSED)
        except SQLAlchemyError as exc:
            if os.environ.get("ORDERCORE_DEBUG"):
                raise
            text = str(exc).strip()
            detail = text.splitlines()[0] if text else type(exc).__name__
            if isinstance(exc, ArgumentError):  # a malformed URL or an unknown driver
                click.echo(f"error: the database URL cannot be used ({detail}).", err=True)
            else:
                click.echo(f"error: database error ({detail}).", err=True)
            ctx.exit(EXIT_REFUSED)


@click.group(cls=_Group)
@click.option(
    "--database-url",
    envvar="ORDERCORE_DATABASE_URL",
    default=None,
    help="SQLAlchemy URL [env ORDERCORE_DATABASE_URL; default sqlite:///ordercore.db].",
)
@click.option(
    "--config",
    envvar="ORDERCORE_CONFIG",
    default=None,
    type=click.Path(dir_okay=False),
    help="TOML configuration file [env ORDERCORE_CONFIG].",
)
@click.version_option(package_name="ordercore")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, config: str | None) -> None:
    """ordercore: orders, payments, activation and refunds for digital services."""
    ctx.obj = _State(database_url, config)


# ------------------------------------------------------------------------------------ db
@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate ordercore's tables to the newest revision."""
    core = ctx.ensure_object(_State).core(check_schema=False)
    core.upgrade()
    click.echo(f"database is at revision {migrate.head_revision()}")


@db.command("current")
@json_option
@click.pass_context
def db_current(ctx: click.Context, as_json: bool) -> None:
    """Show the database's revision and the newest one."""
    core = ctx.ensure_object(_State).core(check_schema=False)
    s = core.settings
    current = migrate.current_revision(core.engine, prefix=s.table_prefix, schema=s.schema)
    data = {"current": current, "head": migrate.head_revision()}
    if as_json:
        _emit_json(data)
    else:
        click.echo(f"current {current or '(none)'}, newest {data['head']}")


# ----------------------------------------------------------------------------- customers
@cli.group()
def customers() -> None:
    """Customers."""


@customers.command("add")
@click.option("--name", required=True)
@click.option("--email", default=None)
@click.option("--phone", default=None)
@click.option("--external-ref", default=None, help="The host application's id for this customer.")
@click.option("--identity-verified", is_flag=True)
@_actor_option()
@json_option
@click.pass_context
def customers_add(
    ctx: click.Context,
    name: str,
    email: str | None,
    phone: str | None,
    external_ref: str | None,
    identity_verified: bool,
    actor: Actor,
    as_json: bool,
) -> None:
    """Add a customer."""
    customer = _core(ctx).customers.add(
        name=name,
        email=email,
        phone=phone,
        external_ref=external_ref,
        identity_verified=identity_verified,
        actor=actor,
    )
    if as_json:
        _emit_json(customer_view(customer))
    else:
        click.echo(f"customer {customer.id} added: {customer.name}")


def _cursor_int(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        raise InvalidField(
            f"cursor {cursor!r} is not one this command gave", field="cursor"
        ) from None


@customers.command("list")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--cursor", default=None, help="The next_cursor of the previous page.")
@json_option
@click.pass_context
def customers_list(ctx: click.Context, limit: int, cursor: str | None, as_json: bool) -> None:
    """List customers (oldest first)."""
    core = _core(ctx)
    items = core.customers.list(limit=limit, after_id=_cursor_int(cursor))
    # null on the last page: a full page is the last one when nothing follows it
    more = len(items) == limit and bool(core.customers.list(limit=1, after_id=items[-1].id))
    next_cursor = str(items[-1].id) if more else None
    if as_json:
        _emit_json({"items": [customer_view(c) for c in items], "next_cursor": next_cursor})
        return
    table = Table("id", "name", "email", "external ref", "verified")
    for c in items:
        table.add_row(
            str(c.id),
            c.name,
            c.email or "",
            c.external_ref or "",
            "yes" if c.identity_verified else "",
        )
    _console().print(table)
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")


@customers.command("show")
@click.argument("customer_id", type=int)
@json_option
@click.pass_context
def customers_show(ctx: click.Context, customer_id: int, as_json: bool) -> None:
    """Show one customer."""
    customer = _core(ctx).customers.get(customer_id)
    view = customer_view(customer)
    if as_json:
        _emit_json(view)
    else:
        for key, value in view.items():
            click.echo(f"{key:18} {'' if value is None else value}")


# ------------------------------------------------------------------------------ products
@cli.group()
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
        actor=actor,
    )
    if as_json:
        _emit_json(product_view(product))
    else:
        click.echo(f"product {product.sku} added: {product.name} at {product.price}")


@products.command("list")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--cursor", default=None, help="The next_cursor of the previous page.")
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
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")


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
        for key, value in view.items():
            click.echo(f"{key:20} {'' if value is None else value}")


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
        reason=reason,
        actor=actor,
    )
    if as_json:
        _emit_json(product_view(product))
    else:
        click.echo(f"product {product.sku} updated")


# -------------------------------------------------------------------------------- wallet
@cli.group()
def wallet() -> None:
    """Customer balances and points (every change is a ledger entry)."""


def _wallet_change(
    ctx: click.Context,
    customer: str,
    amount: str | None,
    currency: str,
    points: int | None,
    reason: str,
    note: str | None,
    idempotency_key: str | None,
    actor: Actor,
    as_json: bool,
    sign: int,
) -> None:
    core = _core(ctx)
    customer_id = core.customers.resolve(customer).id
    assert customer_id is not None
    if (amount is None) == (points is None):
        raise InvalidField("give --amount or --points", field="amount")
    kwargs: dict[str, Any] = {
        "reason": reason,
        "actor": actor,
        "idempotency_key": idempotency_key,
        "note": note,
    }
    if amount is not None:
        money = Money.of(amount, currency.upper())
        entry = (
            core.wallet.credit(customer_id, money, **kwargs)
            if sign > 0
            else core.wallet.debit(customer_id, money, **kwargs)
        )
    else:
        assert points is not None
        entry = (
            core.wallet.credit_points(customer_id, points, **kwargs)
            if sign > 0
            else core.wallet.debit_points(customer_id, points, **kwargs)
        )
    if as_json:
        _emit_json(ledger_entry_view(entry))
    else:
        view = ledger_entry_view(entry)
        click.echo(
            f"customer {customer_id}: {view['delta']} {entry.asset}, "
            f"balance {view['balance_after']}"
        )


def _wallet_options(f: F) -> F:
    options: list[Callable[[F], F]] = [
        click.argument("customer"),
        click.option("--amount", default=None, help="Money amount."),
        click.option("--currency", default="CNY", show_default=True),
        click.option("--points", type=int, default=None, help="Points instead of money."),
        click.option("--reason", required=True, help="Why (recorded in the ledger)."),
        click.option("--note", default=None),
        click.option("--idempotency-key", default=None, help="Repeat-safe key."),
        _actor_option(),
        json_option,
        click.pass_context,  # type: ignore[list-item]
    ]
    for option in reversed(options):
        f = option(f)
    return f


@wallet.command("credit")
@_wallet_options
def wallet_credit(ctx: click.Context, **kw: Any) -> None:
    """Add balance or points (CUSTOMER is an id, e-mail or external reference)."""
    _wallet_change(ctx, sign=1, **kw)


@wallet.command("debit")
@_wallet_options
def wallet_debit(ctx: click.Context, **kw: Any) -> None:
    """Take balance or points; never below zero."""
    _wallet_change(ctx, sign=-1, **kw)


@wallet.command("show")
@click.argument("customer")
@click.option("--limit", default=20, show_default=True, type=int, help="Ledger entries to show.")
@json_option
@click.pass_context
def wallet_show(ctx: click.Context, customer: str, limit: int, as_json: bool) -> None:
    """Show balances, points and the newest ledger entries."""
    core = _core(ctx)
    customer_id = core.customers.resolve(customer).id
    assert customer_id is not None
    view = wallet_view(core.wallet.show(customer_id, limit=limit))
    if as_json:
        _emit_json(view)
        return
    balances = ", ".join(f"{v} {k}" for k, v in view["balances"].items()) or "none"
    click.echo(f"customer {customer_id}: balance {balances}; {view['points']} points")
    table = Table("id", "at", "asset", "delta", "after", "reason", "order", "actor")
    for e in view["entries"]:
        table.add_row(
            str(e["id"]),
            e["at"],
            e["asset"],
            str(e["delta"]),
            str(e["balance_after"]),
            e["reason"],
            e["order"] or "",
            e["actor"],
        )
    _console().print(table)


# ------------------------------------------------------------------------------- coupons
@cli.group()
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
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--cursor", default=None, help="The next_cursor of the previous page.")
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
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")


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
        for key, value in view.items():
            click.echo(f"{key:20} {'' if value is None else value}")


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


# -------------------------------------------------------------------------------- orders
@cli.group()
def orders() -> None:
    """Orders."""


def _parse_item(item: str) -> tuple[str, int]:
    sku, sep, qty = item.rpartition(":")
    if not sep:
        return item, 1
    try:
        return sku, int(qty)
    except ValueError:
        raise InvalidField(f"--item {item!r} must look like SKU:QUANTITY", field="item") from None


def _details_json(core: OrderCore, number: str, actor: Actor | None = None) -> dict[str, Any]:
    return _view_of(core.orders.details(number, actor=actor))


def _view_of(d: OrderDetails) -> dict[str, Any]:
    return order_view(
        d.order,
        d.customer,
        d.log,
        coupons=d.coupons,
        wallet_entries=d.wallet_entries,
        payments=d.payments,
        anomalies=d.anomalies,
        activation=d.activation,
        refunds=d.refunds,
        issues=d.issues,
    )


def _use_balance(value: str | None, currency: str | None) -> Money | UseAll | None:
    if value is None:
        return None
    if value == "all":
        return UseAll.ALL
    if currency is None:
        raise InvalidField("--use-balance needs an amount or 'all'", field="use_balance")
    return Money.of(value, currency)


@orders.command("create")
@click.option(
    "--customer",
    "customer",
    default=None,
    help="Customer id, e-mail or external reference.",
)
@click.option("--new-customer-name", default=None, help="Create (or find) the customer by name…")
@click.option("--new-customer-email", default=None, help="…and e-mail…")
@click.option("--new-customer-ref", default=None, help="…and external reference.")
@click.option("--item", "items", multiple=True, required=True, help="SKU:QTY, repeatable.")
@click.option("--coupon", default=None, help="Coupon code.")
@click.option("--manual-discount", default=None, help="Operator discount amount (needs --reason).")
@click.option("--reason", default=None, help="Why the manual discount.")
@click.option("--use-balance", default=None, help="Balance to use: an amount or 'all'.")
@click.option("--use-points", default=0, type=int, help="Points to use.")
@click.option("--channel", default=None, help="Payment channel (its fee rule applies).")
@click.option("--note", default=None)
@click.option("--flag", "flags", multiple=True, help="A tag for the order, repeatable.")
@click.option("--special", is_flag=True, help="Mark the order as special.")
@click.option("--idempotency-key", default=None, help="Same key + same request = same order.")
@_actor_option()
@json_option
@click.pass_context
def orders_create(
    ctx: click.Context,
    customer: str | None,
    new_customer_name: str | None,
    new_customer_email: str | None,
    new_customer_ref: str | None,
    items: tuple[str, ...],
    coupon: str | None,
    manual_discount: str | None,
    reason: str | None,
    use_balance: str | None,
    use_points: int,
    channel: str | None,
    note: str | None,
    flags: tuple[str, ...],
    special: bool,
    idempotency_key: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Create an order: priced with tiers, coupon, discount, balance, points and fee."""
    core = _core(ctx)
    parsed = [_parse_item(i) for i in items]
    new = None
    customer_id = None
    if new_customer_name or new_customer_email or new_customer_ref:
        if customer:
            raise InvalidField("give --customer or --new-customer-*, not both", field="customer")
        new = NewCustomer(
            name=new_customer_name or new_customer_email or new_customer_ref or "",
            email=new_customer_email,
            external_ref=new_customer_ref,
        )
    elif customer:
        customer_id = core.customers.resolve(customer).id
    else:
        raise InvalidField("give --customer or --new-customer-name/-email/-ref", field="customer")
    currency = core.products.get(parsed[0][0]).price.currency.code if parsed else None
    discount = None
    if manual_discount is not None:
        if currency is None or not reason:
            raise InvalidField("--manual-discount needs --reason", field="reason")
        discount = ManualDiscount(Money.of(manual_discount, currency), reason)
    order = core.orders.create(
        customer_id=customer_id,
        new_customer=new,
        items=parsed,
        coupon=coupon,
        manual_discount=discount,
        use_balance=_use_balance(use_balance, currency),
        use_points=use_points,
        channel=channel,
        note=note,
        tags=flags,
        special=special,
        idempotency_key=idempotency_key,
        actor=actor,
    )
    if as_json:
        _emit_json(_details_json(core, order.number))
    else:
        click.echo(
            f"order {order.number} created: {order.amounts.payable} payable ({order.status.value})"
        )


@orders.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in OrderStatus]),
    help="Repeatable.",
)
@click.option(
    "--period",
    type=click.Choice(["today", "this-week", "this-month"]),
    default=None,
    help="In --tz.",
)
@click.option("--from", "date_from", default=None, help="YYYY-MM-DD or ISO time (in --tz).")
@click.option("--to", "date_to", default=None, help="YYYY-MM-DD (inclusive) or ISO time.")
@click.option("--tz", default=None, help="IANA time zone for dates [default: the setting].")
@click.option("--channel", default=None)
@click.option("--customer", default=None, help="Customer id, e-mail or external reference.")
@click.option("--product", "sku", default=None, help="Orders with this sku.")
@click.option("--min-amount", default=None, help="Payable at least (needs one currency).")
@click.option("--max-amount", default=None, help="Payable at most.")
@click.option("--currency", default=None, help="Currency of --min/--max-amount [default CNY].")
@click.option("--flag", default=None)
@click.option("--number", "number_prefix", default=None, help="Order number prefix.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--cursor", default=None, help="The next_cursor of the previous page.")
@_actor_option()
@json_option
@click.pass_context
def orders_list(
    ctx: click.Context,
    statuses: tuple[str, ...],
    period: str | None,
    date_from: str | None,
    date_to: str | None,
    tz: str | None,
    channel: str | None,
    customer: str | None,
    sku: str | None,
    min_amount: str | None,
    max_amount: str | None,
    currency: str | None,
    flag: str | None,
    number_prefix: str | None,
    limit: int,
    cursor: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """List orders, newest first, with filters and keyset pagination."""
    core = _core(ctx)
    zone = tz or core.settings.timezone
    load_zone(zone)  # an unknown --tz is an error even without a date filter
    created_from = created_to = None
    if period and (date_from or date_to):
        raise InvalidField("give --period or --from/--to, not both", field="period")
    if period:
        created_from, created_to = period_range(period, zone, core.clock())
    elif date_from or date_to:
        created_from, created_to = date_range(date_from, date_to, zone)
    cur = (currency or "CNY").upper()
    flt = OrderFilter(
        statuses=tuple(OrderStatus(s) for s in statuses),
        created_from=created_from,
        created_to=created_to,
        channel=channel,
        customer_id=core.customers.resolve(customer).id if customer else None,
        sku=sku,
        min_amount=Money.of(min_amount, cur) if min_amount else None,
        max_amount=Money.of(max_amount, cur) if max_amount else None,
        flag=flag,
        number_prefix=number_prefix,
    )
    page = core.orders.list(flt, limit=limit, cursor=cursor, actor=actor)
    if as_json:
        _emit_json(
            {"items": [listed_order_view(o) for o in page.items], "next_cursor": page.next_cursor}
        )
        return
    table = Table("number", "status", "payable", "customer", "channel", "created", "flags")
    for o in page.items:
        table.add_row(
            o.number,
            o.status.value,
            str(o.payable),
            str(o.customer_id),
            o.channel or "",
            o.created_at.isoformat(timespec="seconds"),
            " ".join(o.flags),
        )
    _console().print(table)
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


@orders.command("cancel")
@click.argument("number")
@click.option(
    "--reason",
    type=click.Choice([r.value for r in CancelReason]),
    default=None,
    help="[default: user for customers, admin for operators]",
)
@click.option("--note", default=None, help="Why (required for admin cancellations).")
@_actor_option()
@json_option
@click.pass_context
def orders_cancel(
    ctx: click.Context,
    number: str,
    reason: str | None,
    note: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Cancel a pending order; stock, coupon use, balance and points go back."""
    core = _core(ctx)
    if reason is None:
        reason = "user" if actor.kind is ActorKind.CUSTOMER else "admin"
    order = core.orders.cancel(number, actor=actor, reason=reason, note=note)
    if as_json:
        _emit_json(_details_json(core, order.number))
    else:
        click.echo(f"order {order.number} canceled ({reason})")


@orders.command("note")
@click.argument("number")
@click.argument("text")
@_actor_option()
@json_option
@click.pass_context
def orders_note(ctx: click.Context, number: str, text: str, actor: Actor, as_json: bool) -> None:
    """Add an internal note to an order."""
    core = _core(ctx)
    core.orders.add_note(number, text, actor=actor)
    if as_json:
        _emit_json(_details_json(core, number))
    else:
        click.echo(f"note added to {number}")


@orders.command("flag")
@click.argument("number")
@click.argument("flag")
@click.option("--remove", is_flag=True, help="Remove the flag instead.")
@_actor_option()
@json_option
@click.pass_context
def orders_flag(
    ctx: click.Context, number: str, flag: str, remove: bool, actor: Actor, as_json: bool
) -> None:
    """Add (or --remove) a flag; the flag 'special' marks the order as special."""
    core = _core(ctx)
    if flag == "special":
        core.orders.set_special(number, not remove, actor=actor)
    elif remove:
        core.orders.unflag(number, flag, actor=actor)
    else:
        core.orders.flag(number, flag, actor=actor)
    if as_json:
        _emit_json(_details_json(core, number))
    else:
        click.echo(f"{number}: flag {flag} {'removed' if remove else 'set'}")


@orders.command("show")
@click.argument("number")
@_actor_option()
@json_option
@click.pass_context
def orders_show(ctx: click.Context, number: str, actor: Actor, as_json: bool) -> None:
    """Show an order: breakdown, lines, history, refunds, issues, notes and operation log."""
    details = _core(ctx).orders.details(number, actor=actor)
    view = _view_of(details)
    if as_json:
        _emit_json(view)
        return
    console = _console()
    console.print(
        Text.assemble(
            (f"order {view['number']}", "bold"), f"  {view['status']}  {view['currency']}"
        )
    )
    console.print(
        f"customer {details.customer.id} {details.customer.name} <{details.customer.email or ''}>"
    )
    lines = Table("sku", "name", "unit price", "qty", "total")
    for line in view["lines"]:
        lines.add_row(
            line["sku"], line["name"], line["unit_price"], str(line["quantity"]), line["total"]
        )
    console.print(lines)
    for key, value in view["amounts"].items():
        console.print(f"  {key:16} {value}")
    for key in (
        "created_at",
        "payment_deadline",
        "paid_at",
        "completed_at",
        "canceled_at",
        "refunded_at",
    ):
        if view[key]:
            console.print(f"  {key:16} {view[key]}")
    if view["flags"] or view["special"]:
        console.print(
            f"  flags            {' '.join(view['flags'])}{' (special)' if view['special'] else ''}"
        )
    history = Table("at", "from", "to", "actor", "reason", title="history")
    for t in view["history"]:
        history.add_row(t["at"], t["from"], t["to"], t["actor"], t["reason"] or "")
    console.print(history)
    _print_refunds(console, view["refunds"])
    _print_issues(console, view["issues"])
    for note in view["notes"]:
        console.print(f"  note ({note['author']}, {note['at']}): {note['text']}")


def _print_refunds(console: Console, refunds: list[dict[str, Any]]) -> None:
    if not refunds:
        return
    table = Table("refund", "amount", "to", "status", "requested by", "reason", title="refunds")
    for r in refunds:
        status = r["status"] + (f" ({r['failure']})" if r["failure"] else "")
        table.add_row(
            r["id"],
            f"{r['amount']} {r['currency']}",
            r["destination"],
            status,
            r["requested_by"],
            r["reason"],
        )
    console.print(table)


def _print_issues(console: Console, issues: list[dict[str, Any]]) -> None:
    for issue in issues:
        console.print(f"  issue #{issue['id']} [{issue['status']}] {issue['subject']}")
        for step in issue["steps"]:
            console.print(f"    {step['at']}  {step['status']:20} {step['actor']}: {step['note']}")


@orders.command("after-sales")
@click.argument("number")
@_actor_option()
@json_option
@click.pass_context
def orders_after_sales(ctx: click.Context, number: str, actor: Actor, as_json: bool) -> None:
    """Show an order's after-sales record.

    Paid, refunded and still refundable amounts, refunds, communications with the customer,
    and after-sales issues with their steps."""
    view = after_sales_view(_core(ctx).after_sales.show(number, actor=actor))
    if as_json:
        _emit_json(view)
        return
    console = _console()
    cur = view["currency"]
    console.print(
        Text.assemble(
            (f"order {view['order']}", "bold"),
            f"  paid {view['paid']} {cur}, refunded {view['refunded']} {cur}, "
            f"refundable {view['refundable']} {cur}",
        )
    )
    _print_refunds(console, view["refunds"])
    for c in view["communications"]:
        console.print(f"  {c['at']}  {c['channel']} ({c['direction']}, {c['author']}): {c['text']}")
    _print_issues(console, view["issues"])
    if not (view["refunds"] or view["communications"] or view["issues"]):
        console.print("  no refunds, communications or issues")


def _echo_issue(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit_json(view)
        return
    click.echo(
        f"issue #{view['id']} on order {view['order']}: {view['status']} — {view['subject']}"
    )


@orders.command("issue-open")
@click.argument("number")
@click.option("--subject", required=True, help="The customer's problem, in a few words.")
@click.option("--note", default=None, help="Details (the first step's note) [default: subject].")
@_actor_option()
@json_option
@click.pass_context
def orders_issue_open(
    ctx: click.Context,
    number: str,
    subject: str,
    note: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Open an after-sales issue on an order.

    A customer's problem to follow to its end; move it on with `orders issue-move`."""
    issue = _core(ctx).after_sales.open(number, subject=subject, actor=actor, note=note)
    _echo_issue(issue_view(issue), as_json)


@orders.command("issue-move")
@click.argument("issue_id", type=int)
@click.option(
    "--step",
    required=True,
    type=click.Choice([e.value for e in IssueEvent]),
    help="investigate (also: the customer answered), ask_customer (wait for their answer), "
    "resolve, reopen.",
)
@click.option("--note", required=True, help="What was done or found.")
@_actor_option()
@json_option
@click.pass_context
def orders_issue_move(
    ctx: click.Context, issue_id: int, step: str, note: str, actor: Actor, as_json: bool
) -> None:
    """Move an after-sales issue on by one step, saying what was done."""
    issue = _core(ctx).after_sales.move(issue_id, step, actor=actor, note=note)
    _echo_issue(issue_view(issue), as_json)


@orders.command("issue-show")
@click.argument("issue_id", type=int)
@json_option
@click.pass_context
def orders_issue_show(ctx: click.Context, issue_id: int, as_json: bool) -> None:
    """Show one after-sales issue with its steps."""
    view = issue_view(_core(ctx).after_sales.issue(issue_id))
    if as_json:
        _emit_json(view)
        return
    console = _console()
    _print_issues(console, [view])
    console.print(f"  order {view['order']}, opened by {view['opened_by']} at {view['opened_at']}")


def _parse_time(value: str, zone: str, *, end: bool = False, name: str = "at") -> datetime:
    """A date (its first instant, or with ``end`` the first instant of the next day) or an
    ISO time, local to ``zone`` unless it carries an offset."""
    return _parse_bound(value, load_zone(zone), name, end=end)


@orders.command("pay")
@click.argument("number")
@click.option("--channel", required=True, help="balance, bank_transfer, or a plugin's channel.")
@click.option("--method", default=None, help="qr, h5, page, transfer... [default: the first]")
@click.option("--client-ip", default=None)
@_actor_option()
@json_option
@click.pass_context
def orders_pay(
    ctx: click.Context,
    number: str,
    channel: str,
    method: str | None,
    client_ip: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Start paying an order through a channel and print the checkout."""
    started = _core(ctx).payments.start(
        number, channel=channel, method=method, actor=actor, client_ip=client_ip
    )
    view = attempt_view(started.attempt)
    if as_json:
        _emit_json(view)
        return
    click.echo(f"attempt {view['out_trade_no']} ({view['channel']}): {view['status']}")
    checkout = view["checkout"] or {}
    for key in ("kind", "content", "url", "coin_amount", "message"):
        if checkout.get(key):
            click.echo(f"  {key:12} {checkout[key]}")


@orders.command("activate")
@click.argument("number")
@click.option("--at", "at", default=None, help="ISO time (in the time zone) to activate at.")
@_actor_option()
@click.pass_context
def orders_activate(ctx: click.Context, number: str, at: str | None, actor: Actor) -> None:
    """Activate a paid order now, or schedule it (--at); `jobs run` does the work."""
    core = _core(ctx)
    when = _parse_time(at, core.settings.timezone) if at else None
    core.payments.schedule_activation(number, actor=actor, at=when)
    click.echo(f"order {number}: activation {'scheduled for ' + at if at else 'due now'}")


@orders.command("batch")
@click.argument("action", type=click.Choice(["approve", "activate", "cancel"]))
@click.argument("numbers", nargs=-1, required=True)
@click.option("--reason", default=None, help="Recorded with each change (cancel needs one).")
@_actor_option()
@json_option
@click.pass_context
def orders_batch(
    ctx: click.Context,
    action: str,
    numbers: tuple[str, ...],
    reason: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Approve transfers, activate or cancel many orders; one result per order."""
    results = _core(ctx).orders.batch(action, numbers, actor=actor, reason=reason)
    if as_json:
        _emit_json(
            {
                "items": [
                    {"number": r.number, "ok": r.ok, "error": r.error, "error_type": r.error_type}
                    for r in results
                ],
                "next_cursor": None,
            }
        )
    else:
        for r in results:
            click.echo(f"{r.number}: {'ok' if r.ok else 'failed: ' + (r.error or '')}")
    if not all(r.ok for r in results):
        ctx.exit(EXIT_REFUSED)


# ------------------------------------------------------------------------------ payments
@cli.group()
def payments() -> None:
    """Payment attempts and transfer reviews."""


@payments.command("list")
@click.option("--status", default=None, help="created, pending, awaiting_review, unknown, ...")
@click.option("--order", "number", default=None, help="Only this order's attempts.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--cursor", default=None)
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
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")


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
        for key, value in view.items():
            click.echo(f"{key:16} {'' if value is None else value}")


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


# ------------------------------------------------------------------------------- refunds
@cli.group()
def refunds() -> None:
    """Refunds: request, review (approve or reject), retry, check with the channel.

    A refund's ID is the refund id the channel knows (the order number and R01, R02...); it
    stays the same through every retry, so the platform pays it out at most once.
    """


def _echo_refund(refund: Refund, as_json: bool, text: str) -> None:
    if as_json:
        _emit_json(refund_view(refund))
        return
    click.echo(text)
    if refund.status is RefundStatus.FAILED:
        why = refund.failure.value if refund.failure else "failed"
        then = "retry: ordercore refunds retry " + refund.refund_no if refund.retryable else ""
        click.echo(f"  {why}: {refund.failure_message or '-'}{'; ' + then if then else ''}")
    elif refund.status is RefundStatus.UNKNOWN:
        click.echo(
            "  the channel's answer was lost: ordercore refunds check "
            f"{refund.refund_no} asks it (a retry reuses the same refund id)"
        )


def _refund_line(refund: Refund) -> str:
    return (
        f"refund {refund.refund_no} of {refund.amount} to {refund.destination.value} "
        f"(order {refund.order_number}): {refund.status.value}"
    )


@refunds.command("request")
@click.argument("number")
@click.option(
    "--amount",
    default=None,
    help="Decimal amount in the order's currency [default: everything still refundable].",
)
@click.option(
    "--to",
    "destination",
    required=True,
    type=click.Choice([d.value for d in RefundDestination]),
    help="balance: credited to the customer's wallet; original: back through the payment's "
    "channel.",
)
@click.option("--reason", required=True, help="Why (recorded, and told to the customer).")
@click.option(
    "--payment",
    "out_trade_no",
    default=None,
    help="The payment attempt (out_trade_no) to refund [default: the one that paid the order].",
)
@_actor_option()
@json_option
@click.pass_context
def refunds_request(
    ctx: click.Context,
    number: str,
    amount: str | None,
    destination: str,
    reason: str,
    out_trade_no: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Request a refund of (part of) an order's payment.

    The request waits for approval (`refunds approve`) unless the automatic-approval rules
    let it through. Prints the refund with its id."""
    try:
        refund = _core(ctx).refunds.request(
            number,
            amount=amount,
            destination=destination,
            reason=reason,
            actor=actor,
            out_trade_no=out_trade_no,
        )
    except (RefundDeadlinePassed, RefundUnavailable) as exc:
        if destination == RefundDestination.BALANCE.value:
            raise
        raise type(exc)(f"{exc.message} (use --to balance)", **exc.context) from None
    text = _refund_line(refund)
    if refund.status is RefundStatus.REQUESTED:
        text += f"; approve it with: ordercore refunds approve {refund.refund_no}"
    _echo_refund(refund, as_json, text)


@refunds.command("list")
@click.option("--status", default=None, type=click.Choice([s.value for s in RefundStatus]))
@click.option("--order", "number", default=None, help="Only this order's refunds.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--cursor", default=None, help="The next_cursor of the previous page.")
@json_option
@click.pass_context
def refunds_list(
    ctx: click.Context,
    status: str | None,
    number: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List refunds, newest first."""
    core = _core(ctx)
    filters: dict[str, Any] = {"status": status, "order_number": number}
    items = core.refunds.list(limit=limit, before_id=_cursor_int(cursor), **filters)
    more = len(items) == limit and bool(
        core.refunds.list(limit=1, before_id=items[-1].id, **filters)
    )
    next_cursor = str(items[-1].id) if more else None
    if as_json:
        _emit_json({"items": [refund_view(r) for r in items], "next_cursor": next_cursor})
        return
    table = Table("refund", "order", "amount", "to", "status", "requested", "failure")
    for r in items:
        table.add_row(
            r.refund_no,
            r.order_number,
            str(r.amount),
            r.destination.value,
            r.status.value,
            r.requested_at.isoformat(timespec="seconds"),
            r.failure.value if r.failure else "",
        )
    _console().print(table)
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")


@refunds.command("show")
@click.argument("refund_id")
@json_option
@click.pass_context
def refunds_show(ctx: click.Context, refund_id: str, as_json: bool) -> None:
    """Show one refund with its history.

    Amount, destination, decision, failure (code, message, whether a retry can help), the
    channel's refund number, its steps from the audit log and the calls made to the
    channel."""
    core = _core(ctx)
    refund = core.refunds.get(refund_id)
    view = refund_view(refund)
    view["history"] = refund_history_view(
        refund.refund_no, core.audit.records("order", refund.order_number)
    )
    calls = []
    if refund.out_trade_no is not None:
        for op in core.payments.operations(refund.out_trade_no):
            request = op["request"] or {}
            if op["kind"] in ("refund", "refund_query") and (
                request.get("out_refund_no") == refund.refund_no
            ):
                calls.append(
                    {
                        "kind": op["kind"],
                        "state": op["state"],
                        "started_at": _iso(op["created_at"]),
                        "finished_at": _iso(op["finished_at"]),
                        "response": op["response"],
                    }
                )
    view["calls"] = calls
    if as_json:
        _emit_json(view)
        return
    for key, value in view.items():
        if key not in ("history", "calls"):
            click.echo(f"{key:20} {'' if value is None else value}")
    history = Table("at", "action", "from", "to", "actor", "reason", title="history")
    for h in view["history"]:
        history.add_row(
            h["at"], h["action"], h["from"] or "", h["to"], h["actor"], h["reason"] or ""
        )
    console = _console()
    console.print(history)
    if calls:
        table = Table("call", "state", "started", "finished", "code", title="channel calls")
        for c in calls:
            table.add_row(
                c["kind"],
                c["state"],
                c["started_at"] or "",
                c["finished_at"] or "",
                str((c["response"] or {}).get("code") or ""),
            )
        console.print(table)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@refunds.command("approve")
@click.argument("refund_id")
@click.option("--note", default=None, help="Recorded with the decision.")
@_actor_option()
@json_option
@click.pass_context
def refunds_approve(
    ctx: click.Context, refund_id: str, note: str | None, actor: Actor, as_json: bool
) -> None:
    """Approve a requested refund.

    A balance refund is credited at once; an original one is sent to its channel."""
    refund = _core(ctx).refunds.approve(refund_id, actor=actor, note=note)
    _echo_refund(refund, as_json, _refund_line(refund))


@refunds.command("reject")
@click.argument("refund_id")
@click.option("--reason", required=True, help="Why (recorded and told to the customer).")
@_actor_option()
@json_option
@click.pass_context
def refunds_reject(
    ctx: click.Context, refund_id: str, reason: str, actor: Actor, as_json: bool
) -> None:
    """Reject a requested refund.

    The reason is recorded and the customer notified; the amount can be refunded later."""
    refund = _core(ctx).refunds.reject(refund_id, actor=actor, reason=reason)
    _echo_refund(refund, as_json, _refund_line(refund))


@refunds.command("retry")
@click.argument("refund_id")
@_actor_option()
@json_option
@click.pass_context
def refunds_retry(ctx: click.Context, refund_id: str, actor: Actor, as_json: bool) -> None:
    """Retry a failed or unknown refund, with the same refund id.

    The platform pays a refund id out at most once, so a retry after a lost answer never
    pays twice. A refund past its channel's window stays failed: refund to balance."""
    refund = _core(ctx).refunds.retry(refund_id, actor=actor)
    _echo_refund(refund, as_json, _refund_line(refund))


@refunds.command("check")
@click.argument("refund_id")
@json_option
@click.pass_context
def refunds_check(ctx: click.Context, refund_id: str, as_json: bool) -> None:
    """Ask the channel about a refund and apply its answer.

    For a refund being paid out or whose outcome is unknown (`jobs run` does this for every
    such refund when it is due)."""
    core = _core(ctx)
    before = core.refunds.get(refund_id)
    if before.status not in (RefundStatus.PROCESSING, RefundStatus.UNKNOWN):
        text = f"{_refund_line(before)}; nothing to ask the channel"
        _echo_refund(before, as_json, text)
        return
    refund = core.refunds.reconcile(refund_id)
    text = f"{_refund_line(refund)} (was {before.status.value})"
    _echo_refund(refund, as_json, text)


# ----------------------------------------------------------------------------- callbacks
@cli.group()
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
        view["body"] = entry["body"].decode("utf-8", "replace")
    return view


@callbacks.command("list")
@click.option("--status", default=None, help="applied, duplicate, anomaly, rejected, ignored")
@click.option("--order", "number", default=None)
@click.option("--channel", default=None)
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--cursor", default=None)
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
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")


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
        for key, value in view.items():
            click.echo(f"{key:14} {'' if value is None else value}")


@callbacks.command("replay")
@click.argument("inbox_id", type=int)
@_actor_option()
@json_option
@click.pass_context
def callbacks_replay(ctx: click.Context, inbox_id: int, actor: Actor, as_json: bool) -> None:
    """Process a stored notification again (manually trigger callback processing)."""
    reply = _core(ctx).payments.replay(inbox_id, actor=actor)
    data = {"status": reply.status, "body": reply.body.decode("utf-8", "replace")}
    if as_json:
        _emit_json(data)
    else:
        click.echo(f"replayed #{inbox_id}: HTTP {reply.status} {data['body']}")


# ----------------------------------------------------------------------------- anomalies
@cli.group()
def anomalies() -> None:
    """Duplicate payments, amount mismatches, payments after cancel..."""


@anomalies.command("list")
@click.option("--status", default=None, help="open, investigating, contacting, resolved")
@click.option("--kind", default=None)
@click.option("--order", "number", default=None)
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--cursor", default=None)
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
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")


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
        for key, value in view.items():
            click.echo(f"{key:14} {'' if value is None else value}")


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
    "--to",
    "destination",
    default=RefundDestination.ORIGINAL.value,
    show_default=True,
    type=click.Choice([d.value for d in RefundDestination]),
    help="Where --action refund sends the money.",
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


# ---------------------------------------------------------------------------------- jobs
@cli.command()
@click.argument("number", required=False)
@json_option
@click.pass_context
def reconcile(ctx: click.Context, number: str | None, as_json: bool) -> None:
    """Ask the channels about open attempts (of one order, or all that are due)."""
    core = _core(ctx)
    if number:
        attempts = [
            a
            for a in core.payments.attempts(number)
            if a.status.value in ("pending", "unknown", "created")
        ]
        results = [core.payments.reconcile(a.out_trade_no) for a in attempts]
    else:
        report = core.payments.run_due_jobs()
        results = []
        if not as_json:
            click.echo(f"reconciled {len(report.reconciled)} attempt(s)")
        else:
            _emit_json({"reconciled": list(report.reconciled)})
        return
    data = [
        {"out_trade_no": r.out_trade_no, "status": r.status, "reason": r.reason} for r in results
    ]
    if as_json:
        _emit_json({"items": data, "next_cursor": None})
    else:
        for item in data:
            click.echo(f"{item['out_trade_no']}: {item['status']} ({item['reason'] or ''})")
        if not data:
            click.echo(f"order {number} has no open payment attempt")


@cli.group()
def jobs() -> None:
    """Background work: timeouts, reconciliation, activation, notifications."""


@jobs.command("run")
@click.option("--loop", is_flag=True, help="Keep running (Ctrl-C to stop).")
@click.option(
    "--interval", default=5.0, show_default=True, type=float, help="Seconds between passes."
)
@json_option
@click.pass_context
def jobs_run(ctx: click.Context, loop: bool, interval: float, as_json: bool) -> None:
    """Run due jobs once (or --loop): cancel expired orders, reconcile, activate, deliver."""
    import time

    core = _core(ctx)
    while True:
        report = core.payments.run_due_jobs()
        data = {
            "canceled": list(report.canceled),
            "settled": list(report.settled),
            "reconciled": list(report.reconciled),
            "activated": list(report.activated),
            "activation_failures": list(report.activation_failures),
            "delivered": report.delivered,
            "delivery_failures": report.delivery_failures,
        }
        if as_json:
            _emit_json(data)
        else:
            click.echo(
                ", ".join(f"{k} {len(v) if isinstance(v, list) else v}" for k, v in data.items())
            )
        if not loop:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:  # pragma: no cover - interactive
            return


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The interface to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="The port (0 picks a free one).",
)
@click.option("--prefix", default="", help="Serve below this path, e.g. /pay.")
@click.option("--access-log", is_flag=True, help="Log every request to stderr.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, prefix: str, access_log: bool) -> None:
    """Run the payment callback endpoint for development (POST /callbacks/CHANNEL,
    GET /health), until Ctrl-C. Use a production WSGI/ASGI server in production."""
    from ordercore import web

    core = _core(ctx)
    if access_log:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger("ordercore.web").addHandler(handler)
        logging.getLogger("ordercore.web").setLevel(logging.INFO)
    base = prefix.rstrip("/")

    def ready(url: str) -> None:
        click.echo(
            f"serving POST {url}{base}/callbacks/<channel> and GET {url}{base}/health;"
            " Ctrl-C to stop",
            err=True,
        )

    web.serve(core, host, port, prefix=prefix, log_requests=access_log, ready=ready)


# --------------------------------------------------------------------------------- audit
@cli.group()
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


# ---------------------------------------------------------------------------------- demo
@cli.command()
@click.option(
    "--database",
    default="ordercore-demo.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="SQLite file to create (replaced if it exists).",
)
@json_option
def demo(database: str, as_json: bool) -> None:
    """Create a fresh SQLite database and walk sample orders through their life."""
    from ._demo import run_demo

    steps = run_demo(database)
    if as_json:
        _emit_json({"database": database, "steps": steps})
        return
    console = _console()
    for step in steps:
        console.print(Text.assemble(("•", "bold"), f" {step['text']}"))
    console.print(f"\nexplore it: ordercore --database-url sqlite:///{database} orders show NUMBER")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ordercore`` command."""
    try:
        cli.main(args=argv, prog_name="ordercore", standalone_mode=True)
    except Exception as exc:  # pragma: no cover - the last line of defence
        if os.environ.get("ORDERCORE_DEBUG"):
            raise
        click.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (ORDERCORE_DEBUG=1 shows details)",
            err=True,
        )
        sys.exit(70)
