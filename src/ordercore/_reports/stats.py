"""Statistics: periods, buckets and the result types (pure: no I/O, no clock).

A :class:`StatsPeriod` is a half-open range of *local dates* ``[first, after)`` in an IANA time
zone; its UTC bounds are the first instants of those local days, so a day of a DST change has
23 or 25 hours and a bucket (a day, an ISO week, a calendar month) never splits a local day.

The aggregates are computed in SQL (``adapters/sqlalchemy/stats.py``) and grouped by *local
day number* — days since 1970-01-01 of the local wall time, ``(utc_seconds + offset) div
86400`` — with the zone's offset chosen from the few :meth:`StatsPeriod.offsets` segments of
the range. What is built from those rows (buckets, rates, shares, growth, percentiles) is here.

The result types (:class:`SalesStats`, :class:`PaymentStats`, :class:`ProductStats`) are the
stable API the statistics service returns: frozen, amounts as :class:`~ordercore.Money`, rates
as :class:`~decimal.Decimal` with four places, ``None`` where a rate has no denominator.
``docs/concepts/statistics.md`` defines every figure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final, Literal

from attrs import field, frozen

from ordercore._errors import InvalidField
from ordercore._money import Currency, Money, get_currency
from ordercore._orders.listing import (
    ALL_PERIODS,
    date_range,
    day_start,
    load_zone,
    period_dates,
)

__all__ = [
    "GRANULARITIES",
    "GROWTH_FIGURES",
    "PERIODS",
    "ChannelFigures",
    "Granularity",
    "LowStockItem",
    "PaymentFigures",
    "PaymentStats",
    "ProductFigures",
    "ProductSort",
    "ProductStats",
    "ProductsInCurrency",
    "SalesFigures",
    "SalesStats",
    "StatsPeriod",
    "TimeToPay",
    "TrendBucket",
    "growth",
    "nearest_rank",
    "payments_view",
    "period_view",
    "products_view",
    "rate",
    "sales_view",
    "share",
]

#: The named periods of ``ordercore stats``.
PERIODS: Final = ALL_PERIODS
Granularity = Literal["day", "week", "month"]
GRANULARITIES: Final = ("day", "week", "month")
ProductSort = Literal["quantity", "revenue"]
#: The largest period (in days) a statistic covers: ten years.
MAX_DAYS: Final = 3660
_EPOCH_DAY: Final = date(1970, 1, 1)
_DATE: Final = re.compile(r"\s*\d{4}-\d{2}-\d{2}\s*\Z")
_RATE: Final = Decimal("0.0001")
_CHANNEL: Final = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,31}\Z")


# --------------------------------------------------------------------------------- numbers
def rate(part: int, whole: int) -> Decimal | None:
    """``part / whole`` to four places (half-even), or None when ``whole`` is 0."""
    if whole == 0:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(_RATE, rounding=ROUND_HALF_EVEN)


def share(part: Money, whole: Money) -> Decimal | None:
    """``part / whole`` of one currency, to four places, None when ``whole`` is zero."""
    return rate(part.to_minor(), whole.to_minor())


def growth(
    current: Decimal | int | Money | None, previous: Decimal | int | Money | None
) -> Decimal | None:
    """``(current - previous) / previous`` to four places; None when there is nothing to
    compare with (``previous`` is None or zero, or ``current`` is None)."""
    if current is None or previous is None:
        return None
    now = current.amount if isinstance(current, Money) else Decimal(current)
    before = previous.amount if isinstance(previous, Money) else Decimal(previous)
    if before == 0:
        return None
    return ((now - before) / before).quantize(_RATE, rounding=ROUND_HALF_EVEN)


def nearest_rank(percent: int, count: int) -> int:
    """The 1-based rank of the ``percent``-th percentile among ``count`` sorted values
    (nearest-rank method: the smallest rank ``k`` with ``k * 100 >= percent * count``)."""
    if count < 1 or not 0 < percent <= 100:
        raise ValueError("nearest_rank needs count ≥ 1 and 0 < percent ≤ 100")
    return -(-percent * count // 100)


def _currency(value: str | Currency | None) -> Currency | None:
    return None if value is None else get_currency(value)


def check_channels(names: Iterable[str]) -> tuple[str, ...]:
    """The channel names given to ``exclude_channels``, checked, sorted, without duplicates."""
    if isinstance(names, str):
        names = (names,)
    out = set()
    for name in names:
        if not isinstance(name, str) or not _CHANNEL.match(name):
            raise InvalidField(
                f"channel name {name!r} is not a channel name (lower-case letters, digits, "
                "'_', '.', '-'; at most 32)",
                field="exclude_channel",
                value=name,
            )
        out.add(name)
    return tuple(sorted(out))


# ---------------------------------------------------------------------------------- period
@frozen
class StatsPeriod:
    """``[first, after)``: local dates in the IANA zone ``tz``, bucketed ``by`` day, ISO week
    (Monday) or calendar month. Build one with :meth:`named` or :meth:`between`."""

    first: date
    after: date
    tz: str
    by: Granularity = "day"
    name: str | None = None

    def __attrs_post_init__(self) -> None:
        load_zone(self.tz)
        if self.by not in GRANULARITIES:
            raise InvalidField(
                f"by must be one of {', '.join(GRANULARITIES)}, not {self.by!r}",
                field="by",
                value=self.by,
            )
        if not isinstance(self.first, date) or not isinstance(self.after, date):
            raise InvalidField("a period's bounds must be dates", field="from")
        if isinstance(self.first, datetime) or isinstance(self.after, datetime):
            raise InvalidField("a period's bounds must be dates, not datetimes", field="from")
        if self.after <= self.first:
            raise InvalidField(
                f"the period must end after it starts ({self.first} .. {self.after})",
                field="to",
            )
        if (self.after - self.first).days > MAX_DAYS:
            raise InvalidField(
                f"a period covers at most {MAX_DAYS} days, not {(self.after - self.first).days}",
                field="to",
            )

    @classmethod
    def named(cls, period: str, tz: str, now: datetime, by: Granularity = "day") -> StatsPeriod:
        """The named ``period`` (:data:`PERIODS`) around ``now``'s local date in ``tz``."""
        zone = load_zone(tz)
        if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
            raise InvalidField("now must be a timezone-aware datetime", field="now")
        first, after = period_dates(period, now.astimezone(zone).date())
        return cls(first, after, tz, by, period)

    @classmethod
    def between(cls, from_text: str, to_text: str, tz: str, by: Granularity = "day") -> StatsPeriod:
        """``--from D --to D``: whole local dates, both included."""
        for name, text in (("from", from_text), ("to", to_text)):
            if not isinstance(text, str) or not _DATE.match(text):
                raise InvalidField(
                    f"{name} must be a date (YYYY-MM-DD): a period is made of whole local days",
                    field=name,
                    value=text,
                )
        date_range(from_text, to_text, tz)  # the checks (real dates, not backwards)
        first = date.fromisoformat(from_text.strip())
        last = date.fromisoformat(to_text.strip())
        return cls(first, last + timedelta(days=1), tz, by)

    @property
    def days(self) -> int:
        return (self.after - self.first).days

    @property
    def start(self) -> datetime:
        """The first instant of the period, in UTC."""
        return day_start(self.first, load_zone(self.tz))

    @property
    def end(self) -> datetime:
        """The first instant after the period, in UTC."""
        return day_start(self.after, load_zone(self.tz))

    def previous(self) -> StatsPeriod:
        """The period of the same number of days that ends where this one starts."""
        return StatsPeriod(
            self.first - timedelta(days=self.days), self.first, self.tz, self.by, None
        )

    def offsets(self) -> tuple[tuple[datetime, int], ...]:
        """The zone's UTC offset (seconds) over the period: ``((since, offset), ...)``, the
        first ``since`` being :attr:`start`. A local day number is
        ``(utc_seconds + offset) // 86400``."""
        zone = load_zone(self.tz)

        def offset(moment: datetime) -> int:
            delta = moment.astimezone(zone).utcoffset()
            return 0 if delta is None else int(delta.total_seconds())

        out = [(self.start, offset(self.start))]
        day = self.first
        while day < self.after:
            lo, hi = day_start(day, zone), day_start(day + timedelta(days=1), zone)
            if offset(hi) != out[-1][1]:
                # the change is within this local day: find its instant to the second
                a, b = int(lo.timestamp()), int(hi.timestamp())
                while b - a > 1:
                    mid = (a + b) // 2
                    when = datetime.fromtimestamp(mid, timezone.utc)
                    if offset(when) == out[-1][1]:
                        a = mid
                    else:
                        b = mid
                moment = datetime.fromtimestamp(b, timezone.utc)
                out.append((moment, offset(moment)))
            day += timedelta(days=1)
        return tuple(out)

    def bucket_of(self, day: date) -> date:
        """The start of the bucket holding local ``day`` (never before :attr:`first`)."""
        if self.by == "week":
            start = day - timedelta(days=day.weekday())
        elif self.by == "month":
            start = day.replace(day=1)
        else:
            start = day
        return max(start, self.first)

    def buckets(self) -> tuple[date, ...]:
        """The start of every bucket of the period, in order."""
        out: list[date] = []
        day = self.first
        while day < self.after:
            b = self.bucket_of(day)
            if not out or out[-1] != b:
                out.append(b)
            day += timedelta(days=1)
        return tuple(out)

    def contains(self, day_number: int) -> bool:
        return self.first <= local_date(day_number) < self.after


