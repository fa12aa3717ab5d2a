"""The statistics aggregates: every figure of ``ordercore stats`` computed by the database.

Nothing here loads orders into Python: each function runs a handful of ``GROUP BY`` queries
and returns their (small) rows as plain integers keyed by currency, channel, sku or *local day
number*. ``_reports/stats.py`` turns those rows into the result types.

Portability. The dialect-specific pieces (a timestamp in whole seconds or microseconds,
integer division) are in ``stats_sql.py``. A local day is ``(utc_seconds + offset) DIV
86400`` where ``offset`` is the zone's UTC offset at that instant: a ``CASE`` over the
period's offset segments (one, or a few around DST changes), so buckets follow local days
exactly without any time-zone support in the database. Percentiles use
``ROW_NUMBER()``/``COUNT(*)`` windows (SQLite ≥ 3.25, MariaDB ≥ 10.2) and keep only the rows
at the nearest ranks, compared in integers; PostgreSQL has queries of its own for the
payments (``percentile_disc``, ``DISTINCT ON`` for the last attempts), which give the same
integers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    and_,
    case,
    cast,
    exists,
    extract,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects import postgresql

from ordercore._reports.stats import nearest_rank

from .reading import ReadSnapshot
from .stats_sql import (
    EpochMicros,
    EpochSeconds,
    IntDiv,
    channel_ok,
    int_or_zero,
    int_sql,
    local_day,
    of_currency,
)
from .tables import Tables

__all__ = [
    "EpochMicros",
    "EpochSeconds",
    "IntDiv",
    "ReportingReader",
    "SalesRows",
    "Span",
    "low_stock",
    "payment_rows",
    "product_rows",
    "sales_rows",
]

_FINAL = ("succeeded", "failed", "canceled", "expired")


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


#: A period of :func:`sales_rows`: ``(start, end, offsets)``.
Span = tuple[datetime, datetime, Sequence[tuple[datetime, int]]]


def sales_rows(
    conn: Connection,
    t: Tables,
    spans: Sequence[Span],
    *,
    currency: str | None,
    excluded: Sequence[str],
) -> list[SalesRows]:
    """The rows of each of ``spans`` — periods that follow each other (each ends where the
    next starts; a period and the one before it, for its growth): orders created per local
    day (and of those paid), orders paid and amounts per local day, refunds completed; and
    the paying customers of every period in one query (:func:`_customer_rows`)."""
    for (_, end, _o), (start, _e, _p) in pairwise(spans):
        if end != start:
            raise ValueError("sales_rows needs periods that follow each other")
    out = [
        _period_rows(conn, t, start, end, offsets, currency=currency, excluded=excluded)
        for start, end, offsets in spans
    ]
    paid_orders = sum(n for rows in out for days in rows.paid.values() for n, _ in days.values())
    strategy = _customer_strategy(conn, t, paid_orders)
    bounds = [start for start, _e, _o in spans] + [spans[-1][1]]
    # a scan reads the book once for every period; probes are cheaper one period at a time
    # (the probes of two periods in one query cost SQLite half as much again)
    groups = (
        [(0, bounds)] if strategy == "scan" else [(i, b) for i, b in enumerate(pairwise(bounds))]
    )
    for first, group in groups:
        for i, cur, paying, again, returning in _customer_rows(
            conn, t, group, strategy, currency=currency, excluded=excluded
        ):
            out[first + i].customers[cur] = (paying, again, returning)
    return out


def _period_rows(
    conn: Connection,
    t: Tables,
    start: datetime,
    end: datetime,
    offsets: Sequence[tuple[datetime, int]],
    *,
    currency: str | None,
    excluded: Sequence[str],
) -> SalesRows:
    """The rows of one period of :func:`sales_rows` but its customers."""
    o = t.orders
    out = SalesRows()
    paid_ok = and_(o.c.paid_at.is_not(None), channel_ok(o.c.channel, excluded))
    day = local_day(o.c.created_at, offsets).label("day")
    rows = conn.execute(
        select(
            o.c.currency,
            day,
            func.count(),
            func.sum(case((paid_ok, 1), else_=0)),
        )
        .where(o.c.created_at >= start, o.c.created_at < end, of_currency(o.c.currency, currency))
        .group_by(o.c.currency, day)
    )
    for cur, d, made, done in rows:
        out.created.setdefault(cur, {})[int(d)] = (int(made), int_or_zero(done))

    in_period = and_(
        o.c.paid_at >= start,
        o.c.paid_at < end,
        channel_ok(o.c.channel, excluded),
        of_currency(o.c.currency, currency),
    )
    pday = local_day(o.c.paid_at, offsets).label("day")
    rows = conn.execute(
        select(o.c.currency, pday, func.count(), func.sum(o.c.paid_minor))
        .where(in_period)
        .group_by(o.c.currency, pday)
    )
    for cur, d, n, minor in rows:
        out.paid.setdefault(cur, {})[int(d)] = (int(n), int_or_zero(minor))

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
            channel_ok(o.c.channel, excluded),
            of_currency(r.c.currency, currency),
        )
        .group_by(r.c.currency)
    )
    for cur, minor in rows:
        out.refunds[cur] = int_or_zero(minor)

    return out


#: How the paying customers of the periods are told returning or not: ``"probe"`` (one
#: index probe per paying customer for an order paid before the first period), ``"scan"``
#: (one pass over the index by customer of every order paid before the last period's end)
#: or ``"auto"``: a scan when ``paid orders in the periods × factor ≥ the greatest order
#: id`` (an upper bound of the orders the scan reads), a probe otherwise. A probe costs
#: about 20 index entries of a scan on PostgreSQL and 7 on SQLite (measured: see
#: docs/performance.md); the factors stay at or below those, the paid orders of a period
#: being more than its paying customers.
CUSTOMER_STRATEGY = "auto"
SCAN_FACTOR = {"postgresql": 20}
SCAN_FACTOR_DEFAULT = 6


def _customer_strategy(conn: Connection, t: Tables, paid_orders: int) -> str:
    """``"probe"`` or ``"scan"``, by :data:`CUSTOMER_STRATEGY` and the size of the periods
    (``paid_orders``) against the book's."""
    if CUSTOMER_STRATEGY != "auto":
        return CUSTOMER_STRATEGY
    if not paid_orders:
        return "probe"
    factor = SCAN_FACTOR.get(conn.dialect.name, SCAN_FACTOR_DEFAULT)
    last_id = int_or_zero(conn.execute(select(func.max(t.orders.c.id))).scalar())
    return "scan" if paid_orders * factor >= last_id else "probe"


