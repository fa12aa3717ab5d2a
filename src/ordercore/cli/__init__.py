"""The ``ordercore`` command line.

Every command that shows data takes ``--json`` and then prints one JSON document (amounts as
decimal strings, times as ISO 8601). Errors go to stderr as one sentence with a non-zero exit
status (1 for a refused request, 2 for a usage error, 3 for a broken audit chain); set
``ORDERCORE_DEBUG=1`` to see tracebacks of unexpected errors.

This module builds the root group and attaches the command groups, one module each; what
they share (state, error handling, options, output helpers) is in ``_common``.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from ._common import _Group, _State
from .anomalies import anomalies
from .audit import audit
from .callbacks import callbacks
from .channels import channels
from .coupons import coupons
from .customers import customers
from .db import db
from .demo import demo
from .jobs import jobs, reconcile
from .orders import orders
from .payments import payments
from .products import products
from .refunds import refunds
from .serve import serve
from .stats import stats
from .wallet import wallet

__all__ = ["cli", "main"]


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
    # What the library logs (a disabled channel, a job left for later) is said by the
    # commands themselves; without this, Python's last-resort handler would repeat it.
    logging.getLogger("ordercore").addHandler(logging.NullHandler())
    ctx.obj = _State(database_url, config)


# in this order: the reference page (mkdocs-click) lists the commands as they were added
for _command in (
    db,
    customers,
    products,
    wallet,
    coupons,
    orders,
    payments,
    channels,
    refunds,
    callbacks,
    anomalies,
    reconcile,
    jobs,
    serve,
    audit,
    stats,
    demo,
):
    cli.add_command(_command)


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
