"""Statistics against a brute-force computation over the same rows, on every backend.

Hypothesis writes small order books whose times are packed around DST changes (Paris, New
York, Lord Howe's half-hour change) and local midnights, then asks for a random period (named
or ``--from/--to``), time zone, bucket size, currency and excluded channels; every figure of
``core.stats.sales``, ``.payments`` and ``.products`` must equal the one computed in Python by
definition (``stats_book.Brute``), which finds local dates with ``datetime.astimezone``.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from helpers import Backend, FakeClock, audit_rows, count_rows
from ordercore import (
    Actor,
    InvalidField,
    Money,
    OrderCore,
    PermissionDenied,
    StatsPeriod,
    UnknownCurrency,
)
from ordercore.adapters.sqlalchemy import stats as stats_adapter
from ordercore.adapters.sqlalchemy.engine import READ_ONLY

from .stats_book import Book, Brute, books, periods, write


@pytest.fixture
def stats_core(backend: Backend) -> OrderCore:
    return backend.core(FakeClock())


def check(
    core: OrderCore, book: Book, period: StatsPeriod, currency: str | None, excluded: set[str]
) -> None:
    brute = Brute(book, period, currency, excluded)
    kw = {"currency": currency, "exclude_channels": sorted(excluded)}

    # -- sales
    sales = core.stats.sales(period, **kw)  # type: ignore[arg-type]
    want = brute.sales()
    assert [f.currency.code for f in sales.currencies] == sorted(want)
    growth = brute.growth()
    for fig in sales.currencies:
        w = want[fig.currency.code]
        for name, value in w.items():
            if name == "trend":
                got = [(b.start, b.orders_created, b.orders_paid, b.gross_sales) for b in fig.trend]
                assert got == value, name
            else:
                assert getattr(fig, name) == value, name
        assert dict(fig.growth) == growth[fig.currency.code]

    # -- payments
    payments = core.stats.payments(period, **kw)  # type: ignore[arg-type]
    want_p = brute.payments()
    assert [f.currency.code for f in payments.currencies] == sorted(want_p)
    for pf in payments.currencies:
        w = want_p[pf.currency.code]
        assert pf.paid_orders == w["paid_orders"]
        assert pf.amount == w["amount"]
        ttp = pf.time_to_pay
        assert (ttp.orders, ttp.p50_seconds, ttp.p90_seconds) == w["time_to_pay"]
        assert [c.channel for c in pf.channels] == list(w["channels"])
        for ch in pf.channels:
            wc = w["channels"][ch.channel]
            for name in (
                "attempts",
                "succeeded",
                "success_rate",
                "order_success_rate",
                "paid_orders",
                "amount",
                "share",
                "order_share",
            ):
                assert getattr(ch, name) == wc[name], (ch.channel, name)
            t = ch.time_to_pay
            assert (t.orders, t.p50_seconds, t.p90_seconds) == wc["time_to_pay"]

    # -- products
    for sort in ("quantity", "revenue"):
        products = core.stats.products(period, sort=sort, **kw)  # type: ignore[arg-type]
        want_r = brute.products()
        assert [c.currency.code for c in products.currencies] == sorted(want_r)
        for pc in products.currencies:
            w_r = want_r[pc.currency.code]
            got = {p.sku: (p.name, p.quantity, p.revenue) for p in pc.products}
            assert got == w_r
            assert pc.revenue.to_minor() == sum(v[2].to_minor() for v in w_r.values())
            keys = [
                (-p.quantity, -p.revenue.to_minor(), p.sku)
                if sort == "quantity"
                else (-p.revenue.to_minor(), -p.quantity, p.sku)
                for p in pc.products
            ]
            assert keys == sorted(keys)
            for p in pc.products:
                total = pc.revenue.to_minor()
                expected = None if total == 0 else brute_rate(p.revenue.to_minor(), total)
                assert p.revenue_share == expected
        assert [(i.sku, i.stock, i.threshold) for i in products.low_stock] == brute.low_stock()


def brute_rate(part: int, whole: int) -> object:
    from .stats_book import _rate

    return _rate(part, whole)


@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    max_examples=20,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking on a server is slow
)
@given(
    scenario=periods().flatmap(lambda p: st.tuples(st.just(p), books(p))),
    currency=st.sampled_from([None, None, "CNY", "USD"]),
    excluded=st.sets(st.sampled_from(["alipay", "wechat", "balance"]), max_size=2),
)
def test_every_figure_matches_brute_force(
    stats_core: OrderCore,
    scenario: tuple[StatsPeriod, Book],
    currency: str | None,
    excluded: set[str],
) -> None:
    period, book = scenario
    write(stats_core, book)
    check(stats_core, book, period, currency, excluded)


@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    max_examples=10,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    scenario=periods().flatmap(lambda p: st.tuples(st.just(p), books(p))),
    currency=st.sampled_from([None, "CNY"]),
    excluded=st.sets(st.sampled_from(["alipay", "wechat", "balance"]), max_size=2),
)
def test_paying_customers_are_the_same_probed_or_scanned(
    stats_core: OrderCore,
    monkeypatch: pytest.MonkeyPatch,
    scenario: tuple[StatsPeriod, Book],
    currency: str | None,
    excluded: set[str],
) -> None:
    """The two ways of telling returning customers (a probe per paying customer, or one scan
    by customer; ``auto`` picks one by size) give the brute-force figures."""
    period, book = scenario
    write(stats_core, book)
    brute = Brute(book, period, currency, excluded)
    want = brute.sales()
    names = ("paying_customers", "repurchase_rate", "returning_customer_rate")
    for strategy in ("probe", "scan"):
        monkeypatch.setattr(stats_adapter, "CUSTOMER_STRATEGY", strategy)
        sales = stats_core.stats.sales(period, currency=currency, exclude_channels=sorted(excluded))
        got = {f.currency.code: {n: getattr(f, n) for n in names} for f in sales.currencies}
        assert got == {c: {n: w[n] for n in names} for c, w in want.items()}, strategy
        growth = brute.growth()
        for fig in sales.currencies:
            assert dict(fig.growth) == growth[fig.currency.code], strategy


def test_empty_book_gives_empty_statistics(stats_core: OrderCore) -> None:
    period = StatsPeriod.between("2026-03-01", "2026-03-31", "Europe/Paris", "week")
    assert stats_core.stats.sales(period).currencies == ()
    assert stats_core.stats.payments(period).currencies == ()
    products = stats_core.stats.products(period)
    assert products.currencies == ()
    assert products.low_stock == ()


def test_refusals_are_typed_and_write_nothing_but_the_refusal(stats_core: OrderCore) -> None:
    period = StatsPeriod.between("2026-03-01", "2026-03-31", "Europe/Paris")
    before = count_rows(stats_core, stats_core.tables.audit_log)
    with pytest.raises(UnknownCurrency):
        stats_core.stats.sales(period, currency="XXX")
    with pytest.raises(InvalidField, match="channel name"):
        stats_core.stats.payments(period, exclude_channels=["Bad Name"])
    with pytest.raises(InvalidField, match="sort"):
        stats_core.stats.products(period, sort="price")
    with pytest.raises(InvalidField, match="limit"):
        stats_core.stats.products(period, limit=0)
    assert count_rows(stats_core, stats_core.tables.audit_log) == before
    with pytest.raises(PermissionDenied):
        stats_core.stats.sales(period, actor=Actor.operator("bob", "support"))
    rows = audit_rows(stats_core)
    assert len(rows) == before + 1
    assert rows[-1]["action"] == "permission.denied"
    assert rows[-1]["entity_id"] == "stats:sales"
    assert stats_core.stats.sales(period, actor=Actor.operator("fay", "finance")).currencies == ()


def test_a_dst_day_is_one_bucket_of_23_or_25_hours(stats_core: OrderCore) -> None:
    """Paris, spring forward on 2026-03-29 (23 hours) and fall back on 2026-10-25 (25 hours):
    orders at the first and last microsecond of those local days land in them."""
    from datetime import datetime, timedelta, timezone

    from .stats_book import Line, OrderRow

    paris = ZoneInfo("Europe/Paris")

    def local(*args: int) -> datetime:
        return datetime(*args, tzinfo=paris).astimezone(timezone.utc)

    micro = timedelta(microseconds=1)
    times = [
        local(2026, 3, 29, 0, 0),  # first instant of the 23-hour day (UTC+1)
        local(2026, 3, 30, 0, 0) - micro,  # its last instant (UTC+2): 21:59:59.999999 UTC
        local(2026, 3, 30, 0, 0),
        local(2026, 10, 25, 0, 0),  # first instant of the 25-hour day (UTC+2)
        local(2026, 10, 26, 0, 0) - micro,  # its last (UTC+1): 22:59:59.999999 UTC
        local(2026, 10, 26, 0, 0),
    ]
    book = Book(
        [
            OrderRow(
                1,
                "CNY",
                t,
                t + timedelta(seconds=5),
                "alipay",
                [Line("plan-a", "A", 100, 1)],
                0,
                [],
                [],
            )
            for t in times
        ]
    )
    write(stats_core, book)
    for first, last in (("2026-03-29", "2026-03-30"), ("2026-10-25", "2026-10-26")):
        period = StatsPeriod.between(first, last, "Europe/Paris", "day")
        (fig,) = stats_core.stats.sales(period).currencies
        assert [(b.start.isoformat(), b.orders_created) for b in fig.trend] == [
            (first, 2),
            (last, 1),
        ]
        check(stats_core, book, period, None, set())
    week = StatsPeriod.between("2026-03-23", "2026-04-05", "Europe/Paris", "week")
    (fig,) = stats_core.stats.sales(week).currencies
    assert [(b.start.isoformat(), b.orders_created) for b in fig.trend] == [
        ("2026-03-23", 2),
        ("2026-03-30", 1),
    ]


def test_products_reads_lines_by_nested_loop_and_puts_the_planner_back(
    stats_core: OrderCore, backend: Backend
) -> None:
    """On PostgreSQL the products statement runs without hash or merge joins (the lines of
    the period's orders, not every line), and the transaction's settings are put back."""
    if backend.name != "postgresql":
        pytest.skip("a PostgreSQL planner setting")
    from sqlalchemy import text

    show = text("SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')")
    with stats_core.engine.connect() as conn:
        conn.execute(text("SET LOCAL enable_mergejoin = off"))
        with stats_adapter._nested_loops(conn):
            assert tuple(conn.execute(show).one()) == ("off", "off")
        assert tuple(conn.execute(show).one()) == ("on", "off")
        conn.rollback()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_report_in_progress_does_not_hold_sqlite_s_write_lock(
    backend: Backend, stats_core: OrderCore
) -> None:
    # A file database (WAL): the reader's transaction is a plain BEGIN, so a writer goes on
    # while it is open; with BEGIN IMMEDIATE the write below would wait for the reader
    # (and fail after the busy timeout).
    admin = Actor.operator("root", role="admin")
    stats_core.products.add(sku="S", name="S", price=Money.of("1.00", "CNY"), actor=admin)
    customer = stats_core.customers.add(name="Li", email="li@example.com", actor=admin)
    period = StatsPeriod.between("2026-03-01", "2026-03-31", "Europe/Paris")
    engine = stats_core.engine.execution_options(**{READ_ONLY: True})
    with engine.connect() as reading:
        reading.exec_driver_sql("SELECT count(*) FROM orders").scalar()  # the snapshot is taken
        assert reading.in_transaction()
        with stats_adapter.ReportingReader(stats_core.engine, stats_core.tables) as reader:
            reader.products(period.start, period.end, currency=None, excluded=())
            stats_core.orders.create(customer_id=customer.id, items=[("S", 1)], actor=admin)
    assert stats_core.stats.sales(period).currencies == ()  # created outside the period
