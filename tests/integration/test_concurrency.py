"""Money and stock under concurrency: parallel workers racing for the last unit of stock, the
last use of a coupon, the last yuan of a balance, one idempotency key, one cancellation.

PostgreSQL runs every race with 8 threads (row locks and conditional updates under READ
COMMITTED); SQLite runs the stock, coupon and balance races with 4 threads (``BEGIN
IMMEDIATE`` serialises the writers). Each worker makes its own ordercore calls, so each has
its own connection and transaction; a ``threading.Barrier`` releases them together.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from helpers import audit_rows, count_rows
from ordercore import (
    Actor,
    CancelReason,
    CouponUnusable,
    IllegalTransition,
    InsufficientFunds,
    Money,
    NewCustomer,
    OrderCore,
    OrderStatus,
    OutOfStock,
)

ADMIN = Actor.operator("alice", "admin")
POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
SQLITE = pytest.param("sqlite", id="sqlite")
#: Threads per race on each backend.
WORKERS = {"postgresql": 8, "sqlite": 4}

on_both = pytest.mark.parametrize("backend", [POSTGRESQL, SQLITE], indirect=True)
on_postgresql = pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


@dataclass
class Outcome:
    """What one worker got: a result or an exception."""

    value: Any = None
    error: BaseException | None = None


def race(workers: int, work: Callable[[int], Any]) -> list[Outcome]:
    """Run ``work(i)`` in ``workers`` threads released together; every exception is kept."""
    barrier = threading.Barrier(workers)
    outcomes = [Outcome() for _ in range(workers)]

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            outcomes[i].value = work(i)
        except BaseException as exc:
            outcomes[i].error = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a worker hung (deadlock?)"
    return outcomes


def tally(outcomes: list[Outcome]) -> Counter[str]:
    """``ok`` for each success, the exception's class name (and ``code``) for each failure."""
    names: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.error is None:
            names["ok"] += 1
        else:
            code = getattr(outcome.error, "code", None)
            names[type(outcome.error).__name__ + (f":{code}" if code else "")] += 1
    return names


def workers_for(core: OrderCore) -> int:
    return WORKERS[core.engine.dialect.name]


def customers(core: OrderCore, n: int) -> list[int]:
    ids = []
    for i in range(n):
        customer = core.customers.add(name=f"C{i}", email=f"c{i}@example.com", actor=ADMIN)
        assert customer.id is not None
        ids.append(customer.id)
    return ids


def assert_ledger_matches(core: OrderCore, customer_id: int) -> None:
    balance = core.wallet.balance(customer_id, "CNY")
    assert balance >= cny("0.00")
    assert core.wallet.ledger_sum(customer_id, "CNY") == balance.to_minor()


# ------------------------------------------------------------------------------ (a) stock
@on_both
def test_the_last_units_of_stock_are_sold_once(core: OrderCore) -> None:
    n = workers_for(core)
    stock = n - 3
    core.products.add(sku="vpn", name="VPN", price=cny("30.00"), stock=stock, actor=ADMIN)
    buyers = customers(core, n)

    outcomes = race(
        n, lambda i: core.orders.create(customer_id=buyers[i], items=[("vpn", 1)], actor=ADMIN)
    )
    assert tally(outcomes) == Counter({"ok": stock, "OutOfStock": 3})
    assert all(isinstance(o.error, OutOfStock) for o in outcomes if o.error)
    assert core.products.get("vpn").stock == 0
    assert count_rows(core, core.tables.orders) == stock
    numbers = {o.value.number for o in outcomes if o.error is None}
    assert len(numbers) == stock


# ----------------------------------------------------------------------------- (b) coupons
@on_both
def test_a_coupon_is_not_used_beyond_its_limit(core: OrderCore) -> None:
    n = workers_for(core)
    limit = 3 if n == 8 else 2
    core.products.add(sku="vpn", name="VPN", price=cny("30.00"), actor=ADMIN)
    core.coupons.add(
        code="LAST3", currency="CNY", amount=cny("5.00"), limit_total=limit, actor=ADMIN
    )
    buyers = customers(core, n)

    outcomes = race(
        n,
        lambda i: core.orders.create(
            customer_id=buyers[i], items=[("vpn", 1)], coupon="LAST3", actor=ADMIN
        ),
    )
    assert tally(outcomes) == Counter({"ok": limit, "CouponUnusable:exhausted": n - limit})
    assert core.coupons.get("LAST3")[1] == limit
    assert count_rows(core, core.tables.orders) == limit
    assert count_rows(core, core.tables.coupon_redemptions) == limit
    for outcome in outcomes:
        if outcome.error is None:
            assert outcome.value.amounts.payable == cny("25.00")


