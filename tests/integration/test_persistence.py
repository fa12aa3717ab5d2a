"""Persistence: what goes in comes back out, bad input writes nothing, and concurrent writers
cannot overwrite each other. Every test runs on each backend (see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import inspect, text

from helpers import SERVER_BACKENDS, START, Backend, FakeClock, count_rows, quoted, snapshot
from ordercore import (
    Actor,
    AdjustmentKind,
    AmountAdjustment,
    AmountBreakdown,
    CancelReason,
    Communication,
    ConcurrentModification,
    CurrencyMismatch,
    Customer,
    CustomerNotFound,
    DuplicateCustomer,
    DuplicateSku,
    IllegalTransition,
    InvalidAmount,
    Money,
    Note,
    Order,
    OrderCore,
    OrderEvent,
    OrderLine,
    OrderNotFound,
    OrderStatus,
    OutOfStock,
    Product,
    ProductInactive,
    ProductNotFound,
)
from ordercore._audit.chain import AuditEntry

UTC_ZERO = timedelta(0)


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


def assert_utc(*values: Any) -> None:
    for value in values:
        assert value is not None
        assert value.tzinfo is not None
        assert value.utcoffset() == UTC_ZERO


# ------------------------------------------------------------------------------ round trips
def test_customer_round_trip(core: OrderCore, actor: Actor, clock: FakeClock) -> None:
    added = core.customers.add(
        name="张伟 (Zhang Wei)",
        email="zhang.wei@example.com",
        phone="+86 138 0013 8000",
        external_ref="host-user-42",
        identity_verified=True,
        actor=actor,
    )
    assert added.id is not None
    loaded = core.customers.get(added.id)
    assert loaded == Customer(
        name="张伟 (Zhang Wei)",
        email="zhang.wei@example.com",
        phone="+86 138 0013 8000",
        external_ref="host-user-42",
        identity_verified=True,
        id=added.id,
        created_at=START,
    )
    assert loaded == added
    assert_utc(loaded.created_at)
    assert loaded.created_at is not None
    assert loaded.created_at.microsecond == START.microsecond

    bare = core.customers.add(name="Bare", actor=actor)
    assert bare.id is not None
    assert core.customers.get(bare.id) == Customer(name="Bare", id=bare.id, created_at=START)

    assert core.customers.find(email="zhang.wei@example.com") == [loaded]
    assert core.customers.find(external_ref="host-user-42") == [loaded]
    assert core.customers.find(name="Bare") == [core.customers.get(bare.id)]
    assert core.customers.list() == [loaded, core.customers.get(bare.id)]
    assert core.customers.list(after_id=added.id) == [core.customers.get(bare.id)]
    with pytest.raises(CustomerNotFound):
        core.customers.get(bare.id + 1000)


def test_product_round_trip(core: OrderCore, actor: Actor) -> None:
    specs: dict[str, Any] = {
        "duration_days": 30,
        "devices": 0,
        "traffic_gb": Decimal("100.50"),
        "tiny": Decimal("0.000000000000000001"),
        "auto_renew": True,
        "shared": False,
        "region": "hk",
        "label": '["not", "a list"]',
    }
    added = core.products.add(
        sku="vpn-pro.1y",
        name="VPN Pro — 1 year",
        price=cny("199.99"),
        specs=specs,
        stock=10,
        low_stock_threshold=2,
        actor=actor,
    )
    loaded = core.products.get("vpn-pro.1y")
    assert loaded == added
    assert loaded.id is not None
    assert loaded.name == "VPN Pro — 1 year"
    assert loaded.price == cny("199.99")
    assert loaded.price.currency.code == "CNY"
    assert (loaded.stock, loaded.low_stock_threshold, loaded.active) == (10, 2, True)
    assert dict(loaded.specs) == specs
    for key, value in specs.items():
        # bool stays bool (not 1), int stays int, Decimal stays Decimal with its exponent.
        assert type(loaded.specs[key]) is type(value), key
        assert str(loaded.specs[key]) == str(value), key
    assert_utc(loaded.created_at)

    # Every currency precision and extreme amounts survive integer minor-unit storage.
    for sku, price in (
        ("jpy-plan", Money.of("1500", "JPY")),
        ("usdt-plan", Money.of("12.345678", "USDT")),
        ("btc-plan", Money.of("21000000.00000001", "BTC")),
        ("free-plan", cny("0.00")),
    ):
        core.products.add(sku=sku, name=sku, price=price, actor=actor, active=False)
        stored = core.products.get(sku)
        assert stored.price == price
        assert stored.price.amount.as_tuple() == price.amount.as_tuple()
        assert (stored.stock, stored.active, dict(stored.specs)) == (None, False, {})

    assert [p.sku for p in core.products.list(active=True)] == ["vpn-pro.1y"]
    assert [p.sku for p in core.products.list(active=False)] == [
        "btc-plan",
        "free-plan",
        "jpy-plan",
        "usdt-plan",
    ]
    assert [p.sku for p in core.products.list(after_sku="jpy-plan")] == ["usdt-plan", "vpn-pro.1y"]
    with pytest.raises(ProductNotFound):
        core.products.get("nope")


def test_order_round_trip(
    core: OrderCore,
    actor: Actor,
    clock: FakeClock,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> None:
    customer = make_customer()
    assert customer.id is not None
    vpn = make_product(
        sku="vpn-1m",
        name="VPN 1 month",
        price=cny("30.00"),
        specs={"duration_days": 30, "traffic_gb": Decimal("100.5"), "shared": False},
        stock=5,
    )
    addon = make_product(sku="addon-ip", name="Dedicated IP", price=cny("9.99"), specs={})

    created = core.orders.create(
        customer_id=customer.id,
        items=[("vpn-1m", 2), ("addon-ip", 1)],
        actor=actor,
        note="first order 🚀 — 加急",
        tags=["vip", "promo"],
        special=True,
    )
    number = created.number
    assert core.orders.get(number) == created
    assert core.products.get("vpn-1m").stock == 3
    assert core.products.get("addon-ip").stock is None

    clock.advance(60)
    email_at = clock.now
    core.orders.add_communication(
        number, channel="email", text="Your order awaits payment", actor=actor
    )
    clock.advance(0.000001)
    call_at = clock.now
    support = Actor.operator("bob", "support")
    core.orders.add_communication(
        number,
        channel="phone",
        text="Called back: will pay today",
        actor=support,
        direction="inbound",
    )
    clock.advance(1.5)
    paid_at = clock.now
    channel = Actor.channel("alipay")
    core.orders.mark_paid(number, actor=channel, reason="trade 2026112422001")
    clock.advance(3600)
    completed_at = clock.now
    completed = core.orders.complete(number, actor=Actor.system("activator"))
    clock.advance(86400)
    core.orders.record_refund(number, amount=cny("10.00"), actor=actor, reason="goodwill")

    order = core.orders.get(number)
    assert order.number == number
    assert order.customer_id == customer.id
    assert order.status is OrderStatus.COMPLETED
    assert order.lines == (
        OrderLine(
            sku="vpn-1m",
            name="VPN 1 month",
            unit_price=cny("30.00"),
            quantity=2,
            specs={"duration_days": 30, "traffic_gb": Decimal("100.5"), "shared": False},
            product_id=vpn.id,
        ),
        OrderLine(
            sku="addon-ip",
            name="Dedicated IP",
            unit_price=cny("9.99"),
            quantity=1,
            product_id=addon.id,
        ),
    )
    assert type(order.lines[0].specs["shared"]) is bool
    assert order.amounts == AmountBreakdown(
        original=cny("69.99"), payable=cny("69.99"), paid=cny("69.99"), refunded=cny("10.00")
    )
    assert order.amounts.as_dict() == {
        "original": "69.99",
        "payable": "69.99",
        "paid": "69.99",
        "refunded": "10.00",
    }
    assert order.tags == frozenset({"vip", "promo"})
    assert order.special is True
    assert order.notes == [Note(text="first order 🚀 — 加急", author=actor, at=START)]
    assert order.communications == [
        Communication(channel="email", text="Your order awaits payment", author=actor, at=email_at),
        Communication(
            channel="phone",
            text="Called back: will pay today",
            author=support,
            at=call_at,
            direction="inbound",
        ),
    ]
    assert order.created_at == START
    assert order.payment_deadline == START + timedelta(minutes=15)
    assert order.paid_at == paid_at
    assert order.completed_at == completed_at
    assert (order.canceled_at, order.refunded_at, order.cancel_reason) == (None, None, None)
    assert_utc(order.created_at, order.payment_deadline, order.paid_at, order.completed_at)
    assert_utc(*(n.at for n in order.notes), *(c.at for c in order.communications))
    # Microseconds survive on every backend (the two communications are 1 µs apart).
    assert order.communications[1].at - order.communications[0].at == timedelta(microseconds=1)
    assert order.created_at.microsecond == START.microsecond

    assert [(t.source, t.event, t.target, t.actor, t.reason, t.at) for t in order.history] == [
        (
            OrderStatus.PENDING,
            OrderEvent.PAY,
            OrderStatus.PAID,
            channel,
            "trade 2026112422001",
            paid_at,
        ),
        (
            OrderStatus.PAID,
            OrderEvent.COMPLETE,
            OrderStatus.COMPLETED,
            Actor.system("activator"),
            None,
            completed_at,
        ),
    ]
    assert order.version > completed.version > created.version >= 1


def test_adjusted_amounts_round_trip(
    core: OrderCore, actor: Actor, clock: FakeClock, make_customer: Callable[..., Customer]
) -> None:
    """An order whose breakdown has discounts, deductions and a fee (written through the
    repository: the services that create them come later)."""
    customer = make_customer()
    assert customer.id is not None
    lines = (
        OrderLine(sku="a", name="A", unit_price=cny("60.00"), quantity=1),
        OrderLine(sku="b", name="B", unit_price=cny("20.01"), quantity=2),
    )
    amounts = AmountBreakdown(
        original=cny("100.02"),
        payable=cny("94.02"),
        adjustments=(
            AmountAdjustment(
                AdjustmentKind.COUPON, cny("5.00"), "WELCOME5", (cny("3.00"), cny("2.00"))
            ),
            AmountAdjustment(AdjustmentKind.BALANCE, cny("1.50")),
            AmountAdjustment(AdjustmentKind.FEE, cny("0.50"), "card fee"),
        ),
    )
    order = Order(
        number="20261124083015123ABCDE",
        customer_id=customer.id,
        lines=lines,
        amounts=amounts,
        created_at=clock.now,
    )
    with core.unit_of_work() as uow:
        uow.orders.add(order)
        uow.commit()
    loaded = core.orders.get(order.number)
    assert loaded.amounts == amounts
    assert loaded.amounts.as_dict() == {
        "original": "100.02",
        "coupon": "5.00",
        "balance": "1.50",
        "fee": "0.50",
        "payable": "94.02",
        "paid": "0.00",
        "refunded": "0.00",
    }
    assert loaded.lines == lines


def test_times_in_other_zones_are_stored_as_utc(
    core: OrderCore,
    actor: Actor,
    clock: FakeClock,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> None:
    customer = make_customer()
    assert customer.id is not None
    product = make_product(price=Money.of("1500", "JPY"))
    clock.now = START.astimezone(timezone(timedelta(hours=8)))
    order = core.orders.create(customer_id=customer.id, items=[(product.sku, 3)], actor=actor)
    loaded = core.orders.get(order.number)
    assert loaded.created_at == START
    assert_utc(loaded.created_at, loaded.payment_deadline)
    assert loaded.amounts.payable == Money.of("4500", "JPY")


def test_order_not_found(core: OrderCore) -> None:
    with pytest.raises(OrderNotFound) as excinfo:
        core.orders.get("20261124083015123ZZZZZ")
    assert excinfo.value.order == "20261124083015123ZZZZZ"


# -------------------------------------------------------------------- bad input writes nothing
def test_duplicate_sku(core: OrderCore, actor: Actor, make_product: Callable[..., Product]) -> None:
    make_product(sku="dup-1", name="Original", price=cny("1.00"))
    before = snapshot(core)
    with pytest.raises(DuplicateSku) as excinfo:
        core.products.add(sku="dup-1", name="Copy", price=cny("2.00"), actor=actor)
    assert excinfo.value.sku == "dup-1"
    assert snapshot(core) == before
    assert core.products.get("dup-1").name == "Original"


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("email", {"email": "taken@example.com"}),
        ("external_ref", {"external_ref": "host-7"}),
    ],
)
def test_duplicate_customer(
    core: OrderCore,
    actor: Actor,
    make_customer: Callable[..., Customer],
    field: str,
    kwargs: dict[str, str],
) -> None:
    make_customer(name="First", email="taken@example.com", external_ref="host-7")
    before = snapshot(core)
    with pytest.raises(DuplicateCustomer) as excinfo:
        core.customers.add(name="Second", actor=actor, **kwargs)
    assert excinfo.value.field == field
    assert snapshot(core) == before


def test_inactive_product_and_missing_stock_write_nothing(
    core: OrderCore,
    actor: Actor,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> None:
    customer = make_customer()
    assert customer.id is not None
    make_product(sku="in-stock", stock=5)
    make_product(sku="retired", stock=3, active=False)
    make_product(sku="scarce", stock=1)
    make_product(sku="dollar", price=Money.of("5.00", "USD"))
    before = snapshot(core)
    orders_before = count_rows(core, core.tables.orders)

    def create(*items: tuple[str, int]) -> Order:
        return core.orders.create(customer_id=customer.id, items=list(items), actor=actor)

    with pytest.raises(ProductInactive) as inactive:
        create(("in-stock", 1), ("retired", 1))
    assert inactive.value.sku == "retired"
    assert snapshot(core) == before

    with pytest.raises(OutOfStock) as out:
        create(("in-stock", 2), ("scarce", 2))
    assert out.value.sku == "scarce"
    assert snapshot(core) == before

    with pytest.raises(ProductNotFound):
        create(("in-stock", 1), ("no-such-sku", 1))
    with pytest.raises(CustomerNotFound):
        core.orders.create(customer_id=customer.id + 99, items=[("in-stock", 1)], actor=actor)
    with pytest.raises(CurrencyMismatch):
        create(("in-stock", 1), ("dollar", 1))
    assert snapshot(core) == before
    assert count_rows(core, core.tables.orders) == orders_before == 0

    # The last unit in stock can be sold, and then it is gone.
    create(("scarce", 1), ("in-stock", 5))
    assert core.products.get("scarce").stock == 0
    assert core.products.get("in-stock").stock == 0
    after_sale = snapshot(core)
    with pytest.raises(OutOfStock):
        create(("scarce", 1))
    assert snapshot(core) == after_sale


def test_cancel_returns_stock(
    core: OrderCore,
    actor: Actor,
    clock: FakeClock,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> None:
    customer = make_customer()
    assert customer.id is not None
    make_product(sku="limited", stock=5)
    make_product(sku="unlimited")
    order = core.orders.create(
        customer_id=customer.id, items=[("limited", 2), ("unlimited", 4)], actor=actor
    )
    assert core.products.get("limited").stock == 3

    clock.advance(30)
    buyer = Actor.customer(customer.id)
    core.orders.cancel(order.number, actor=buyer, reason="user", note="changed their mind")
    assert core.products.get("limited").stock == 5
    assert core.products.get("unlimited").stock is None
    stored = core.orders.get(order.number)
    assert stored.status is OrderStatus.CANCELED
    assert stored.cancel_reason is CancelReason.USER
    assert stored.canceled_at == clock.now
    assert [(t.event, t.actor, t.reason) for t in stored.history] == [
        (OrderEvent.CANCEL, buyer, "user: changed their mind")
    ]

    # Cancelling again is illegal and does not return the stock a second time.
    before = snapshot(core)
    with pytest.raises(IllegalTransition):
        core.orders.cancel(order.number, actor=actor, reason="admin", note="again")
    assert snapshot(core) == before


# --------------------------------------------------------------------------- illegal changes
def _paid_order(
    core: OrderCore,
    actor: Actor,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> Order:
    customer = make_customer()
    assert customer.id is not None
    product = make_product(stock=10)
    order = core.orders.create(customer_id=customer.id, items=[(product.sku, 2)], actor=actor)
    return core.orders.mark_paid(order.number, actor=actor)


def test_illegal_transition_changes_nothing(
    core: OrderCore,
    actor: Actor,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> None:
    paid = _paid_order(core, actor, make_customer, make_product)
    before = snapshot(core)
    audit_before = core.audit.count()

    with pytest.raises(IllegalTransition) as excinfo:
        core.orders.cancel(paid.number, actor=actor, reason="admin", note="oops")
    error = excinfo.value
    assert (error.machine, error.entity, error.state, error.event) == (
        "order",
        paid.number,
        OrderStatus.PAID,
        OrderEvent.CANCEL,
    )
    assert paid.number in str(error)

    with pytest.raises(IllegalTransition):
        core.orders.mark_paid(paid.number, actor=actor)  # paid twice
    assert snapshot(core) == before
    assert core.audit.count() == audit_before
    assert core.orders.get(paid.number).status is OrderStatus.PAID


def test_refused_changes_on_a_pending_order_write_nothing(
    core: OrderCore,
    actor: Actor,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> None:
    customer = make_customer()
    assert customer.id is not None
    product = make_product(stock=4)
    order = core.orders.create(customer_id=customer.id, items=[(product.sku, 1)], actor=actor)
    before = snapshot(core)
    with pytest.raises(IllegalTransition):
        core.orders.complete(order.number, actor=actor)
    with pytest.raises(IllegalTransition):
        core.orders.record_refund(order.number, amount=cny("1.00"), actor=actor)
    with pytest.raises(InvalidAmount):
        core.orders.mark_paid(order.number, actor=actor, amount=cny("29.99"))
    assert snapshot(core) == before


# ------------------------------------------------------------------------ the unit of work
def test_unit_of_work_rolls_back_unless_committed(
    core: OrderCore,
    actor: Actor,
    clock: FakeClock,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> None:
    customer = make_customer()
    assert customer.id is not None
    product = make_product(stock=3)
    order = core.orders.create(customer_id=customer.id, items=[(product.sku, 1)], actor=actor)
    before = snapshot(core)
    audit_before = core.audit.count()

    with core.unit_of_work() as uow:
        ghost = uow.customers.add(Customer(name="Ghost", email="ghost@example.com"), clock.now)
        assert uow.customers.get(ghost.id or 0).name == "Ghost"  # visible inside the unit
        uow.record(
            AuditEntry(
                entity_kind="customer",
                entity_id=str(ghost.id),
                action="customer.add",
                actor=actor,
                at=clock.now,
            )
        )
        loaded = uow.orders.get(order.number, lock=True)
        loaded.add_note("never stored", actor, clock.now)
        loaded.add_tag("never", actor, clock.now)
        # no commit
    assert snapshot(core) == before
    assert core.audit.count() == audit_before
    assert core.customers.find(email="ghost@example.com") == []

    class Boom(Exception):
        pass

    def fail_halfway() -> None:
        with core.unit_of_work() as uow:
            stored = uow.products.get(product.sku, lock=True)
            uow.products.update(
                Product(sku=stored.sku, name="Renamed", price=stored.price, stock=0, id=stored.id),
                clock.now,
            )
            raise Boom

    with pytest.raises(Boom):
        fail_halfway()
    assert snapshot(core) == before
    assert core.audit.verify().ok


# SQLite takes its write lock at BEGIN IMMEDIATE, so two units of work cannot interleave there;
# test_stale_version_is_refused covers the version check on it.
@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_concurrent_units_of_work_second_commit_loses(
    backend: Backend,
    core: OrderCore,
    actor: Actor,
    clock: FakeClock,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> None:
    """Two units of work load the same order and change it: the second commit raises
    ConcurrentModification and the stored order is the first one's."""
    customer = make_customer()
    assert customer.id is not None
    product = make_product()
    number = core.orders.create(
        customer_id=customer.id, items=[(product.sku, 1)], actor=actor
    ).number
    audit_before = core.audit.count()

    with core.unit_of_work() as first, core.unit_of_work() as second:
        one = first.orders.get(number)
        two = second.orders.get(number)
        assert one.version == two.version
        one.add_note("from the first", actor, clock.now)
        one.set_special(True, actor, clock.now)
        two.add_note("from the second", actor, clock.now)
        two.add_tag("second", actor, clock.now)
        first.commit()
        with pytest.raises(ConcurrentModification) as excinfo:
            second.commit()
    assert excinfo.value.order == number

    stored = core.orders.get(number)
    assert [n.text for n in stored.notes] == ["from the first"]
    assert stored.special is True
    assert stored.tags == frozenset()
    assert stored.version == one.version == two.version + 1
    assert core.audit.count() == audit_before + 2
    assert [r.action for r in core.audit.records("order", number)] == [
        "order.create",
        "order.note",
        "order.special",
    ]
    assert core.audit.verify().ok


