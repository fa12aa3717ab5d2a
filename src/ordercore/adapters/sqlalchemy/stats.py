"""The statistics aggregates: every figure of ``ordercore stats`` computed by the database.

Nothing here loads orders into Python: each function runs a handful of ``GROUP BY`` queries
and returns their (small) rows as plain integers keyed by currency, channel, sku or *local day
number*. ``_reports/stats.py`` turns those rows into the result types.

Portability. Three constructs compile differently per dialect (:class:`EpochSeconds`,
:class:`EpochMicros`, :class:`IntDiv`), so that the same query gives the same integers on
SQLite, PostgreSQL and MariaDB:

* a timestamp as whole seconds or microseconds since 1970 (SQLite stores
  ``YYYY-MM-DD HH:MM:SS.ffffff`` text; MariaDB a naive ``DATETIME(6)`` in UTC, read with
  ``TIMESTAMPDIFF`` so that the session time zone plays no part; PostgreSQL ``timestamptz``);
* integer division that truncates (MariaDB's ``/`` is decimal division, its ``DIV`` is not).

A local day is ``(utc_seconds + offset) DIV 86400`` where ``offset`` is the zone's UTC offset
at that instant: a ``CASE`` over the period's offset segments (one, or a few around DST
changes), so buckets follow local days exactly without any time-zone support in the database.
Percentiles use ``ROW_NUMBER()``/``COUNT(*)`` windows (SQLite ≥ 3.25, PostgreSQL, MariaDB
≥ 10.2) and keep only the rows at the nearest ranks, compared in integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    and_,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from .tables import Tables

__all__ = [
    "EpochMicros",
    "EpochSeconds",
    "IntDiv",
    "ReportingReader",
    "SalesRows",
    "low_stock",
    "payment_rows",
    "product_rows",
    "sales_rows",
]

_FINAL = ("succeeded", "failed", "canceled", "expired")


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


@compiles(EpochSeconds)
def _epoch_s_default(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # strftime('%s') reads the fraction rounded to milliseconds (…:53.9999 is …:54): the
    # seconds are taken from the text cut before the fraction
    return f"CAST(strftime('%s', substr({_arg(compiler, element, 0, **kw)}, 1, 19)) AS INTEGER)"


@compiles(EpochSeconds, "postgresql")
def _epoch_s_pg(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(floor(extract(epoch FROM {_arg(compiler, element, 0, **kw)})) AS BIGINT)"


@compiles(EpochSeconds, "mysql")
@compiles(EpochSeconds, "mariadb")
def _epoch_s_my(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {_arg(compiler, element, 0, **kw)})"


@compiles(EpochMicros)
def _epoch_us_default(element: EpochMicros, compiler: SQLCompiler, **kw: Any) -> str:
    col = _arg(compiler, element, 0, **kw)
    return (
        f"(CAST(strftime('%s', substr({col}, 1, 19)) AS INTEGER) * 1000000 "
        f"+ CAST(substr({col}, 21, 6) AS INTEGER))"
    )


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


def _int_sql(value: int) -> ColumnElement[int]:
    """An integer written into the SQL text (not a bound parameter): an expression that is
    grouped by must be spelt the same in SELECT and GROUP BY, which PostgreSQL checks by
    text, and two bound parameters never compare equal."""
    return literal_column(str(int(value)), BigInteger)


def local_day(column: Any, offsets: Sequence[tuple[datetime, int]]) -> ColumnElement[int]:
    """The local day number of a UTC timestamp ``column``: ``(seconds + offset) DIV 86400``,
    the offset taken from ``offsets`` (``((since, seconds), ...)``, ascending)."""
    seconds = EpochSeconds(column)
    if len(offsets) == 1:
        shifted: ColumnElement[int] = seconds + _int_sql(offsets[0][1])
    else:
        whens = [
            (seconds < _int_sql(int(since.timestamp())), _int_sql(offsets[i - 1][1]))
            for i, (since, _) in enumerate(offsets)
            if i > 0
        ]
        shifted = seconds + case(*whens, else_=_int_sql(offsets[-1][1]))
    return IntDiv(shifted, _int_sql(86400))


# ------------------------------------------------------------------------------ filters
def _channel_ok(column: Any, excluded: Sequence[str]) -> ColumnElement[bool]:
    """A payment through ``column``'s channel counts (it is not one of ``excluded``)."""
    if not excluded:
        return true()
    return or_(column.is_(None), column.not_in(list(excluded)))


