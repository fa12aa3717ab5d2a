"""The period options shared by ``ordercore stats`` and ``ordercore report``: ``--period`` or
``--from``/``--to`` in ``--tz``, the trend's ``--by``, ``--currency``, ``--exclude-channel``,
``--actor`` and ``--json``, and the :class:`~ordercore.StatsPeriod` they describe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ordercore import InvalidField, OrderCore, StatsPeriod
from ordercore._reports.stats import GRANULARITIES, PERIODS, Granularity

from ._common import _actor_option, json_option

__all__ = ["period_options", "stats_period"]

F = TypeVar("F", bound=Callable[..., Any])


def period_options(f: F) -> F:
    """The options above, on a command (its function takes ``period``, ``date_from``,
    ``date_to``, ``tz``, ``by``, ``currency``, ``excluded``, ``actor`` and ``as_json``)."""
    options = [
        click.option(
            "--period",
            type=click.Choice(list(PERIODS)),
            default=None,
            help="A named period in --tz [default: this-month].",
        ),
        click.option("--from", "date_from", default=None, help="First local date, YYYY-MM-DD."),
        click.option("--to", "date_to", default=None, help="Last local date (inclusive)."),
        click.option("--tz", default=None, help="IANA time zone [default: the setting]."),
        click.option(
            "--by",
            type=click.Choice(list(GRANULARITIES)),
            default="day",
            show_default=True,
            help="Trend buckets.",
        ),
        click.option("--currency", default=None, help="One currency only [default: each]."),
        click.option(
            "--exclude-channel",
            "excluded",
            multiple=True,
            help="Leave this channel's payments out of every figure (repeatable).",
        ),
        _actor_option(),
        json_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def stats_period(
    core: OrderCore,
    period: str | None,
    date_from: str | None,
    date_to: str | None,
    tz: str | None,
    by: Granularity,
) -> StatsPeriod:
    """The period the options give (``this-month`` in the settings' zone without any)."""
    zone = tz or core.settings.timezone
    if period and (date_from or date_to):
        raise InvalidField("give --period or --from/--to, not both", field="period")
    if date_from or date_to:
        if not (date_from and date_to):
            raise InvalidField("give both --from and --to", field="from" if date_to else "to")
        return StatsPeriod.between(date_from, date_to, zone, by)
    return StatsPeriod.named(period or "this-month", zone, core.clock(), by)
