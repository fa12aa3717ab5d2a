"""Benchmark: the statistics at a million orders, against the same aggregates written by hand.

Fills a fresh database with ``--orders`` orders spread evenly over 2025 and 2026 (one line
each, 75 % paid through four channels, 5 % of those half refunded, one payment attempt an
order, 100,000 customers, 95 % CNY) by bulk SQL — ``generate_series`` on PostgreSQL, a
recursive CTE on SQLite — then VACUUM/ANALYZE, and times ``core.stats.sales``, ``.payments``
and ``.products`` for a month (June 2026) and a year (2026) in Asia/Shanghai: the median of
``--repeat`` runs of ordercore's service (every query it makes, the previous period of
``sales`` included) and of the same figures computed by hand-written SQL for that backend
(``AT TIME ZONE``/``date()`` bucketing, ``percentile_disc``, ``DISTINCT ON``), run in the same
process on the same data, alternating (ours first, then the hand-written SQL first). It
checks that both give the same figures (every figure the hand-written SQL computes), prints
the ratio, and the CPU time of both: this process's (all of the work on SQLite) and, with
``--server-cpu``, that of the PostgreSQL backends serving it (a server on this machine; no
parallel workers then), which a loaded machine disturbs far less than the wall clock.

    python benchmarks/stats.py --backend both --orders 1000000
    python benchmarks/stats.py --backend sqlite --orders 100000 --repeat 3
    python benchmarks/stats.py --backend postgresql --reuse --schema S --server-cpu --spans month

Targets (PostgreSQL): each month statistic under 200 ms, each year statistic under 1 s, within
1.5x of the hand-written SQL. This is a benchmark, not a test: it reports, it never fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url

from ordercore import OrderCore, Settings, StatsPeriod
from ordercore._reports.stats import nearest_rank, rate
from ordercore.adapters.sqlalchemy import make_engine

UTC = timezone.utc
TZ = "Asia/Shanghai"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2027, 1, 1, tzinfo=UTC)
FINAL = "('succeeded', 'failed', 'canceled', 'expired')"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ filling
def _pg(conn: Connection, sql: str) -> None:
    conn.exec_driver_sql(sql.replace("%", "%%"))  # psycopg reads % as a placeholder


def fill_postgresql(conn: Connection, n: int, p: str) -> None:
    span = int((T1 - T0).total_seconds())
    _pg(conn, "SELECT setseed(0.42)")
    _pg(
        conn,
        f"INSERT INTO {p}customers (id, name, identity_verified, created_at) "
        "SELECT g, 'c' || g, false, timestamptz '2024-12-01 00:00+00' "
        "FROM generate_series(1, 100000) g",
    )
    _pg(
        conn,
        f"INSERT INTO {p}products (id, sku, name, currency, price_minor, specs, stock, "
        "low_stock_threshold, active, created_at, updated_at) "
        "SELECT g, 'sku-' || g, 'Product ' || g, 'CNY', 1000 * g, '{}', g % 20, 5, true, "
        "now(), now() FROM generate_series(1, 50) g",
    )
    _pg(
        conn,
        f"""
        INSERT INTO {p}orders (id, number, customer_id, currency, status, original_minor,
            payable_minor, paid_minor, refunded_minor, adjustments, channel, special,
            created_at, paid_at, version)
        SELECT g, 'B' || lpad(g::text, 9, '0'), 1 + floor(r1 * 100000)::int,
            CASE WHEN r2 < 0.95 THEN 'CNY' ELSE 'USD' END,
            CASE WHEN r3 < 0.75 THEN 'completed' ELSE 'canceled' END,
            amount, amount, CASE WHEN r3 < 0.75 THEN amount ELSE 0 END,
            CASE WHEN r3 < 0.0375 THEN amount / 2 ELSE 0 END, '[]',
            CASE WHEN r3 < 0.75
                THEN (ARRAY['alipay', 'wechat', 'balance', 'crypto'])[1 + floor(r4 * 4)::int]
            END,
            false, created,
            CASE WHEN r3 < 0.75 THEN created + make_interval(secs => r5 * r5 * 3600) END, 0
        FROM (
            SELECT g, random() r1, random() r2, random() r3, random() r4, random() r5,
                1000 * (1 + (g * 7) % 50) * (1 + g % 3) AS amount,
                timestamptz '{T0.isoformat()}'
                    + make_interval(secs => (g - 1)::float8 * {span} / {n})
                    + make_interval(secs => ((g * 7919) % 1000000) / 1e6) AS created
            FROM generate_series(1::bigint, {n}::bigint) g
        ) s
        """,
    )
    _pg(
        conn,
        f"INSERT INTO {p}order_lines (id, order_id, position, sku, name, specs, "
        "unit_price_minor, quantity, order_created_at) "
        "SELECT g, g, 0, 'sku-' || (1 + (g * 7) % 50), 'Product ' || (1 + (g * 7) % 50), '{}', "
        f"1000 * (1 + (g * 7) % 50), 1 + g % 3, created_at "
        f"FROM (SELECT id AS g, created_at FROM {p}orders) o",
    )
    _pg(
        conn,
        f"INSERT INTO {p}payment_attempts (id, order_id, channel, method, out_trade_no, "
        "currency, amount_minor, status, created_at, updated_at, paid_at) "
        "SELECT id, id, coalesce(channel, 'alipay'), 'page', 'T' || id, currency, payable_minor, "
        "CASE WHEN paid_at IS NOT NULL THEN 'succeeded' "
        "WHEN id % 3 = 0 THEN 'pending' WHEN id % 3 = 1 THEN 'failed' ELSE 'expired' END, "
        f"created_at, created_at, paid_at FROM {p}orders",
    )
    _pg(
        conn,
        f"INSERT INTO {p}refunds (id, refund_no, order_id, currency, amount_minor, destination, "
        "counts_toward_order, status, reason, requested_by_actor_kind, requested_by_actor_id, "
        "requested_at, completed_at, updated_at) "
        "SELECT id, 'R' || id, id, currency, refunded_minor, 'original', true, 'succeeded', "
        "'bench', 'operator', 'bench', paid_at + interval '1 day', paid_at + interval '1 day', "
        f"paid_at + interval '1 day' FROM {p}orders WHERE refunded_minor > 0",
    )


def fill_sqlite(conn: Connection, n: int, p: str) -> None:
    t0 = int(T0.timestamp())
    span = int((T1 - T0).total_seconds())

    def stamp(seconds: str, micros: str) -> str:
        return (
            f"strftime('%Y-%m-%d %H:%M:%S', {seconds}, 'unixepoch') || '.' || "
            f"printf('%06d', {micros})"
        )

    def rnd(k: int) -> str:
        # a pseudo-random fraction of g (SQLite may evaluate random() once per reference)
        mult = (48271, 69621, 16807, 39373, 40692)[k - 1]
        return f"(((g * {mult} + {k * 7777}) % 2147483647) % 1000003 / 1000003.0)"

    conn.exec_driver_sql(
        f"INSERT INTO {p}customers (id, name, identity_verified, created_at) "
        "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 100000) "
        "SELECT g, 'c' || g, 0, '2024-12-01 00:00:00.000000' FROM s"
    )
    conn.exec_driver_sql(
        f"INSERT INTO {p}products (id, sku, name, currency, price_minor, specs, stock, "
        "low_stock_threshold, active, created_at, updated_at) "
        "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 50) "
        "SELECT g, 'sku-' || g, 'Product ' || g, 'CNY', 1000 * g, '{}', g % 20, 5, 1, "
        "'2024-12-01 00:00:00.000000', '2024-12-01 00:00:00.000000' FROM s"
    )
    created_s = f"({t0} + (g - 1) * {span} / {n})"
    conn.exec_driver_sql(
        f"""
        INSERT INTO {p}orders (id, number, customer_id, currency, status, original_minor,
            payable_minor, paid_minor, refunded_minor, adjustments, channel, special,
            created_at, paid_at, version)
        WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}),
        r AS (
            SELECT g, {rnd(1)} r1, {rnd(2)} r2, {rnd(3)} r3, {rnd(4)} r4, {rnd(5)} r5,
                1000 * (1 + (g * 7) % 50) * (1 + g % 3) AS amount,
                {created_s} AS cs, (g * 7919) % 1000000 AS cu
            FROM s
        )
        SELECT g, 'B' || printf('%09d', g), 1 + CAST(r1 * 100000 AS INTEGER),
            CASE WHEN r2 < 0.95 THEN 'CNY' ELSE 'USD' END,
            CASE WHEN r3 < 0.75 THEN 'completed' ELSE 'canceled' END,
            amount, amount, CASE WHEN r3 < 0.75 THEN amount ELSE 0 END,
            CASE WHEN r3 < 0.0375 THEN amount / 2 ELSE 0 END, '[]',
            CASE WHEN r3 < 0.75 THEN
                CASE CAST(r4 * 4 AS INTEGER) WHEN 0 THEN 'alipay' WHEN 1 THEN 'wechat'
                    WHEN 2 THEN 'balance' ELSE 'crypto' END
            END,
            0, {stamp("cs", "cu")},
            CASE WHEN r3 < 0.75 THEN
                {stamp("cs + CAST(r5 * r5 * 3600 AS INTEGER)", "(cu + 12345) % 1000000")}
            END, 0
        FROM r
        """
    )
    conn.exec_driver_sql(
        f"INSERT INTO {p}order_lines (id, order_id, position, sku, name, specs, "
        "unit_price_minor, quantity, order_created_at) "
        "SELECT g, g, 0, 'sku-' || (1 + (g * 7) % 50), 'Product ' || (1 + (g * 7) % 50), '{}', "
        "1000 * (1 + (g * 7) % 50), 1 + g % 3, created_at "
        f"FROM (SELECT id AS g, created_at FROM {p}orders) o"
    )
    conn.exec_driver_sql(
        f"INSERT INTO {p}payment_attempts (id, order_id, channel, method, out_trade_no, "
        "currency, amount_minor, status, created_at, updated_at, paid_at, check_count, "
        "settles_order) "
        "SELECT id, id, coalesce(channel, 'alipay'), 'page', 'T' || id, currency, payable_minor, "
        "CASE WHEN paid_at IS NOT NULL THEN 'succeeded' "
        "WHEN id % 3 = 0 THEN 'pending' WHEN id % 3 = 1 THEN 'failed' ELSE 'expired' END, "
        f"created_at, created_at, paid_at, 0, 0 FROM {p}orders"
    )
    day = "'+1 day'"
    conn.exec_driver_sql(
        f"INSERT INTO {p}refunds (id, refund_no, order_id, currency, amount_minor, destination, "
        "counts_toward_order, status, reason, requested_by_actor_kind, requested_by_actor_id, "
        "requested_at, completed_at, updated_at, check_count, tries, uncertain) "
        "SELECT id, 'R' || id, id, currency, refunded_minor, 'original', 1, 'succeeded', "
        f"'bench', 'operator', 'bench', "
        f"strftime('%Y-%m-%d %H:%M:%f', paid_at, {day}) || '000', "
        f"strftime('%Y-%m-%d %H:%M:%f', paid_at, {day}) || '000', "
        f"strftime('%Y-%m-%d %H:%M:%f', paid_at, {day}) || '000', 0, 0, 0 "
        f"FROM {p}orders WHERE refunded_minor > 0"
    )


# --------------------------------------------------------------------- the hand-written SQL
def hand_pg(conn: Connection, p: str, kind: str, period: StatsPeriod) -> dict[str, Any]:
    """The figures of ``kind``, as a person would write them for PostgreSQL."""
    out: dict[str, Any] = {}
    ranges = [(period.start, period.end)]
    if kind == "sales":
        prev = period.previous()
        ranges.append((prev.start, prev.end))
    for i, (s, e) in enumerate(ranges):
        args = {"s": s, "e": e, "tz": TZ}
        if kind == "sales":
            rows = conn.execute(
                text(
                    "SELECT currency, date_trunc('day', created_at AT TIME ZONE :tz) d, "
                    "count(*), count(*) FILTER (WHERE paid_at IS NOT NULL) "
                    f"FROM {p}orders WHERE created_at >= :s AND created_at < :e GROUP BY 1, 2"
                ),
                args,
            ).all()
            out[f"created_rows{i}"] = rows
            rows = conn.execute(
                text(
                    "SELECT currency, date_trunc('day', paid_at AT TIME ZONE :tz) d, count(*), "
                    f"sum(paid_minor) FROM {p}orders WHERE paid_at >= :s AND paid_at < :e "
                    "GROUP BY 1, 2"
                ),
                args,
            ).all()
            out[f"paid_rows{i}"] = rows
            out[f"refunds{i}"] = conn.execute(
                text(
                    f"SELECT currency, sum(amount_minor) FROM {p}refunds WHERE status = "
                    "'succeeded' AND counts_toward_order AND completed_at >= :s AND "
                    "completed_at < :e GROUP BY 1"
                ),
                args,
            ).all()
            out[f"customers{i}"] = conn.execute(
                text(
                    "SELECT currency, count(*), count(*) FILTER (WHERE n >= 2), count(*) FILTER "
                    f"(WHERE EXISTS (SELECT 1 FROM {p}orders b WHERE b.customer_id = "
                    "pc.customer_id AND b.currency = pc.currency AND b.paid_at < :s)) FROM "
                    f"(SELECT currency, customer_id, count(*) n FROM {p}orders WHERE "
                    "paid_at >= :s AND paid_at < :e GROUP BY 1, 2) pc GROUP BY 1"
                ),
                args,
            ).all()
        elif kind == "payments":
            out["attempts"] = conn.execute(
                text(
                    "SELECT currency, channel, count(*), count(*) FILTER (WHERE status = "
                    f"'succeeded'), count(*) FILTER (WHERE status IN {FINAL}) FROM "
                    f"{p}payment_attempts WHERE created_at >= :s AND created_at < :e "
                    "GROUP BY 1, 2"
                ),
                args,
            ).all()
            out["last"] = conn.execute(
                text(
                    f"SELECT currency, channel, count(*) FILTER (WHERE status IN {FINAL}), "
                    "count(*) FILTER (WHERE status = 'succeeded') FROM (SELECT DISTINCT ON "
                    "(order_id, channel) currency, channel, status FROM "
                    f"{p}payment_attempts WHERE created_at >= :s AND created_at < :e "
                    "ORDER BY order_id, channel, id DESC) last GROUP BY 1, 2"
                ),
                args,
            ).all()
            out["paid"] = conn.execute(
                text(
                    f"SELECT currency, channel, count(*), sum(paid_minor) FROM {p}orders "
                    "WHERE paid_at >= :s AND paid_at < :e GROUP BY 1, 2"
                ),
                args,
            ).all()
            wait = "floor(extract(epoch FROM paid_at - created_at))"
            pct = (
                f"percentile_disc(0.5) WITHIN GROUP (ORDER BY {wait}), "
                f"percentile_disc(0.9) WITHIN GROUP (ORDER BY {wait})"
            )
            for key, by in (("ttp", "currency, channel"), ("ttp_all", "currency")):
                out[key] = conn.execute(
                    text(
                        f"SELECT {by}, {pct} FROM {p}orders WHERE paid_at >= :s AND "
                        f"paid_at < :e GROUP BY {by}"
                    ),
                    args,
                ).all()
        else:
            out["products"] = conn.execute(
                text(
                    "SELECT o.currency, l.sku, max(l.name), sum(l.quantity), sum(CASE WHEN "
                    "o.original_minor > 0 THEN l.unit_price_minor * l.quantity * "
                    "(o.paid_minor - o.refunded_minor) / o.original_minor ELSE 0 END) FROM "
                    f"{p}orders o JOIN {p}order_lines l ON l.order_id = o.id WHERE "
                    "o.paid_at >= :s AND o.paid_at < :e GROUP BY 1, 2"
                ),
                args,
            ).all()
            out["low"] = conn.execute(
                text(
                    f"SELECT sku, name, stock, low_stock_threshold FROM {p}products WHERE "
                    "active AND stock <= low_stock_threshold ORDER BY stock, sku"
                )
            ).all()
    return out


def hand_sqlite(conn: Connection, p: str, kind: str, period: StatsPeriod) -> dict[str, Any]:
    """The same for SQLite: ``date(t, '+8 hours')`` buckets (Shanghai has no DST), window
    functions for the last attempt and the percentiles."""
    out: dict[str, Any] = {}
    ranges = [(period.start, period.end)]
    if kind == "sales":
        prev = period.previous()
        ranges.append((prev.start, prev.end))
    for i, (s, e) in enumerate(ranges):
        args = {
            "s": s.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "e": e.strftime("%Y-%m-%d %H:%M:%S.%f"),
        }
        if kind == "sales":
            rows = conn.execute(
                text(
                    "SELECT currency, date(created_at, '+8 hours') d, count(*), "
                    "sum(paid_at IS NOT NULL) "
                    f"FROM {p}orders WHERE created_at >= :s AND created_at < :e GROUP BY 1, 2"
                ),
                args,
            ).all()
            out[f"created_rows{i}"] = rows
            rows = conn.execute(
                text(
                    "SELECT currency, date(paid_at, '+8 hours') d, count(*), sum(paid_minor) "
                    f"FROM {p}orders WHERE paid_at >= :s AND paid_at < :e GROUP BY 1, 2"
                ),
                args,
            ).all()
            out[f"paid_rows{i}"] = rows
            out[f"refunds{i}"] = conn.execute(
                text(
                    f"SELECT currency, sum(amount_minor) FROM {p}refunds WHERE status = "
                    "'succeeded' AND counts_toward_order AND completed_at >= :s AND "
                    "completed_at < :e GROUP BY 1"
                ),
                args,
            ).all()
            out[f"customers{i}"] = conn.execute(
                text(
                    "SELECT currency, count(*), sum(n >= 2), sum(EXISTS (SELECT 1 FROM "
                    f"{p}orders b WHERE b.customer_id = pc.customer_id AND b.currency = "
                    "pc.currency AND b.paid_at < :s)) FROM (SELECT currency, customer_id, "
                    f"count(*) n FROM {p}orders WHERE paid_at >= :s AND paid_at < :e "
                    "GROUP BY 1, 2) pc GROUP BY 1"
                ),
                args,
            ).all()
        elif kind == "payments":
            out["attempts"] = conn.execute(
                text(
                    "SELECT currency, channel, count(*), sum(status = 'succeeded'), "
                    f"sum(status IN {FINAL}) FROM {p}payment_attempts WHERE created_at >= :s "
                    "AND created_at < :e GROUP BY 1, 2"
                ),
                args,
            ).all()
            out["last"] = conn.execute(
                text(
                    f"SELECT currency, channel, sum(status IN {FINAL}), "
                    "sum(status = 'succeeded') FROM (SELECT currency, channel, status, "
                    "row_number() OVER (PARTITION BY order_id, channel ORDER BY id DESC) rn "
                    f"FROM {p}payment_attempts WHERE created_at >= :s AND created_at < :e) "
                    "WHERE rn = 1 GROUP BY 1, 2"
                ),
                args,
            ).all()
            out["paid"] = conn.execute(
                text(
                    f"SELECT currency, channel, count(*), sum(paid_minor) FROM {p}orders "
                    "WHERE paid_at >= :s AND paid_at < :e GROUP BY 1, 2"
                ),
                args,
            ).all()

            def us(col: str) -> str:
                return (
                    f"(CAST(strftime('%s', substr({col}, 1, 19)) AS INTEGER) * 1000000 "
                    f"+ CAST(substr({col}, 21, 6) AS INTEGER))"
                )

            wait = f"(({us('paid_at')} - {us('created_at')}) / 1000000)"
            for key, by in (("ttp", "currency, channel"), ("ttp_all", "currency")):
                out[key] = conn.execute(
                    text(
                        f"SELECT {by}, w, rn, n FROM (SELECT {by}, {wait} w, row_number() OVER "
                        f"(PARTITION BY {by} ORDER BY {wait}) rn, count(*) OVER (PARTITION BY "
                        f"{by}) n FROM {p}orders WHERE paid_at >= :s AND paid_at < :e) WHERE "
                        "rn = (50 * n + 99) / 100 OR rn = (90 * n + 99) / 100"
                    ),
                    args,
                ).all()
        else:
            out["products"] = conn.execute(
                text(
                    "SELECT o.currency, l.sku, max(l.name), sum(l.quantity), sum(CASE WHEN "
                    "o.original_minor > 0 THEN l.unit_price_minor * l.quantity * "
                    "(o.paid_minor - o.refunded_minor) / o.original_minor ELSE 0 END) FROM "
                    f"{p}orders o JOIN {p}order_lines l ON l.order_id = o.id WHERE "
                    "o.paid_at >= :s AND o.paid_at < :e GROUP BY 1, 2"
                ),
                args,
            ).all()
            out["low"] = conn.execute(
                text(
                    f"SELECT sku, name, stock, low_stock_threshold FROM {p}products WHERE "
                    "active AND stock <= low_stock_threshold ORDER BY stock, sku"
                )
            ).all()
    return out


# ------------------------------------------------------------------------------- timing
#: PostgreSQL backends serving this process (``--server-cpu``): their CPU time is counted
SERVER_PIDS: set[int] = set()


def _server_cpu_ns() -> int:
    """The CPU time of :data:`SERVER_PIDS`, from ``/proc/PID/schedstat`` (nanoseconds; the
    server must run on this machine, readable by this user)."""
    total = 0
    for pid in SERVER_PIDS:
        try:
            with open(f"/proc/{pid}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except OSError:
            pass
    return total


def watch_server_cpu(engine: Any) -> None:
    """Count the CPU time of the PostgreSQL backends of ``engine``'s connections, with
    parallel workers off (their processes come and go: their time could not be counted)."""

    @event.listens_for(engine, "connect")
    def _connected(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        SERVER_PIDS.add(int(cur.fetchone()[0]))
        cur.execute("SET max_parallel_workers_per_gather = 0")
        cur.close()
        dbapi_conn.commit()


def _once(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu, server = time.perf_counter(), time.process_time(), _server_cpu_ns()
    result = fn()
    cpu_ms = (time.process_time() - cpu) * 1000 + (_server_cpu_ns() - server) / 1e6
    return (time.perf_counter() - wall) * 1000, cpu_ms, result


def compare(
    ours: Callable[[], Any], hand: Callable[[], Any], repeat: int
) -> tuple[tuple[float, float, Any], tuple[float, float, Any]]:
    """``((wall ms, cpu ms, result), ...)`` of ``ours`` and of ``hand``: medians of ``repeat``
    runs each after one warm-up of each, the two alternating (ours first, then hand first)
    so that a change of the machine's load falls on both. ``cpu`` is this process's CPU
    time (on SQLite the whole of the work), plus with ``--server-cpu`` that of the
    PostgreSQL backends serving it: much less disturbed by the load than the wall clock,
    it is close to what a quiet machine's wall clock would show."""
    results = [ours(), hand()]  # warm-up
    times: list[list[tuple[float, float]]] = [[], []]
    for i in range(repeat):
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            wall, cpu, results[k] = _once((ours, hand)[k])
            times[k].append((wall, cpu))
    out = []
    for k in (0, 1):
        wall = statistics.median(w for w, _ in times[k])
        cpu = statistics.median(c for _, c in times[k])
        out.append((wall, cpu, results[k]))
    return out[0], out[1]