def _currency(column: Any, currency: str | None) -> ColumnElement[bool]:
    return true() if currency is None else column == currency


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


# -------------------------------------------------------------------------------- sales
class SalesRows:
    """The rows behind the sales figures, per currency code.

    ``created[cur][day] = (created, of those paid)``; ``paid[cur][day] = (orders, minor)``;
    ``refunds[cur] = minor``; ``customers[cur] = (paying, paying ≥ 2 times, paid before)``.
    """

    def __init__(self) -> None:
        self.created: dict[str, dict[int, tuple[int, int]]] = {}
        self.paid: dict[str, dict[int, tuple[int, int]]] = {}
        self.refunds: dict[str, int] = {}
        self.customers: dict[str, tuple[int, int, int]] = {}

    def currencies(self) -> list[str]:
        return sorted(set(self.created) | set(self.paid) | set(self.refunds))


def sales_rows(
    conn: Connection,
    t: Tables,
    start: datetime,
    end: datetime,
    offsets: Sequence[tuple[datetime, int]],
    *,
    currency: str | None,
    excluded: Sequence[str],
) -> SalesRows:
    """Orders created in ``[start, end)`` (and of those paid) per local day; orders paid and
    amounts per local day; refunds completed; paying customers."""
    o = t.orders
    out = SalesRows()
    paid_ok = and_(o.c.paid_at.is_not(None), _channel_ok(o.c.channel, excluded))
    day = local_day(o.c.created_at, offsets).label("day")
    rows = conn.execute(
        select(
            o.c.currency,
            day,
            func.count(),
            func.sum(case((paid_ok, 1), else_=0)),
        )
        .where(o.c.created_at >= start, o.c.created_at < end, _currency(o.c.currency, currency))
        .group_by(o.c.currency, day)
    )
    for cur, d, made, done in rows:
        out.created.setdefault(cur, {})[int(d)] = (int(made), _int(done))

    in_period = and_(
        o.c.paid_at >= start,
        o.c.paid_at < end,
        _channel_ok(o.c.channel, excluded),
        _currency(o.c.currency, currency),
    )
    pday = local_day(o.c.paid_at, offsets).label("day")
    rows = conn.execute(
        select(o.c.currency, pday, func.count(), func.sum(o.c.paid_minor))
        .where(in_period)
        .group_by(o.c.currency, pday)
    )
    for cur, d, n, minor in rows:
        out.paid.setdefault(cur, {})[int(d)] = (int(n), _int(minor))

    r = t.refunds
    # the order is joined only to leave out the payments of excluded channels
    refunded = r.join(o, o.c.id == r.c.order_id) if excluded else r
    rows = conn.execute(
        select(r.c.currency, func.sum(r.c.amount_minor))
        .select_from(refunded)
        .where(
            r.c.status == "succeeded",
            r.c.counts_toward_order == true(),
            r.c.completed_at >= start,
            r.c.completed_at < end,
            _channel_ok(o.c.channel, excluded),
            _currency(r.c.currency, currency),
        )
        .group_by(r.c.currency)
    )
    for cur, minor in rows:
        out.refunds[cur] = _int(minor)

    per_customer = (
        select(o.c.currency, o.c.customer_id, func.count().label("n"))
        .where(in_period)
        .group_by(o.c.currency, o.c.customer_id)
        .subquery("pc")
    )
    before = o.alias("before")
    paid_before = exists().where(
        before.c.customer_id == per_customer.c.customer_id,
        before.c.currency == per_customer.c.currency,
        before.c.paid_at < start,
        before.c.created_at < start,
        _channel_ok(before.c.channel, excluded),
    )
    rows = conn.execute(
        select(
            per_customer.c.currency,
            func.count(),
            func.sum(case((per_customer.c.n >= 2, 1), else_=0)),
            func.sum(case((paid_before, 1), else_=0)),
        ).group_by(per_customer.c.currency)
    )
    for cur, paying, again, returning in rows:
        out.customers[cur] = (int(paying), _int(again), _int(returning))
    return out


