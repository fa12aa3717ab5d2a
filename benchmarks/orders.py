"""Benchmark: order creation through the service against a hand-written insert of the same rows.

Each timed call creates one order of two lines — a product with unlimited stock and one with
limited stock (2 units) — for an existing customer, every other order with a 10 % coupon:
``core.orders.create(items=..., customer_id=..., coupon=..., actor=...)``.

The baseline does it by hand on one DB-API connection (``sqlite3`` or psycopg, no
SQLAlchemy, no ordercore code), with the same reads and exactly the rows ordercore writes,
in ONE transaction: check the customer; read and lock the products (one ``SELECT … FOR
UPDATE`` in sku order); decrement the limited stock; read and lock the coupon and check it
(active, window, currency, eligible skus, minimum, usage limits); price the order (coupon
discount rounded half-up and allocated to the lines by largest remainder, as ordercore
does); insert the order (with its activation mode and request hash), its lines (one
statement), the risk context and decision (after reading the customer's risk-list entries;
the default rule set), the coupon use (and the coupon's use count), the pending audit entry
(nonce, HMAC-SHA-256 ``entry_hash``) — and commit. It does not read the wallet (neither does
ordercore when the order does not draw on it).

Before anything is timed, the benchmark snapshots every table around one create of each
path (with and without a coupon) and compares the changes column by column (ids, times,
nonces, hashes and the order number masked); after the run it counts what each path wrote
and seals and verifies the audit trail. Statements and commits per create are counted in a
separate untimed pass (SQLAlchemy events for ordercore, counters in the baseline), and on
PostgreSQL the round trips too (a TCP relay, see ``_writebench.RoundTripRelay``).

The two paths run alternately in blocks of ``--block`` creates; the first ``--warmup`` of
each are not counted; the ratio is ordercore's median over the baseline's.

    python benchmarks/orders.py --backend both --n 2000

Targets (issue 13): ordercore's median within 2x of the baseline's on PostgreSQL, 4x on
SQLite. A benchmark, not a test: it reports figures and never fails on them.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import hmac
import json
import os
import pstats
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _writebench as wb

from ordercore import Actor, Money, OrderCore, Settings
from ordercore.adapters.sqlalchemy import make_engine

UTC = timezone.utc
TARGET_RATIO = {"postgresql": 2.0, "sqlite": 4.0}
AUDIT_KEY = b"benchmark audit key"
CURRENCY = "CNY"
ITEMS = (("plan-1", 1), ("box-1", 2))  # unlimited stock, limited stock
log = wb.log


def make_core(url: str, schema: str | None, **engine: Any) -> OrderCore:
    return OrderCore(
        make_engine(url, **engine),
        Settings(database_url=url, schema=schema, audit_key=AUDIT_KEY),
        load_entry_points=False,
    )


def set_up(core: OrderCore) -> int:
    """The catalogue, a coupon and the customer; returns the customer's id."""
    admin = Actor.operator("bench", "admin")
    core.products.add(sku="plan-1", name="Plan", price=Money.of("30.00", CURRENCY), actor=admin)
    core.products.add(
        sku="box-1",
        name="Box",
        price=Money.of("12.50", CURRENCY),
        actor=admin,
        stock=1_000_000_000,
    )
    core.coupons.add(code="TEN", actor=admin, currency=CURRENCY, percent="10")
    customer = core.customers.add(name="Bench customer", actor=admin)
    assert customer.id is not None
    return customer.id


# ---------------------------------------------------------------------------------- baseline
_EXPONENTS = {"CNY": 2, "USD": 2, "JPY": 0}
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RISK_CONTEXT = {"device_id": None, "email": None, "ip": None, "payer_account": None,
                 "user_agent": None}  # fmt: skip


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _text(minor: int, currency: str) -> str:
    return str(Decimal(minor).scaleb(-_EXPONENTS[currency]))


