"""Benchmark: what risk control adds to order creation, against a hand-written baseline.

Three timings, per order, medians over ``--n`` orders each, run alternately in blocks of
``--block`` so that a change in the machine's load hits all alike:

* ``off``: ``core.orders.create`` with an empty ``[risk]`` table (the check still runs: list
  lookup, context row, bare ``allow`` decision);
* ``on``: the same with every built-in rule configured (velocity on customer, ip, device and
  e-mail domain per hour and day, customers per device and ip, daily and monthly amounts,
  review_over, verification, unusual amount) with limits that never fire, and ``--entries``
  list entries (a third of them CIDR blocks, which are matched in Python);
* ``baseline``: a hand-written plain-SQL version of the checks ``on`` adds, on the DB-API
  connection (``sqlite3`` or psycopg, no SQLAlchemy, no ordercore code), in a transaction of
  its own: lock the ip, device and customer subject rows, the eight velocity counts, the
  two customers-per counts, the two amount sums, the paid-orders aggregate and the list
  lookup, then insert the context row and the decision.

It reports the medians, the ratio on/off (the cost of risk control on an order) and the
ratio (on - off)/baseline (how far ordercore's added work is from doing the same SQL by
hand). Every order comes from its own IP, device and customer pool so no rule fires.

    python benchmarks/risk_checks.py --backend sqlite --n 300
    python benchmarks/risk_checks.py --backend postgresql --n 300

PostgreSQL: a fresh schema in ``--db-url`` (default ``$ORDERCORE_TEST_POSTGRESQL_URL``),
dropped at the end. This is a benchmark, not a test: it reports figures, never fails on them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from ordercore import Actor, Money, OrderCore, RiskContext, RiskSettings, Settings
from ordercore.adapters.sqlalchemy import make_engine

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ADMIN = Actor.operator("bench", "admin")

ALL_RULES = {
    **{
        f"max_orders_per_{s}_per_{p}": 100_000
        for s in ("customer", "ip", "device", "email_domain")
        for p in ("hour", "day")
    },
    "max_customers_per_device": 100_000,
    "max_customers_per_ip": 100_000,
    "max_customer_daily_amount": "100000000.00",
    "max_customer_monthly_amount": "100000000.00",
    "review_over": "100000000.00",
    "require_verification_over": "100000000.00",
    "unusual_amount_factor": "1000",
}


def build(url: str, schema: str | None, risk: dict[str, Any]) -> OrderCore:
    settings = Settings(database_url=url, schema=schema, risk=RiskSettings.build(**risk))
    return OrderCore(make_engine(url), settings)


def prepare(core: OrderCore, customers: int, entries: int) -> list[int]:
    core.upgrade()
    core.products.add(sku="VPN", name="VPN", price=Money.of("30.00", "CNY"), actor=ADMIN)
    ids = []
    for n in range(customers):
        c = core.customers.add(name=f"C{n}", email=f"c{n}@d{n % 50}.example", actor=ADMIN)
        assert c.id is not None
        ids.append(c.id)
    for n in range(entries):
        if n % 3 == 0:
            core.risk.add_to_list("cidr", f"10.{n % 250}.{n // 250}.0/24", actor=ADMIN)
        else:
            core.risk.add_to_list("device", f"bad-device-{n}", actor=ADMIN)
    return ids


def baseline_check(core: OrderCore, dbapi: Any, pg: bool, i: int, customer_id: int) -> None:
    """The SQL risk control runs for one order with every rule on, by hand."""
    t = core.tables
    q = core.engine.dialect.identifier_preparer

    def name(table: Any) -> str:
        return q.format_table(table)

    mark = "%s" if pg else "?"
    now = core.clock()
    hour, day, month = now - timedelta(hours=1), now - timedelta(days=1), now - timedelta(days=30)
    if not pg:
        now_s, hour_s, day_s, month_s = (
            x.replace(tzinfo=None).isoformat(" ") for x in (now, hour, day, month)
        )
    else:
        now_s, hour_s, day_s, month_s = now, hour, day, month
    ip, device, domain = f"192.0.2.{i % 250}", f"dev-{i}", f"d{customer_id % 50}.example"
    cur = dbapi.cursor()
    if not pg:
        cur.execute("BEGIN IMMEDIATE")
    lock = " FOR UPDATE" if pg else ""
    for kind, value in (("customer", str(customer_id)), ("device", device), ("ip", ip)):
        cur.execute(
            f"SELECT kind FROM {name(t.risk_subjects)} WHERE kind={mark} AND value={mark}{lock}",
            (kind, value),
        )
        if cur.fetchone() is None:
            cur.execute(
                f"INSERT INTO {name(t.risk_subjects)} (kind, value) VALUES ({mark}, {mark})",
                (kind, value),
            )
    ro, o = name(t.risk_orders), name(t.orders)
    for since in (hour_s, day_s):
        cur.execute(
            f"SELECT count(*) FROM {o} WHERE customer_id={mark} AND created_at>={mark}",
            (customer_id, since),
        )
        for column, value in (("ip", ip), ("device_id", device), ("email_domain", domain)):
            cur.execute(
                f"SELECT count(*) FROM {ro} WHERE {column}={mark} AND created_at>={mark}",
                (value, since),
            )
    for column, value in (("device_id", device), ("ip", ip)):
        cur.execute(
            f"SELECT count(DISTINCT customer_id) FROM {ro} WHERE {column}={mark} "
            f"AND customer_id<>{mark} AND created_at>={mark}",
            (value, customer_id, month_s),
        )
    for since in (day_s, month_s):
        cur.execute(
            f"SELECT coalesce(sum(payable_minor),0) FROM {o} WHERE customer_id={mark} "
            f"AND currency='CNY' AND created_at>={mark} AND status<>'canceled'",
            (customer_id, since),
        )
    cur.execute(
        f"SELECT count(*), coalesce(sum(paid_minor),0) FROM {o} WHERE customer_id={mark} "
        "AND currency='CNY' AND status IN ('paid','completed')",
        (customer_id,),
    )
    lists = name(t.risk_lists)
    cur.execute(
        f"SELECT * FROM {lists} WHERE ((kind='customer' AND value={mark}) OR "
        f"(kind='device' AND value={mark}) OR (kind='ip' AND value={mark}) OR kind='cidr') "
        f"AND (expires_at IS NULL OR expires_at>{mark})",
        (str(customer_id), device, ip, now_s),
    )
    cur.fetchall()
    cur.execute(
        f"INSERT INTO {name(t.risk_decisions)} (stage, verdict, customer_id, rules, context, "
        f"actor_kind, actor_id, created_at) VALUES ('order','allow',{mark},'[]','{{}}',"
        f"'operator','bench',{mark})",
        (customer_id, now_s),
    )
    dbapi.commit()


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(backend: str, n: int, block: int, entries: int, db_url: str | None) -> None:
    schemas: list[str] = []
    admin = None
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="risk-bench-")
        urls = [f"sqlite:///{folder}/{k}.db" for k in ("off", "on", "base")]
        schema_of: list[str | None] = [None, None, None]
    else:
        server = db_url or os.environ.get("ORDERCORE_TEST_POSTGRESQL_URL") or DEFAULT_PG
        admin = make_engine(server)
        schemas = [f"riskbench_{uuid.uuid4().hex[:8]}_{k}" for k in ("off", "on", "base")]
        with admin.begin() as conn:
            for s in schemas:
                conn.execute(text(f'CREATE SCHEMA "{s}"'))
        urls = [server] * 3
        schema_of = list(schemas)
    try:
        off = build(urls[0], schema_of[0], {})
        on = build(urls[1], schema_of[1], ALL_RULES)
        base = build(urls[2], schema_of[2], {})
        customers = 50
        ids = {
            k: prepare(c, customers, entries if k == "on" else 0)
            for k, c in (("off", off), ("on", on), ("base", base))
        }
        raw = base.engine.raw_connection()
        dbapi = raw.driver_connection
        pg = backend == "postgresql"
        if pg:
            dbapi.execute(f'SET search_path TO "{schema_of[2]}"')
            dbapi.commit()
        else:
            dbapi.isolation_level = None
        times: dict[str, list[float]] = {"off": [], "on": [], "baseline": []}
        done = 0
        while done < n:
            size = min(block, n - done)
            for label, core in (("off", off), ("on", on)):
                for k in range(done, done + size):
                    cid = ids[label][k % customers]
                    ctx = RiskContext(ip=f"192.0.2.{k % 250}", device_id=f"dev-{k}")
                    times[label].append(
                        timed(
                            lambda core=core, cid=cid, ctx=ctx: core.orders.create(
                                customer_id=cid, items=[("VPN", 1)], actor=ADMIN, risk=ctx
                            )
                        )
                    )
            for k in range(done, done + size):
                cid = ids["base"][k % customers]
                times["baseline"].append(
                    timed(lambda k=k, cid=cid: baseline_check(base, dbapi, pg, k, cid))
                )
            done += size
        raw.close()
        med = {k: statistics.median(v[min(20, len(v) // 5) :]) * 1000 for k, v in times.items()}
        print(f"backend {backend}: {n} orders each, {entries} list entries on 'on'")
        for k, v in med.items():
            print(f"  {k:9} median {v:7.3f} ms")
        print(f"  ratio on/off                 {med['on'] / med['off']:.2f}")
        print(f"  ratio (on - off)/baseline    {(med['on'] - med['off']) / med['baseline']:.2f}")
        for c in (off, on, base):
            c.close()
    finally:
        if admin is not None:
            with admin.begin() as conn:
                for s in schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{s}" CASCADE'))
            admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--block", type=int, default=25)
    parser.add_argument("--entries", type=int, default=300)
    parser.add_argument("--db-url", default=None)
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        run(backend, args.n, args.block, args.entries, args.db_url)


if __name__ == "__main__":
    main()
