"""Benchmark: the order list at a million orders, and order creation throughput.

Fills a fresh database with ``--orders`` orders (about 1.3 lines each, flags on about 5 %)
by bulk insert (COPY on PostgreSQL, executemany in big transactions on SQLite), runs ANALYZE,
then times ``list_orders`` for every filter of the order list: median and p95 over
``--repeat`` runs, for the first page and for a deep page (the cursor of an order about 1000
pages down the filter's ordering, or halfway down when it has fewer). Last, it creates
``--creates`` orders through the public service (``core.orders.create``) and reports orders per
second. Targets: p95 under 50 ms for every filter on both backends; deep pages as fast as the
first (ratio about 1). On PostgreSQL it also prints, for the first and the deep page of each
filter, the shared buffers every statement of the call touched (``EXPLAIN (ANALYZE,
BUFFERS)``), and on SQLite the virtual-machine instructions the call ran: figures that do
not move with the machine's load, so that a regression shows as a plan doing more work, not
as noise in a time.

    python benchmarks/order_list.py --backend both --orders 1000000
    python benchmarks/order_list.py --backend sqlite --orders 100000 --repeat 20
    python benchmarks/order_list.py --backend postgresql --explain

PostgreSQL: a fresh schema in the database of ``--db-url`` (default
``$ORDERCORE_TEST_POSTGRESQL_URL`` or ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
dropped at the end unless ``--keep``. SQLite: a fresh file under /tmp (or ``--db-url``).
``--reuse`` measures an existing, already filled database (give ``--db-url`` and, on
PostgreSQL, ``--schema``; ``--analyze`` after migrating it) — handy when trying an index with
``--extra-index``.
This is a benchmark, not a test: it reports figures and ratios and never fails on them.
"""

from __future__ import annotations

import argparse
import bisect
import io
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, and_, event, func, select, text, true
from sqlalchemy.engine import make_url

from ordercore import Actor, Money, OrderCore, Settings
from ordercore._orders.listing import Cursor, OrderFilter, date_range, period_range
from ordercore.adapters.sqlalchemy import make_engine
from ordercore.adapters.sqlalchemy.listing import list_orders, order_conditions
from ordercore.adapters.sqlalchemy.tables import Tables

UTC = timezone.utc
TZ = "Asia/Shanghai"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_MS = 50.0
PAGE = 50
DEEP_PAGES = 1000
N_SKUS = 100
N_CUSTOMERS = 100_000
BIG_CUSTOMER_SHARE = 0.02  # customer 1 is a reseller with 2 % of all orders
STATUSES = (
    ("completed", 0.55),
    ("paid", 0.10),
    ("canceled", 0.27),
    ("pending", 0.03),
    ("refunded", 0.05),
)
CHANNELS = (
    ("alipay", 0.45),
    ("wechat", 0.38),
    ("crypto", 0.05),
    ("balance", 0.05),
    ("bank_transfer", 0.05),
    (None, 0.02),
)
CURRENCIES = (("CNY", 0.95), ("USD", 0.04), ("USDT", 0.01))
TAGS = (("vip", 0.02), ("fraud-check", 0.015), ("gift", 0.01), ("manual", 0.005))
PRICES = (990, 2900, 2990, 4900, 9900, 12900, 19900, 29900, 59900, 99900)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ORDER_COLUMNS = (
    "id",
    "number",
    "customer_id",
    "currency",
    "status",
    "cancel_reason",
    "original_minor",
    "payable_minor",
    "paid_minor",
    "refunded_minor",
    "adjustments",
    "channel",
    "special",
    "created_at",
    "paid_at",
    "payment_deadline",
    "version",
)
LINE_COLUMNS = (
    "id",
    "order_id",
    "position",
    "product_id",
    "sku",
    "name",
    "specs",
    "unit_price_minor",
    "quantity",
    "order_created_at",
)
TAG_COLUMNS = ("order_id", "tag", "order_created_at")
CUSTOMER_COLUMNS = ("id", "name", "email", "identity_verified", "created_at")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sku_name(rank: int) -> str:
    return f"plan-{rank:03d}"