def _customer_rows(
    conn: Connection,
    t: Tables,
    bounds: Sequence[datetime],
    strategy: str,
    *,
    currency: str | None,
    excluded: Sequence[str],
) -> list[tuple[int, str, int, int, int]]:
    """``(period, currency, paying customers, of those paying ≥ 2 times, of those who had
    paid before)`` for the periods ``[bounds[i], bounds[i + 1])``, in one query read from
    the index ``(customer_id, currency, paid_at, channel)`` alone (an order paid before a
    period was created before it too).

    Per customer and currency: ``n_i``, the orders paid in period ``i``, and ``before``, an
    order paid before the first period. A customer paying in period ``i`` had paid before it
    when ``before`` or some ``n_j > 0`` for ``j < i``. ``strategy`` (``"probe"`` or
    ``"scan"``, :func:`_customer_strategy`) is how ``before`` is found."""
    o = t.orders
    ok = and_(channel_ok(o.c.channel, excluded), of_currency(o.c.currency, currency))
    first, last = bounds[0], bounds[-1]
    counts = [
        func.sum(case((and_(o.c.paid_at >= lo, o.c.paid_at < hi), 1), else_=0)).label(f"n{i}")
        for i, (lo, hi) in enumerate(pairwise(bounds))
    ]
    if strategy == "scan":
        per_customer = (
            select(
                o.c.currency,
                *counts,
                func.max(case((o.c.paid_at < first, 1), else_=0)).label("before"),
            )
            .where(o.c.paid_at < last, ok)
            .group_by(o.c.customer_id, o.c.currency)
            .subquery("pc")
        )
    else:
        in_periods = (
            select(o.c.currency, o.c.customer_id, *counts)
            .where(o.c.paid_at >= first, o.c.paid_at < last, ok)
            .group_by(o.c.currency, o.c.customer_id)
            .subquery("paying")
        )
        before = o.alias("before")
        paid_before = exists().where(
            before.c.customer_id == in_periods.c.customer_id,
            before.c.currency == in_periods.c.currency,
            before.c.paid_at < first,
            channel_ok(before.c.channel, excluded),
        )
        per_customer = select(
            in_periods.c.currency,
            *(in_periods.c[f"n{i}"] for i in range(len(counts))),
            case((paid_before, 1), else_=0).label("before"),
        ).subquery("pc")
    pc = per_customer.c
    # grouped by ``before`` too, so that each row's probe runs once (SQLite and PostgreSQL
    # copy a subquery's column into every outer reference of it)
    figures = []
    for i in range(len(counts)):
        n = pc[f"n{i}"]
        paid_earlier = or_(false(), *(pc[f"n{j}"] > 0 for j in range(i)))
        figures += [
            func.sum(case((n > 0, 1), else_=0)),
            func.sum(case((n >= 2, 1), else_=0)),
            func.sum(case((and_(n > 0, paid_earlier), 1), else_=0)),
        ]
    found: dict[tuple[int, str], list[int]] = {}
    for cur, before_, *sums in conn.execute(
        select(pc.currency, pc.before, *figures).group_by(pc.currency, pc.before)
    ):
        for i in range(len(counts)):
            paying, again, earlier = (int_or_zero(v) for v in sums[3 * i : 3 * i + 3])
            total = found.setdefault((i, cur), [0, 0, 0])
            total[0] += paying
            total[1] += again
            total[2] += paying if int_or_zero(before_) else earlier
    return [(i, cur, p, a, r) for (i, cur), (p, a, r) in sorted(found.items()) if p]


