"""``ordercore wallet``: customer balances and points."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich.table import Table

from ordercore import Actor, InvalidField, Money

from ._common import F, _actor_option, _console, _core, _emit_json, json_option
from ._views import ledger_entry_view, wallet_view


@click.group()
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