def local_date(day_number: int) -> date:
    """The date of a local day number (days since 1970-01-01)."""
    return _EPOCH_DAY + timedelta(days=int(day_number))


# ------------------------------------------------------------------------------ sales
#: The figures :attr:`SalesFigures.growth` compares, by name.
GROWTH_FIGURES: Final = (
    "orders_created",
    "orders_paid",
    "conversion_rate",
    "paid_orders",
    "gross_sales",
    "refunds",
    "net_sales",
    "average_order_value",
    "repurchase_rate",
    "returning_customer_rate",
)


@frozen
class TrendBucket:
    """One bucket of the sales trend: orders created in it, of those the ones paid, and the
    amount paid in it."""

    start: date
    orders_created: int
    orders_paid: int
    gross_sales: Money


@frozen
class SalesFigures:
    """The sales of one currency over a period (definitions: docs/concepts/statistics.md).

    ``orders_created``/``orders_paid``/``conversion_rate`` follow the creation cohort;
    ``gross_sales``, ``paid_orders`` and ``average_order_value`` the payment time;
    ``refunds`` the refund time. ``growth`` maps each figure's name to its change against the
    previous period of the same length.
    """

    currency: Currency
    orders_created: int
    orders_paid: int
    conversion_rate: Decimal | None
    paid_orders: int
    gross_sales: Money
    refunds: Money
    net_sales: Money
    average_order_value: Money | None
    paying_customers: int
    repurchase_rate: Decimal | None
    returning_customer_rate: Decimal | None
    growth: Mapping[str, Decimal | None] = field(factory=dict)
    trend: tuple[TrendBucket, ...] = ()

    def compared_with(self, previous: SalesFigures | None) -> dict[str, Decimal | None]:
        """The growth of every figure in :data:`GROWTH_FIGURES` against ``previous``."""
        return {
            name: growth(getattr(self, name), None if previous is None else getattr(previous, name))
            for name in GROWTH_FIGURES
        }


