"""The after-sales commands of ``ordercore orders``: an order's after-sales record and its issues.

``orders`` attaches them to its group.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ordercore import Actor, IssueEvent

from ._common import _actor_option, _console, _core, _emit_json, json_option
from ._views import after_sales_view, issue_view


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


@click.command("after-sales")
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


@click.command("issue-open")
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


@click.command("issue-move")
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


@click.command("issue-show")
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
