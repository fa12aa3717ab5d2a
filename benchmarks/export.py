"""Benchmark: exporting a million orders (CSV, Excel) and the sales report of a month.

Fills a fresh database with ``--orders`` orders by bulk SQL (the book of
``benchmarks/stats.py``: one line each, 75 % paid, one payment attempt an order), then runs
each measurement in a fresh Python process, so that its peak resident memory (``ru_maxrss``)
is its own:

* ``csv``: ``core.export.orders`` of every order, the default fields (products and the
  successful payment included), masked, to a file;
* ``hand``: the baseline, written by hand in the same run: one plain SQL query joining
  orders, customers, lines and the succeeded attempt, streamed (``stream_results``) into
  ``csv.writer``, writing the same columns — exact amounts by integer arithmetic, times in
  the same zone, products grouped per order — but no masking, no formula safety, no keyset
  chunks and no field catalogue;
* ``xlsx``: the same export to Excel;
* ``report``: ``core.export.report`` of June 2026 as PDF, then the three statistics calls it
  makes, timed one by one (again: their pages are cached by then).

``hand`` and ``csv`` run ``--repeat`` times in alternating blocks (hand, csv, hand, csv...);
the ratio is of their medians, in wall-clock time and in CPU time (user + system of the
child: less disturbed by other work on a shared machine).

    python benchmarks/export.py --orders 1000000
    python benchmarks/export.py --sqlite-path /tmp/book.db --reuse --repeat 3   # kept data
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
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stats import DEFAULT_PG, fill_book, log

from ordercore import Actor, OrderCore, Settings, StatsPeriod
from ordercore._money import get_currency
from ordercore._reports.fields import DEFAULT_FIELDS
from ordercore.adapters.sqlalchemy import make_engine

ADMIN = Actor.operator("bench", "admin")
TZ = "Asia/Shanghai"
MONTH = ("2026-06-01", "2026-06-30")
#: The export's default fields, which the hand-written baseline writes too.
HEADER = list(DEFAULT_FIELDS)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _amount(minor: int, units: int) -> str:
    sign, minor = ("-", -minor) if minor < 0 else ("", minor)
    whole, part = divmod(minor, 10**units)
    return f"{sign}{whole}.{part:0{units}d}" if units else f"{sign}{whole}"


def hand_export(core: OrderCore, path: Path) -> int:
    """The hand-written baseline: plain SQL, the driver's values, csv.writer."""
    t = core.tables
    o, c, ln, a = (t.name(n) for n in ("orders", "customers", "order_lines", "payment_attempts"))
    sql = (
        "SELECT o.id, o.number, o.created_at, o.status, c.name, c.email, o.currency, "
        "o.payable_minor, o.paid_minor, o.refunded_minor, o.channel, a.method, "
        "a.channel_trade_no, l.name, l.quantity "
        f"FROM {o} o JOIN {c} c ON c.id = o.customer_id JOIN {ln} l ON l.order_id = o.id "
        f"LEFT JOIN {a} a ON a.order_id = o.id AND a.status = 'succeeded' "
        "ORDER BY o.created_at DESC, o.id DESC, l.position"
    )
    zone, utc = ZoneInfo(TZ), timezone.utc
    sqlite = core.engine.dialect.name == "sqlite"
    units: dict[str, int] = {}
    rows = 0
    with (
        core.engine.connect() as conn,
        open(path, "w", newline="", encoding="utf-8") as fh,
    ):
        w = csv.writer(fh)
        w.writerow(HEADER)
        result = conn.execution_options(stream_results=True, yield_per=2000).exec_driver_sql(sql)
        row: list[Any] | None = None
        previous = None
        for r in result:
            if r[0] == previous:
                assert row is not None
                row[5] += f"; {r[13]} ×{r[14]}"
                continue
            if row is not None:
                w.writerow(row)
                rows += 1
            previous = r[0]
            u = units.get(r[6])
            if u is None:
                u = units[r[6]] = get_currency(r[6]).minor_units
            created = datetime.fromisoformat(r[2]).replace(tzinfo=utc) if sqlite else r[2]
            row = [
                r[1],
                created.astimezone(zone).isoformat(timespec="seconds"),
                r[3],
                r[4],
                r[5],
                f"{r[13]} ×{r[14]}",
                r[6],
                _amount(r[7], u),
                _amount(r[8], u),
                _amount(r[9], u),
                r[10],
                r[11],
                r[12],
            ]
        if row is not None:
            w.writerow(row)
            rows += 1
    return rows