# ------------------------------------------------------------------------------------ data
@dataclass
class Generated:
    """What the loader wrote, to choose filter values that exist."""

    now: datetime
    orders: int = 0
    lines: int = 0
    tags: int = 0
    some_numbers: list[str] = field(default_factory=list)


def _pick(table: Sequence[tuple[Any, float]], rng: random.Random) -> Any:
    values = [v for v, _ in table]
    weights = [w for _, w in table]
    return rng.choices(values, weights)[0]


def _cumulative(table: Sequence[tuple[Any, float]]) -> tuple[list[Any], list[float]]:
    values, cum, total = [], [], 0.0
    for value, weight in table:
        total += weight
        values.append(value)
        cum.append(total)
    return values, cum


def _number(created_at: datetime, seq: int) -> str:
    stamp = created_at.strftime("%Y%m%d%H%M%S%f")[:17]
    chars = []
    for _ in range(5):
        seq, digit = divmod(seq, 32)
        chars.append(_CROCKFORD[digit])
    return stamp + "".join(reversed(chars))


OrderRows = tuple[dict[str, Any], tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]


def generate_orders(n: int, now: datetime, seed: int) -> Iterator[OrderRows]:
    """Yield ``(order, lines, tags)`` in id order (ids grow with created_at, as they would)."""
    rng = random.Random(seed)
    span = 730 * 86_400
    offsets = sorted(rng.random() * span for _ in range(n))
    start = now - timedelta(seconds=span + 3600)
    sku_weights = [1 / (r + 1) for r in range(N_SKUS)]  # Zipf: plan-000 is the best seller
    status_v, status_c = _cumulative(STATUSES)
    channel_v, channel_c = _cumulative(CHANNELS)
    currency_v, currency_c = _cumulative(CURRENCIES)
    line_id = 0
    for i, offset in enumerate(offsets, start=1):
        created_at = start + timedelta(seconds=offset)
        status = status_v[bisect.bisect(status_c, rng.random() * status_c[-1])]
        channel = channel_v[bisect.bisect(channel_c, rng.random() * channel_c[-1])]
        currency = currency_v[bisect.bisect(currency_c, rng.random() * currency_c[-1])]
        n_lines = 1 if rng.random() < 0.75 else (2 if rng.random() < 0.8 else 3)  # ~1.3
        ranks = rng.choices(range(N_SKUS), sku_weights, k=n_lines)
        lines = []
        total = 0
        for pos, rank in enumerate(dict.fromkeys(ranks)):
            price = PRICES[rank % len(PRICES)]
            qty = 1 if rng.random() < 0.9 else rng.randint(2, 12)
            total += price * qty
            line_id += 1
            lines.append(
                {
                    "id": line_id,
                    "order_id": i,
                    "position": pos,
                    "product_id": rank + 1,
                    "sku": sku_name(rank),
                    "name": f"Plan {rank}",
                    "specs": "{}",
                    "unit_price_minor": price,
                    "quantity": qty,
                    "order_created_at": created_at,
                }
            )
        paid = total if status in ("paid", "completed", "refunded") else 0
        customer = 1 if rng.random() < BIG_CUSTOMER_SHARE else rng.randint(2, N_CUSTOMERS)
        tags = [t for t, share in TAGS if rng.random() < share]
        order = {
            "id": i,
            "number": _number(created_at, i),
            "customer_id": customer,
            "currency": currency,
            "status": status,
            "cancel_reason": "timeout" if status == "canceled" else None,
            "original_minor": total,
            "payable_minor": total,
            "paid_minor": paid,
            "refunded_minor": paid if status == "refunded" else 0,
            "adjustments": "[]",
            "channel": channel,
            "special": rng.random() < 0.01,
            "created_at": created_at,
            "paid_at": created_at + timedelta(minutes=3) if paid else None,
            "payment_deadline": created_at + timedelta(minutes=15),
            "version": 1,
        }
        yield (
            order,
            tuple(lines),
            tuple({"order_id": i, "tag": t, "order_created_at": created_at} for t in tags),
        )