def _rate(part: int, whole: int) -> Any:
    return rate(int(part), int(whole))


def figures(kind: str, ours: Any) -> dict[Any, Any]:
    """The figures of ordercore's result that the hand-written SQL computes too."""
    out: dict[Any, Any] = {}
    if kind == "sales":
        for f in ours.currencies:
            out[f.currency.code] = (
                f.orders_created,
                f.orders_paid,
                f.paid_orders,
                f.gross_sales.to_minor(),
                f.refunds.to_minor(),
                f.paying_customers,
                f.repurchase_rate,
                f.returning_customer_rate,
            )
    elif kind == "payments":
        for f in ours.currencies:
            out[f.currency.code] = (f.time_to_pay.p50_seconds, f.time_to_pay.p90_seconds)
            for c in f.channels:
                out[(f.currency.code, c.channel)] = (
                    c.attempts,
                    c.succeeded,
                    c.final_attempts,
                    c.order_success_rate,
                    c.paid_orders,
                    c.amount.to_minor(),
                    c.time_to_pay.p50_seconds,
                    c.time_to_pay.p90_seconds,
                )
    else:
        for f in ours.currencies:
            for pr in f.products:
                out[(f.currency.code, pr.sku)] = (pr.quantity, pr.revenue.to_minor())
    return out


