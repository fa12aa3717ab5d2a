"""The statistics use cases: ``core.stats.sales``, ``.payments`` and ``.products``.

Each method reads through the *reporting* engine (``Settings.reporting_database_url``, a read
replica, or the main database when it is not set), in one read-only transaction, by running
the SQL aggregates of ``adapters/sqlalchemy/stats.py``; nothing is written and no order is
loaded into Python. A refused permission (``stats.view``) is recorded in the main database
like every refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import evolve

from ordercore._actor import Actor
from ordercore._context import Service, check_limit
from ordercore._errors import PermissionDenied
from ordercore._money import Currency, Money, get_currency
from ordercore._permissions import Permission

from .stats import (
    ChannelFigures,
    LowStockItem,
    PaymentFigures,
    PaymentStats,
    ProductFigures,
    ProductsInCurrency,
    ProductSort,
    ProductStats,
    SalesFigures,
    SalesStats,
    StatsPeriod,
    average,
    build_trend,
    check_channels,
    check_currency,
    check_sort,
    rate,
    share,
    sort_products,
    time_to_pay,
)

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.stats import ReportingReader, SalesRows

__all__ = ["StatsService"]

T = TypeVar("T")


class StatsService(Service):
    """Sales, payments and products over a :class:`StatsPeriod`, per currency."""

    # -- plumbing -------------------------------------------------------------------------
    def _report(self, actor: Actor | None, what: str, work: Callable[[ReportingReader], T]) -> T:
        if actor is not None:
            try:
                self._check(actor, Permission.STATS_VIEW, f"stats:{what}")
            except PermissionDenied as exc:
                self._record_refusal(exc, self._now())
                raise
        with self._ctx.reporting_reader() as reader:
            return work(reader)

    # -- sales ----------------------------------------------------------------------------
    def sales(
        self,
        period: StatsPeriod,
        *,
        currency: str | Currency | None = None,
        exclude_channels: Iterable[str] = (),
        actor: Actor | None = None,
    ) -> SalesStats:
        """Orders, conversion, gross and net sales, average order value, repurchase and
        returning-customer rates, each with its growth against the previous period of the
        same length, and the trend bucketed ``period.by``."""
        cur = check_currency(currency.code if isinstance(currency, Currency) else currency)
        excluded = check_channels(exclude_channels)
        code = None if cur is None else cur.code
        before = period.previous()

        def work(r: ReportingReader) -> SalesStats:
            then, now = r.sales(
                [
                    (before.start, before.end, before.offsets()),
                    (period.start, period.end, period.offsets()),
                ],
                currency=code,
                excluded=excluded,
            )
            previous = {
                c: _sales(before, get_currency(c), then, trend=False) for c in then.currencies()
            }
            figures = []
            for c in now.currencies():
                fig = _sales(period, get_currency(c), now, trend=True)
                figures.append(_with_growth(fig, previous.get(c)))
            return SalesStats(period, excluded, tuple(figures))

        return self._report(actor, "sales", work)

    # -- payments -------------------------------------------------------------------------
    def payments(
        self,
        period: StatsPeriod,
        *,
        currency: str | Currency | None = None,
        exclude_channels: Iterable[str] = (),
        actor: Actor | None = None,
    ) -> PaymentStats:
        """Per channel: attempts and success rates, paid orders and amounts with their
        shares, and the time from order to payment (p50, p90), per currency."""
        cur = check_currency(currency.code if isinstance(currency, Currency) else currency)
        excluded = check_channels(exclude_channels)
        code = None if cur is None else cur.code

        def work(r: ReportingReader) -> PaymentStats:
            rows = r.payments(period.start, period.end, currency=code, excluded=excluded)
            return PaymentStats(period, excluded, _payments(rows))

        return self._report(actor, "payments", work)

    # -- products -------------------------------------------------------------------------
    def products(
        self,
        period: StatsPeriod,
        *,
        currency: str | Currency | None = None,
        exclude_channels: Iterable[str] = (),
        sort: ProductSort | str = "quantity",
        limit: int | None = None,
        actor: Actor | None = None,
    ) -> ProductStats:
        """Best sellers (quantity and revenue net of allocated refunds, revenue share) per
        currency, the first ``limit`` by ``sort``; and every low-stock product."""
        cur = check_currency(currency.code if isinstance(currency, Currency) else currency)
        excluded = check_channels(exclude_channels)
        order = check_sort(sort)
        if limit is not None:
            check_limit(limit)
        code = None if cur is None else cur.code

        def work(r: ReportingReader) -> ProductStats:
            rows = r.products(period.start, period.end, currency=code, excluded=excluded)
            stock = tuple(LowStockItem(*row) for row in r.low_stock())
            return ProductStats(period, excluded, order, _products(rows, order, limit), stock)

        return self._report(actor, "products", work)


# ----------------------------------------------------------------------------- builders
def _sales(period: StatsPeriod, cur: Currency, rows: SalesRows, *, trend: bool) -> SalesFigures:
    created = rows.created.get(cur.code, {})
    paid = rows.paid.get(cur.code, {})
    made = sum(n for n, _ in created.values())
    done = sum(p for _, p in created.values())
    paid_orders = sum(n for n, _ in paid.values())
    gross = Money.from_minor(sum(m for _, m in paid.values()), cur)
    refunds = Money.from_minor(rows.refunds.get(cur.code, 0), cur)
    paying, again, returning = rows.customers.get(cur.code, (0, 0, 0))
    return SalesFigures(
        currency=cur,
        orders_created=made,
        orders_paid=done,
        conversion_rate=rate(done, made),
        paid_orders=paid_orders,
        gross_sales=gross,
        refunds=refunds,
        net_sales=gross - refunds,
        average_order_value=average(gross, paid_orders),
        paying_customers=paying,
        repurchase_rate=rate(again, paying),
        returning_customer_rate=rate(returning, paying),
        trend=(
            build_trend(period, cur, created, {d: m for d, (_, m) in paid.items()}) if trend else ()
        ),
    )


def _with_growth(fig: SalesFigures, previous: SalesFigures | None) -> SalesFigures:
    return evolve(fig, growth=fig.compared_with(previous))


def _payments(rows: dict[str, Any]) -> tuple[PaymentFigures, ...]:
    attempts: dict[tuple[str, str], tuple[int, int, int]] = rows["attempts"]
    orders: dict[tuple[str, str], tuple[int, int]] = rows["orders"]
    paid: dict[tuple[str, str | None], tuple[int, int]] = rows["paid"]
    ranks: dict[tuple[str, str | None], tuple[int, dict[int, int]]] = rows["ranks"]
    overall: dict[str, tuple[int, dict[int, int]]] = rows["overall"]
    codes = sorted({c for c, _ in attempts} | {c for c, _ in paid})
    out = []
    for code in codes:
        cur = get_currency(code)
        total_orders = sum(n for (c, _), (n, _m) in paid.items() if c == code)
        total = Money.from_minor(sum(m for (c, _), (_n, m) in paid.items() if c == code), cur)
        names = sorted(
            {ch for c, ch in attempts if c == code} | {ch or "" for c, ch in paid if c == code}
        )
        channels = []
        for name in names:
            key: str | None = name or None
            n, ok, final = attempts.get((code, name), (0, 0, 0))
            o_final, o_ok = orders.get((code, name), (0, 0))
            p_n, p_minor = paid.get((code, key), (0, 0))
            amount = Money.from_minor(p_minor, cur)
            count, ranked = ranks.get((code, key), (0, {}))
            channels.append(
                ChannelFigures(
                    channel=key,
                    attempts=n,
                    succeeded=ok,
                    final_attempts=final,
                    success_rate=rate(ok, final),
                    order_success_rate=rate(o_ok, o_final),
                    paid_orders=p_n,
                    amount=amount,
                    share=share(amount, total),
                    order_share=rate(p_n, total_orders),
                    time_to_pay=time_to_pay(count, ranked),
                )
            )
        count, ranked = overall.get(code, (0, {}))
        out.append(
            PaymentFigures(cur, tuple(channels), total_orders, total, time_to_pay(count, ranked))
        )
    return tuple(out)


def _products(
    rows: list[tuple[str, str, str, int, int]], sort: ProductSort, limit: int | None
) -> tuple[ProductsInCurrency, ...]:
    out = []
    for code in sorted({r[0] for r in rows}):
        cur = get_currency(code)
        mine = [r for r in rows if r[0] == code]
        total = Money.from_minor(sum(r[4] for r in mine), cur)
        items = [
            ProductFigures(
                sku=sku,
                name=name,
                quantity=q,
                revenue=Money.from_minor(rev, cur),
                revenue_share=share(Money.from_minor(rev, cur), total),
            )
            for _c, sku, name, q, rev in mine
        ]
        ranked = sort_products(items, sort)
        out.append(
            ProductsInCurrency(
                cur,
                ranked if limit is None else ranked[:limit],
                total,
                sum(p.quantity for p in items),
            )
        )
    return tuple(out)