@frozen
class SalesStats:
    """``StatsService.sales``: one :class:`SalesFigures` per currency, by currency code."""

    period: StatsPeriod
    excluded_channels: tuple[str, ...]
    currencies: tuple[SalesFigures, ...]

    def currency(self, code: str) -> SalesFigures | None:
        return next((c for c in self.currencies if c.currency.code == code), None)


# ---------------------------------------------------------------------------- payments
@frozen
class TimeToPay:
    """Seconds from order creation to payment (whole seconds, nearest-rank percentiles) over
    ``orders`` paid orders; None without any."""

    orders: int
    p50_seconds: int | None
    p90_seconds: int | None


@frozen
class ChannelFigures:
    """One channel's payments of one currency.

    ``attempts`` started in the period; ``success_rate = succeeded / final_attempts`` (an
    attempt still waiting for the payer, a reviewer or an answer is not final);
    ``order_success_rate``: of the orders whose last attempt on this channel in the period is
    final, the share whose last attempt succeeded. ``paid_orders``/``amount``: orders paid
    through the channel in the period; ``share``/``order_share`` of the currency's totals.
    ``channel`` is None for the orders paid by hand (no channel).
    """

    channel: str | None
    attempts: int
    succeeded: int
    final_attempts: int
    success_rate: Decimal | None
    order_success_rate: Decimal | None
    paid_orders: int
    amount: Money
    share: Decimal | None
    order_share: Decimal | None
    time_to_pay: TimeToPay