def hand_figures(kind: str, hand: dict[str, Any]) -> dict[Any, Any]:
    """The same figures from the hand-written SQL's rows (PostgreSQL's or SQLite's)."""
    out: dict[Any, Any] = {}
    if kind == "sales":
        made = {r[0]: (0, 0) for r in hand["created_rows0"]}
        for cur, _d, n, done in hand["created_rows0"]:
            made[cur] = (made[cur][0] + n, made[cur][1] + int(done))
        paid = {r[0]: (0, 0) for r in hand["paid_rows0"]}
        for cur, _d, n, minor in hand["paid_rows0"]:
            paid[cur] = (paid[cur][0] + n, paid[cur][1] + int(minor))
        refunds = {cur: int(m) for cur, m in hand["refunds0"]}
        customers = {r[0]: r[1:] for r in hand["customers0"]}
        for cur in sorted(set(made) | set(paid)):
            paying, again, returning = (int(x) for x in customers.get(cur, (0, 0, 0)))
            out[cur] = (
                *made.get(cur, (0, 0)),
                *paid.get(cur, (0, 0)),
                refunds.get(cur, 0),
                paying,
                _rate(again, paying),
                _rate(returning, paying),
            )
    elif kind == "payments":

        def pcts(rows: list[Any], width: int) -> dict[Any, tuple[int, int]]:
            if rows and len(rows[0]) == width + 2:  # PostgreSQL: key..., p50, p90
                return {r[:width]: (int(r[width]), int(r[width + 1])) for r in rows}
            found: dict[Any, dict[int, int]] = {}  # SQLite: key..., wait, rank, count
            count: dict[Any, int] = {}
            for r in rows:
                found.setdefault(r[:width], {})[r[width + 1]] = int(r[width])
                count[r[:width]] = r[width + 2]
            return {
                k: (found[k][nearest_rank(50, n)], found[k][nearest_rank(90, n)])
                for k, n in count.items()
            }

        for (cur,), p in pcts(hand["ttp_all"], 1).items():
            out[cur] = p
        last = {(r[0], r[1]): (int(r[2]), int(r[3])) for r in hand["last"]}
        paid = {(r[0], r[1]): (r[2], int(r[3])) for r in hand["paid"]}
        ttp = pcts(hand["ttp"], 2)
        for cur, ch, n, ok, final in hand["attempts"]:
            final_last, ok_last = last.get((cur, ch), (0, 0))
            out[(cur, ch)] = (
                n,
                int(ok),
                int(final),
                _rate(ok_last, final_last),
                *paid.get((cur, ch), (0, 0)),
                *ttp.get((cur, ch), (None, None)),
            )
    else:
        for cur, sku, _name, q, rev in hand["products"]:
            out[(cur, sku)] = (int(q), int(rev))
    return out