def customers(now: datetime) -> Iterator[dict[str, Any]]:
    for i in range(1, N_CUSTOMERS + 1):
        yield {
            "id": i,
            "name": f"Customer {i}",
            "email": f"customer{i}@example.com",
            "identity_verified": i % 3 == 0,
            "created_at": now - timedelta(days=800),
        }


# ---------------------------------------------------------------------------------- backends
@dataclass
class Target:
    """A fresh database of one backend."""

    name: str
    url: str
    schema: str | None
    cleanup: Callable[[], None]


def sqlite_target(url: str | None, keep: bool) -> Target:
    if url is None:
        path = os.path.join(tempfile.gettempdir(), f"ordercore-bench-{uuid.uuid4().hex[:8]}.db")
        url = f"sqlite:///{path}"
    path = make_url(url).database or ""

    def cleanup() -> None:
        if keep:
            log(f"kept {url}")
            return
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)

    return Target("sqlite", url, None, cleanup)


def postgresql_target(url: str | None, schema: str | None, keep: bool, reuse: bool) -> Target:
    server = url or os.environ.get("ORDERCORE_TEST_POSTGRESQL_URL") or DEFAULT_PG
    schema = schema or f"ocbench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    if not reuse:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = (
        make_url(server)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )

    def cleanup() -> None:
        if keep or reuse:
            log(f"kept schema {schema} in {server}")
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    return Target("postgresql", scoped, schema, cleanup)


def _qualified(core: OrderCore, table: Any) -> str:
    return core.engine.dialect.identifier_preparer.format_table(table)


def _pg_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):  # what UTCDateTime stores on SQLite: naive UTC, µs
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return int(value)
    return value


class Loader:
    """Bulk writer for one table: COPY on PostgreSQL, executemany on SQLite.

    Rows wait in memory until :meth:`flush`, which the caller runs for the parent table
    before the child tables (foreign keys are checked row by row).
    """

    def __init__(self, core: OrderCore, raw: Any, table: Any, columns: Sequence[str]) -> None:
        self.core, self.raw, self.columns = core, raw, columns
        self.name = _qualified(core, table)
        self.pg = core.engine.dialect.name == "postgresql"
        self.buffer: list[Any] = []
        self.text = io.StringIO()
        self.count = 0

    def add(self, row: dict[str, Any]) -> None:
        self.count += 1
        if self.pg:
            self.text.write("\t".join(_pg_value(row[c]) for c in self.columns))
            self.text.write("\n")
        else:
            self.buffer.append(tuple(_sqlite_value(row[c]) for c in self.columns))

    def flush(self) -> None:
        cols = ", ".join(self.columns)
        if self.pg:
            data = self.text.getvalue()
            if data:
                with (
                    self.raw.cursor() as cur,
                    cur.copy(f"COPY {self.name} ({cols}) FROM STDIN") as cp,
                ):
                    cp.write(data)
            self.text = io.StringIO()
        elif self.buffer:
            marks = ", ".join("?" for _ in self.columns)
            self.raw.executemany(f"INSERT INTO {self.name} ({cols}) VALUES ({marks})", self.buffer)
            self.buffer = []