@on_both
def test_a_per_customer_limit_holds_for_one_customer_in_many_workers(core: OrderCore) -> None:
    n = workers_for(core)
    core.products.add(sku="vpn", name="VPN", price=cny("30.00"), actor=ADMIN)
    core.coupons.add(code="ONCE", currency="CNY", percent="10", limit_per_customer=1, actor=ADMIN)
    (buyer,) = customers(core, 1)

    outcomes = race(
        n,
        lambda i: core.orders.create(
            customer_id=buyer, items=[("vpn", 1)], coupon="ONCE", actor=ADMIN
        ),
    )
    assert tally(outcomes) == Counter({"ok": 1, "CouponUnusable:customer_limit": n - 1})
    assert all(isinstance(o.error, CouponUnusable) for o in outcomes if o.error)
    assert core.coupons.get("ONCE")[1] == 1


# ----------------------------------------------------------------------------- (c) balance
@on_both
def test_concurrent_debits_never_overspend(core: OrderCore) -> None:
    n = workers_for(core)
    (holder,) = customers(core, 1)
    core.wallet.credit(holder, cny("100.00"), reason="top-up", actor=ADMIN)

    outcomes = race(
        n,
        lambda i: core.wallet.debit(holder, cny("30.00"), reason="purchase", actor=ADMIN),
    )
    assert tally(outcomes) == Counter({"ok": 3, "InsufficientFunds": n - 3})
    assert core.wallet.balance(holder, "CNY") == cny("10.00")
    assert_ledger_matches(core, holder)
    # Each successful debit saw the balance the one before it left.
    assert sorted(o.value.balance_after for o in outcomes if o.error is None) == [1000, 4000, 7000]


@on_both
def test_concurrent_orders_never_overspend_the_balance(core: OrderCore) -> None:
    n = workers_for(core)
    (holder,) = customers(core, 1)
    core.wallet.credit(holder, cny("100.00"), reason="top-up", actor=ADMIN)
    core.products.add(sku="pro", name="Pro", price=cny("50.00"), actor=ADMIN)

    outcomes = race(
        n,
        lambda i: core.orders.create(
            customer_id=holder, items=[("pro", 1)], use_balance=cny("30.00"), actor=ADMIN
        ),
    )
    assert tally(outcomes) == Counter({"ok": 3, "InsufficientFunds": n - 3})
    assert all(isinstance(o.error, InsufficientFunds) for o in outcomes if o.error)
    assert core.wallet.balance(holder, "CNY") == cny("10.00")
    assert count_rows(core, core.tables.orders) == 3
    assert_ledger_matches(core, holder)


@on_postgresql
def test_debits_and_orders_racing_for_one_balance(core: OrderCore) -> None:
    """Half the workers debit the wallet directly, half spend it on orders."""
    (holder,) = customers(core, 1)
    core.wallet.credit(holder, cny("100.00"), reason="top-up", actor=ADMIN)
    core.products.add(sku="pro", name="Pro", price=cny("50.00"), actor=ADMIN)

    def work(i: int) -> Any:
        if i % 2:
            return core.wallet.debit(holder, cny("30.00"), reason="purchase", actor=ADMIN)
        return core.orders.create(
            customer_id=holder, items=[("pro", 1)], use_balance=cny("30.00"), actor=ADMIN
        )

    outcomes = race(8, work)
    assert tally(outcomes) == Counter({"ok": 3, "InsufficientFunds": 5})
    assert core.wallet.balance(holder, "CNY") == cny("10.00")
    assert_ledger_matches(core, holder)


# ------------------------------------------------------------------------ (d) idempotency
@on_postgresql
@pytest.mark.parametrize("held", ["100.00", "30.00"])
def test_one_wallet_idempotency_key_in_many_workers_is_one_debit(
    core: OrderCore, held: str
) -> None:
    """8 retries of one debit at once: one ledger entry, and every worker gets it back — also
    when the balance covers the debit only once (a retry must not be told "insufficient
    funds" about the debit it already made)."""
    (holder,) = customers(core, 1)
    core.wallet.credit(holder, cny(held), reason="top-up", actor=ADMIN)
    audit_before = core.audit.count()

    outcomes = race(
        8,
        lambda i: core.wallet.debit(
            holder, cny("30.00"), reason="purchase", actor=ADMIN, idempotency_key="pay-1"
        ),
    )
    assert count_rows(core, core.tables.wallet_ledger) == 2
    debits = [r for r in audit_rows(core)[audit_before:] if r["action"] == "wallet.debit"]
    assert len(debits) == 1, "a repeated debit was audited as a debit of its own"
    assert core.wallet.balance(holder, "CNY") == cny(held) - cny("30.00")
    assert_ledger_matches(core, holder)
    assert tally(outcomes) == Counter({"ok": 8})
    assert len({o.value.id for o in outcomes}) == 1