# ----------------------------------------------------------------------------- payments
def payment_rows(
    conn: Connection,
    t: Tables,
    start: datetime,
    end: datetime,
    *,
    currency: str | None,
    excluded: Sequence[str],
) -> dict[str, Any]:
    """Attempts, per-order outcomes, paid orders and time-to-pay ranks per (currency,
    channel). Keys: ``attempts[(cur, ch)] = (attempts, succeeded, final)``, ``orders[(cur,
    ch)] = (orders with a final last attempt, of those succeeded)``, ``paid[(cur, ch)] =
    (orders, minor)``, ``ranks[(cur, ch)]`` and ``overall[cur]`` = ``(count, {rank: seconds})``
    (``ch`` None for orders paid by hand)."""
    a = t.payment_attempts
    o = t.orders
    a_ok = and_(
        a.c.created_at >= start,
        a.c.created_at < end,
        _currency(a.c.currency, currency),
        _channel_ok(a.c.channel, excluded),
    )
    is_final = a.c.status.in_(_FINAL)
    succeeded = a.c.status == "succeeded"
    attempts: dict[tuple[str, str], tuple[int, int, int]] = {}
    for cur, ch, n, ok, final in conn.execute(
        select(
            a.c.currency,
            a.c.channel,
            func.count(),
            func.sum(case((succeeded, 1), else_=0)),
            func.sum(case((is_final, 1), else_=0)),
        )
        .where(a_ok)
        .group_by(a.c.currency, a.c.channel)
    ):
        attempts[(cur, ch)] = (int(n), _int(ok), _int(final))

    later = a.alias("later")
    is_last = ~exists().where(
        later.c.order_id == a.c.order_id,
        later.c.channel == a.c.channel,
        later.c.id > a.c.id,
        later.c.created_at >= start,
        later.c.created_at < end,
    )
    orders: dict[tuple[str, str], tuple[int, int]] = {}
    for cur, ch, final, ok in conn.execute(
        select(
            a.c.currency,
            a.c.channel,
            func.sum(case((is_final, 1), else_=0)),
            func.sum(case((succeeded, 1), else_=0)),
        )
        .where(a_ok, is_last)
        .group_by(a.c.currency, a.c.channel)
    ):
        orders[(cur, ch)] = (_int(final), _int(ok))

    paid_ok = and_(
        o.c.paid_at >= start,
        o.c.paid_at < end,
        _channel_ok(o.c.channel, excluded),
        _currency(o.c.currency, currency),
    )
    paid: dict[tuple[str, str | None], tuple[int, int]] = {}
    for cur, ch, n, minor in conn.execute(
        select(o.c.currency, o.c.channel, func.count(), func.sum(o.c.paid_minor))
        .where(paid_ok)
        .group_by(o.c.currency, o.c.channel)
    ):
        paid[(cur, ch)] = (int(n), _int(minor))

    seconds = IntDiv(EpochMicros(o.c.paid_at) - EpochMicros(o.c.created_at), _int_sql(1_000_000))
    # the seconds first, in a subquery of their own: a window's ORDER BY then names a plain
    # column (MariaDB reads a select-list alias there differently from the others)
    waits = (
        select(o.c.currency.label("cur"), o.c.channel.label("ch"), seconds.label("secs"))
        .where(paid_ok)
        .subquery("waits")
    )
    w = waits.c

    def at_rank(rank: Any, count: Any) -> ColumnElement[bool]:
        return or_(*(and_(rank * 100 >= count * p, (rank - 1) * 100 < count * p) for p in (50, 90)))

    def nearest_ranks(*by: Any) -> list[Any]:
        # one window specification per query: MariaDB 10.11 numbers the rows of a second
        # ROW_NUMBER() with another PARTITION BY in the wrong order
        ranked = select(
            *by,
            w.secs,
            func.row_number().over(partition_by=by, order_by=w.secs).label("rn"),
            func.count().over(partition_by=by).label("n"),
        ).subquery("ranked")
        return list(conn.execute(select(ranked).where(at_rank(ranked.c.rn, ranked.c.n))))

    ranks: dict[tuple[str, str | None], tuple[int, dict[int, int]]] = {}
    for cur, ch, secs, rn, n in nearest_ranks(w.cur, w.ch):
        ranks.setdefault((cur, ch), (int(n), {}))[1][int(rn)] = int(secs)
    overall: dict[str, tuple[int, dict[int, int]]] = {}
    for cur, secs, rn, n in nearest_ranks(w.cur):
        overall.setdefault(cur, (int(n), {}))[1][int(rn)] = int(secs)
    return {
        "attempts": attempts,
        "orders": orders,
        "paid": paid,
        "ranks": ranks,
        "overall": overall,
    }