def _allocate(amount: int, weights: Sequence[int]) -> list[int]:
    """``amount`` split in proportion to ``weights``: floors, then the units left over to the
    largest remainders (earlier first on ties)."""
    total = sum(weights)
    floors = [amount * w // total for w in weights]
    remainders = [amount * w % total for w in weights]
    left = amount - sum(floors)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        floors[i] += 1
    return floors


class Baseline:
    """Order creation by hand: the same reads and rows as ordercore, one transaction."""

    def __init__(self, conn: Any, backend: str, timeout_minutes: int) -> None:
        self.conn = conn
        self.sqlite = backend == "sqlite"
        self.timeout = timedelta(minutes=timeout_minutes)
        self.statements = 0
        self.commits = 0
        self._last_number = ""
        lock = "" if self.sqlite else " FOR UPDATE"
        self.lock = lock
        self.sql = {
            "customer": "SELECT id, email FROM customers WHERE id = %s",
            "coupon": "SELECT id, kind, currency, percent, amount_minor, max_discount_minor, "
            "min_amount_minor, valid_from, valid_until, limit_total, limit_per_customer, skus, "
            f"active, uses FROM coupons WHERE code = %s{lock}",
            "coupon_uses": "SELECT COUNT(*) FROM coupon_redemptions WHERE coupon_id = %s "
            "AND customer_id = %s AND status IN ('reserved', 'consumed')",
            "stock": "UPDATE products SET stock = stock - %s, updated_at = %s WHERE id = %s",
            "order": "INSERT INTO orders (number, customer_id, currency, status, "
            "original_minor, payable_minor, paid_minor, refunded_minor, adjustments, special, "
            "created_at, payment_deadline, version, request_hash, activation_mode) VALUES "
            "(%s, %s, %s, 'pending', %s, %s, 0, 0, %s, FALSE, %s, %s, 1, %s, %s) RETURNING id",
            "lists": "SELECT allow FROM risk_lists WHERE kind = 'customer' AND value = %s "
            "AND (expires_at IS NULL OR expires_at > %s)",
            "risk_order": "INSERT INTO risk_orders (order_id, customer_id, created_at, verdict, "
            "needs_verification) VALUES (%s, %s, %s, 'allow', FALSE)",
            "risk_decision": "INSERT INTO risk_decisions (stage, verdict, order_number, "
            "customer_id, rules, context, actor_kind, actor_id, actor_role, created_at) "
            "VALUES ('order', 'allow', %s, %s, '[]', %s, %s, %s, %s, %s)",
            "use_coupon": "UPDATE coupons SET uses = uses + 1, updated_at = %s WHERE id = %s",
            "redemption": "INSERT INTO coupon_redemptions (coupon_id, order_id, customer_id, "
            "status, discount_minor, created_at, updated_at) "
            "VALUES (%s, %s, %s, 'reserved', %s, %s, %s)",
            "audit": "INSERT INTO audit_pending (nonce, at, actor_kind, actor_id, actor_role, "
            "entity_kind, entity_id, action, before, after, reason, entry_hash) "
            "VALUES (%s, %s, %s, %s, %s, 'order', %s, 'order.create', NULL, %s, NULL, %s)",
        }
        if self.sqlite:
            self.sql = {k: v.replace("%s", "?") for k, v in self.sql.items()}

    def _time(self, moment: datetime) -> Any:
        if self.sqlite:
            return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return moment

    def _when(self, value: Any) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        self.statements += 1
        return self.conn.execute(sql, params)

    def _number(self, now: datetime) -> str:
        stamp = now.strftime("%Y%m%d%H%M%S%f")[:17]
        stamp = max(stamp, self._last_number[:17])
        while True:
            value, chars = secrets.randbelow(len(_ALPHABET) ** 5), []
            for _ in range(5):
                value, digit = divmod(value, len(_ALPHABET))
                chars.append(_ALPHABET[digit])
            number = stamp + "".join(chars)
            if number != self._last_number:
                self._last_number = number
                return number

    def create(
        self, items: Sequence[tuple[str, int]], customer_id: int, coupon: str | None, actor: Actor
    ) -> str:
        try:
            if self.sqlite:
                self.conn.execute("BEGIN IMMEDIATE")
            number = self._create(items, customer_id, coupon, actor)
            self.commits += 1
            if self.sqlite:
                self.conn.execute("COMMIT")
            else:
                self.conn.commit()
            return number
        except Exception:
            if self.sqlite:
                self.conn.execute("ROLLBACK")
            else:
                self.conn.rollback()
            raise

    def _create(
        self, items: Sequence[tuple[str, int]], customer_id: int, coupon: str | None, actor: Actor
    ) -> str:
        now = datetime.now(UTC)
        at = self._time(now)
        request = {
            "customer_id": customer_id,
            "new_customer": None,
            "items": [[sku, qty] for sku, qty in items],
            "coupon": coupon,
            "manual_discount": None,
            "use_balance": None,
            "use_points": 0,
            "channel": None,
            "note": None,
            "tags": [],
            "special": False,
            "activation": None,
        }
        request_hash = hashlib.sha256(_json(request).encode()).hexdigest()
        customer = self._run(self.sql["customer"], (customer_id,)).fetchone()
        if customer is None:
            raise LookupError(f"no customer {customer_id}")
        if customer[1] is not None:
            raise NotImplementedError("a customer's e-mail goes into the risk context")
        skus = sorted({sku for sku, _ in items})
        marks = ", ".join(["?" if self.sqlite else "%s"] * len(skus))
        products = {
            row[1]: row
            for row in self._run(
                "SELECT id, sku, name, currency, price_minor, specs, stock, active, tiers, "
                f"activation_mode FROM products WHERE sku IN ({marks}) ORDER BY sku{self.lock}",
                skus,
            ).fetchall()
        }
        wanted: dict[str, int] = {}
        for sku, qty in items:
            if sku not in products or not products[sku][7]:
                raise LookupError(f"product {sku} is not for sale")
            if products[sku][8] not in ("[]", None):
                raise NotImplementedError("quantity tiers")
            wanted[sku] = wanted.get(sku, 0) + qty
        for sku in skus:
            stock = products[sku][6]
            if stock is not None:
                if stock < wanted[sku]:
                    raise LookupError(f"product {sku}: out of stock")
                self._run(self.sql["stock"], (wanted[sku], at, products[sku][0]))
        currency = products[items[0][0]][3]
        if any(products[sku][3] != currency for sku, _ in items):
            raise ValueError("an order is in one currency")
        totals = [products[sku][4] * qty for sku, qty in items]
        original = sum(totals)
        adjustments: list[dict[str, Any]] = []
        discount = 0
        coupon_row = None
        if coupon is not None:
            coupon_row = self._run(self.sql["coupon"], (coupon,)).fetchone()
            discount, parts = self._coupon(coupon_row, coupon, customer_id, items, totals, now)
            if discount:
                adjustments.append(
                    {"amount": discount, "kind": "coupon", "label": coupon, "per_line": parts}
                )
        payable = original - discount
        modes = {products[sku][9] for sku, _ in items}
        mode = next((m for m in ("manual", "delayed") if m in modes), "auto")
        number = self._number(now)
        order_id = self._run(
            self.sql["order"],
            (number, customer_id, currency, original, payable, _json(adjustments), at,
             self._time(now + self.timeout), request_hash, mode),
        ).fetchone()[0]  # fmt: skip
        row = "(" + ", ".join(["?" if self.sqlite else "%s"] * 10) + ")"
        params: list[Any] = []
        for position, (sku, qty) in enumerate(items):
            p = products[sku]
            params += [order_id, position, p[0], sku, p[2], p[5], p[4], qty, None, at]
        self._run(
            "INSERT INTO order_lines (order_id, position, product_id, sku, name, specs, "
            "unit_price_minor, quantity, tier_percent_off, order_created_at) VALUES "
            + ", ".join([row] * len(items)),
            params,
        )
        listed = self._run(self.sql["lists"], (str(customer_id), at)).fetchall()
        if listed:
            raise NotImplementedError("a risk-list entry for this customer: a decision to make")
        self._run(self.sql["risk_order"], (order_id, customer_id, at))
        role = actor.role
        self._run(
            self.sql["risk_decision"],
            (number, customer_id, _json(_RISK_CONTEXT), actor.kind.value, actor.id, role, at),
        )
        if coupon_row is not None:
            self._run(self.sql["use_coupon"], (at, coupon_row[0]))
            self._run(
                self.sql["redemption"], (coupon_row[0], order_id, customer_id, discount, at, at)
            )
        amounts = {"original": _text(original, currency)}
        if discount:
            amounts["coupon"] = _text(discount, currency)
        amounts.update(payable=_text(payable, currency), paid=_text(0, currency),
                       refunded=_text(0, currency))  # fmt: skip
        after = _json(
            {
                "status": "pending",
                "customer_id": customer_id,
                "lines": [[sku, qty, _text(products[sku][4], currency)] for sku, qty in items],
                "amounts": amounts,
                "currency": currency,
            }
        )
        nonce = secrets.token_hex(16)
        content = {
            "nonce": nonce, "at": now.isoformat(timespec="microseconds"),
            "actor_kind": actor.kind.value, "actor_id": actor.id, "actor_role": role,
            "entity_kind": "order", "entity_id": number, "action": "order.create",
            "before": None, "after": after, "reason": None,
        }  # fmt: skip
        digest = hmac.new(AUDIT_KEY, _json(content).encode("utf-8"), hashlib.sha256).hexdigest()
        self._run(
            self.sql["audit"],
            (nonce, at, actor.kind.value, actor.id, role, number, after, digest),
        )
        return number

    def _coupon(
        self,
        row: Any,
        code: str,
        customer_id: int,
        items: Sequence[tuple[str, int]],
        totals: Sequence[int],
        now: datetime,
    ) -> tuple[int, list[int]]:
        """The coupon checked and applied: ``(discount, per line)``."""
        if row is None:
            raise LookupError(f"no coupon {code}")
        (coupon_id, kind, currency, percent, amount, cap, minimum, valid_from, valid_until,
         limit_total, limit_customer, skus, active, uses) = row  # fmt: skip
        if limit_total is not None and uses >= limit_total:
            raise LookupError(f"coupon {code} is used up")
        if limit_customer is not None:
            used = self._run(self.sql["coupon_uses"], (coupon_id, customer_id)).fetchone()[0]
            if used >= limit_customer:
                raise LookupError(f"coupon {code} is used up for this customer")
        first, last = self._when(valid_from), self._when(valid_until)
        if not active or (first and now < first) or (last and now >= last):
            raise LookupError(f"coupon {code} is not usable now")
        if currency != CURRENCY:
            raise LookupError(f"coupon {code} is for {currency} orders")
        allowed = set(json.loads(skus))
        eligible = [i for i, (sku, _) in enumerate(items) if not allowed or sku in allowed]
        if not eligible:
            raise LookupError(f"coupon {code} does not apply to this order")
        base = sum(totals[i] for i in eligible)
        if minimum is not None and base < minimum:
            raise LookupError(f"coupon {code} needs a larger order")
        if kind == "percent":
            exact = Decimal(base) * Decimal(percent) / 100
            discount = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        else:
            discount = amount
        if cap is not None:
            discount = min(discount, cap)
        discount = min(discount, base)
        parts = [0] * len(items)
        if discount:
            for i, part in zip(eligible, _allocate(discount, [totals[i] for i in eligible]),
                               strict=True):  # fmt: skip
                parts[i] = part
        return discount, parts


# ---------------------------------------------------------------------------------- measuring
_VARYING = frozenset({"nonce", "entry_hash", "hash", "prev_hash", "seq"})


def probe(core: OrderCore, handlers: Mapping[str, Callable[[str | None], str]]) -> list[str]:
    tables = core.tables.metadata.sorted_tables
    out = ["| case | ordercore writes | baseline | same rows |", "|---|---|---|---|"]
    problems: list[str] = []
    for case, coupon in (("no coupon", None), ("with coupon", "TEN"), ("no coupon", None)):
        found = {}
        for name, create in handlers.items():
            before = wb.snapshot(core.engine, tables)
            number = create(coupon)
            changes = wb.changes(before, wb.snapshot(core.engine, tables))
            found[name] = (changes, wb.masked_changes(changes, _VARYING, {number: "<number>"}))
        (c1, m1), (c2, m2) = found["ordercore"], found["baseline"]
        diff = wb.compare_changes("ordercore", m1, "baseline", m2)
        problems += [f"{case}: {d}" for d in diff]
        out.append(wb.probe_row(case, c1, c2, diff))
    out.append("")
    out.append(
        wb.probe_verdict("create", "ids, times, nonces, hashes and the order number", problems)
    )
    return out


def check_writes(core: OrderCore, numbers: Mapping[str, Sequence[str]]) -> list[str]:
    tb = core.tables
    o, ln, red, ap, al, ro, rd = (tb.orders, tb.order_lines, tb.coupon_redemptions,
                                  tb.audit_pending, tb.audit_log, tb.risk_orders,
                                  tb.risk_decisions)  # fmt: skip
    figures: dict[str, list[int]] = {}
    with core.engine.connect() as conn:
        for name, made in numbers.items():
            ids = select(o.c.id).where(o.c.number.in_(made))

            def count(source: Any, *where: Any) -> int:
                query = select(func.count()).select_from(source).where(*where)
                return int(conn.execute(query).scalar_one())

            figures[name] = [
                count(o, o.c.number.in_(made)),
                count(ln, ln.c.order_id.in_(ids)),
                count(red, red.c.order_id.in_(ids)),
                count(ro, ro.c.order_id.in_(ids)),
                count(rd, rd.c.order_number.in_(made)),
                count(ap, ap.c.entity_id.in_(made)) + count(al, al.c.entity_id.in_(made)),
            ]
    labels = ["orders", "order lines", "coupon uses", "risk contexts", "risk decisions",
              "audit entries"]  # fmt: skip
    out = ["| written | " + " | ".join(numbers) + " |", "|---|" + "---|" * len(numbers)]
    for i, label in enumerate(labels):
        out.append(f"| {label} | " + " | ".join(f"{figures[k][i]:,}" for k in numbers) + " |")
    sealed = core.audit.seal_all()
    out.append("")
    out.append(wb.audit_verdict(core, sealed))
    return out


def run(args: argparse.Namespace, backend: str) -> tuple[str, str]:
    target = wb.target(backend, "orders", "ord", args)
    log(f"{backend}: {target.url} (schema {target.schema})")
    load_start = wb.load_average()
    engine_args = wb.engine_args(backend, args.synchronous_commit)
    core = make_core(target.url, target.schema, **engine_args)
    actor = Actor.operator("bench", "admin")
    raw = relay_conn = None
    counted_core = core
    relay = None
    try:
        core.upgrade()
        customer_id = set_up(core)
        timeout = core.settings.payment_timeout_minutes
        raw = target.connect()
        baseline = Baseline(raw, backend, timeout)

        def ordercore_of(c: OrderCore) -> Callable[[str | None], str]:
            def create(coupon: str | None) -> str:
                return c.orders.create(
                    items=list(ITEMS), actor=actor, customer_id=customer_id, coupon=coupon
                ).number

            return create

        def baseline_of(b: Baseline) -> Callable[[str | None], str]:
            return lambda coupon: b.create(ITEMS, customer_id, coupon, actor)

        handlers = {"ordercore": ordercore_of(core), "baseline": baseline_of(baseline)}
        probed = probe(core, handlers)
        log(f"{backend}: probe: " + probed[-1][:200])

        # statements, commits, round trips: a separate untimed pass
        counted_base = baseline
        if backend == "postgresql":
            relay = wb.RoundTripRelay(target.host, target.port)
            counted_core = make_core(
                target.url_via("127.0.0.1", relay.port), target.schema, **engine_args
            )
            relay_conn = target.connect("127.0.0.1", relay.port)
            counted_base = Baseline(relay_conn, backend, timeout)
        counter = wb.EngineCounter(counted_core.engine)
        counted = {"ordercore": ordercore_of(counted_core), "baseline": baseline_of(counted_base)}
        counts = {name: wb.Counts() for name in counted}
        for name, create in counted.items():
            for i in range(14):  # warm: connections, psycopg prepares on a 5th use
                create("TEN" if i % 2 else None)
            if relay is not None:
                relay.take()
            counted_base.statements = counted_base.commits = 0
            with counter.counting(counts[name]):
                for i in range(args.count_n):
                    create("TEN" if i % 2 else None)
            if name == "baseline":
                counts[name].statements += counted_base.statements
                counts[name].commits += counted_base.commits
            counts[name].calls = args.count_n
            if relay is not None:
                counts[name].round_trips = relay.take()
        counter.remove()
        log(f"{backend}: counted: " + wb.counted(counts))

        timings = {name: wb.Timing(name) for name in handlers}
        made: dict[str, list[str]] = {name: [] for name in handlers}
        profiler = cProfile.Profile() if args.profile else None
        total = args.warmup + args.n
        blocks = [(0, args.warmup, False)] + [
            (s, min(s + args.block, total), True) for s in range(args.warmup, total, args.block)
        ]
        for index, (start, stop, timed) in enumerate(blocks):
            order = list(handlers) if index % 2 == 0 else list(reversed(handlers))
            for name in order:
                create, timing = handlers[name], timings[name]
                cpu = time.process_time()
                for i in range(start, stop):
                    coupon = "TEN" if i % 2 else None
                    began, began_cpu = time.perf_counter(), time.process_time()
                    if profiler is not None and timed and name == "ordercore":
                        profiler.enable()
                    number = create(coupon)
                    if profiler is not None:
                        profiler.disable()
                    if timed:
                        timing.wall.append(time.perf_counter() - began)
                        timing.cpu_calls.append(time.process_time() - began_cpu)
                        made[name].append(number)
                if timed:
                    timing.cpu += time.process_time() - cpu
            if timed and (index % 5 == 0 or stop == total):
                log(
                    f"{backend}: {stop - args.warmup:,}/{args.n:,} — "
                    + ", ".join(f"{t.name} {t.median_ms:.2f} ms" for t in timings.values())
                )
        load_end = wb.load_average()
        if profiler is not None:
            path = args.profile if len(args.backends) == 1 else f"{args.profile}.{backend}"
            profiler.dump_stats(path)
            stats = pstats.Stats(profiler, stream=sys.stderr)
            stats.sort_stats("cumulative").print_stats(40)
        checks = check_writes(core, made)
        ours, base = timings["ordercore"], timings["baseline"]
        ratio = ours.median_ms / base.median_ms
        goal = TARGET_RATIO[backend]
        out = [
            f"### {backend}: {args.n:,} creates each (after {args.warmup} warm-up), blocks of "
            f"{args.block}, alternating; 2 lines (unlimited + limited stock), coupon on every "
            "other order",
            "",
            *wb.timing_table([ours, base], counts, "create"),
            "",
            f"Counts from a separate pass of {args.count_n} creates per path"
            + (
                " through the round-trip relay (BEGIN, COMMIT and pool pre-pings included)."
                if backend == "postgresql"
                else " (round trips: in-process SQLite, none)."
            ),
            "",
            f"Ratio ordercore/baseline (medians): **{ratio:.2f}x** (target ≤ {goal:g}x: "
            f"{'met' if ratio <= goal else 'not met'}); "
            f"on means {ours.mean_ms / base.mean_ms:.2f}x; client CPU (medians) "
            f"{ours.cpu_median_ms / base.cpu_median_ms:.2f}x",
            "",
            f"Load average (1 min) at start / end: {load_start:.1f} / {load_end:.1f} on "
            f"{os.cpu_count()} CPUs",
            "",
            *probed,
            "",
            *checks,
        ]
        summary = (
            f"{backend}: median ordercore {ours.median_ms:.2f} ms, baseline "
            f"{base.median_ms:.2f} ms, ratio {ratio:.2f}x (means {ours.mean_ms:.2f} / "
            f"{base.mean_ms:.2f} ms)"
        )
        return "\n".join(out), summary
    finally:
        for conn in (raw, relay_conn):
            if conn is not None:
                conn.close()
        if counted_core is not core:
            counted_core.close()
        if relay is not None:
            relay.close()
        core.close()
        target.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--n", type=int, default=2000, help="timed creates per path")
    parser.add_argument("--warmup", type=int, default=100, help="untimed creates per path")
    parser.add_argument("--block", type=int, default=100, help="creates per alternation")
    parser.add_argument("--count-n", type=int, default=40, help="creates per path counted")
    parser.add_argument("--db-url", default=None, help="PostgreSQL server URL")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default=None)
    parser.add_argument("--profile", default=None, metavar="FILE", help="cProfile ordercore")
    args = parser.parse_args(argv)
    if args.n < 1 or args.warmup < 0 or args.block < 1 or args.count_n < 1:
        parser.error("--n, --block and --count-n must be positive, --warmup not negative")
    return wb.report(args, run, __file__)


if __name__ == "__main__":
    raise SystemExit(main())
