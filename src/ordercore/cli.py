"""The ``ordercore`` command line.

Every command that shows data takes ``--json`` and then prints one JSON document (amounts as
decimal strings, times as ISO 8601). Errors go to stderr as one sentence with a non-zero exit
status (1 for a refused request, 2 for a usage error, 3 for a broken audit chain); set
``ORDERCORE_DEBUG=1`` to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from ._actor import Actor
from ._config import Settings
from ._core import OrderCore
from ._errors import InvalidField, OrderCoreError
from ._money import Money
from ._views import (
    audit_record_view,
    customer_view,
    order_view,
    product_view,
)
from .adapters.sqlalchemy import migrate

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
                    raise click.ClickException(
                        f"the database at {core.engine.url.render_as_string(hide_password=True)} "
                        "is not initialised or not up to date; run `ordercore db upgrade` first"
                    )
            self._core = core
        return self._core


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


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
            click.echo(f"error: database error: {type(exc).__name__}", err=True)
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
    items = _core(ctx).customers.list(limit=limit, after_id=_cursor_int(cursor))
    next_cursor = str(items[-1].id) if len(items) == limit else None
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
    items = _core(ctx).products.list(limit=limit, after_sku=cursor)
    next_cursor = items[-1].sku if len(items) == limit else None
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


@orders.command("create")
@click.option("--customer", "customer_id", type=int, required=True, help="Customer id.")
@click.option("--item", "items", multiple=True, required=True, help="SKU:QTY, repeatable.")
@click.option("--note", default=None)
@click.option("--flag", "flags", multiple=True, help="A tag for the order, repeatable.")
@click.option("--special", is_flag=True, help="Mark the order as special.")
@_actor_option()
@json_option
@click.pass_context
def orders_create(
    ctx: click.Context,
    customer_id: int,
    items: tuple[str, ...],
    note: str | None,
    flags: tuple[str, ...],
    special: bool,
    actor: Actor,
    as_json: bool,
) -> None:
    """Create a pending order at current prices."""
    core = _core(ctx)
    order = core.orders.create(
        customer_id=customer_id,
        items=[_parse_item(i) for i in items],
        note=note,
        tags=flags,
        special=special,
        actor=actor,
    )
    if as_json:
        details = core.orders.details(order.number)
        _emit_json(order_view(details.order, details.customer, details.log))
    else:
        click.echo(f"order {order.number} created: {order.amounts.payable} payable")


@orders.command("show")
@click.argument("number")
@json_option
@click.pass_context
def orders_show(ctx: click.Context, number: str, as_json: bool) -> None:
    """Show an order: breakdown, lines, history, notes and operation log."""
    details = _core(ctx).orders.details(number)
    view = order_view(details.order, details.customer, details.log)
    if as_json:
        _emit_json(view)
        return
    console = _console()
    console.print(f"[bold]order {view['number']}[/bold]  {view['status']}  {view['currency']}")
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
    for note in view["notes"]:
        console.print(f"  note ({note['author']}, {note['at']}): {note['text']}")


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
        console.print(f"[bold]•[/bold] {step['text']}")
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