def fill_book(core: OrderCore, backend: str, orders: int, schema: str | None, admin: Any) -> None:
    """Migrate an empty database, fill it with ``orders`` orders by bulk SQL and analyse it
    (``VACUUM ANALYZE`` through ``admin``, the AUTOCOMMIT engine, on PostgreSQL)."""
    core.upgrade()
    log(f"{backend}: filling {orders:,} orders ...")
    t = time.perf_counter()
    with core.engine.begin() as conn:
        if backend == "postgresql":
            fill_postgresql(conn, orders, f'"{schema}".' if schema else "")
        else:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            fill_sqlite(conn, orders, f'"{schema}".' if schema else "")
    log(f"{backend}: filled in {time.perf_counter() - t:.0f} s; analysing ...")
    if backend == "postgresql":
        with admin.connect() as c:
            c.exec_driver_sql(f'SET search_path = "{schema}"')
            c.exec_driver_sql("VACUUM ANALYZE")
    else:
        with core.engine.connect() as c:
            c.exec_driver_sql("ANALYZE")
            c.commit()


def run(backend: str, args: argparse.Namespace) -> list[tuple[str, str, str, float, float, bool]]:
    schema: str | None = None
    admin: Any = None
    if backend == "postgresql":
        url = args.pg_url or os.environ.get("ORDERCORE_TEST_POSTGRESQL_URL") or DEFAULT_PG
        schema = args.schema or f"bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(url, isolation_level="AUTOCOMMIT")
        if not args.reuse:
            with admin.connect() as c:
                c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        full = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        db_url = full.render_as_string(hide_password=False)
    else:
        path = args.sqlite_path or os.path.join(tempfile.gettempdir(), "ordercore-stats.db")
        if not args.reuse and os.path.exists(path):
            os.remove(path)
        db_url = f"sqlite:///{path}"
    engine = make_engine(db_url)
    if backend == "postgresql" and args.server_cpu:
        watch_server_cpu(engine)
    core = OrderCore(engine, Settings(database_url=db_url, schema=schema))
    prefix = f'"{schema}".' if schema else ""
    try:
        if not args.reuse:
            fill_book(core, backend, args.orders, schema, admin)
        hand = hand_pg if backend == "postgresql" else hand_sqlite
        rows = []
        periods = {
            "month": StatsPeriod.between("2026-06-01", "2026-06-30", TZ),
            "year": StatsPeriod.between("2026-01-01", "2026-12-31", TZ),
        }
        for span in args.spans:
            period = periods[span]
            for kind in args.stats:
                method = getattr(core.stats, kind)

                def by_hand(k: str = kind, p: StatsPeriod = period) -> dict[str, Any]:
                    with core.engine.connect() as conn:
                        try:
                            return hand(conn, prefix, k, p)
                        finally:
                            conn.rollback()

                (ours_ms, ours_cpu, ours), (hand_ms, hand_cpu, theirs) = compare(
                    lambda m=method, p=period: m(p), by_hand, args.repeat
                )
                ok = figures(kind, ours) == hand_figures(kind, theirs)
                rows.append((backend, span, kind, ours_ms, ours_cpu, hand_ms, hand_cpu, ok))
                log(
                    f"{backend:10} {span:5} {kind:8} ordercore {ours_ms:8.1f} ms "
                    f"(cpu {ours_cpu:7.1f})   by hand {hand_ms:8.1f} ms (cpu {hand_cpu:7.1f})   "
                    f"ratio {ours_ms / hand_ms:4.2f}   "
                    f"{'same figures' if ok else 'FIGURES DIFFER'}"
                )
        return rows
    finally:
        core.close()
        if backend == "postgresql":
            if not args.keep and not args.reuse:
                with admin.connect() as c:
                    c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--sqlite-path", default=None)
    parser.add_argument("--schema", default=None, help="PostgreSQL schema (with --reuse).")
    parser.add_argument("--reuse", action="store_true", help="Measure a filled database.")
    parser.add_argument("--keep", action="store_true", help="Keep the PostgreSQL schema.")
    parser.add_argument(
        "--spans", type=lambda v: v.split(","), default=["month", "year"], help="month,year"
    )
    parser.add_argument(
        "--stats",
        type=lambda v: v.split(","),
        default=["sales", "payments", "products"],
        help="sales,payments,products",
    )
    parser.add_argument(
        "--server-cpu",
        action="store_true",
        help="Count the CPU time of the PostgreSQL backends too (a server on this machine); "
        "runs PostgreSQL without parallel workers.",
    )
    args = parser.parse_args(argv)
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    rows = [row for b in backends for row in run(b, args)]
    print(
        f"\n{'backend':10} {'span':5} {'figure':8} {'ordercore':>11} {'by hand':>11} {'ratio':>6}"
        f" {'cpu ordercore':>14} {'cpu by hand':>12}"
    )
    for backend, span, kind, ours, ours_cpu, hand, hand_cpu, ok in rows:
        print(
            f"{backend:10} {span:5} {kind:8} {ours:8.1f} ms {hand:8.1f} ms {ours / hand:6.2f}"
            f" {ours_cpu:11.1f} ms {hand_cpu:9.1f} ms"
            f"{'' if ok else '  (figures differ!)'}"
        )
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
