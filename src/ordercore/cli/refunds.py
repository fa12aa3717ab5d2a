"""``ordercore refunds``: request, review, retry and check refunds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from rich.table import Table

from ordercore import (
    Actor,
    Refund,
    RefundDeadlinePassed,
    RefundDestination,
    RefundStatus,
    RefundUnavailable,
)

from ._common import (
    _actor_option,
    _console,
    _core,
    _cursor_int,
    _echo_more,
    _emit_json,
    _page_options,
    deprecated_alias,
    json_option,
)
from ._views import refund_history_view, refund_view


@click.group()
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
    "--destination",
    default=None,
    type=click.Choice([d.value for d in RefundDestination]),
    help="balance: credited to the customer's wallet; original: back through the payment's "
    "channel.  [required]",
)
@deprecated_alias(
    "--to",
    "--destination",
    "destination",
    required=True,
    type=click.Choice([d.value for d in RefundDestination]),
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
        raise type(exc)(f"{exc.message} (use --destination balance)", **exc.context) from None
    text = _refund_line(refund)
    if refund.status is RefundStatus.REQUESTED:
        text += f"; approve it with: ordercore refunds approve {refund.refund_no}"
    _echo_refund(refund, as_json, text)


@refunds.command("list")
@click.option("--status", default=None, type=click.Choice([s.value for s in RefundStatus]))
@click.option("--order", "number", default=None, help="Only this order's refunds.")
@_page_options()
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
    _echo_more(next_cursor)


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
