"""What the payment tests share: a shop wired to the fake channel, a host plugin that records
(and on demand breaks) activation and notification, readers of the stored rows, and a race
helper for the concurrency tests.

The core is built the way docs/testing.md shows: ``ordercore.testing`` registered as a plugin,
``[channels.fake]`` given as a ``ChannelConfig`` holding a ``FakeGateway`` that runs on the
test's :class:`FakeClock`, so that notifications are signed and judged at the same time.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

import ordercore.testing
from helpers import Backend, FakeClock
from ordercore import Actor, Money, OrderCore, hookimpl
from ordercore._orders.domain import Order
from ordercore._outbox import ActivationContext, OutboxMessage
from ordercore._payments.domain import PaymentAttempt
from ordercore._state import OrderEvent
from ordercore.channels import HttpReply
from ordercore.testing import FakeGateway, SignedNotification, fake_channel_config

__all__ = [
    "ADMIN",
    "Host",
    "Race",
    "Shop",
    "cny",
    "make_shop",
    "race",
]

ADMIN = Actor.operator("alice", "admin")
#: The product's price; the coupon TEN takes 10 % off.
PRICE = "30.00"


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


class Host:
    """A host application's plugin: it activates orders and delivers notifications,
    recording every call. ``activation_failures`` / ``notify_failures_per_event`` make the
    next calls raise; ``probe`` (if set) runs inside each hook call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Every activation call: (order number, activation id, attempt number).
        self.activation_calls: list[tuple[str, str, int]] = []
        #: Orders whose activation call returned normally.
        self.activated: list[str] = []
        #: Every notify call's event id (failed ones too).
        self.notify_calls: list[str] = []
        #: Events whose delivery returned normally.
        self.notified: list[OutboxMessage] = []
        #: How many of the next activation calls raise.
        self.activation_failures = 0
        #: Each event's first N delivery attempts raise.
        self.notify_failures_per_event = 0
        self.probe: Callable[[str, str | None], None] | None = None

    @hookimpl
    def ordercore_activate_order(self, order: Order, ctx: ActivationContext) -> None:
        if self.probe is not None:
            self.probe("activate", order.number)
        with self._lock:
            self.activation_calls.append((order.number, ctx.activation_id, ctx.attempt))
            if self.activation_failures > 0:
                self.activation_failures -= 1
                raise RuntimeError(f"the host could not activate {order.number}")
            self.activated.append(order.number)

    @hookimpl
    def ordercore_notify(self, event: OutboxMessage) -> None:
        if self.probe is not None:
            self.probe("notify", event.order_number)
        with self._lock:
            self.notify_calls.append(event.id)
            if self.notify_calls.count(event.id) <= self.notify_failures_per_event:
                raise ConnectionError(f"the mail server refused {event.kind}")
            self.notified.append(event)

    def notified_ids(self) -> Counter[str]:
        with self._lock:
            return Counter(e.id for e in self.notified)

    def notified_kinds(self, number: str | None = None) -> list[str]:
        with self._lock:
            return [e.kind for e in self.notified if number is None or e.order_number == number]


@dataclass
class Shop:
    """A core with the fake channel, a customer, a product (30.00 CNY, 10 in stock) and a
    10 % coupon ``TEN``."""

    backend: Backend
    core: OrderCore
    clock: FakeClock
    gateway: FakeGateway
    host: Host
    customer_id: int

    # -- building ------------------------------------------------------------------------
    def order(self, *, coupon: str | None = "TEN", qty: int = 1, **kwargs: Any) -> Order:
        """A pending order for the shop's customer (27.00 CNY with the default coupon)."""
        return self.core.orders.create(
            customer_id=self.customer_id,
            items=[("vpn", qty)],
            coupon=coupon,
            actor=ADMIN,
            **kwargs,
        )

    def start(self, number: str, channel: str = "fake", method: str = "qr") -> PaymentAttempt:
        return self.core.payments.start(number, channel=channel, method=method, actor=ADMIN).attempt

    def deliver(
        self, signed: SignedNotification, channel: str = "fake", remote_addr: str = "10.0.0.1"
    ) -> HttpReply:
        headers, body = signed
        return self.core.payments.handle_callback(channel, headers, body, remote_addr)

    # -- reading -------------------------------------------------------------------------
    def count(self, table_name: str) -> int:
        table = getattr(self.core.tables, table_name)
        with self.core.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def outbox(self, number: str | None = None) -> list[dict[str, Any]]:
        with self.core.unit_of_work() as uow:
            return uow.payments.outbox_messages(order_number=number)

    def outbox_kinds(self, number: str | None = None) -> list[str]:
        return [m["kind"] for m in self.outbox(number)]

    def inbox(self, number: str | None = None) -> list[dict[str, Any]]:
        """Stored notifications, oldest first."""
        return list(reversed(self.core.payments.notifications(order_number=number, limit=1000)))

    def anomaly_kinds(self, number: str | None = None) -> list[str]:
        return [a.kind.value for a in self.core.anomalies.list(order_number=number, limit=1000)]

    def events(self, number: str, event: OrderEvent) -> int:
        """How many times ``event`` appears in the order's history."""
        return sum(1 for t in self.core.orders.get(number).history if t.event is event)

    def coupon_uses(self, number: str) -> list[tuple[str, str]]:
        return list(self.core.orders.details(number).coupons)

    def activation(self, number: str) -> dict[str, Any]:
        return dict(self.core.orders.details(number).activation)


def make_shop(backend: Backend, clock: FakeClock, **settings: Any) -> Shop:
    gateway = FakeGateway(clock=clock)
    host = Host()
    core = backend.core(clock, channels={"fake": fake_channel_config(gateway=gateway)}, **settings)
    core.register_plugin(ordercore.testing, name="ordercore.testing")
    core.register_plugin(host, name="host")
    customer = core.customers.add(name="Li Lei", email="li@example.com", actor=ADMIN)
    assert customer.id is not None
    core.products.add(sku="vpn", name="VPN", price=cny(PRICE), stock=10, actor=ADMIN)
    core.coupons.add(code="TEN", currency="CNY", percent="10", limit_total=50, actor=ADMIN)
    assert core.channel("fake").gateway is gateway  # type: ignore[attr-defined]
    return Shop(backend, core, clock, gateway, host, customer.id)


# -- races -----------------------------------------------------------------------------------


@dataclass
class Race:
    """What each worker of a race returned or raised."""

    values: list[Any] = field(default_factory=list)
    errors: list[BaseException | None] = field(default_factory=list)

    def raise_first(self) -> None:
        for error in self.errors:
            if error is not None:
                raise error


def race(workers: int, work: Callable[[int], Any], *, timeout: float = 60) -> Race:
    """Run ``work(i)`` in ``workers`` threads released together by a barrier."""
    barrier = threading.Barrier(workers)
    result = Race([None] * workers, [None] * workers)

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            result.values[i] = work(i)
        except BaseException as exc:
            result.errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a worker hung (deadlock?)"
    return result