@frozen
class PaymentFigures:
    """The payments of one currency: every channel (sorted by name) and the totals."""

    currency: Currency
    channels: tuple[ChannelFigures, ...]
    paid_orders: int
    amount: Money
    time_to_pay: TimeToPay


@frozen
class PaymentStats:
    """``StatsService.payments``: one :class:`PaymentFigures` per currency."""

    period: StatsPeriod
    excluded_channels: tuple[str, ...]
    currencies: tuple[PaymentFigures, ...]

    def currency(self, code: str) -> PaymentFigures | None:
        return next((c for c in self.currencies if c.currency.code == code), None)


# ---------------------------------------------------------------------------- products
@frozen
class ProductFigures:
    """One product (by sku) sold in the period: quantity, revenue net of refunds allocated
    to its lines, and its share of the currency's product revenue."""

    sku: str
    name: str
    quantity: int
    revenue: Money
    revenue_share: Decimal | None


@frozen
class ProductsInCurrency:
    """The best sellers of one currency (``products``, sorted) and the revenue of all its
    products (``revenue``, not only of those listed)."""

    currency: Currency
    products: tuple[ProductFigures, ...]
    revenue: Money
    quantity: int


@frozen
class LowStockItem:
    """A product whose stock is at or below its ``low_stock_threshold``."""

    sku: str
    name: str
    stock: int
    threshold: int


@frozen
class ProductStats:
    """``StatsService.products``: the best sellers per currency and the low-stock alert."""

    period: StatsPeriod
    excluded_channels: tuple[str, ...]
    sort: ProductSort
    currencies: tuple[ProductsInCurrency, ...]
    low_stock: tuple[LowStockItem, ...]

    def currency(self, code: str) -> ProductsInCurrency | None:
        return next((c for c in self.currencies if c.currency.code == code), None)


# ------------------------------------------------------------------------ from the rows
def build_trend(
    period: StatsPeriod,
    currency: Currency,
    created: Mapping[int, tuple[int, int]],
    paid: Mapping[int, int],
) -> tuple[TrendBucket, ...]:
    """Roll per-local-day rows up into the period's buckets: ``created`` maps a day number
    to ``(orders created, of those paid)``, ``paid`` a day number to the minor units paid."""
    starts = period.buckets()
    counts = {b: [0, 0, 0] for b in starts}
    for day, (made, done) in created.items():
        slot = counts[period.bucket_of(local_date(day))]
        slot[0] += made
        slot[1] += done
    for day, minor in paid.items():
        counts[period.bucket_of(local_date(day))][2] += minor
    return tuple(
        TrendBucket(b, counts[b][0], counts[b][1], Money.from_minor(counts[b][2], currency))
        for b in starts
    )


def time_to_pay(count: int, ranked: Mapping[int, int]) -> TimeToPay:
    """p50 and p90 from ``ranked`` (1-based rank → seconds) of ``count`` sorted values."""
    if count == 0:
        return TimeToPay(0, None, None)
    return TimeToPay(count, ranked[nearest_rank(50, count)], ranked[nearest_rank(90, count)])


def average(total: Money, count: int) -> Money | None:
    """``total / count`` rounded to the currency (its rounding rule), None when ``count`` is 0."""
    if count == 0:
        return None
    return Money.rounded(total.amount / count, total.currency)


def sort_products(items: Sequence[ProductFigures], sort: ProductSort) -> tuple[ProductFigures, ...]:
    """Best sellers first: by quantity (then revenue) or by revenue (then quantity); ties by
    sku."""
    if sort == "revenue":
        return tuple(sorted(items, key=lambda p: (-p.revenue.to_minor(), -p.quantity, p.sku)))
    return tuple(sorted(items, key=lambda p: (-p.quantity, -p.revenue.to_minor(), p.sku)))