def load(core: OrderCore, n: int, seed: int) -> Generated:
    now = datetime.now(UTC).replace(microsecond=0)
    gen = Generated(now=now)
    tables = core.tables
    actor = Actor.operator("bench", "admin")
    for rank in range(N_SKUS):  # the catalogue, through the service (ids 1..N_SKUS)
        core.products.add(
            sku=sku_name(rank),
            name=f"Plan {rank}",
            price=Money.from_minor(PRICES[rank % len(PRICES)], "CNY"),
            actor=actor,
        )
    raw_fairy = core.engine.raw_connection()
    raw = raw_fairy.driver_connection
    assert raw is not None
    pg = core.engine.dialect.name == "postgresql"
    if not pg:
        raw.execute("PRAGMA cache_size=-1000000")
        raw.execute("BEGIN")
    started = time.perf_counter()
    cust = Loader(core, raw, tables.customers, CUSTOMER_COLUMNS)
    for row in customers(now):
        cust.add(row)
    cust.flush()
    orders = Loader(core, raw, tables.orders, ORDER_COLUMNS)
    lines = Loader(core, raw, tables.order_lines, LINE_COLUMNS)
    tags = Loader(core, raw, tables.order_tags, TAG_COLUMNS)
    for order, order_lines, order_tags in generate_orders(n, now, seed):
        orders.add(order)
        for line in order_lines:
            lines.add(line)
        for tag in order_tags:
            tags.add(tag)
        if order["id"] % 97_331 == 0:
            gen.some_numbers.append(order["number"])
        if order["id"] % 100_000 == 0:
            for loader in (orders, lines, tags):
                loader.flush()
            if not pg:
                raw.execute("COMMIT")
                raw.execute("BEGIN")
            log(f"  {order['id']:,} orders ({time.perf_counter() - started:.0f} s)")
    for loader in (orders, lines, tags):
        loader.flush()
    if pg:
        raw.commit()
        with raw.cursor() as cur:
            for table in (tables.customers, tables.orders, tables.order_lines):
                name = _qualified(core, table)
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                    f"(SELECT max(id) FROM {name}))"
                )
        raw.commit()
    else:
        raw.execute("COMMIT")
    raw_fairy.close()
    gen.orders, gen.lines, gen.tags = orders.count, lines.count, tags.count
    log(
        f"loaded {gen.orders:,} orders, {gen.lines:,} lines, {gen.tags:,} flags in "
        f"{time.perf_counter() - started:.0f} s"
    )
    return gen


def analyze(core: OrderCore) -> None:
    started = time.perf_counter()
    if core.engine.dialect.name == "postgresql":
        with core.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        raw_fairy = core.engine.raw_connection()
        raw = raw_fairy.driver_connection
        assert raw is not None
        raw.execute("ANALYZE")
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw_fairy.close()
    log(f"ANALYZE in {time.perf_counter() - started:.1f} s")