def test_stale_version_is_refused(
    core: OrderCore,
    actor: Actor,
    clock: FakeClock,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> None:
    """The version check on every backend: another writer (simulated with SQL in the same
    transaction, as SQLite cannot interleave two) bumped the version after the order was
    read; saving it raises and nothing of the stale change is stored."""
    customer = make_customer()
    assert customer.id is not None
    product = make_product()
    number = core.orders.create(
        customer_id=customer.id, items=[(product.sku, 1)], actor=actor
    ).number
    orders = quoted(core, core.tables.orders)
    with core.unit_of_work() as uow:
        order = uow.orders.get(number)
        order.add_note("stale", actor, clock.now)
        uow.conn.execute(
            text(f"UPDATE {orders} SET version = version + 1 WHERE number = :n"), {"n": number}
        )
        with pytest.raises(ConcurrentModification):
            uow.commit()
    stored = core.orders.get(number)
    assert stored.notes == []
    assert stored.version == 1
    assert [r.action for r in core.audit.records("order", number)] == ["order.create"]


# ---------------------------------------------------------------------------- table prefix
def test_table_prefix_end_to_end(backend: Backend, clock: FakeClock, actor: Actor) -> None:
    core = backend.core(clock, table_prefix="oc_")
    inspector = inspect(core.engine)
    names = set(inspector.get_table_names(schema=backend.schema))
    expected = {t.name for t in core.tables.metadata.sorted_tables}
    assert all(name.startswith("oc_") for name in expected)
    (version_table,) = names - expected  # alembic's, prefixed too
    assert version_table.startswith("oc_")
    assert version_table.endswith("alembic_version")
    assert expected <= names
    for table in core.tables.metadata.sorted_tables:
        # ordercore's own index and constraint names carry the prefix too (they are
        # schema-wide on PostgreSQL and SQLite). MariaDB adds unprefixed per-table indexes
        # for foreign keys by itself; those are not ordercore's.
        declared = {str(i.name) for i in table.indexes}
        assert all(name.startswith("oc_") for name in declared)
        reflected = {i["name"] for i in inspector.get_indexes(table.name, schema=backend.schema)}
        assert declared <= reflected
        uniques = {str(c.name) for c in table.constraints if c.name and c not in table.foreign_keys}
        assert all(name.startswith("oc_") for name in uniques), uniques

    customer = core.customers.add(name="Prefixed", email="p@example.com", actor=actor)
    assert customer.id is not None
    core.products.add(sku="p-1", name="P", price=cny("3.00"), stock=2, actor=actor)
    order = core.orders.create(customer_id=customer.id, items=[("p-1", 2)], actor=actor)
    core.orders.mark_paid(order.number, actor=actor)
    core.orders.flag(order.number, "checked", actor=actor)
    stored = core.orders.get(order.number)
    assert (stored.status, stored.tags) == (OrderStatus.PAID, frozenset({"checked"}))
    assert core.products.get("p-1").stock == 0
    assert core.audit.verify().ok
    assert core.audit.count() == 5

    # Unprefixed ordercore tables can live beside them, and see none of their rows.
    plain = backend.core(clock)
    assert plain.customers.list() == []
    assert plain.audit.count() == 0
    assert plain.audit.verify().ok
    assert core.customers.list() == [core.customers.get(customer.id)]


def test_an_order_number_taken_meanwhile_is_replaced(
    core: OrderCore,
    actor: Actor,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process took the number in the same millisecond: the unique index refuses
    it, and the order is stored under a new number in the same transaction (the failed
    insert is rolled back to its savepoint, which PostgreSQL needs to go on)."""
    customer = make_customer()
    assert customer.id is not None
    product = make_product(stock=5)
    first = core.orders.create(customer_id=customer.id, items=[(product.sku, 1)], actor=actor)
    real = core.orders._numbers
    issued: list[str] = []

    class Colliding:
        def next(self, now: datetime) -> str:
            number = first.number if not issued else real.next(now)
            issued.append(number)
            return number

    monkeypatch.setattr(core.orders, "_numbers", Colliding())
    second = core.orders.create(customer_id=customer.id, items=[(product.sku, 1)], actor=actor)
    assert issued[0] == first.number
    assert second.number == issued[1] != first.number
    assert count_rows(core, core.tables.orders) == 2
    assert core.products.get(product.sku).stock == 3
    assert core.orders.get(first.number) == first
    assert [r.action for r in core.audit.records("order", second.number)] == ["order.create"]
    assert [r.action for r in core.audit.records("order", first.number)] == ["order.create"]
    assert core.audit.verify().ok


# ------------------------------------------------------------ the same answers on every backend
def test_identifiers_are_case_sensitive_on_every_backend(
    core: OrderCore,
    actor: Actor,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> None:
    """SKUs, external references and order numbers are exact identifiers: SQLite and
    PostgreSQL compare them byte for byte, and so must MariaDB (whose default collation,
    utf8mb4_general_ci, would make ``plan-a`` find ``Plan-A`` and refuse both as duplicates)."""
    make_product(sku="Plan-A", name="Upper")
    with pytest.raises(ProductNotFound):
        core.products.get("plan-a")
    make_product(sku="plan-a", name="Lower")
    assert (core.products.get("Plan-A").name, core.products.get("plan-a").name) == (
        "Upper",
        "Lower",
    )

    upper = make_customer(external_ref="ACME-1")
    assert upper.id is not None
    assert core.customers.find(external_ref="acme-1") == []
    lower = make_customer(external_ref="acme-1")
    assert lower.id != upper.id

    order = core.orders.create(customer_id=upper.id, items=[("Plan-A", 1)], actor=actor)
    assert order.number != order.number.lower()
    with pytest.raises(OrderNotFound):
        core.orders.get(order.number.lower())
