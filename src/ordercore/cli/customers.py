"""``ordercore customers``: add, list and show customers."""

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
from ._views import customer_view


@click.group()
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


@customers.command("list")
@_page_options()
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
    _echo_more(next_cursor)


@customers.command("verify")
@click.argument("customer_id", type=int)
@click.option("--revoke", is_flag=True, help="Mark the identity as not verified instead.")
@click.option("--note", default=None, help="How it was verified (recorded).")
@_actor_option()
@json_option
@click.pass_context
def customers_verify(
    ctx: click.Context,
    customer_id: int,
    revoke: bool,
    note: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Record that a customer's identity was verified (orders held for it can be paid)."""
    customer = _core(ctx).customers.verify(
        customer_id, actor=actor, verified=not revoke, note=note
    )
    if as_json:
        _emit_json(customer_view(customer))
    else:
        state = "verified" if customer.identity_verified else "not verified"
        click.echo(f"customer {customer.id}: identity {state}")


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
        _echo_fields(view, 18)