# ---------------------------------------------------------------------------------- filters
def filters(now: datetime, numbers: Sequence[str]) -> list[tuple[str, OrderFilter]]:
    """The filters measured (the shares are those of the generated data)."""
    month = period_range("this-month", TZ, now)
    custom = date_range(
        (now - timedelta(days=120)).date().isoformat(),
        (now - timedelta(days=90)).date().isoformat(),
        TZ,
    )
    one = numbers[0] if numbers else "1"
    middle = numbers[len(numbers) // 2] if numbers else "2026"

    def cny(low: str, high: str) -> OrderFilter:
        return OrderFilter(min_amount=Money.of(low, "CNY"), max_amount=Money.of(high, "CNY"))

    return [
        ("none", OrderFilter()),
        ("status pending (3%)", OrderFilter(statuses=("pending",))),
        ("status completed (55%)", OrderFilter(statuses=("completed",))),
        ("status pending or refunded", OrderFilter(statuses=("pending", "refunded"))),
        ("period this-month", OrderFilter(created_from=month[0], created_to=month[1])),
        ("custom range (30 days)", OrderFilter(created_from=custom[0], created_to=custom[1])),
        ("channel crypto (5%)", OrderFilter(channel="crypto")),
        ("customer (typical)", OrderFilter(customer_id=4242)),
        ("customer (2% of orders)", OrderFilter(customer_id=1)),
        ("sku top seller (19%)", OrderFilter(sku=sku_name(0))),
        ("sku 1.5%", OrderFilter(sku=sku_name(12))),
        ("sku 0.5% (probe limit)", OrderFilter(sku=sku_name(48))),
        ("sku 0.3%", OrderFilter(sku=sku_name(90))),
        ("amount 100-200 CNY (14%)", cny("100", "200")),
        ("amount 500-600 CNY (4.5%)", cny("500", "600")),
        ("amount 1000-1005 CNY (rare)", cny("1000", "1005")),
        ("flag fraud-check (1.5%)", OrderFilter(flag="fraud-check")),
        ("flag manual (0.5%)", OrderFilter(flag="manual")),
        ("number prefix (a month)", OrderFilter(number_prefix=middle[:6])),
        ("number prefix (a day)", OrderFilter(number_prefix=middle[:8])),
        ("number prefix (one order)", OrderFilter(number_prefix=one)),
        ("status + channel", OrderFilter(statuses=("completed",), channel="wechat")),
        (
            "status + channel + month",
            OrderFilter(
                statuses=("paid",), channel="crypto", created_from=month[0], created_to=month[1]
            ),
        ),
        ("sku + flag", OrderFilter(sku=sku_name(3), flag="vip")),
    ]


def _where(tables: Tables, flt: OrderFilter) -> Any:
    return and_(true(), *order_conditions(tables, flt))


def deep_cursor(core: OrderCore, flt: OrderFilter) -> tuple[str | None, int, int]:
    """The cursor of the order ~1000 pages down (or halfway down) the filter's ordering."""
    o = core.tables.orders.c
    with core.engine.connect() as conn:
        matches = conn.execute(
            select(func.count()).select_from(core.tables.orders).where(_where(core.tables, flt))
        ).scalar_one()
        depth = min(PAGE * DEEP_PAGES, matches // 2)
        if depth < 1:
            return None, int(matches), 0
        row = conn.execute(
            select(o.created_at, o.id)
            .where(_where(core.tables, flt))
            .order_by(o.created_at.desc(), o.id.desc())
            .limit(1)
            .offset(depth - 1)
        ).one()
    return Cursor(row.created_at, row.id).encode(), int(matches), depth


def timed(
    engine: Engine, core: OrderCore, flt: OrderFilter, cursor: str | None, n: int
) -> list[float]:
    def once() -> float:
        started = time.perf_counter()
        with engine.connect() as conn:
            list_orders(conn, core.tables, flt, limit=PAGE, cursor=cursor)
        return (time.perf_counter() - started) * 1000

    for _ in range(3):  # warm the caches and the statement cache
        once()
    return [once() for _ in range(n)]


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def statements(core: OrderCore, flt: OrderFilter, cursor: str | None) -> list[tuple[str, Any]]:
    """Every statement one ``list_orders`` call sends, as the driver ran it."""
    captured: list[tuple[str, Any]] = []

    def grab(conn: Any, cur: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        captured.append((statement, params))

    event.listen(core.engine, "before_cursor_execute", grab)
    try:
        with core.engine.connect() as conn:
            list_orders(conn, core.tables, flt, limit=PAGE, cursor=cursor)
    finally:
        event.remove(core.engine, "before_cursor_execute", grab)
    return captured


def _run_raw(core: OrderCore, statement: str, params: Any) -> list[Any]:
    raw_fairy = core.engine.raw_connection()
    try:
        cur = raw_fairy.cursor()
        cur.execute(statement, params)
        rows = cur.fetchall()
    finally:
        raw_fairy.close()
    return list(rows)


def explain(core: OrderCore, flt: OrderFilter, cursor: str | None) -> str:
    """The plan of the page query, as the driver ran it."""
    captured = statements(core, flt, cursor)
    statement, params = next((s, p) for s, p in captured if "ORDER BY" in s)
    prefix = (
        "EXPLAIN (ANALYZE, BUFFERS) "
        if core.engine.dialect.name == "postgresql"
        else "EXPLAIN QUERY PLAN "
    )
    rows = _run_raw(core, prefix + statement, params)
    return "\n".join("    " + " | ".join(str(c) for c in r) for r in rows)


def sqlite_steps(core: OrderCore, flt: OrderFilter, cursor: str | None) -> int:
    """SQLite: the virtual-machine instructions one ``list_orders`` call runs, to the hundred
    (a progress handler called every 100), all statements together (SQLite runs a statement
    while its rows are fetched, so they cannot be told apart from the outside)."""
    calls = [0]

    def count() -> int:
        calls[0] += 1
        return 0

    with core.engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.set_progress_handler(count, 100)
        try:
            list_orders(conn, core.tables, flt, limit=PAGE, cursor=cursor)
        finally:
            raw.set_progress_handler(None, 100)
    return calls[0] * 100


def buffers(core: OrderCore, flt: OrderFilter, cursor: str | None) -> list[int] | None:
    """PostgreSQL: the shared buffers (hits + reads) each statement of one ``list_orders`` call
    touches when it runs, from ``EXPLAIN (ANALYZE, BUFFERS)`` (execution only, not planning;
    the top node's counts include its children's and its subplans'). SQLite: one number,
    the VM instructions (:func:`sqlite_steps`).

    Unlike a time, this does not move with the load of the machine: a plan that reads ten
    times more index pages shows as ten times the buffers."""
    if core.engine.dialect.name == "sqlite":
        return [sqlite_steps(core, flt, cursor)]
    if core.engine.dialect.name != "postgresql":
        return None
    out = []
    for statement, params in statements(core, flt, cursor):
        ((doc,),) = _run_raw(core, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params)
        plan = doc[0]["Plan"]
        out.append(int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"]))
    return out


@dataclass
class Result:
    name: str
    matches: int
    depth: int
    first: list[float]
    deep: list[float]
    first_buffers: list[int] | None = None
    deep_buffers: list[int] | None = None


def measure(
    core: OrderCore, gen: Generated, repeat: int, show_plans: bool, only: Sequence[str]
) -> list[Result]:
    results = []
    for name, flt in filters(gen.now, gen.some_numbers):
        if only and not any(text in name for text in only):
            continue
        cursor, matches, depth = deep_cursor(core, flt)
        first = timed(core.engine, core, flt, None, repeat)
        deep = timed(core.engine, core, flt, cursor, repeat) if cursor else []
        result = Result(name, matches, depth, first, deep)
        result.first_buffers = buffers(core, flt, None)
        result.deep_buffers = buffers(core, flt, cursor) if cursor else None
        results.append(result)
        log(
            f"  {name}: first p95 {p95(first):.1f} ms"
            + (f", deep p95 {p95(deep):.1f} ms" if deep else "")
            + (f", work {show_buffers(result.first_buffers)}" if result.first_buffers else "")
            + (f" / {show_buffers(result.deep_buffers)}" if result.deep_buffers else "")
        )
        if show_plans:
            print(f"-- {name} (first page)\n{explain(core, flt, None)}")
            if cursor:
                print(f"-- {name} (deep page)\n{explain(core, flt, cursor)}")
    return results


def show_buffers(parts: Sequence[int] | None) -> str:
    """``total (statement + statement + ...)``, in the order list_orders sends them."""
    if not parts:
        return "-"
    if len(parts) == 1:
        return f"{parts[0]:,}"
    return f"{sum(parts):,} ({' + '.join(str(p) for p in parts)})"


def creation_throughput(core: OrderCore, n: int, seed: int) -> float:
    rng = random.Random(seed)
    actor = Actor.operator("bench", "admin")
    started = time.perf_counter()
    for _ in range(n):
        items = [(sku_name(rng.randrange(N_SKUS)), 1)]
        if rng.random() < 0.3:
            items.append((sku_name(rng.randrange(N_SKUS)), 2))
        core.orders.create(
            customer_id=rng.randint(2, N_CUSTOMERS),
            items=items,
            actor=actor,
        )
    return n / (time.perf_counter() - started)


def report(backend: str, gen: Generated, results: list[Result], creates: float | None) -> str:
    with_buffers = any(r.first_buffers for r in results)
    unit = "VM steps" if backend == "sqlite" else "buffers"
    head = (
        f"| filter | matches | first p50 | first p95 | deep p50 | deep p95 | deep/first "
        f"(p50) | deep page at | p95 < {TARGET_MS:.0f} ms |"
        + (f" {unit}, first page | {unit}, deep page |" if with_buffers else "")
    )
    out = [
        f"### {backend}: {gen.orders:,} orders, {gen.lines:,} lines, {gen.tags:,} flags, "
        f"page of {PAGE}",
        "",
        head,
        "|" + "---|" * (11 if with_buffers else 9),
    ]
    for r in results:
        worst = max([p95(r.first)] + ([p95(r.deep)] if r.deep else []))
        deep = (f"{statistics.median(r.deep):.2f}", f"{p95(r.deep):.2f}") if r.deep else ("-", "-")
        ratio = f"{statistics.median(r.deep) / statistics.median(r.first):.2f}" if r.deep else "-"
        out.append(
            f"| {r.name} | {r.matches:,} | {statistics.median(r.first):.2f} | "
            f"{p95(r.first):.2f} | {deep[0]} | {deep[1]} | {ratio} | "
            f"{r.depth:,} | {'yes' if worst < TARGET_MS else '**no**'} |"
            + (
                f" {show_buffers(r.first_buffers)} | {show_buffers(r.deep_buffers)} |"
                if with_buffers
                else ""
            )
        )
    if creates is not None:
        out += ["", f"Order creation through `core.orders.create`: **{creates:,.0f} orders/s**"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    out += ["", f"Machine: {os.cpu_count()} CPUs, load average {load} at the end of the run."]
    return "\n".join(out)


def run(args: argparse.Namespace, backend: str) -> str:
    if backend == "sqlite":
        target = sqlite_target(args.db_url, args.keep or args.reuse)
    else:
        target = postgresql_target(args.db_url, args.schema, args.keep, args.reuse)
    log(f"{backend}: {target.url} (schema {target.schema})")
    engine = make_engine(target.url)
    if backend == "postgresql" and args.pg_setting:
        settings = [tuple(item.split("=", 1)) for item in args.pg_setting]

        @event.listens_for(engine, "connect")
        def _settings(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cur:
                for name, value in settings:
                    cur.execute("SELECT set_config(%s, %s, false)", (name, value))
            dbapi_connection.commit()

    core = OrderCore(engine, Settings(database_url=target.url, schema=target.schema))
    try:
        if args.reuse:
            with engine.connect() as conn:
                o = core.tables.orders.c
                count, newest = conn.execute(select(func.count(), func.max(o.created_at))).one()
                numbers = list(
                    conn.execute(
                        select(o.number).where(o.id % max(1, count // 10) == 0).order_by(o.id)
                    ).scalars()
                )
                lines, tags = (
                    conn.execute(select(func.count()).select_from(table)).scalar_one()
                    for table in (core.tables.order_lines, core.tables.order_tags)
                )
            gen = Generated(
                now=newest + timedelta(hours=1),
                orders=count,
                lines=lines,
                tags=tags,
                some_numbers=numbers,
            )
        else:
            core.upgrade()
            gen = load(core, args.orders, args.seed)
        for sql in args.extra_index:
            statement = sql.format(
                **{
                    name: _qualified(core, getattr(core.tables, name))
                    for name in ("orders", "order_lines", "order_tags")
                }
            )
            log(f"extra index: {statement}")
            with engine.begin() as conn:
                conn.execute(text(statement))
        if not args.reuse or args.extra_index or args.analyze:
            analyze(core)
        results = measure(core, gen, args.repeat, args.explain, args.only)
        creates = None
        if args.creates:
            creates = creation_throughput(core, args.creates, args.seed)
            log(f"creation: {creates:,.0f} orders/s")
        return report(backend, gen, results, creates)
    finally:
        core.close()
        target.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--creates", type=int, default=2000, help="orders created via the API")
    parser.add_argument("--db-url", default=None, help="database URL (one backend only)")
    parser.add_argument("--schema", default=None, help="PostgreSQL schema (with --reuse)")
    parser.add_argument("--seed", type=int, default=1124)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="measure an existing database")
    parser.add_argument(
        "--extra-index",
        action="append",
        default=[],
        metavar="SQL",
        help="CREATE INDEX ... ON {orders} (...) to try before measuring (repeatable)",
    )
    parser.add_argument("--explain", action="store_true", help="print each query's plan")
    parser.add_argument(
        "--analyze", action="store_true", help="with --reuse: (VACUUM) ANALYZE before measuring"
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="PostgreSQL setting for every connection, e.g. max_parallel_workers_per_gather=0",
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="TEXT", help="filters whose name has TEXT"
    )
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if len(backends) > 1 and (args.db_url or args.reuse or args.schema):
        parser.error("--db-url, --schema and --reuse need a single --backend")
    reports = [run(args, b) for b in backends]
    print(f"\n`python benchmarks/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}`\n")
    print("\n\n".join(reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
