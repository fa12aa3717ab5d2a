"""Portable SQL pieces of the statistics aggregates (``stats.py``).

Three constructs compile differently per dialect (:class:`EpochSeconds`,
:class:`EpochMicros`, :class:`IntDiv`), so that the same query gives the same integers on
SQLite, PostgreSQL and MariaDB:

* a timestamp as whole seconds or microseconds since 1970 (SQLite stores
  ``YYYY-MM-DD HH:MM:SS.ffffff`` text; MariaDB a naive ``DATETIME(6)`` in UTC, read with
  ``TIMESTAMPDIFF`` so that the session time zone plays no part; PostgreSQL ``timestamptz``);
* integer division that truncates (MariaDB's ``/`` is decimal division, its ``DIV`` is not).

:func:`local_day` numbers local days with them; the filters leave out excluded channels and
other currencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, case, literal_column, or_, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

__all__ = [
    "EpochMicros",
    "EpochSeconds",
    "IntDiv",
    "channel_ok",
    "int_or_zero",
    "int_sql",
    "local_day",
    "of_currency",
]


# ----------------------------------------------------------------------- portable pieces
class EpochSeconds(FunctionElement[int]):
    """Whole seconds since 1970-01-01 UTC of a UTC timestamp column (floor)."""

    type = BigInteger()
    inherit_cache = True


class EpochMicros(FunctionElement[int]):
    """Microseconds since 1970-01-01 UTC of a UTC timestamp column."""

    type = BigInteger()
    inherit_cache = True


class IntDiv(FunctionElement[int]):
    """``a DIV b`` on integers (truncating; ordercore only divides non-negative numbers)."""

    type = BigInteger()
    inherit_cache = True


def _arg(compiler: SQLCompiler, element: FunctionElement[Any], i: int, **kw: Any) -> str:
    return str(compiler.process(list(element.clauses)[i], **kw))


def _sqlite_seconds(compiler: SQLCompiler, column: str) -> str:
    # strftime('%s') and unixepoch() read the fraction rounded to milliseconds (…:53.9999 is
    # …:54): the seconds are taken from the text cut before the fraction. unixepoch()
    # (SQLite 3.38) gives the same integer as CAST(strftime('%s') AS INTEGER) at half the
    # cost: no text to write and read back
    version = compiler.dialect.server_version_info or (0,)
    if tuple(version) >= (3, 38):
        return f"unixepoch(substr({column}, 1, 19))"
    return f"CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER)"


@compiles(EpochSeconds)
def _epoch_s_default(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    return _sqlite_seconds(compiler, _arg(compiler, element, 0, **kw))


@compiles(EpochSeconds, "postgresql")
def _epoch_s_pg(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # date_part() is double precision, extract() numeric (slower by half on a month's rows).
    # It is exact here: the microseconds since 1970 (an int64, exact in a double below 2^53,
    # i.e. before the year 2255) divided by 10^6 round to a double within half a unit in the
    # last place (under 5e-7 s before 2242) of the true value, which is either a whole
    # second or at least 1e-6 s away from the next one, so floor() never moves a second
    return f"CAST(floor(date_part('epoch', {_arg(compiler, element, 0, **kw)})) AS BIGINT)"


@compiles(EpochSeconds, "mysql")
@compiles(EpochSeconds, "mariadb")
def _epoch_s_my(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {_arg(compiler, element, 0, **kw)})"


@compiles(EpochMicros)
def _epoch_us_default(element: EpochMicros, compiler: SQLCompiler, **kw: Any) -> str:
    col = _arg(compiler, element, 0, **kw)
    return f"({_sqlite_seconds(compiler, col)} * 1000000 + CAST(substr({col}, 21, 6) AS INTEGER))"


@compiles(EpochMicros, "postgresql")
def _epoch_us_pg(element: EpochMicros, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(extract(epoch FROM {_arg(compiler, element, 0, **kw)}) * 1000000 AS BIGINT)"


@compiles(EpochMicros, "mysql")
@compiles(EpochMicros, "mariadb")
def _epoch_us_my(element: EpochMicros, compiler: SQLCompiler, **kw: Any) -> str:
    return f"TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {_arg(compiler, element, 0, **kw)})"


@compiles(IntDiv)
def _idiv_default(element: IntDiv, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(({_arg(compiler, element, 0, **kw)}) / ({_arg(compiler, element, 1, **kw)}))"


@compiles(IntDiv, "mysql")
@compiles(IntDiv, "mariadb")
def _idiv_my(element: IntDiv, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(({_arg(compiler, element, 0, **kw)}) DIV ({_arg(compiler, element, 1, **kw)}))"


def int_sql(value: int) -> ColumnElement[int]:
    """An integer written into the SQL text (not a bound parameter): an expression that is
    grouped by must be spelt the same in SELECT and GROUP BY, which PostgreSQL checks by
    text, and two bound parameters never compare equal."""
    return literal_column(str(int(value)), BigInteger)


def local_day(column: Any, offsets: Sequence[tuple[datetime, int]]) -> ColumnElement[int]:
    """The local day number of a UTC timestamp ``column``: ``(seconds + offset) DIV 86400``,
    the offset taken from ``offsets`` (``((since, seconds), ...)``, ascending)."""
    seconds = EpochSeconds(column)
    if len(offsets) == 1:
        shifted: ColumnElement[int] = seconds + int_sql(offsets[0][1])
    else:
        whens = [
            (seconds < int_sql(int(since.timestamp())), int_sql(offsets[i - 1][1]))
            for i, (since, _) in enumerate(offsets)
            if i > 0
        ]
        shifted = seconds + case(*whens, else_=int_sql(offsets[-1][1]))
    return IntDiv(shifted, int_sql(86400))


# ------------------------------------------------------------------------------ filters
def channel_ok(column: Any, excluded: Sequence[str]) -> ColumnElement[bool]:
    """A payment through ``column``'s channel counts (it is not one of ``excluded``)."""
    if not excluded:
        return true()
    return or_(column.is_(None), column.not_in(list(excluded)))


def of_currency(column: Any, currency: str | None) -> ColumnElement[bool]:
    return true() if currency is None else column == currency


def int_or_zero(value: Any) -> int:
    return 0 if value is None else int(value)
