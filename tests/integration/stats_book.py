"""Order books for the statistics tests: generated with hypothesis, written straight into the
tables (SQLAlchemy Core, no services), and every figure recomputed by brute force in Python
from the same rows — with ``datetime.astimezone`` for local dates, independently of the
offset segments the SQL uses."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st
from sqlalchemy import delete, insert

from ordercore import Money, OrderCore, StatsPeriod

UTC = timezone.utc
ZONES = ["Europe/Paris", "America/New_York", "Asia/Shanghai", "Australia/Lord_Howe", "UTC"]
#: DST changes the times are packed around (Paris, New York, Lord Howe ±30 min, Paris).
ANCHORS = [
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
    datetime(2026, 3, 8, 7, 0, tzinfo=UTC),
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
    datetime(2026, 4, 4, 15, 0, tzinfo=UTC),
    datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    datetime(2026, 11, 1, 6, 0, tzinfo=UTC),
]
#: The local dates of each zone's DST changes in 2026.
CHANGES = {
    "Europe/Paris": [date(2026, 3, 29), date(2026, 10, 25)],
    "America/New_York": [date(2026, 3, 8), date(2026, 11, 1)],
    "Australia/Lord_Howe": [date(2026, 4, 5), date(2026, 10, 4)],
}
CHANNELS = [None, "alipay", "wechat", "balance"]
ATTEMPT_STATUSES = [
    "created",
    "pending",
    "awaiting_review",
    "unknown",
    "succeeded",
    "failed",
    "canceled",
    "expired",
]
REFUND_STATUSES = ["succeeded", "succeeded", "processing", "failed"]
SKUS = {"plan-a": ("Plan A", "CNY"), "plan-b": ("Plan B", "CNY"), "plan-u": ("Plan U", "USD")}
FINAL = {"succeeded", "failed", "canceled", "expired"}
RATE = Decimal("0.0001")


@dataclass
class Line:
    sku: str
    name: str
    unit_minor: int
    quantity: int


@dataclass
class Attempt:
    channel: str
    status: str
    created_at: datetime
    id: int = 0


@dataclass
class RefundRow:
    amount_minor: int
    status: str
    counts: bool
    completed_at: datetime | None


@dataclass
class OrderRow:
    customer_id: int
    currency: str
    created_at: datetime
    paid_at: datetime | None
    channel: str | None
    lines: list[Line]
    refunded_minor: int
    attempts: list[Attempt]
    refunds: list[RefundRow]
    id: int = 0

    @property
    def original_minor(self) -> int:
        return sum(li.unit_minor * li.quantity for li in self.lines)

    @property
    def paid_minor(self) -> int:
        return self.original_minor if self.paid_at is not None else 0


@dataclass
class ProductRow:
    sku: str
    stock: int | None
    threshold: int | None
    active: bool


@dataclass
class Book:
    orders: list[OrderRow]
    products: list[ProductRow] = field(default_factory=list)


_micro = st.integers(0, 999_999)
_EDGE = st.sampled_from(
    [timedelta(0), timedelta(microseconds=-1), timedelta(microseconds=1), timedelta(seconds=-1)]
)


_EDGE = st.sampled_from(
    [
        timedelta(0),
        timedelta(microseconds=-1),
        timedelta(microseconds=1),
        timedelta(seconds=-1),
        timedelta(seconds=1),
    ]
)


@st.composite
def moments(draw: st.DrawFn, period: StatsPeriod | None = None) -> datetime:
    """Times packed where mistakes show: DST changes and local midnights to the
    microsecond, the period's own bounds (and the previous period's), and anywhere near."""
    anchors = list(ANCHORS)
    if period is not None:
        anchors = [a for a in ANCHORS if period.start <= a < period.end] + [
            period.start,
            period.end,
            period.previous().start,
        ]
    anchor = draw(st.sampled_from(anchors))
    kind = draw(st.integers(0, 4))
    if kind == 0:  # the anchor itself, to the microsecond
        return anchor + draw(_EDGE)
    if kind == 1:  # a local midnight near it, in one of the zones
        day = (anchor + timedelta(days=draw(st.integers(-2, 2)))).date()
        zone = ZoneInfo(
            period.tz if period and draw(st.integers(0, 3)) else draw(st.sampled_from(ZONES))
        )
        return datetime.combine(day, datetime.min.time(), zone).astimezone(UTC) + draw(_EDGE)
    if period is not None and kind == 2:  # anywhere in the period
        span = int((period.end - period.start).total_seconds())
        return period.start + timedelta(
            seconds=draw(st.integers(0, span - 1)), microseconds=draw(_micro)
        )
    seconds = draw(st.integers(-3 * 86400, 3 * 86400))
    if kind == 3 and period is None:
        seconds = draw(st.integers(-40 * 86400, 40 * 86400))
    return anchor + timedelta(seconds=seconds, microseconds=draw(_micro))


@st.composite
def orders(draw: st.DrawFn, period: StatsPeriod | None = None) -> OrderRow:
    created = draw(moments(period))
    skus = draw(st.lists(st.sampled_from(sorted(SKUS)), min_size=1, max_size=2, unique=True))
    currency = SKUS[skus[0]][1]
    skus = [s for s in skus if SKUS[s][1] == currency]
    lines = [
        Line(
            s,
            SKUS[s][0] + draw(st.sampled_from(["", " (old name)"])),
            draw(st.sampled_from([0, 1, 999, 3000, 12345])),
            draw(st.integers(1, 4)),
        )
        for s in skus
    ]
    paid_at = None
    if draw(st.integers(0, 3)) > 0:
        delay = draw(st.sampled_from([0, 1, 59, 3600, 86399, 200_000]))
        paid_at = created + timedelta(
            seconds=draw(st.integers(0, delay)), microseconds=draw(_micro)
        )
    channel = draw(st.sampled_from(CHANNELS))
    original = sum(li.unit_minor * li.quantity for li in lines)
    refunded = 0
    refunds: list[RefundRow] = []
    if paid_at is not None and original > 0 and draw(st.booleans()):
        refunded = draw(st.integers(1, original))
        status = draw(st.sampled_from(REFUND_STATUSES))
        done = paid_at + timedelta(seconds=draw(st.integers(0, 10 * 86400)))
        refunds.append(RefundRow(refunded, status, True, done if status == "succeeded" else None))
        if status != "succeeded":
            refunded = 0
    if paid_at is not None and draw(st.integers(0, 4)) == 0:  # a duplicate payment refunded
        refunds.append(RefundRow(original, "succeeded", False, paid_at + timedelta(hours=1)))
    attempts = [
        Attempt(
            draw(st.sampled_from([c for c in CHANNELS if c])),
            draw(st.sampled_from(ATTEMPT_STATUSES)),
            created + timedelta(seconds=draw(st.sampled_from([0, 1, 3600, 3 * 86400]))),
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    return OrderRow(
        customer_id=draw(st.integers(1, 4)),
        currency=currency,
        created_at=created,
        paid_at=paid_at,
        channel=channel if paid_at is not None else None,
        lines=lines,
        refunded_minor=refunded,
        attempts=attempts,
        refunds=refunds,
    )


@st.composite
def books(draw: st.DrawFn, period: StatsPeriod | None = None) -> Book:
    products = [
        ProductRow(
            sku,
            draw(st.one_of(st.none(), st.integers(0, 20))),
            draw(st.one_of(st.none(), st.integers(0, 20))),
            draw(st.booleans()),
        )
        for sku in sorted(SKUS)
    ]
    return Book(draw(st.lists(orders(period), max_size=30)), products)


@st.composite
def periods(draw: st.DrawFn) -> StatsPeriod:
    tz = draw(st.sampled_from(ZONES))
    by = draw(st.sampled_from(["day", "week", "month"]))
    if draw(st.integers(0, 3)) == 0:
        now = draw(moments())
        name = draw(
            st.sampled_from(
                [
                    "today",
                    "yesterday",
                    "this-week",
                    "last-week",
                    "this-month",
                    "last-month",
                    "last-30-days",
                    "this-year",
                ]
            )
        )
        return StatsPeriod.named(name, tz, now, by)
    changes = CHANGES.get(tz, [])
    if changes and draw(st.booleans()):  # a period holding one of the zone's DST changes
        first = draw(st.sampled_from(changes)) - timedelta(days=draw(st.integers(0, 8)))
    else:
        first = draw(st.dates(date(2026, 1, 20), date(2026, 12, 10)))
    days = draw(st.sampled_from([1, 2, 7, 9, 31, 60]))
    last = first + timedelta(days=days - 1)
    return StatsPeriod.between(first.isoformat(), last.isoformat(), tz, by)


# ---------------------------------------------------------------------------- writing
def write(core: OrderCore, book: Book) -> None:
    """Empty the tables and write ``book`` (ids assigned here, in order)."""
    t = core.tables
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with core.engine.begin() as conn:
        for table in (t.refunds, t.payment_attempts, t.order_lines, t.orders, t.products):
            conn.execute(delete(table))
        if not conn.execute(t.customers.select().limit(1)).first():
            conn.execute(
                insert(t.customers),
                [
                    {"id": i, "name": f"c{i}", "identity_verified": False, "created_at": now}
                    for i in range(1, 5)
                ],
            )
        conn.execute(
            insert(t.products),
            [  # (never empty: an empty list would insert one row of defaults)
                {
                    "sku": p.sku,
                    "name": SKUS[p.sku][0],
                    "currency": SKUS[p.sku][1],
                    "price_minor": 100,
                    "specs": "{}",
                    "stock": p.stock,
                    "low_stock_threshold": p.threshold,
                    "active": p.active,
                    "created_at": now,
                    "updated_at": now,
                }
                for p in book.products
            ]
            or [
                {
                    "sku": "none",
                    "name": "-",
                    "currency": "CNY",
                    "price_minor": 0,
                    "specs": "{}",
                    "active": False,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        orders, lines, attempts, refunds = [], [], [], []
        for n, o in enumerate(book.orders, start=1):
            o.id = n
            orders.append(
                {
                    "id": n,
                    "number": f"N{n:05d}",
                    "customer_id": o.customer_id,
                    "currency": o.currency,
                    "status": "pending" if o.paid_at is None else "paid",
                    "original_minor": o.original_minor,
                    "payable_minor": o.original_minor,
                    "paid_minor": o.paid_minor,
                    "refunded_minor": o.refunded_minor,
                    "adjustments": "[]",
                    "channel": o.channel,
                    "special": False,
                    "created_at": o.created_at,
                    "paid_at": o.paid_at,
                    "version": 0,
                }
            )
            lines.extend(
                {
                    "order_id": n,
                    "position": i,
                    "sku": li.sku,
                    "name": li.name,
                    "specs": "{}",
                    "unit_price_minor": li.unit_minor,
                    "quantity": li.quantity,
                    "order_created_at": o.created_at,
                }
                for i, li in enumerate(o.lines)
            )
            for a in o.attempts:
                a.id = len(attempts) + 1
                attempts.append(
                    {
                        "id": a.id,
                        "order_id": n,
                        "channel": a.channel,
                        "method": "page",
                        "out_trade_no": f"T{a.id}",
                        "currency": o.currency,
                        "amount_minor": o.original_minor,
                        "status": a.status,
                        "created_at": a.created_at,
                        "updated_at": a.created_at,
                    }
                )
            for r in o.refunds:
                refunds.append(
                    {
                        "id": len(refunds) + 1,
                        "refund_no": f"R{len(refunds) + 1}",
                        "order_id": n,
                        "currency": o.currency,
                        "amount_minor": r.amount_minor,
                        "destination": "balance",
                        "counts_toward_order": r.counts,
                        "status": r.status,
                        "reason": "test",
                        "requested_by_actor_kind": "operator",
                        "requested_by_actor_id": "alice",
                        "requested_at": o.paid_at,
                        "completed_at": r.completed_at,
                        "updated_at": o.paid_at,
                    }
                )
        for table, rows in (
            (t.orders, orders),
            (t.order_lines, lines),
            (t.payment_attempts, attempts),
            (t.refunds, refunds),
        ):
            if rows:
                conn.execute(insert(table), rows)


# -------------------------------------------------------------------------- brute force
def _rate(part: int, whole: int) -> Decimal | None:
    if whole == 0:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(RATE, rounding=ROUND_HALF_EVEN)


def _growth(now: Any, before: Any) -> Decimal | None:
    if now is None or before is None:
        return None
    a = now.amount if isinstance(now, Money) else Decimal(now)
    b = before.amount if isinstance(before, Money) else Decimal(before)
    return None if b == 0 else ((a - b) / b).quantize(RATE, rounding=ROUND_HALF_EVEN)


class Brute:
    """Every figure, from the book, by definition."""

    def __init__(
        self, book: Book, period: StatsPeriod, currency: str | None, excluded: set[str]
    ) -> None:
        self.book, self.period, self.currency, self.excluded = book, period, currency, excluded
        self.zone = ZoneInfo(period.tz)

    def local(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def within(self, moment: datetime | None, p: StatsPeriod | None = None) -> bool:
        p = p or self.period
        return moment is not None and p.first <= self.local(moment) < p.after

    def ok(self, o: OrderRow) -> bool:
        return (self.currency is None or o.currency == self.currency) and (
            o.channel is None or o.channel not in self.excluded
        )

    def mine(self, o: OrderRow) -> bool:
        return self.currency is None or o.currency == self.currency

    def bucket(self, day: date) -> date:
        p = self.period
        if p.by == "week":
            day = day - timedelta(days=day.weekday())
        elif p.by == "month":
            day = day.replace(day=1)
        return max(day, p.first)

    def sales(self, p: StatsPeriod | None = None) -> dict[str, dict[str, Any]]:
        p = p or self.period
        out: dict[str, dict[str, Any]] = {}
        cur_of = {o.currency for o in self.book.orders if self.mine(o)}
        for cur in sorted(cur_of):
            made = [
                o for o in self.book.orders if o.currency == cur and self.within(o.created_at, p)
            ]
            done = [o for o in made if o.paid_at is not None and self.ok(o)]
            paid = [
                o
                for o in self.book.orders
                if o.currency == cur and self.ok(o) and self.within(o.paid_at, p)
            ]
            refunds = sum(
                r.amount_minor
                for o in self.book.orders
                if o.currency == cur and self.ok(o)
                for r in o.refunds
                if r.status == "succeeded" and r.counts and self.within(r.completed_at, p)
            )
            if not made and not paid and not refunds:
                continue
            gross = sum(o.paid_minor for o in paid)
            per: dict[int, int] = defaultdict(int)
            for o in paid:
                per[o.customer_id] += 1
            start = datetime.combine(p.first, datetime.min.time(), self.zone)
            returning = sum(
                1
                for c in per
                if any(
                    o.customer_id == c
                    and o.currency == cur
                    and self.ok(o)
                    and o.paid_at is not None
                    and o.paid_at < start
                    for o in self.book.orders
                )
            )
            gm = Money.from_minor(gross, cur)
            fig: dict[str, Any] = {
                "orders_created": len(made),
                "orders_paid": len(done),
                "conversion_rate": _rate(len(done), len(made)),
                "paid_orders": len(paid),
                "gross_sales": gm,
                "refunds": Money.from_minor(refunds, cur),
                "net_sales": Money.from_minor(gross - refunds, cur),
                "average_order_value": (
                    Money.rounded(gm.amount / len(paid), cur) if paid else None
                ),
                "paying_customers": len(per),
                "repurchase_rate": _rate(sum(1 for n in per.values() if n >= 2), len(per)),
                "returning_customer_rate": _rate(returning, len(per)),
            }
            if p is self.period:
                buckets: dict[date, list[int]] = {b: [0, 0, 0] for b in p.buckets()}
                for o in made:
                    buckets[self.bucket(self.local(o.created_at))][0] += 1
                for o in done:
                    buckets[self.bucket(self.local(o.created_at))][1] += 1
                for o in paid:
                    assert o.paid_at is not None
                    buckets[self.bucket(self.local(o.paid_at))][2] += o.paid_minor
                fig["trend"] = [
                    (b, v[0], v[1], Money.from_minor(v[2], cur)) for b, v in buckets.items()
                ]
            out[cur] = fig
        return out

    def growth(self) -> dict[str, dict[str, Decimal | None]]:
        now, before = self.sales(), self.sales(self.period.previous())
        return {
            cur: {
                k: _growth(v, before.get(cur, {}).get(k))
                for k, v in fig.items()
                if k not in ("trend", "paying_customers")
            }
            for cur, fig in now.items()
        }

    def payments(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        attempts = [
            (o, a)
            for o in self.book.orders
            for a in o.attempts
            if self.mine(o) and a.channel not in self.excluded and self.within(a.created_at)
        ]
        paid = [o for o in self.book.orders if self.ok(o) and self.within(o.paid_at)]
        for cur in sorted({o.currency for o, _ in attempts} | {o.currency for o in paid}):
            mine_paid = [o for o in paid if o.currency == cur]
            total = sum(o.paid_minor for o in mine_paid)
            channels = {}
            names = {a.channel for o, a in attempts if o.currency == cur} | {
                o.channel for o in mine_paid
            }
            for ch in sorted(names, key=lambda c: c or ""):
                mine = [a for o, a in attempts if o.currency == cur and a.channel == ch]
                last: dict[int, Attempt] = {}
                for o, a in attempts:
                    if (
                        o.currency == cur
                        and a.channel == ch
                        and (o.id not in last or a.id > last[o.id].id)
                    ):
                        last[o.id] = a
                final_last = [a for a in last.values() if a.status in FINAL]
                by_ch = [o for o in mine_paid if o.channel == ch]
                amount = sum(o.paid_minor for o in by_ch)
                channels[ch] = {
                    "attempts": len(mine),
                    "succeeded": sum(a.status == "succeeded" for a in mine),
                    "success_rate": _rate(
                        sum(a.status == "succeeded" for a in mine),
                        sum(a.status in FINAL for a in mine),
                    ),
                    "order_success_rate": _rate(
                        sum(a.status == "succeeded" for a in final_last), len(final_last)
                    ),
                    "paid_orders": len(by_ch),
                    "amount": Money.from_minor(amount, cur),
                    "share": _rate(amount, total),
                    "order_share": _rate(len(by_ch), len(mine_paid)),
                    "time_to_pay": self.ttp(by_ch),
                }
            out[cur] = {
                "channels": channels,
                "paid_orders": len(mine_paid),
                "amount": Money.from_minor(total, cur),
                "time_to_pay": self.ttp(mine_paid),
            }
        return out

    @staticmethod
    def ttp(orders: list[OrderRow]) -> tuple[int, int | None, int | None]:
        secs = sorted(
            (o.paid_at - o.created_at) // timedelta(seconds=1)
            for o in orders
            if o.paid_at is not None
        )
        if not secs:
            return (0, None, None)
        n = len(secs)
        rank = lambda p: -(-p * n // 100)  # noqa: E731 - nearest rank
        return (n, secs[rank(50) - 1], secs[rank(90) - 1])

    def products(self) -> dict[str, dict[str, tuple[str, int, Money]]]:
        out: dict[str, dict[str, list[Any]]] = defaultdict(dict)
        for o in self.book.orders:
            if not (self.ok(o) and self.within(o.paid_at)):
                continue
            for li in o.lines:
                kept = o.paid_minor - o.refunded_minor
                rev = (
                    li.unit_minor * li.quantity * kept // o.original_minor
                    if o.original_minor
                    else 0
                )
                slot = out[o.currency].setdefault(li.sku, [li.name, 0, 0])
                slot[0] = max(slot[0], li.name)
                slot[1] += li.quantity
                slot[2] += rev
        return {
            cur: {s: (v[0], v[1], Money.from_minor(v[2], cur)) for s, v in skus.items()}
            for cur, skus in out.items()
        }

    def low_stock(self) -> list[tuple[str, int, int]]:
        rows = [
            (p.sku, p.stock, p.threshold)
            for p in self.book.products
            if p.active
            and p.stock is not None
            and p.threshold is not None
            and p.stock <= p.threshold
        ]
        return sorted(rows, key=lambda r: (r[1], r[0]))  # type: ignore[arg-type,return-value]
