"""Benchmark: the statistics at a million orders, against the same aggregates written by hand.

Fills a fresh database with ``--orders`` orders spread evenly over 2025 and 2026 (one line
each, 75 % paid through four channels, 5 % of those half refunded, one payment attempt an
order, 100,000 customers, 95 % CNY) by bulk SQL — ``generate_series`` on PostgreSQL, a
recursive CTE on SQLite — then VACUUM/ANALYZE, and times ``core.stats.sales``, ``.payments``
and ``.products`` for a month (June 2026) and a year (2026) in Asia/Shanghai: the median of
``--repeat`` runs of ordercore's service (every query it makes, the previous period of
``sales`` included) and of the same figures computed by hand-written SQL for that backend
(``AT TIME ZONE``/``date()`` bucketing, ``percentile_disc``, ``DISTINCT ON``), run in the same
process on the same data. It checks that both give the same totals and prints the ratio.

    python benchmarks/stats.py --backend both --orders 1000000
    python benchmarks/stats.py --backend sqlite --orders 100000 --repeat 3

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

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from ordercore import OrderCore, Settings, StatsPeriod
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
            out[f"created{i}"] = sum(r[2] for r in rows)
            rows = conn.execute(
                text(
                    "SELECT currency, date_trunc('day', paid_at AT TIME ZONE :tz) d, count(*), "
                    f"sum(paid_minor) FROM {p}orders WHERE paid_at >= :s AND paid_at < :e "
                    "GROUP BY 1, 2"
                ),
                args,
            ).all()
            out[f"gross{i}"] = sum(int(r[3]) for r in rows)
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
            out[f"created{i}"] = sum(r[2] for r in rows)
            rows = conn.execute(
                text(
                    "SELECT currency, date(paid_at, '+8 hours') d, count(*), sum(paid_minor) "
                    f"FROM {p}orders WHERE paid_at >= :s AND paid_at < :e GROUP BY 1, 2"
                ),
                args,
            ).all()
            out[f"gross{i}"] = sum(int(r[3]) for r in rows)
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
def median_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    result = fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), result


def same(kind: str, ours: Any, hand: dict[str, Any]) -> bool:
    """The totals both ways agree (a sanity check that the two compute the same thing)."""
    if kind == "sales":
        created = sum(f.orders_created for f in ours.currencies)
        gross = sum(f.gross_sales.to_minor() for f in ours.currencies)
        return bool(created == hand["created0"] and gross == hand["gross0"])
    if kind == "payments":
        attempts = sum(c.attempts for f in ours.currencies for c in f.channels)
        ok = attempts == sum(r[2] for r in hand["attempts"])
        cny = ours.currency("CNY")
        p50 = {r[0]: int(r[1]) for r in hand["ttp_all"] if len(r) == 3}
        if not p50:  # SQLite rows: currency, w, rn, n
            p50 = {r[0]: int(r[1]) for r in hand["ttp_all"] if r[2] == (50 * r[3] + 99) // 100}
        return bool(ok and cny is not None and cny.time_to_pay.p50_seconds == p50.get("CNY"))
    revenue = sum(f.revenue.to_minor() for f in ours.currencies)
    return bool(revenue == sum(int(r[4]) for r in hand["products"]))


def run(backend: str, args: argparse.Namespace) -> list[tuple[str, str, str, float, float, bool]]:
    schema: str | None = None
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
    core = OrderCore(make_engine(db_url), Settings(database_url=db_url, schema=schema))
    prefix = f'"{schema}".' if schema else ""
    try:
        if not args.reuse:
            core.upgrade()
            log(f"{backend}: filling {args.orders:,} orders ...")
            t = time.perf_counter()
            with core.engine.begin() as conn:
                if backend == "postgresql":
                    fill_postgresql(conn, args.orders, prefix)
                else:
                    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                    fill_sqlite(conn, args.orders, prefix)
            log(f"{backend}: filled in {time.perf_counter() - t:.0f} s; analysing ...")
            if backend == "postgresql":
                with admin.connect() as c:
                    c.exec_driver_sql(f'SET search_path = "{schema}"')
                    c.exec_driver_sql("VACUUM ANALYZE")
            else:
                with core.engine.connect() as c:
                    c.exec_driver_sql("ANALYZE")
                    c.commit()
        hand = hand_pg if backend == "postgresql" else hand_sqlite
        rows = []
        periods = {
            "month": StatsPeriod.between("2026-06-01", "2026-06-30", TZ),
            "year": StatsPeriod.between("2026-01-01", "2026-12-31", TZ),
        }
        for span, period in periods.items():
            for kind in ("sales", "payments", "products"):
                method = getattr(core.stats, kind)
                ours_ms, ours = median_ms(lambda m=method, p=period: m(p), args.repeat)

                def by_hand(k: str = kind, p: StatsPeriod = period) -> dict[str, Any]:
                    with core.engine.connect() as conn:
                        try:
                            return hand(conn, prefix, k, p)
                        finally:
                            conn.rollback()

                hand_ms, theirs = median_ms(by_hand, args.repeat)
                ok = same(kind, ours, theirs)
                rows.append((backend, span, kind, ours_ms, hand_ms, ok))
                log(
                    f"{backend:10} {span:5} {kind:8} ordercore {ours_ms:8.1f} ms   "
                    f"by hand {hand_ms:8.1f} ms   ratio {ours_ms / hand_ms:4.2f}   "
                    f"{'same totals' if ok else 'TOTALS DIFFER'}"
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
    args = parser.parse_args(argv)
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    rows = [row for b in backends for row in run(b, args)]
    print(
        f"\n{'backend':10} {'span':5} {'figure':8} {'ordercore':>11} {'by hand':>11} {'ratio':>6}"
    )
    for backend, span, kind, ours, hand, ok in rows:
        print(
            f"{backend:10} {span:5} {kind:8} {ours:8.1f} ms {hand:8.1f} ms {ours / hand:6.2f}"
            f"{'' if ok else '  (totals differ!)'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