@on_postgresql
@pytest.mark.parametrize("variant", ["plenty", "scarce", "new-customer"])
def test_one_idempotency_key_in_many_workers_is_one_order(core: OrderCore, variant: str) -> None:
    """The same request 8 times at once is one order, one stock unit, one debit — and every
    worker gets that order back: also when the stock and the balance only cover one order,
    and when the request creates its customer (a worker that lost the race must not be told
    "out of stock" or "duplicate customer" about its own order)."""
    scarce = variant == "scarce"
    (buyer,) = customers(core, 1)
    core.wallet.credit(buyer, cny("30.00" if scarce else "100.00"), reason="top", actor=ADMIN)
    core.products.add(
        sku="vpn", name="VPN", price=cny("30.00"), stock=1 if scarce else 10, actor=ADMIN
    )
    request: dict[str, Any] = {
        "items": [("vpn", 1)],
        "idempotency_key": "checkout-7",
        "actor": ADMIN,
    }
    if variant == "new-customer":
        request["new_customer"] = NewCustomer(name="Newcomer", email="new@example.com")
    else:
        request.update(customer_id=buyer, use_balance=cny("30.00"))

    audit_before = core.audit.count()
    outcomes = race(8, lambda i: core.orders.create(**request))
    assert count_rows(core, core.tables.orders) == 1
    actions = Counter(r["action"] for r in audit_rows(core)[audit_before:])
    assert actions["order.create"] == 1
    assert actions["wallet.debit"] == (0 if variant == "new-customer" else 1)
    assert actions["customer.add"] == (1 if variant == "new-customer" else 0)
    assert count_rows(core, core.tables.customers) == (2 if variant == "new-customer" else 1)
    if variant != "new-customer":
        assert count_rows(core, core.tables.wallet_ledger) == 2  # the top-up and one debit
        assert core.wallet.balance(buyer, "CNY") == cny("0.00" if scarce else "70.00")
    assert core.products.get("vpn").stock == (0 if scarce else 9)
    assert_ledger_matches(core, buyer)
    assert tally(outcomes) == Counter({"ok": 8})
    assert len({o.value.number for o in outcomes}) == 1


# --------------------------------------------------------------------------- (e) cancel
@on_postgresql
def test_cancel_racing_cancel_cancels_once(core: OrderCore) -> None:
    (buyer,) = customers(core, 1)
    core.wallet.credit(buyer, cny("100.00"), reason="top-up", actor=ADMIN)
    core.products.add(sku="vpn", name="VPN", price=cny("30.00"), stock=10, actor=ADMIN)
    core.coupons.add(code="TEN", currency="CNY", percent="10", limit_total=5, actor=ADMIN)
    order = core.orders.create(
        customer_id=buyer,
        items=[("vpn", 2)],
        coupon="TEN",
        use_balance=cny("20.00"),
        actor=ADMIN,
    )
    audit_before = core.audit.count()

    outcomes = race(
        8,
        lambda i: core.orders.cancel(
            order.number, actor=ADMIN, reason=CancelReason.ADMIN, note=f"worker {i}"
        ),
    )
    assert tally(outcomes) == Counter({"ok": 1, "IllegalTransition": 7})
    assert core.orders.get(order.number).status is OrderStatus.CANCELED
    assert core.products.get("vpn").stock == 10  # returned once, not 8 times
    assert core.coupons.get("TEN")[1] == 0
    assert core.wallet.balance(buyer, "CNY") == cny("100.00")
    assert_ledger_matches(core, buyer)
    # One cancel and one wallet credit were recorded, nothing for the refused ones.
    assert core.audit.count() == audit_before + 2
    assert core.audit.verify().ok


@on_postgresql
def test_cancel_racing_payment_one_wins(core: OrderCore) -> None:
    (buyer,) = customers(core, 1)
    core.products.add(sku="vpn", name="VPN", price=cny("30.00"), stock=10, actor=ADMIN)
    order = core.orders.create(customer_id=buyer, items=[("vpn", 1)], actor=ADMIN)

    def work(i: int) -> Any:
        if i % 2:
            return core.orders.mark_paid(order.number, actor=ADMIN)
        return core.orders.cancel(order.number, actor=ADMIN, reason="admin", note="race")

    outcomes = race(8, work)
    assert tally(outcomes) == Counter({"ok": 1, "IllegalTransition": 7})
    assert all(isinstance(o.error, IllegalTransition) for o in outcomes if o.error)
    final = core.orders.get(order.number)
    expected_stock = 10 if final.status is OrderStatus.CANCELED else 9
    assert final.status in (OrderStatus.CANCELED, OrderStatus.PAID)
    assert core.products.get("vpn").stock == expected_stock