def measure(kind: str, url: str, schema: str | None, out_dir: str) -> dict[str, Any]:
    """One measurement, in this process (run by the parent in a fresh interpreter)."""
    core = OrderCore(make_engine(url), Settings(database_url=url, schema=schema, timezone=TZ))
    out = Path(out_dir)
    start, cpu = time.perf_counter(), _cpu()
    rows = 0
    extra: dict[str, Any] = {}
    if kind == "csv":
        rows = core.export.orders(destination=out / "orders.csv", actor=ADMIN).rows
    elif kind == "xlsx":
        result = core.export.orders(destination=out / "orders.xlsx", format="xlsx", actor=ADMIN)
        rows, extra["sheets"] = result.rows, result.sheets
    elif kind == "hand":
        rows = hand_export(core, out / "hand.csv")
    elif kind == "report":
        period = StatsPeriod.between(*MONTH, TZ)
        core.export.report(period, "pdf", out / "report.pdf", actor=ADMIN)
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu
        # then each statistics call the report makes, alone (the pages now cached)
        calls = {
            "stats.sales": lambda: core.stats.sales(period),
            "stats.payments": lambda: core.stats.payments(period),
            "stats.products": lambda: core.stats.products(period, limit=10),
        }
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            extra[name] = time.perf_counter() - t
        core.close()
        return {"seconds": seconds, "cpu": cpu, "rows": 0, "peak_mb": _peak_mb(), **extra}
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    core.close()
    return {"seconds": seconds, "cpu": cpu, "rows": rows, "peak_mb": _peak_mb(), **extra}


def run_child(kind: str, url: str, schema: str | None, out_dir: str) -> dict[str, Any]:
    args = [sys.executable, __file__, "--measure", kind, "--url", url, "--out", out_dir]
    if schema:
        args += ["--schema", schema]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _show(kind: str, r: dict[str, Any]) -> None:
    rate = r["rows"] / r["seconds"] if r["rows"] else 0
    log(
        f"{kind:7} {r['rows']:>9,.0f} rows  {r['seconds']:7.1f} s (CPU {r['cpu']:6.1f} s)  "
        f"{rate:>9,.0f} rows/s  peak RSS {r['peak_mb']:6.0f} MB"
    )


def fill(args: argparse.Namespace) -> tuple[str, str | None, Any]:
    """The database to measure: filled now, or kept from an earlier run (``--reuse``)."""
    schema = None
    admin = None
    if args.backend == "postgresql":
        base = args.pg_url or os.environ.get("ORDERCORE_TEST_POSTGRESQL_URL") or DEFAULT_PG
        schema = args.schema or f"bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(base, isolation_level="AUTOCOMMIT")
        if not args.reuse:
            with admin.connect() as c:
                c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = (
            make_url(base)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    else:
        path = args.sqlite_path or os.path.join(tempfile.gettempdir(), "ordercore-export.db")
        if not args.reuse and os.path.exists(path):
            os.remove(path)
        url = f"sqlite:///{path}"
    if args.reuse:
        return url, schema, admin
    core = OrderCore(make_engine(url), Settings(database_url=url, schema=schema))
    fill_book(core, args.backend, args.orders, schema, admin)
    core.close()
    return url, schema, admin


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--sqlite-path", default=None)
    parser.add_argument("--schema", default=None, help="PostgreSQL schema (with --reuse).")
    parser.add_argument("--reuse", action="store_true", help="Measure a filled database.")
    parser.add_argument("--keep", action="store_true", help="Keep the PostgreSQL schema.")
    parser.add_argument("--repeat", type=int, default=1, help="hand/csv blocks (medians).")
    parser.add_argument(
        "--only", default="hand,csv,xlsx,report", help="Measurements to run (comma-separated)."
    )
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.url, args.schema, args.out)))
        return 0

    only = set(args.only.split(","))
    url, schema, admin = fill(args)
    try:
        with tempfile.TemporaryDirectory() as out:
            runs: dict[str, list[dict[str, Any]]] = {"hand": [], "csv": []}
            for _ in range(args.repeat):  # alternating blocks
                for kind in ("hand", "csv"):
                    if kind in only:
                        runs[kind].append(r := run_child(kind, url, schema, out))
                        _show(kind, r)
            if runs["hand"] and runs["csv"]:
                med = {
                    k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "cpu")}
                    for k, v in runs.items()
                }
                rows = runs["csv"][0]["rows"]
                log(
                    f"CSV: {rows / med['csv']['seconds']:,.0f} rows/s wall "
                    f"({rows / med['csv']['cpu']:,.0f} per CPU second) = "
                    f"{med['hand']['seconds'] / med['csv']['seconds']:.2f}x the hand-written "
                    f"export's rate in wall time, {med['hand']['cpu'] / med['csv']['cpu']:.2f}x "
                    f"in CPU time (medians of {args.repeat}); peak "
                    f"{max(r['peak_mb'] for r in runs['csv']):.0f} MB "
                    "(target ≥ 50,000 rows/s, < 150 MB)"
                )
            if "xlsx" in only:
                x = run_child("xlsx", url, schema, out)
                _show("xlsx", x)
                log(f"Excel: {x['sheets']} sheet(s), peak {x['peak_mb']:.0f} MB (target < 200 MB)")
            if "report" in only:
                r = run_child("report", url, schema, out)
                calls = ", ".join(f"{k} {v:.2f} s" for k, v in r.items() if k.startswith("stats."))
                log(
                    f"report (PDF, {MONTH[0]}..{MONTH[1]}): {r['seconds']:.2f} s, CPU "
                    f"{r['cpu']:.2f} s, peak {r['peak_mb']:.0f} MB (target < 10 s); then the "
                    f"statistics calls alone: {calls}"
                )
        log(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if admin is not None:
            if not args.keep and not args.reuse:
                with admin.connect() as c:
                    c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
