"""What the command modules share.

The state behind the root group (settings, one ``OrderCore``), the error handling that turns
library errors into one sentence and an exit status, the options the commands repeat
(``--json``, ``--actor``, ``--limit``/``--cursor``), the deprecated spellings of renamed
options, the output helpers and the parsers of cursors and times. The command modules import
from here, never from the package.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar, cast

import click
from click.core import ParameterSource
from rich.console import Console
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError, SQLAlchemyError

from ordercore import (
    Actor,
    ConfigurationError,
    InvalidField,
    Money,
    OrderCore,
    OrderCoreError,
    OrderFilter,
    OrderStatus,
    Settings,
)
from ordercore._orders.listing import _parse_bound, date_range, load_zone, period_range
from ordercore.adapters.sqlalchemy import migrate

F = TypeVar("F", bound=Callable[..., Any])

EXIT_REFUSED = 1
EXIT_CHAIN_BROKEN = 3

_CURSOR_HELP = "The next_cursor of the previous page."


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


def _core(ctx: click.Context) -> OrderCore:
    state: _State = ctx.ensure_object(_State)
    return state.core()


def _console() -> Console:
    # markup off: names, notes, reasons are user text; "[/x]" in one must not crash a table
    return Console(highlight=False, soft_wrap=True, markup=False)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False))


def _echo_fields(view: Mapping[str, Any], width: int) -> None:
    """Print a ``show`` command's view: one line per field, the names padded to ``width``."""
    for key, value in view.items():
        click.echo(f"{key:{width}} {'' if value is None else value}")


def _echo_more(next_cursor: str | None) -> None:
    """Under a list command's table: how to ask for the next page, if there is one."""
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


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


def _page_options(*, cursor_help: str | None = _CURSOR_HELP) -> Callable[[F], F]:
    """``--limit`` (50 by default) and ``--cursor``, for the commands that list page by page."""
    limit = click.option("--limit", default=50, show_default=True, type=int)
    cursor = click.option("--cursor", default=None, help=cursor_help)

    def decorate(f: F) -> F:
        return limit(cursor(f))

    return decorate


def deprecated_alias(
    old: str, new: str, dest: str, *, multiple: bool = False, required: bool = False, **attrs: Any
) -> Callable[[F], F]:
    """Keep ``old``, a renamed option's former spelling, working for one more release.

    Adds a hidden option ``old`` (built with ``attrs``, e.g. the same ``type``) whose values
    go to the parameter ``dest`` of the new option ``new``: appended to it when ``multiple``,
    else used in its place (giving both with different values is a usage error). Using
    ``old`` prints a deprecation warning (removal in 0.3) to stderr, never to stdout, so that
    ``--json`` output stays one JSON document. With ``required`` the new option must be declared
    without ``required=True`` (click would refuse the old spelling alone); a command given
    neither spelling fails here with click's own "Missing option" usage error."""
    alias = f"_deprecated_{dest}"

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **params: Any) -> Any:
            given = params.pop(alias)
            ctx = click.get_current_context()
            if given or (given is not None and not multiple):
                click.echo(
                    f"warning: {old} is deprecated and will be removed in 0.3; use {new}",
                    err=True,
                )
                if multiple:
                    params[dest] = (*params[dest], *given)
                else:
                    source = ctx.get_parameter_source(dest)
                    explicit = source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
                    if explicit and params[dest] != given:
                        raise click.UsageError(f"give {new} or {old}, not both", ctx=ctx)
                    params[dest] = given
            if required and params[dest] is None:
                param = next(p for p in ctx.command.params if p.name == dest)
                raise click.MissingParameter(ctx=ctx, param=param)
            return f(*args, **params)

        option = click.option(old, alias, hidden=True, multiple=multiple, **attrs)
        return cast(F, option(command))

    return decorate


def _cursor_int(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        raise InvalidField(
            f"cursor {cursor!r} is not one this command gave", field="cursor"
        ) from None


def _parse_time(value: str, zone: str, *, end: bool = False, name: str = "at") -> datetime:
    """A date (its first instant, or with ``end`` the first instant of the next day) or an
    ISO time, local to ``zone`` unless it carries an offset."""
    return _parse_bound(value, load_zone(zone), name, end=end)


def _money(amount: str, currency: str) -> Money:
    return Money.of(amount, currency.upper())


#: The parameters :func:`order_filter_options` adds, which :func:`order_filter` reads.
FILTER_PARAMS = (
    "statuses",
    "period",
    "date_from",
    "date_to",
    "tz",
    "channel",
    "customer",
    "sku",
    "min_amount",
    "max_amount",
    "currency",
    "tag",
    "number_prefix",
)


def order_filter_options(f: F) -> F:
    """Every filter of ``orders list`` (shared with ``export orders``, so that an export
    selects exactly what the list shows)."""
    options = [
        click.option(
            "--status",
            "statuses",
            multiple=True,
            type=click.Choice([s.value for s in OrderStatus]),
            help="Repeatable.",
        ),
        click.option(
            "--period",
            type=click.Choice(["today", "this-week", "this-month"]),
            default=None,
            help="In --tz.",
        ),
        click.option("--from", "date_from", default=None, help="YYYY-MM-DD or ISO time (in --tz)."),
        click.option("--to", "date_to", default=None, help="YYYY-MM-DD (inclusive) or ISO time."),
        click.option("--tz", default=None, help="IANA time zone for dates [default: the setting]."),
        click.option("--channel", default=None),
        click.option("--customer", default=None, help="Customer id, e-mail or external reference."),
        click.option("--product", "sku", default=None, help="Orders with this sku."),
        click.option("--min-amount", default=None, help="Payable at least (needs one currency)."),
        click.option("--max-amount", default=None, help="Payable at most."),
        click.option(
            "--currency", default=None, help="Currency of --min/--max-amount [default CNY]."
        ),
        click.option("--tag", default=None, help="Orders carrying this tag."),
        deprecated_alias("--flag", "--tag", "tag", default=None),
        click.option("--number", "number_prefix", default=None, help="Order number prefix."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def order_filter(core: OrderCore, params: Mapping[str, Any]) -> tuple[OrderFilter, str]:
    """The :class:`OrderFilter` of the :func:`order_filter_options` in ``params``, and the
    time zone they are read in."""
    zone = params["tz"] or core.settings.timezone
    load_zone(zone)  # an unknown --tz is an error even without a date filter
    period, date_from, date_to = params["period"], params["date_from"], params["date_to"]
    created_from = created_to = None
    if period and (date_from or date_to):
        raise InvalidField("give --period or --from/--to, not both", field="period")
    if period:
        created_from, created_to = period_range(period, zone, core.clock())
    elif date_from or date_to:
        created_from, created_to = date_range(date_from, date_to, zone)
    cur = (params["currency"] or "CNY").upper()
    customer, min_amount, max_amount = (
        params["customer"],
        params["min_amount"],
        params["max_amount"],
    )
    flt = OrderFilter(
        statuses=tuple(OrderStatus(s) for s in params["statuses"]),
        created_from=created_from,
        created_to=created_to,
        channel=params["channel"],
        customer_id=core.customers.resolve(customer).id if customer else None,
        sku=params["sku"],
        min_amount=Money.of(min_amount, cur) if min_amount else None,
        max_amount=Money.of(max_amount, cur) if max_amount else None,
        flag=params["tag"],
        number_prefix=params["number_prefix"],
    )
    return flt, zone
