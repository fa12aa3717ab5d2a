"""The order list against a brute-force filter over the same rows, on every backend.

A few hundred orders are written straight into the tables (SQLAlchemy Core, no services), with
statuses, currencies, channels, customers, skus, amounts and flags spread out, and times packed
around the day boundaries of Asia/Shanghai (UTC+8, no DST: 15:59:59.999999 UTC is 23:59 local,
16:00 UTC is midnight) and with many orders sharing one ``created_at``, so that ties on the sort
key fall across page boundaries. Every filter is paged through to the end with small pages and
compared with Python's answer: the same orders, in the same order, no duplicate, no gap.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from ordercore import InvalidField, Money, OrderCore, OrderStatus, get_currency
from ordercore._orders.listing import OrderFilter, OrderSummary, date_range, period_range
from ordercore.adapters.sqlalchemy import listing
from ordercore.adapters.sqlalchemy.listing import list_orders

UTC = timezone.utc
SHANGHAI = "Asia/Shanghai"
#: 2026-11-25 00:00 in Shanghai.
MIDNIGHT = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
JUST_BEFORE = MIDNIGHT - timedelta(microseconds=1)  # 2026-11-24 23:59:59.999999 in Shanghai

STATUSES = list(OrderStatus)
CHANNELS = [None, "alipay", "wechat", "crypto", "balance"]
SKUS = ["plan-basic", "plan-pro", "plan-team", "addon-ip", "addon-storage", "topup-100"]
TAGS = ["vip", "fraud-check", "gift", "manual"]
CURRENCIES = {"CNY": 0.8, "USD": 0.15, "JPY": 0.05}
N_ORDERS = 320
N_CUSTOMERS = 9
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True)
class Row:
    """One order as written, with what the brute-force filter needs."""

    id: int
    number: str
    status: OrderStatus
    currency: str
    customer_id: int
    payable_minor: int
    paid_minor: int
    refunded_minor: int
    channel: str | None
    created_at: datetime
    special: bool
    skus: frozenset[str]
    tags: frozenset[str]


def _times(rng: random.Random) -> Iterator[datetime]:
    """Creation times: Shanghai and UTC midnights and their neighbours, a burst of equal
    times, and the rest spread over ten weeks."""
    for day in range(-3, 4):
        edge = MIDNIGHT + timedelta(days=day)
        for delta in (
            timedelta(0),
            -timedelta(microseconds=1),
            timedelta(microseconds=1),
            -timedelta(minutes=1),
            timedelta(hours=8),  # UTC midnight
            timedelta(hours=8, microseconds=-1),
        ):
            yield edge + delta
    for _ in range(12):  # ties on created_at: the id decides
        yield MIDNIGHT
    for _ in range(8):
        yield JUST_BEFORE
    start = MIDNIGHT - timedelta(days=45)
    while True:
        yield start + timedelta(seconds=rng.randrange(70 * 86_400), microseconds=rng.randrange(7))


def _number(created_at: datetime, rng: random.Random, taken: set[str]) -> str:
    stamp = created_at.strftime("%Y%m%d%H%M%S%f")[:17]
    while True:
        number = stamp + "".join(rng.choice(_CROCKFORD) for _ in range(5))
        if number not in taken:
            taken.add(number)
            return number


def generate(seed: int = 20261124) -> list[Row]:
    rng = random.Random(seed)
    times = _times(rng)
    ids = rng.sample(range(1, 10 * N_ORDERS), N_ORDERS)  # ids unrelated to time order
    taken: set[str] = set()
    rows = []
    for order_id in ids:
        created_at = next(times)
        status = rng.choice(STATUSES)
        currency = rng.choices(list(CURRENCIES), weights=list(CURRENCIES.values()))[0]
        payable = rng.choice([0, 100, 999, 1000, 3000, 3001, 12_000, 50_000, rng.randrange(80_000)])
        paid = payable if status in (OrderStatus.PAID, OrderStatus.COMPLETED) else 0
        refunded = 0
        if status is OrderStatus.REFUNDED:
            paid = refunded = payable
        elif paid and rng.random() < 0.2:
            refunded = rng.randrange(paid + 1)
        rows.append(
            Row(
                id=order_id,
                number=_number(created_at, rng, taken),
                status=status,
                currency=currency,
                customer_id=rng.randint(1, N_CUSTOMERS),
                payable_minor=payable,
                paid_minor=paid,
                refunded_minor=refunded,
                channel=rng.choice(CHANNELS),
                created_at=created_at,
                special=rng.random() < 0.1,
                skus=frozenset(rng.sample(SKUS, rng.choice([1, 1, 1, 2, 3]))),
                tags=frozenset(rng.sample(TAGS, rng.choice([0, 0, 0, 0, 1, 2]))),
            )
        )
    return rows


ROWS = generate()


def _line_skus(row: Row) -> list[str]:
    """The skus of the order's lines: every third order has its first sku on two lines (an
    order may repeat a sku, with other specs or through two items), which a walk of the sku
    index meets twice and must list once."""
    skus = sorted(row.skus)
    return skus + skus[:1] if row.id % 3 == 0 else skus


def insert_rows(core: OrderCore, rows: list[Row]) -> None:
    t = core.tables
    with core.engine.begin() as conn:
        conn.execute(
            insert(t.customers),
            [
                {
                    "id": i,
                    "name": f"Customer {i}",
                    "email": f"c{i}@example.com",
                    "identity_verified": False,
                    "created_at": MIDNIGHT - timedelta(days=400),
                }
                for i in range(1, N_CUSTOMERS + 1)
            ],
        )
        conn.execute(
            insert(t.orders),
            [
                {
                    "id": r.id,
                    "number": r.number,
                    "customer_id": r.customer_id,
                    "currency": r.currency,
                    "status": r.status.value,
                    "cancel_reason": "user" if r.status is OrderStatus.CANCELED else None,
                    "original_minor": r.payable_minor,
                    "payable_minor": r.payable_minor,
                    "paid_minor": r.paid_minor,
                    "refunded_minor": r.refunded_minor,
                    "adjustments": "[]",
                    "channel": r.channel,
                    "special": r.special,
                    "created_at": r.created_at,
                    "version": 1,
                }
                for r in rows
            ],
        )
        conn.execute(
            insert(t.order_lines),
            [
                {
                    "order_id": r.id,
                    "position": pos,
                    "product_id": None,
                    "sku": sku,
                    "name": sku,
                    "specs": "{}",
                    "unit_price_minor": 100,
                    "quantity": 1,
                    "order_created_at": r.created_at,
                }
                for r in rows
                for pos, sku in enumerate(_line_skus(r))
            ],
        )
        conn.execute(
            insert(t.order_tags),
            [
                {"order_id": r.id, "tag": tag, "order_created_at": r.created_at}
                for r in rows
                for tag in sorted(r.tags)
            ],
        )


@pytest.fixture
def listed(core: OrderCore) -> OrderCore:
    insert_rows(core, ROWS)
    return core


def matches(row: Row, flt: OrderFilter) -> bool:
    """The brute-force reading of an OrderFilter."""
    checks = [
        not flt.statuses or row.status in flt.statuses,
        flt.created_from is None or row.created_at >= flt.created_from,
        flt.created_to is None or row.created_at < flt.created_to,
        flt.channel is None or row.channel == flt.channel,
        flt.customer_id is None or row.customer_id == flt.customer_id,
        flt.sku is None or flt.sku in row.skus,
        flt.flag is None or flt.flag in row.tags,
        flt.number_prefix is None or row.number.startswith(flt.number_prefix),
        flt.special is None or row.special == flt.special,
    ]
    for bound, ok in ((flt.min_amount, lambda a, b: a >= b), (flt.max_amount, lambda a, b: a <= b)):
        if bound is not None:
            checks.append(row.currency == bound.currency.code)
            checks.append(ok(row.payable_minor, bound.to_minor()))
    return all(checks)


def expected(flt: OrderFilter) -> list[Row]:
    found = [r for r in ROWS if matches(r, flt)]
    return sorted(found, key=lambda r: (r.created_at, r.id), reverse=True)


def summary_of(row: Row) -> OrderSummary:
    return OrderSummary(
        number=row.number,
        status=row.status,
        currency=get_currency(row.currency),
        customer_id=row.customer_id,
        payable=Money.from_minor(row.payable_minor, row.currency),
        paid=Money.from_minor(row.paid_minor, row.currency),
        refunded=Money.from_minor(row.refunded_minor, row.currency),
        channel=row.channel,
        created_at=row.created_at,
        special=row.special,
        flags=tuple(sorted(row.tags)),
    )


def page_through(core: OrderCore, flt: OrderFilter, limit: int) -> list[OrderSummary]:
    """Every page of the list, checking the shape of each page on the way."""
    seen: list[OrderSummary] = []
    cursor: str | None = None
    pages = 0
    with core.engine.connect() as conn:
        while True:
            page = list_orders(conn, core.tables, flt, limit=limit, cursor=cursor)
            pages += 1
            assert len(page.items) <= limit
            if page.next_cursor is None:
                seen.extend(page.items)
                break
            assert len(page.items) == limit, "only the last page may be short"
            seen.extend(page.items)
            cursor = page.next_cursor
            assert pages <= len(ROWS) + 1, "the cursor does not advance"
    if seen:
        assert pages == -(-len(seen) // limit), "no empty last page"
    return seen


def check(core: OrderCore, flt: OrderFilter, limit: int) -> None:
    want = expected(flt)
    got = page_through(core, flt, limit)
    numbers = [s.number for s in got]
    assert len(numbers) == len(set(numbers)), "an order appeared twice"
    assert numbers == [r.number for r in want]
    assert got == [summary_of(r) for r in want]


def cny(text: str) -> Money:
    return Money.of(text, "CNY")


NOW = MIDNIGHT + timedelta(hours=3)  # 2026-11-25 03:00 in Shanghai, 2026-11-24 19:00 UTC


def _range(period: str, tz: str) -> dict[str, datetime]:
    start, end = period_range(period, tz, NOW)
    return {"created_from": start, "created_to": end}


def _dates(from_text: str | None, to_text: str | None, tz: str = SHANGHAI) -> dict[str, Any]:
    start, end = date_range(from_text, to_text, tz)
    return {"created_from": start, "created_to": end}


A_NUMBER = ROWS[5].number
FILTERS: dict[str, dict[str, Any]] = {
    "all": {},
    "status-paid": {"statuses": ("paid",)},
    "status-pending-refunded": {"statuses": ("pending", "refunded")},
    "status-all-five": {"statuses": tuple(s.value for s in OrderStatus)},
    "today-shanghai": _range("today", SHANGHAI),
    "today-utc": _range("today", "UTC"),
    "this-week-shanghai": _range("this-week", SHANGHAI),
    "this-month-shanghai": _range("this-month", SHANGHAI),
    "this-month-utc": _range("this-month", "UTC"),
    "custom-day": _dates("2026-11-24", "2026-11-24"),
    "custom-from-only": _dates("2026-11-20", None),
    "custom-to-only": _dates(None, "2026-11-01"),
    "custom-datetimes": _dates("2026-11-23T12:00", "2026-11-26T00:00:00+08:00"),
    "custom-empty-instant": _dates("2026-11-25T00:00", "2026-11-25T00:00"),
    "channel-alipay": {"channel": "alipay"},
    "channel-unknown": {"channel": "paypal"},
    "customer-3": {"customer_id": 3},
    "sku-pro": {"sku": "plan-pro"},
    "sku-none": {"sku": "no-such-sku"},
    "amount-range": {"min_amount": cny("10.00"), "max_amount": cny("500.00")},
    "amount-exact": {"min_amount": cny("30.00"), "max_amount": cny("30.00")},
    "amount-min-only": {"min_amount": cny("120.00")},
    "amount-max-only-usd": {"max_amount": Money.of("30.00", "USD")},
    "amount-zero-cny": {"max_amount": Money.of("0", "CNY")},
    "amount-jpy": {"min_amount": Money.of("0", "JPY")},
    "flag-vip": {"flag": "vip"},
    "flag-unused": {"flag": "never-set"},
    "prefix-month": {"number_prefix": "202611"},
    "prefix-day": {"number_prefix": "20261124"},
    "prefix-hour-lowercase": {"number_prefix": A_NUMBER[:10].lower()},
    "prefix-whole-number": {"number_prefix": A_NUMBER},
    "prefix-none": {"number_prefix": "1999"},
    "special": {"special": True},
    "not-special": {"special": False},
    "status-channel": {"statuses": ("paid", "completed"), "channel": "wechat"},
    "status-today-shanghai": {"statuses": ("pending",), **_range("this-week", SHANGHAI)},
    "sku-flag-customer": {"sku": "plan-basic", "flag": "gift", "customer_id": 2},
    "everything": {
        "statuses": ("paid", "completed", "refunded"),
        **_dates("2026-10-15", "2026-12-31"),
        "channel": "alipay",
        "sku": "plan-team",
        "min_amount": cny("0"),
        "max_amount": cny("800.00"),
        "number_prefix": "2026",
        "special": False,
    },
}


# ``probe`` is CANDIDATE_LIMIT: 5000 takes every sku/flag/amount/prefix criterion through its
# candidate ids (the table is small), 0 through the walk of the time index, 10 a mix of both.
@pytest.mark.parametrize(("limit", "probe"), [(7, 5000), (50, 5000), (7, 0), (7, 10)])
@pytest.mark.parametrize("name", list(FILTERS))
def test_filter_matches_brute_force(
    listed: OrderCore, monkeypatch: pytest.MonkeyPatch, name: str, limit: int, probe: int
) -> None:
    monkeypatch.setattr(listing, "CANDIDATE_LIMIT", probe)
    check(listed, OrderFilter(**FILTERS[name]), limit)


def test_page_size_one_walks_every_order(listed: OrderCore) -> None:
    check(listed, OrderFilter(), 1)


def test_the_data_exercises_the_filters() -> None:
    """Guard against a grid that passes because it selects nothing (or everything)."""
    sizes = {name: len(expected(OrderFilter(**kw))) for name, kw in FILTERS.items()}
    empty = {n for n, size in sizes.items() if size == 0}
    assert empty == {
        "channel-unknown",
        "sku-none",
        "flag-unused",
        "prefix-none",
        "custom-empty-instant",
    }
    everything = {"all", "status-all-five"}
    assert all(0 < sizes[n] < len(ROWS) for n in sizes if n not in empty | everything)
    assert sizes["all"] == sizes["status-all-five"] == len(ROWS)
    assert sizes["prefix-whole-number"] == 1


def test_shanghai_day_boundary(listed: OrderCore) -> None:
    """16:00 UTC is the next day in Shanghai; 15:59:59.999999 UTC is still the day before."""
    start, end = period_range("today", SHANGHAI, NOW)
    assert (start, end) == (MIDNIGHT, MIDNIGHT + timedelta(days=1))
    today = page_through(listed, OrderFilter(created_from=start, created_to=end), 1000)
    times = {s.created_at for s in today}
    assert MIDNIGHT in times
    assert JUST_BEFORE not in times
    yesterday_start, _ = period_range("today", SHANGHAI, JUST_BEFORE)
    yesterday = page_through(
        listed, OrderFilter(created_from=yesterday_start, created_to=MIDNIGHT), 1000
    )
    assert JUST_BEFORE in {s.created_at for s in yesterday}
    assert MIDNIGHT not in {s.created_at for s in yesterday}
    # In UTC the same instants are one calendar day, 2026-11-24.
    utc_start, utc_end = period_range("today", "UTC", NOW)
    utc_today = page_through(listed, OrderFilter(created_from=utc_start, created_to=utc_end), 1000)
    assert {MIDNIGHT, JUST_BEFORE} <= {s.created_at for s in utc_today}


def test_ties_on_created_at_split_across_pages(listed: OrderCore) -> None:
    tied = [r for r in ROWS if r.created_at == MIDNIGHT]
    assert len(tied) > 7
    flt = OrderFilter(created_from=MIDNIGHT, created_to=MIDNIGHT + timedelta(microseconds=1))
    for limit in (1, 2, 3, 5, 7):
        got = page_through(listed, flt, limit)
        assert [s.number for s in got] == [
            r.number for r in sorted(tied, key=lambda r: r.id, reverse=True)
        ]


def test_bad_cursor_and_limit(listed: OrderCore) -> None:
    with listed.engine.connect() as conn:
        page = list_orders(conn, listed.tables, OrderFilter(), limit=3, cursor=None)
        assert page.next_cursor is not None
        tampered = page.next_cursor[:-2] + ("AA" if page.next_cursor[-2:] != "AA" else "BB")
        for bad in (tampered, "garbage", "", "!!!!", page.next_cursor + "A"):
            with pytest.raises(InvalidField, match="is not one this command gave"):
                list_orders(conn, listed.tables, OrderFilter(), limit=3, cursor=bad)
        for limit in (0, -1, 1001, True):
            with pytest.raises(InvalidField, match="limit"):
                list_orders(conn, listed.tables, OrderFilter(), limit=limit, cursor=None)


def test_empty_database(core: OrderCore) -> None:
    with core.engine.connect() as conn:
        page = list_orders(conn, core.tables, OrderFilter(), limit=10, cursor=None)
    assert page.items == ()
    assert page.next_cursor is None


def test_flags_come_sorted(listed: OrderCore) -> None:
    many = [r for r in ROWS if len(r.tags) == 2]
    assert many
    got = page_through(listed, OrderFilter(number_prefix=many[0].number), 10)
    assert got[0].flags == tuple(sorted(many[0].tags))


# ------------------------------------------------------------------------ random combinations
_moments = st.sampled_from(sorted({r.created_at for r in ROWS})) | st.datetimes(
    min_value=datetime(2026, 10, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
)


@st.composite
def filters(draw: st.DrawFn) -> OrderFilter:
    kw: dict[str, Any] = {}
    if draw(st.booleans()):
        kw["statuses"] = tuple(draw(st.sets(st.sampled_from(STATUSES), min_size=1, max_size=3)))
    if draw(st.booleans()):
        a, b = sorted([draw(_moments), draw(_moments)])
        kw["created_from"], kw["created_to"] = draw(st.sampled_from([(a, b), (a, None), (None, b)]))
    if draw(st.integers(0, 3)) == 0:
        kw["channel"] = draw(st.sampled_from([c for c in CHANNELS if c]))
    if draw(st.integers(0, 3)) == 0:
        kw["customer_id"] = draw(st.integers(1, N_CUSTOMERS + 1))
    if draw(st.integers(0, 3)) == 0:
        kw["sku"] = draw(st.sampled_from(SKUS))
    if draw(st.integers(0, 3)) == 0:
        kw["flag"] = draw(st.sampled_from(TAGS))
    if draw(st.integers(0, 3)) == 0:
        currency = draw(st.sampled_from(list(CURRENCIES)))
        low, high = sorted(draw(st.lists(st.integers(0, 90_000), min_size=2, max_size=2)))
        bounds = draw(st.sampled_from(["both", "min", "max"]))
        if bounds != "max":
            kw["min_amount"] = Money.from_minor(low, currency)
        if bounds != "min":
            kw["max_amount"] = Money.from_minor(high, currency)
    if draw(st.integers(0, 4)) == 0:
        number = draw(st.sampled_from(ROWS)).number
        kw["number_prefix"] = number[: draw(st.integers(1, len(number)))]
    if draw(st.integers(0, 4)) == 0:
        kw["special"] = draw(st.booleans())
    return OrderFilter(**kw)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(flt=filters(), limit=st.sampled_from([3, 7, 25]), probe=st.sampled_from([0, 3, 30, 5000]))
def test_random_filters_match_brute_force(
    listed: OrderCore, monkeypatch: pytest.MonkeyPatch, flt: OrderFilter, limit: int, probe: int
) -> None:
    # The fixture's rows are only read, so sharing them between examples is safe.
    monkeypatch.setattr(listing, "CANDIDATE_LIMIT", probe)
    check(listed, flt, limit)


def test_a_flag_set_later_is_listed_by_its_orders_creation_time(
    core: OrderCore, clock: Any, actor: Any, make_customer: Any, make_product: Any
) -> None:
    """A flag (or a line) carries the creation time of its order, not of the moment it was
    written: a flag set a day after an order was placed lists it where it was before,
    between the orders created before and after it."""
    customer = make_customer()
    product = make_product(sku="plan-x")
    numbers = []
    for _ in range(3):
        numbers.append(
            core.orders.create(
                customer_id=customer.id, items=[("plan-x", 1)], tags=["gift"], actor=actor
            ).number
        )
        clock.advance(60)
    clock.advance(86_400)
    for number in numbers:
        core.orders.flag(number, "manual", actor=actor)
    t = core.tables
    with core.engine.connect() as conn:
        created = dict(conn.execute(select(t.orders.c.id, t.orders.c.created_at)).all())
        for table, rows in ((t.order_lines, 3), (t.order_tags, 6)):
            copies = conn.execute(select(table.c.order_id, table.c.order_created_at)).all()
            assert len(copies) == rows
            assert all(created[order_id] == at for order_id, at in copies)
    newest_first = numbers[::-1]
    for flt in (
        OrderFilter(flag="manual"),
        OrderFilter(flag="gift"),
        OrderFilter(sku=product.sku, flag="manual"),
    ):
        assert [s.number for s in page_through(core, flt, 2)] == newest_first
    core.orders.unflag(numbers[1], "manual", actor=actor)
    core.orders.flag(numbers[1], "manual", actor=actor)
    assert [s.number for s in page_through(core, OrderFilter(flag="manual"), 1)] == newest_first