# ----------------------------------------------------------------------------- products
def product_rows(
    conn: Connection,
    t: Tables,
    start: datetime,
    end: datetime,
    *,
    currency: str | None,
    excluded: Sequence[str],
) -> list[tuple[str, str, str, int, int]]:
    """``(currency, sku, name, quantity, revenue minor)`` of every sku on an order paid in
    ``[start, end)``. A line's revenue is its share of what the order kept:
    ``line_total * (paid - refunded) DIV original`` (0 for an order of original total 0)."""
    o = t.orders
    li = t.order_lines
    kept = o.c.paid_minor - o.c.refunded_minor
    line_total = li.c.unit_price_minor * li.c.quantity
    revenue = case((o.c.original_minor > 0, IntDiv(line_total * kept, o.c.original_minor)), else_=0)
    rows = conn.execute(
        select(
            o.c.currency,
            li.c.sku,
            func.max(li.c.name),
            func.sum(li.c.quantity),
            func.sum(revenue),
        )
        .select_from(o.join(li, li.c.order_id == o.c.id))
        .where(
            o.c.paid_at >= start,
            o.c.paid_at < end,
            _channel_ok(o.c.channel, excluded),
            _currency(o.c.currency, currency),
        )
        .group_by(o.c.currency, li.c.sku)
    )
    return [(cur, sku, name, int(q), _int(rev)) for cur, sku, name, q, rev in rows]


def low_stock(conn: Connection, t: Tables) -> list[tuple[str, str, int, int]]:
    """``(sku, name, stock, threshold)`` of every active product whose stock is at or below
    its low-stock threshold, lowest stock first."""
    p = t.products
    rows = conn.execute(
        select(p.c.sku, p.c.name, p.c.stock, p.c.low_stock_threshold)
        .where(
            p.c.stock.is_not(None),
            p.c.low_stock_threshold.is_not(None),
            p.c.stock <= p.c.low_stock_threshold,
            p.c.active == true(),
        )
        .order_by(p.c.stock, p.c.sku)
    )
    return [(sku, name, int(stock), int(th)) for sku, name, stock, th in rows]


class ReportingReader:
    """One read-only transaction on the reporting engine, and the aggregates above bound to
    it: ``with ReportingReader(engine, tables) as r: r.sales(...)``. Nothing is committed."""

    conn: Connection

    def __init__(self, engine: Engine, tables: Tables) -> None:
        self.engine = engine
        self.tables = tables

    def __enter__(self) -> ReportingReader:
        self.conn = self.engine.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()

    def sales(
        self,
        start: datetime,
        end: datetime,
        offsets: Sequence[tuple[datetime, int]],
        *,
        currency: str | None,
        excluded: Sequence[str],
    ) -> SalesRows:
        return sales_rows(
            self.conn, self.tables, start, end, offsets, currency=currency, excluded=excluded
        )

    def payments(
        self, start: datetime, end: datetime, *, currency: str | None, excluded: Sequence[str]
    ) -> dict[str, Any]:
        return payment_rows(
            self.conn, self.tables, start, end, currency=currency, excluded=excluded
        )

    def products(
        self, start: datetime, end: datetime, *, currency: str | None, excluded: Sequence[str]
    ) -> list[tuple[str, str, str, int, int]]:
        return product_rows(
            self.conn, self.tables, start, end, currency=currency, excluded=excluded
        )

    def low_stock(self) -> list[tuple[str, str, int, int]]:
        return low_stock(self.conn, self.tables)