def check_sort(sort: str) -> ProductSort:
    if sort == "quantity":
        return "quantity"
    if sort == "revenue":
        return "revenue"
    raise InvalidField(f"sort must be quantity or revenue, not {sort!r}", field="sort", value=sort)


def check_currency(code: str | None) -> Currency | None:
    """A ``--currency`` filter: a known currency code, or None for every currency."""
    return _currency(code)


# ----------------------------------------------------------------------------- JSON views
def _amount(value: Money | None) -> str | None:
    return None if value is None else f"{value.amount:f}"


def _rate_text(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.4f}"


def period_view(period: StatsPeriod) -> dict[str, object]:
    """The period as JSON: local dates (``to`` inclusive), zone, bucket size, UTC bounds."""
    return {
        "name": period.name,
        "from": period.first.isoformat(),
        "to": (period.after - timedelta(days=1)).isoformat(),
        "tz": period.tz,
        "by": period.by,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
    }


def sales_view(stats: SalesStats) -> dict[str, object]:
    """``ordercore stats sales --json``: amounts as decimal strings, rates with 4 places."""
    currencies = []
    for f in stats.currencies:
        currencies.append(
            {
                "currency": f.currency.code,
                "orders_created": f.orders_created,
                "orders_paid": f.orders_paid,
                "conversion_rate": _rate_text(f.conversion_rate),
                "paid_orders": f.paid_orders,
                "gross_sales": _amount(f.gross_sales),
                "refunds": _amount(f.refunds),
                "net_sales": _amount(f.net_sales),
                "average_order_value": _amount(f.average_order_value),
                "paying_customers": f.paying_customers,
                "repurchase_rate": _rate_text(f.repurchase_rate),
                "returning_customer_rate": _rate_text(f.returning_customer_rate),
                "growth": {k: _rate_text(v) for k, v in f.growth.items()},
                "trend": [
                    {
                        "start": b.start.isoformat(),
                        "orders_created": b.orders_created,
                        "orders_paid": b.orders_paid,
                        "gross_sales": _amount(b.gross_sales),
                    }
                    for b in f.trend
                ],
            }
        )
    return {
        "period": period_view(stats.period),
        "excluded_channels": list(stats.excluded_channels),
        "currencies": currencies,
    }


def _ttp_view(t: TimeToPay) -> dict[str, object]:
    return {"orders": t.orders, "p50_seconds": t.p50_seconds, "p90_seconds": t.p90_seconds}


def payments_view(stats: PaymentStats) -> dict[str, object]:
    """``ordercore stats payments --json``."""
    return {
        "period": period_view(stats.period),
        "excluded_channels": list(stats.excluded_channels),
        "currencies": [
            {
                "currency": f.currency.code,
                "paid_orders": f.paid_orders,
                "amount": _amount(f.amount),
                "time_to_pay": _ttp_view(f.time_to_pay),
                "channels": [
                    {
                        "channel": c.channel,
                        "attempts": c.attempts,
                        "succeeded": c.succeeded,
                        "final_attempts": c.final_attempts,
                        "success_rate": _rate_text(c.success_rate),
                        "order_success_rate": _rate_text(c.order_success_rate),
                        "paid_orders": c.paid_orders,
                        "amount": _amount(c.amount),
                        "share": _rate_text(c.share),
                        "order_share": _rate_text(c.order_share),
                        "time_to_pay": _ttp_view(c.time_to_pay),
                    }
                    for c in f.channels
                ],
            }
            for f in stats.currencies
        ],
    }


def products_view(stats: ProductStats) -> dict[str, object]:
    """``ordercore stats products --json``."""
    return {
        "period": period_view(stats.period),
        "excluded_channels": list(stats.excluded_channels),
        "sort": stats.sort,
        "currencies": [
            {
                "currency": f.currency.code,
                "quantity": f.quantity,
                "revenue": _amount(f.revenue),
                "products": [
                    {
                        "sku": p.sku,
                        "name": p.name,
                        "quantity": p.quantity,
                        "revenue": _amount(p.revenue),
                        "revenue_share": _rate_text(p.revenue_share),
                    }
                    for p in f.products
                ],
            }
            for f in stats.currencies
        ],
        "low_stock": [
            {"sku": i.sku, "name": i.name, "stock": i.stock, "threshold": i.threshold}
            for i in stats.low_stock
        ],
    }
