"""``ordercore serve``: the payment callback endpoint for development."""

from __future__ import annotations

import logging

import click

from ._common import _core


@click.command()
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
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="Worker threads (default: the connection pool, pool_size + pool_max_overflow; "
    "never more).",
)
@click.option(
    "--backlog",
    type=click.IntRange(0),
    default=None,
    help="Connections that may wait for a worker before the server answers 503 "
    "(default: as many as threads).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    prefix: str,
    access_log: bool,
    threads: int | None,
    backlog: int | None,
) -> None:
    """Run the payment callback endpoint for development (POST /callbacks/CHANNEL,
    GET /health), until Ctrl-C, on a bounded set of worker threads: when all are busy and
    the backlog is full, the answer is 503 with Retry-After. Use a production WSGI/ASGI
    server in production."""
    from ordercore import web

    core = _core(ctx)
    pool = web.threads_for(core)
    if threads is not None and threads > pool:
        raise click.BadParameter(
            f"{threads} threads but the connection pool holds {pool}: raise pool_size or "
            "pool_max_overflow in the settings",
            param_hint="--threads",
        )
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

    web.serve(
        core,
        host,
        port,
        prefix=prefix,
        log_requests=access_log,
        ready=ready,
        threads=threads,
        backlog=backlog,
    )
