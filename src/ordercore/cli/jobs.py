"""``ordercore reconcile`` and ``ordercore jobs``: the background work, by hand."""

from __future__ import annotations

import click

from ._common import _core, _emit_json, json_option


@click.command()
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
            for line in report.skipped:
                click.echo(f"skipped {line}", err=True)
        else:
            _emit_json({"reconciled": list(report.reconciled), "skipped": list(report.skipped)})
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


@click.group()
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
            "sealed": report.sealed,
            "skipped": list(report.skipped),
        }
        if report.audit_problem:
            data["audit_problem"] = report.audit_problem
        if as_json:
            _emit_json(data)
        else:
            click.echo(
                ", ".join(
                    f"{k} {len(v) if isinstance(v, list) else v}"
                    for k, v in data.items()
                    if k != "audit_problem"
                )
            )
            if report.audit_problem:
                click.echo(f"audit chain not sealed: {report.audit_problem}", err=True)
            for line in report.skipped:
                click.echo(f"skipped {line}", err=True)
        if not loop:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:  # pragma: no cover - interactive
            return