# ----------------------------------------------------------------------------- payments
#: ``(count, {rank: seconds})``: how many waits a group has, and the waits at the nearest
#: ranks of its p50 and p90.
Ranked = tuple[int, dict[int, int]]


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
    (orders, minor)``, ``ranks[(cur, ch)]`` and ``overall[cur]``: :data:`Ranked` (``ch`` None
    for orders paid by hand).

    PostgreSQL runs two queries of its own (:func:`_last_attempts_pg`, :func:`_paid_pg`)
    and the portable count of attempts; SQLite and MariaDB the portable four. Both give the
    same integers (the brute-force tests run on every backend)."""
    a = t.payment_attempts
    o = t.orders
    a_ok = and_(
        a.c.created_at >= start,
        a.c.created_at < end,
        of_currency(a.c.currency, currency),
        channel_ok(a.c.channel, excluded),
    )
    paid_ok = and_(
        o.c.paid_at >= start,
        o.c.paid_at < end,
        channel_ok(o.c.channel, excluded),
        of_currency(o.c.currency, currency),
    )
    if conn.dialect.name == "postgresql":
        attempts = _attempts(conn, t, a_ok)
        orders = _last_attempts_pg(conn, t, a_ok)
        paid, ranks, overall = _paid_pg(conn, t, paid_ok)
    else:
        attempts = _attempts(conn, t, a_ok)
        orders = _last_attempts(conn, t, a_ok, start, end)
        paid, ranks, overall = _paid(conn, t, paid_ok)
    return {
        "attempts": attempts,
        "orders": orders,
        "paid": paid,
        "ranks": ranks,
        "overall": overall,
    }


def _ranked(count: int, p50: int, p90: int) -> Ranked:
    return (count, {nearest_rank(50, count): p50, nearest_rank(90, count): p90})


def _attempts(
    conn: Connection, t: Tables, a_ok: ColumnElement[bool]
) -> dict[tuple[str, str], tuple[int, int, int]]:
    """``(attempts, succeeded, final)`` per (currency, channel) of the attempts ``a_ok``."""
    a = t.payment_attempts
    out: dict[tuple[str, str], tuple[int, int, int]] = {}
    for cur, ch, n, ok, final in conn.execute(
        select(
            a.c.currency,
            a.c.channel,
            func.count(),
            func.sum(case((a.c.status == "succeeded", 1), else_=0)),
            func.sum(case((a.c.status.in_(_FINAL), 1), else_=0)),
        )
        .where(a_ok)
        .group_by(a.c.currency, a.c.channel)
    ):
        out[(cur, ch)] = (int(n), int_or_zero(ok), int_or_zero(final))
    return out


def _last_attempts(
    conn: Connection, t: Tables, a_ok: ColumnElement[bool], start: datetime, end: datetime
) -> dict[tuple[str, str], tuple[int, int]]:
    """Per (currency, channel): of the orders whose last attempt on the channel in the
    period is final, how many, and how many of those succeeded — the last attempt found by
    a ``NOT EXISTS`` probe of a later one (faster on SQLite than a window over the
    period's attempts)."""
    a = t.payment_attempts
    later = a.alias("later")
    is_last = ~exists().where(
        later.c.order_id == a.c.order_id,
        later.c.channel == a.c.channel,
        later.c.id > a.c.id,
        later.c.created_at >= start,
        later.c.created_at < end,
    )
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for cur, ch, final, ok in conn.execute(
        select(
            a.c.currency,
            a.c.channel,
            func.sum(case((a.c.status.in_(_FINAL), 1), else_=0)),
            func.sum(case((a.c.status == "succeeded", 1), else_=0)),
        )
        .where(a_ok, is_last)
        .group_by(a.c.currency, a.c.channel)
    ):
        out[(cur, ch)] = (int_or_zero(final), int_or_zero(ok))
    return out


def _paid(
    conn: Connection, t: Tables, paid_ok: ColumnElement[bool]
) -> tuple[
    dict[tuple[str, str | None], tuple[int, int]],
    dict[tuple[str, str | None], Ranked],
    dict[str, Ranked],
]:
    """Paid orders and amounts per (currency, channel), and the waits at the p50 and p90
    ranks per (currency, channel) and per currency: portable ``ROW_NUMBER()``/``COUNT(*)``
    windows (SQLite and MariaDB have no ``percentile_disc``), which keep only the rows at
    the nearest ranks, compared in integers. Every group has a row at its p50 rank, which
    carries the group's count and paid sum: no query of its own for those."""
    o = t.orders
    seconds = IntDiv(EpochMicros(o.c.paid_at) - EpochMicros(o.c.created_at), int_sql(1_000_000))
    # the seconds first, in a subquery of their own: a window's ORDER BY then names a plain
    # column (MariaDB reads a select-list alias there differently from the others)
    waits = (
        select(
            o.c.currency.label("cur"),
            o.c.channel.label("ch"),
            o.c.paid_minor.label("minor"),
            seconds.label("secs"),
        )
        .where(paid_ok)
        .subquery("waits")
    )
    w = waits.c

    def at_rank(rank: Any, count: Any) -> ColumnElement[bool]:
        return or_(*(and_(rank * 100 >= count * p, (rank - 1) * 100 < count * p) for p in (50, 90)))

    def nearest_ranks(*by: Any) -> list[Any]:
        # one ROW_NUMBER() per query: MariaDB 10.11 numbers the rows of a second
        # ROW_NUMBER() with another PARTITION BY in the wrong order
        ranked = select(
            *by,
            w.secs,
            func.row_number().over(partition_by=by, order_by=w.secs).label("rn"),
            func.count().over(partition_by=by).label("n"),
            func.sum(w.minor).over(partition_by=by).label("minor"),
        ).subquery("ranked")
        return list(conn.execute(select(ranked).where(at_rank(ranked.c.rn, ranked.c.n))))

    paid: dict[tuple[str, str | None], tuple[int, int]] = {}
    ranks: dict[tuple[str, str | None], Ranked] = {}
    for cur, ch, secs, rn, n, minor in nearest_ranks(w.cur, w.ch):
        paid[(cur, ch)] = (int(n), int_or_zero(minor))
        ranks.setdefault((cur, ch), (int(n), {}))[1][int(rn)] = int(secs)
    overall: dict[str, Ranked] = {}
    for cur, secs, rn, n, _minor in nearest_ranks(w.cur):
        overall.setdefault(cur, (int(n), {}))[1][int(rn)] = int(secs)
    return paid, ranks, overall


def _last_attempts_pg(
    conn: Connection, t: Tables, a_ok: ColumnElement[bool]
) -> dict[tuple[str, str], tuple[int, int]]:
    """:func:`_last_attempts` on PostgreSQL: the last attempt of each order on each channel
    by ``DISTINCT ON (order_id, channel)`` — one sorted pass over the period's attempts
    instead of a probe for a later attempt per attempt."""
    a = t.payment_attempts
    each = select(a.c.currency, a.c.channel, a.c.status).where(a_ok)
    if hasattr(postgresql, "distinct_on"):  # SQLAlchemy 2.1
        each = each.ext(postgresql.distinct_on(a.c.order_id, a.c.channel))
    else:  # SQLAlchemy 2.0
        each = each.distinct(a.c.order_id, a.c.channel)
    last = each.order_by(a.c.order_id, a.c.channel, a.c.id.desc()).subquery("last")
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for cur, ch, final, ok in conn.execute(
        select(
            last.c.currency,
            last.c.channel,
            func.count().filter(last.c.status.in_(_FINAL)),
            func.count().filter(last.c.status == "succeeded"),
        ).group_by(last.c.currency, last.c.channel)
    ):
        out[(cur, ch)] = (int(final), int(ok))
    return out


def _paid_pg(
    conn: Connection, t: Tables, paid_ok: ColumnElement[bool]
) -> tuple[
    dict[tuple[str, str | None], tuple[int, int]],
    dict[tuple[str, str | None], Ranked],
    dict[str, Ranked],
]:
    """:func:`_paid` in one query on PostgreSQL: ``GROUPING SETS`` of (currency, channel)
    and (currency), with ``percentile_disc`` over the waits as intervals.

    ``percentile_disc(f)`` is the first value whose rank ``k`` has ``k / n ≥ f``: the
    nearest rank ``⌈f·n⌉`` (0.5 and 0.9 as doubles are close enough to make
    ``ceil(f * n)`` exact for any count). Ordering the intervals ``paid_at - created_at``
    (microseconds) and cutting the chosen one to whole seconds gives the same wait as
    ordering the whole seconds, since cutting off keeps the order; only the few chosen
    intervals are converted."""
    o = t.orders
    wait = o.c.paid_at - o.c.created_at

    def pct(fraction: str) -> ColumnElement[int]:
        chosen = func.percentile_disc(literal_column(fraction)).within_group(wait)
        return cast(func.trunc(extract("epoch", chosen)), BigInteger)

    paid: dict[tuple[str, str | None], tuple[int, int]] = {}
    ranks: dict[tuple[str, str | None], Ranked] = {}
    overall: dict[str, Ranked] = {}
    for cur, ch, whole, n, minor, p50, p90 in conn.execute(
        select(
            o.c.currency,
            o.c.channel,
            func.grouping(o.c.channel),
            func.count(),
            func.sum(o.c.paid_minor),
            pct("0.5"),
            pct("0.9"),
        )
        .where(paid_ok)
        .group_by(func.grouping_sets(tuple_(o.c.currency, o.c.channel), tuple_(o.c.currency)))
    ):
        if whole:
            overall[cur] = _ranked(int(n), int(p50), int(p90))
        else:
            paid[(cur, ch)] = (int(n), int_or_zero(minor))
            ranks[(cur, ch)] = _ranked(int(n), int(p50), int(p90))
    return paid, ranks, overall


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
    ``line_total * (paid - refunded) DIV original`` (0 for an order of original total 0).

    The lines are read through their order's index, a nested loop over the period's paid
    orders: work that grows with the period, not with the book. PostgreSQL's default costs
    (``random_page_cost = 4``) prefer a hash join over a scan of *every* line, five times
    slower for a month of a 1M book (docs/performance.md); hash and merge joins are turned
    off for this one statement (``SET LOCAL``, put back after it)."""
    o = t.orders
    li = t.order_lines
    kept = o.c.paid_minor - o.c.refunded_minor
    line_total = li.c.unit_price_minor * li.c.quantity
    revenue = case((o.c.original_minor > 0, IntDiv(line_total * kept, o.c.original_minor)), else_=0)
    with _nested_loops(conn):
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
                channel_ok(o.c.channel, excluded),
                of_currency(o.c.currency, currency),
            )
            .group_by(o.c.currency, li.c.sku)
        ).all()
    return [(cur, sku, name, int(q), int_or_zero(rev)) for cur, sku, name, q, rev in rows]


@contextmanager
def _nested_loops(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, the statements run inside use neither hash nor merge joins (for this
    transaction only; the settings are put back after)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    names = ("enable_hashjoin", "enable_mergejoin")
    before = conn.execute(select(*(func.current_setting(n) for n in names))).one()
    conn.execute(select(*(func.set_config(n, "off", true()) for n in names)))
    try:
        yield
    finally:
        conn.execute(
            select(*(func.set_config(n, v, true()) for n, v in zip(names, before, strict=True)))
        )


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


class ReportingReader(ReadSnapshot):
    """One read-only transaction on the reporting engine, and the aggregates above bound to
    it: ``with ReportingReader(engine, tables) as r: r.sales(...)``. Nothing is committed."""

    def sales(
        self, spans: Sequence[Span], *, currency: str | None, excluded: Sequence[str]
    ) -> list[SalesRows]:
        return sales_rows(self.conn, self.tables, spans, currency=currency, excluded=excluded)

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
