"""Benchmark: exporting a million orders (CSV, Excel) and the sales report of a month.

Fills a fresh database with ``--orders`` orders by bulk SQL (the book of
``benchmarks/stats.py``: one line each, 75 % paid, one payment attempt an order), then runs
each measurement in a fresh Python process, so that its peak resident memory (``ru_maxrss``)
is its own:

* ``csv``: ``core.export.orders`` of every order, the default fields (products and the
  successful payment included), masked, to a file;
* ``hand``: the baseline, written by hand in the same run: one SQL query joining orders,
  customers, lines and attempts, streamed with ``yield_per`` into ``csv.writer`` (no
  masking, no formula safety, no keyset chunks);
* ``xlsx``: the same export to Excel;
* ``report``: ``ordercore report`` of June 2026 as PDF.

    python benchmarks/export.py --orders 1000000
    python benchmarks/export.py --backend postgresql --orders 200000

Targets: CSV at least 50,000 rows/s and under 150 MB peak RSS; Excel under 200 MB whatever the
row count; the report of a month of a 1M book under 10 s. This is a benchmark, not a test: it
reports, it never fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stats import DEFAULT_PG, fill_postgresql, fill_sqlite, log

from ordercore import Actor, OrderCore, Settings, StatsPeriod
from ordercore.adapters.sqlalchemy import make_engine

ADMIN = Actor.operator("bench", "admin")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, url: str, schema: str | None, out_dir: str) -> dict[str, float]:
    """One measurement, in this process (run by the parent in a fresh interpreter)."""
    core = OrderCore(make_engine(url), Settings(database_url=url, schema=schema,
                                                timezone="Asia/Shanghai"))
    out = Path(out_dir)
    start = time.perf_counter()
    rows = 0
    if kind == "csv":
        rows = core.export.orders(destination=out / "orders.csv", actor=ADMIN).rows
    elif kind == "xlsx":
        rows = core.export.orders(destination=out / "orders.xlsx", format="xlsx",
                                  actor=ADMIN).rows
    elif kind == "hand":
        t = core.tables
        o, c, ln, a = (t.orders.c, t.customers.c, t.order_lines.c, t.payment_attempts.c)
        from sqlalchemy import and_, select

        query = (
            select(o.number, o.created_at, o.status, c.name, c.email, ln.name, ln.quantity,
                   o.currency, o.payable_minor, o.paid_minor, o.refunded_minor, o.channel,
                   a.method, a.channel_trade_no)
            .select_from(
                t.orders.join(t.customers, c.id == o.customer_id)
                .join(t.order_lines, ln.order_id == o.id)
                .outerjoin(t.payment_attempts, and_(a.order_id == o.id,
                                                     a.status == "succeeded"))
            )
            .order_by(o.created_at.desc(), o.id.desc())
        )
        with core.engine.connect() as conn, open(out / "hand.csv", "w", newline="",
                                                 encoding="utf-8") as fh:
            w = csv.writer(fh)
            for r in conn.execution_options(yield_per=2000).execute(query):
                w.writerow([r[0], r[1].isoformat(), r[2], r[3], r[4], f"{r[5]} ×{r[6]}", r[7],
                            r[8] / 100, r[9] / 100, r[10] / 100, r[11], r[12], r[13]])
                rows += 1
    elif kind == "report":
        period = StatsPeriod.between("2026-06-01", "2026-06-30", "Asia/Shanghai")
        core.export.report(period, "pdf", out / "report.pdf", actor=ADMIN)
    seconds = time.perf_counter() - start
    core.close()
    return {"seconds": seconds, "rows": rows, "peak_mb": _peak_mb()}


def run_child(kind: str, url: str, schema: str | None, out_dir: str) -> dict[str, float]:
    args = [sys.executable, __file__, "--measure", kind, "--url", url, "--out", out_dir]
    if schema:
        args += ["--schema", schema]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--sqlite-path", default=None)
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--schema", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.url, args.schema, args.out)))
        return 0

    schema = None
    admin = None
    if args.backend == "postgresql":
        base = args.pg_url or os.environ.get("ORDERCORE_TEST_POSTGRESQL_URL") or DEFAULT_PG
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = make_url(base).update_query_dict(
            {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    else:
        path = args.sqlite_path or os.path.join(tempfile.gettempdir(), "ordercore-export.db")
        if os.path.exists(path):
            os.remove(path)
        url = f"sqlite:///{path}"
    core = OrderCore(make_engine(url), Settings(database_url=url, schema=schema))
    prefix = f'"{schema}".' if schema else ""
    try:
        core.upgrade()
        log(f"{args.backend}: filling {args.orders:,} orders ...")
        t = time.perf_counter()
        with core.engine.begin() as conn:
            if args.backend == "postgresql":
                fill_postgresql(conn, args.orders, prefix)
            else:
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                fill_sqlite(conn, args.orders, prefix)
        log(f"filled in {time.perf_counter() - t:.0f} s")
        if admin is not None:
            with admin.connect() as c:
                c.exec_driver_sql(f'SET search_path = "{schema}"')
                c.exec_driver_sql("VACUUM ANALYZE")
        else:
            with core.engine.connect() as c:
                c.exec_driver_sql("ANALYZE")
                c.commit()
        core.close()
        with tempfile.TemporaryDirectory() as out:
            results = {}
            for kind in ("hand", "csv", "xlsx", "report"):
                results[kind] = r = run_child(kind, url, schema, out)
                rate = r["rows"] / r["seconds"] if r["rows"] else 0
                log(f"{kind:7} {r['rows']:>9,.0f} rows  {r['seconds']:7.1f} s  "
                    f"{rate:>9,.0f} rows/s  peak RSS {r['peak_mb']:6.0f} MB")
        csv_rate = results["csv"]["rows"] / results["csv"]["seconds"]
        hand_rate = results["hand"]["rows"] / results["hand"]["seconds"]
        log(f"CSV: {csv_rate:,.0f} rows/s = {csv_rate / hand_rate:.2f}x the hand-written "
            f"export; peak {results['csv']['peak_mb']:.0f} MB (target ≥ 50,000 rows/s, "
            "< 150 MB)")
        log(f"Excel: {results['xlsx']['rows'] / results['xlsx']['seconds']:,.0f} rows/s, peak "
            f"{results['xlsx']['peak_mb']:.0f} MB (target < 200 MB)")
        log(f"report (PDF, a month): {results['report']['seconds']:.2f} s (target < 10 s)")
    finally:
        if admin is not None:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
