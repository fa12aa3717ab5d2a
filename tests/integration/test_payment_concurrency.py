"""Payment notifications under concurrency, on PostgreSQL (row locks, READ COMMITTED,
``SKIP LOCKED``): design.md guarantee 3 — applied at most once, whatever the number, order or
concurrency of deliveries — and guarantee 6 — side effects delivered once per event id.

Each worker makes its own ordercore calls (its own connection and transaction); a
``threading.Barrier`` releases them together.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from helpers import Backend, FakeClock
from ordercore import JobReport, OrderStatus
from ordercore._state import CancelReason, OrderEvent, PaymentStatus

from .payment_kit import ADMIN, Shop, cny, make_shop, race

POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
pytestmark = pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)


@pytest.fixture
def shop(backend: Backend, clock: FakeClock) -> Iterator[Shop]:
    built = make_shop(backend, clock)
    yield built
    built.core.close()


def test_one_notification_delivered_by_16_workers_at_once_is_applied_once(shop: Shop) -> None:
    core, host = shop.core, shop.host
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    headers, body = shop.gateway.pay(no)

    delivered = race(
        16,
        lambda i: core.payments.handle_callback("fake", headers, body, f"10.0.0.{i}"),
    )

    delivered.raise_first()
    assert [(r.status, r.body) for r in delivered.values] == [(200, b"OK")] * 16
    paid = core.orders.get(order.number)
    assert paid.status is OrderStatus.PAID
    assert shop.events(order.number, OrderEvent.PAY) == 1
    assert paid.amounts.paid == order.amounts.payable
    assert core.payments.attempt(no).status is PaymentStatus.SUCCEEDED
    assert shop.count("payment_events") == 1
    assert shop.outbox_kinds() == ["order.paid"]
    assert shop.coupon_uses(order.number) == [("TEN", "consumed")]
    assert Counter(e["status"] for e in shop.inbox()) == Counter(applied=1, duplicate=15)
    assert shop.anomaly_kinds() == []

    # Four job runners at once: one activation, one delivery per event.
    runs = race(4, lambda i: core.payments.run_due_jobs())

    runs.raise_first()
    reports: list[JobReport] = runs.values
    assert sum(len(r.activated) for r in reports) == 1
    assert sum(r.delivery_failures + len(r.activation_failures) for r in reports) == 0
    assert host.activation_calls == [(order.number, f"activate:{order.number}", 1)]
    assert core.orders.get(order.number).status is OrderStatus.COMPLETED
    core.payments.run_due_jobs()  # whatever a runner left for later
    outbox = shop.outbox()
    assert [m["kind"] for m in outbox] == ["order.paid", "order.completed"]
    assert all(m["delivered_at"] is not None for m in outbox)
    assert host.notified_ids() == Counter({m["event_id"]: 1 for m in outbox})
    assert len(host.notify_calls) == 2
    assert core.audit.verify().ok


def test_four_job_runners_at_a_deadline_cancel_once(shop: Shop) -> None:
    core, clock = shop.core, shop.clock
    core.wallet.credit(shop.customer_id, cny("10.00"), reason="top-up", actor=ADMIN)
    orders = [shop.order(use_balance=cny("2.00")) for _ in range(3)]
    for order in orders[:2]:
        shop.start(order.number)
    assert core.products.get("vpn").stock == 7
    clock.advance(16 * 60)

    runs = race(4, lambda i: core.payments.run_due_jobs())

    runs.raise_first()
    for order in orders:
        final = core.orders.get(order.number)
        assert final.status is OrderStatus.CANCELED
        assert shop.events(order.number, OrderEvent.CANCEL) == 1
        assert shop.coupon_uses(order.number) == [("TEN", "released")]
    assert core.products.get("vpn").stock == 10  # each unit back once
    assert core.wallet.balance(shop.customer_id, "CNY") == cny("10.00")
    assert core.wallet.ledger_sum(shop.customer_id, "CNY") == 1000
    reported = Counter(n for r in runs.values for n in r.canceled)
    assert set(reported) == {o.number for o in orders}
    assert core.audit.verify().ok


def test_two_different_payments_of_one_order_at_once_apply_one(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    numbers = []
    for round_ in range(3):
        order = shop.order()
        numbers.append(order.number)
        first = shop.start(order.number).out_trade_no
        second = shop.start(order.number).out_trade_no
        a, b = gateway.pay(first), gateway.pay(second)

        delivered = race(8, lambda i, a=a, b=b: shop.deliver(a if i % 2 else b))

        delivered.raise_first()
        assert {r.status for r in delivered.values} == {200}, round_
        assert core.orders.get(order.number).status is OrderStatus.PAID, round_
        assert shop.events(order.number, OrderEvent.PAY) == 1, round_
        assert core.orders.get(order.number).amounts.paid == order.amounts.payable, round_
        (paid,) = [m for m in shop.outbox(order.number) if m["kind"] == "order.paid"]
        winner = paid["payload"]["out_trade_no"]
        (anomaly,) = core.anomalies.list(order_number=order.number)
        assert anomaly.kind.value == "duplicate_payment", round_
        assert {winner, anomaly.out_trade_no} == {first, second}, round_
        assert shop.outbox_kinds(order.number) == ["order.paid", "anomaly.opened"], round_
        statuses = Counter(e["status"] for e in shop.inbox(order.number))
        assert statuses == Counter(applied=1, anomaly=1, duplicate=6), round_
        for no in (first, second):  # both payments are recorded, so one can be refunded
            assert core.payments.attempt(no).status is PaymentStatus.SUCCEEDED, round_
    assert shop.count("payment_events") == 6

    core.payments.run_due_jobs()
    assert sorted(shop.host.activated) == sorted(numbers)  # each paid order activated once


def test_timeout_cancel_racing_a_late_payment_never_both_never_neither(shop: Shop) -> None:
    core, gateway, clock = shop.core, shop.gateway, shop.clock
    seen: Counter[str] = Counter()
    # The payer's delay spreads the arrivals over the job's whole run: before its query,
    # between the query and the cancel, after the cancel.
    delays = [0.0, 0.1, 0.005, 0.06, 0.01, 0.04, 0.02, 0.08, 0.03, 0.15]
    for round_ in range(10):
        order = shop.order()
        number = order.number
        no = shop.start(number).out_trade_no
        clock.advance(16 * 60)  # past this order's payment deadline

        def work(i: int, number: str = number, no: str = no, round_: int = round_) -> object:
            if i == 0:
                if round_ % 2:
                    return core.payments.run_due_jobs()
                return core.payments.close_and_cancel(number)
            time.sleep(delays[round_])
            return shop.deliver(gateway.pay(no, force=True))

        outcome = race(2, work)

        outcome.raise_first()
        job, reply = outcome.values
        assert (reply.status, reply.body) == (200, b"OK"), round_
        final = core.orders.get(number)
        pays = shop.events(number, OrderEvent.PAY)
        cancels = shop.events(number, OrderEvent.CANCEL)
        kinds = shop.anomaly_kinds(number)
        assert core.payments.attempt(no).status is PaymentStatus.SUCCEEDED, round_
        if final.status in (OrderStatus.PAID, OrderStatus.COMPLETED):
            assert (pays, cancels, kinds) == (1, 0, []), round_
            seen["paid"] += 1
        else:
            assert final.status is OrderStatus.CANCELED, round_
            assert final.cancel_reason is CancelReason.TIMEOUT, round_
            assert (pays, cancels, kinds) == (0, 1, ["payment_after_cancel"]), round_
            assert shop.coupon_uses(number) == [("TEN", "released")], round_
            seen["canceled"] += 1
        if isinstance(job, str):
            # A payment that lands between the platform refusing to close the trade (it is
            # paid) and the notification's commit leaves the job "skipped": it cancels nothing.
            expected = (
                {"settled", "skipped"} if final.status is not OrderStatus.CANCELED else {"canceled"}
            )
            assert job in expected, round_
    assert sum(seen.values()) == 10
    # Activation follows the paid ones only, once each.
    core.payments.run_due_jobs()
    assert len(shop.host.activated) == seen["paid"]
    assert len(set(shop.host.activated)) == seen["paid"]


def test_the_payment_read_locks_the_order_before_its_attempts(shop: Shop) -> None:
    # One statement reads and locks an order and its attempts. Every path that locks both
    # takes the order's row first; if this statement took an attempt's first, a payment and
    # such a path could deadlock. Hold the attempt's row elsewhere: the payment read must
    # then wait on it already holding the order's row (a NOWAIT lock of the order fails).
    core = shop.core
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    orders_t, attempts_t = core.tables.orders, core.tables.payment_attempts
    holder = core.engine.connect()
    holder.begin()
    holder.execute(
        select(attempts_t.c.id).where(attempts_t.c.out_trade_no == no).with_for_update()
    ).one()
    pid: list[int] = []

    def pay_read(_: int) -> object:
        with core.unit_of_work() as uow:
            pid.append(uow.conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
            return uow.payments.lock_for_payment(no)

    results: list[object] = []
    waiting = threading.Thread(target=lambda: results.append(pay_read(0)))
    try:
        waiting.start()
        probe = core.engine.connect()
        deadline = time.monotonic() + 10
        while True:  # until the payment read waits for a lock
            state = (
                probe.execute(
                    text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid[0]},
                ).scalar()
                if pid
                else None
            )
            probe.rollback()
            if state == "Lock":
                break
            assert time.monotonic() < deadline, "the payment read never waited"
            time.sleep(0.02)
        with probe.begin():
            probe.execute(text("SET LOCAL lock_timeout = '1ms'"))
            with pytest.raises(OperationalError, match="lock"):
                probe.execute(
                    select(orders_t.c.id)
                    .where(orders_t.c.number == order.number)
                    .with_for_update(nowait=True)
                )
        probe.close()
    finally:
        holder.rollback()
        holder.close()
    waiting.join(10)
    assert not waiting.is_alive()
    (found,) = results
    assert found is not None
    read_order, attempts = found  # type: ignore[misc]
    assert read_order.number == order.number
    assert [a.out_trade_no for a in attempts] == [no]
