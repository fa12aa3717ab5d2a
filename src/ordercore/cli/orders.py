"""``ordercore orders``: create, list, show and change orders, start payments, activate.

The after-sales commands of the group (``after-sales``, ``issue-*``) are in ``after_sales``.
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ordercore import (
    Actor,
    ActorKind,
    CancelReason,
    InvalidField,
    ManualDiscount,
    Money,
    NewCustomer,
    OrderCore,
    OrderDetails,
    RiskContext,
    UseAll,
)

from ._common import (
    EXIT_REFUSED,
    _actor_option,
    _console,
    _core,
    _echo_more,
    _emit_json,
    _page_options,
    _parse_time,
    deprecated_alias,
    json_option,
    order_filter,
    order_filter_options,
)
from ._views import attempt_view, listed_order_view, order_view
from .after_sales import (
    _print_issues,
    _print_refunds,
    orders_after_sales,
    orders_issue_move,
    orders_issue_open,
    orders_issue_show,
)
from .risk import risk_view


@click.group()
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
    view = _view_of(core.orders.details(number, actor=actor))
    view["risk"] = risk_view(core, number)
    return view


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
@click.option("--tag", "tags", multiple=True, help="A tag for the order, repeatable.")
@deprecated_alias("--flag", "--tag", "tags", multiple=True)
@click.option("--special", is_flag=True, help="Mark the order as special.")
@click.option("--idempotency-key", default=None, help="Same key + same request = same order.")
@click.option("--ip", default=None, help="The buyer's IP address (risk control).")
@click.option("--device", default=None, help="The buyer's device id (the host's fingerprint).")
@click.option("--user-agent", default=None, help="The buyer's user agent (risk control).")
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
    tags: tuple[str, ...],
    special: bool,
    idempotency_key: str | None,
    ip: str | None,
    device: str | None,
    user_agent: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Create an order: priced with tiers, coupon, discount, balance, points and fee; judged
    by risk control (--ip, --device)."""
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
        tags=tags,
        special=special,
        idempotency_key=idempotency_key,
        actor=actor,
        risk=RiskContext(ip=ip, device_id=device, user_agent=user_agent),
    )
    if as_json:
        _emit_json(_details_json(core, order.number))
    else:
        click.echo(
            f"order {order.number} created: {order.amounts.payable} payable ({order.status.value})"
        )
        held = [d for d in core.risk.decisions(order=order.number, limit=1) if d.hits]
        if held and held[0].verdict.value != "allow":
            click.echo(held[0].sentence())


@orders.command("list")
@order_filter_options
@_page_options()
@_actor_option()
@json_option
@click.pass_context
def orders_list(
    ctx: click.Context,
    /,
    limit: int,
    cursor: str | None,
    actor: Actor,
    as_json: bool,
    **filters: Any,
) -> None:
    """List orders, newest first, with filters and keyset pagination."""
    core = _core(ctx)
    flt, _zone = order_filter(core, filters)
    page = core.orders.list(flt, limit=limit, cursor=cursor, actor=actor)
    if as_json:
        _emit_json(
            {"items": [listed_order_view(o) for o in page.items], "next_cursor": page.next_cursor}
        )
        return
    table = Table()
    widest = max((len(o.number) for o in page.items), default=6)
    table.add_column("number", no_wrap=True, min_width=widest)  # the next command needs it whole
    for heading in ("status", "payable", "customer", "channel", "created", "flags"):
        table.add_column(heading)
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
    _echo_more(page.next_cursor)


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
    core = _core(ctx)
    details = core.orders.details(number, actor=actor)
    view = _view_of(details)
    view["risk"] = risk_view(core, number)
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
    _print_payments(console, view)
    _print_refunds(console, view["refunds"])
    _print_issues(console, view["issues"])
    for note in view["notes"]:
        console.print(f"  note ({note['author']}, {note['at']}): {note['text']}")
    for d in view["risk"]:
        rules = "; ".join(h["reason"] for h in d["rules"]) or "no rule fired"
        console.print(f"  risk {d['stage']} {d['verdict']} ({d['at']}): {rules}")
    log = Table("seq", "at", "actor", "action", "reason", title="operation log")
    for record in view["log"]:
        who = record["actor"]
        log.add_row(
            "pending" if record["seq"] is None else str(record["seq"]),
            record["at"],
            ":".join(p for p in (who["kind"], who["id"], who["role"]) if p),
            record["action"],
            Text(record["reason"] or ""),
        )
    console.print(log)


def _print_payments(console: Any, view: dict[str, Any]) -> None:
    """Payments (channel, method, trade number, proof), anomalies and activation."""
    if view["payments"]:
        table = Table("payment", "channel", "method", "status", "amount", "trade no", "proof")
        for p in view["payments"]:
            proof = p.get("proof") or {}
            table.add_row(
                Text(p["out_trade_no"]),
                p["channel"],
                p["method"] or "",
                p["status"],
                f"{p['amount']} {p['currency']}",
                Text(p["channel_trade_no"] or ""),
                Text(str(proof.get("reference") or "") if isinstance(proof, dict) else ""),
            )
        table.columns[0].no_wrap = True
        console.print(table)
    for a in view["anomalies"]:
        console.print(Text(f"  anomaly #{a['id']} {a['kind']} ({a['status']})"))
    activation = view.get("activation")
    if activation:
        due = f", due {activation['due_at']}" if activation.get("due_at") else ""
        error = f", last error: {activation['error']}" if activation.get("error") else ""
        console.print(
            Text(
                f"  activation       {activation['mode']}, {activation['attempts']} "
                f"attempt(s){due}{error}"
            )
        )


# the after-sales commands (after_sales.py), here to keep their place in help and docs
orders.add_command(orders_after_sales)
orders.add_command(orders_issue_open)
orders.add_command(orders_issue_move)
orders.add_command(orders_issue_show)


@orders.command("pay")
@click.argument("number")
@click.option("--channel", required=True, help="balance, bank_transfer, or a plugin's channel.")
@click.option("--method", default=None, help="qr, h5, page, transfer... [default: the first]")
@click.option("--ip", "--client-ip", "ip", default=None, help="The payer's IP address.")
@click.option("--device", default=None, help="The payer's device id (the host's fingerprint).")
@click.option("--payer", default=None, help="The payer account, when the channel reports it.")
@_actor_option()
@json_option
@click.pass_context
def orders_pay(
    ctx: click.Context,
    number: str,
    channel: str,
    method: str | None,
    ip: str | None,
    device: str | None,
    payer: str | None,
    actor: Actor,
    as_json: bool,
) -> None:
    """Start paying an order through a channel and print the checkout; judged by risk
    control (--ip, --device)."""
    started = _core(ctx).payments.start(
        number,
        channel=channel,
        method=method,
        actor=actor,
        client_ip=ip,
        risk=RiskContext(ip=ip, device_id=device, payer_account=payer),
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
