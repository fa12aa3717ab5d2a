"""Faults around a payment: the host's activation or notification failing, the database
failing in the middle of a callback, the process dying between the commit and the reply, the
platform not answering — and no database lock held while anything outside is called
(design.md guarantees 3, 5 and 6). SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, update
from sqlalchemy.exc import OperationalError

from helpers import Backend, FakeClock
from ordercore import OrderStatus
from ordercore._state import OrderEvent, PaymentStatus
from ordercore.adapters.sqlalchemy.payments import PaymentRepository
from ordercore.adapters.sqlalchemy.uow import UnitOfWork
from ordercore.channels import HttpReply, Outcome
from ordercore.testing import FakeChannel, SignedNotification, TradeStatus

from .payment_kit import ADMIN, Shop, make_shop

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
pytestmark = pytest.mark.parametrize("backend", [SQLITE, POSTGRESQL], indirect=True)

OK = (200, b"OK")


@pytest.fixture
def shop(backend: Backend, clock: FakeClock) -> Iterator[Shop]:
    built = make_shop(backend, clock)
    yield built
    built.core.close()


class DatabaseDown(Exception):
    """The database connection broke (injected)."""


class ProcessDied(BaseException):
    """The worker was killed (injected): nothing after this point runs."""


def paid_order(shop: Shop) -> tuple[str, str]:
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    assert shop.deliver(shop.gateway.pay(no)).status == 200
    return order.number, no


def deliver_expecting_failure(shop: Shop, signed: SignedNotification) -> None:
    """The delivery must not be acknowledged as accepted: either the call raises (the HTTP
    endpoint answers 500) or it answers with a failure status; the platform retries."""
    try:
        reply: HttpReply | None = shop.deliver(signed)
    except (DatabaseDown, ProcessDied):
        reply = None
    assert reply is None or reply.status >= 500, reply


# -------------------------------------------------------------------------- activation
def test_a_failing_activation_is_retried_with_backoff_and_done_once(shop: Shop) -> None:
    core, host, clock = shop.core, shop.host, shop.clock
    number, _ = paid_order(shop)
    host.activation_failures = 2

    first = core.payments.run_due_jobs()

    assert first.activation_failures == (number,)
    assert first.activated == ()
    assert core.orders.get(number).status is OrderStatus.PAID
    state = shop.activation(number)
    assert state["attempts"] == 1
    assert "RuntimeError" in state["error"]
    assert f"could not activate {number}" in state["error"]
    assert state["due_at"] == clock() + timedelta(minutes=1)
    assert "order.activation_failed" in shop.outbox_kinds(number)

    assert core.payments.run_due_jobs().activation_failures == ()  # not due yet
    clock.advance(61)
    assert core.payments.run_due_jobs().activation_failures == (number,)
    assert shop.activation(number)["attempts"] == 2
    clock.advance(61)  # the second retry waits two minutes
    assert core.payments.run_due_jobs().activated == ()
    assert len(host.activation_calls) == 2
    clock.advance(60)

    done = core.payments.run_due_jobs()

    assert done.activated == (number,)
    assert core.orders.get(number).status is OrderStatus.COMPLETED
    assert shop.activation(number)["error"] is None
    assert host.activation_calls == [(number, f"activate:{number}", n) for n in (1, 2, 3)]
    assert host.activated == [number]
    for _ in range(3):
        clock.advance(3600)
        core.payments.run_due_jobs()
    assert len(host.activation_calls) == 3
    assert shop.events(number, OrderEvent.COMPLETE) == 1


# ----------------------------------------------------------------- database mid-callback
def _fail_claim_event(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    # The claim is its own statement, or (PostgreSQL) one with the inbox row's insert.
    calls = Counter[str]()
    original = PaymentRepository.claim_event
    original_with_inbox = PaymentRepository.add_inbox_and_claim

    def claim_event(self: PaymentRepository, *args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise DatabaseDown("connection reset while claiming the event")
        return original(self, *args, **kwargs)

    def add_inbox_and_claim(self: PaymentRepository, *args: Any, **kwargs: Any) -> Any:
        if self.conn.dialect.name != "postgresql":
            return original_with_inbox(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise DatabaseDown("connection reset while storing the inbox row and the claim")
        return original_with_inbox(self, *args, **kwargs)

    monkeypatch.setattr(PaymentRepository, "claim_event", claim_event)
    monkeypatch.setattr(PaymentRepository, "add_inbox_and_claim", add_inbox_and_claim)
    return lambda: calls["n"]


def _fail_add_outbox(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Later in the same transaction: the attempt is saved, the coupon consumed, the order
    marked paid in memory — then the outbox insert fails."""
    calls = Counter[str]()
    original = PaymentRepository.add_outbox

    def add_outbox(self: PaymentRepository, *args: Any, **kwargs: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise DatabaseDown("connection reset while writing the outbox")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PaymentRepository, "add_outbox", add_outbox)
    return lambda: calls["n"]


def _fail_commit(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Every write done, the commit itself fails (the transaction is rolled back)."""
    calls = Counter[str]()
    original = UnitOfWork.commit

    def commit(self: UnitOfWork) -> None:
        applying = any(a.status is PaymentStatus.SUCCEEDED for a in self._attempts)
        if applying:
            calls["n"] += 1
            if calls["n"] == 1:
                raise DatabaseDown("connection reset during COMMIT")
        original(self)

    monkeypatch.setattr(UnitOfWork, "commit", commit)
    return lambda: calls["n"]


FAILURES = {
    "claim_event": _fail_claim_event,
    "add_outbox": _fail_add_outbox,
    "commit": _fail_commit,
}


def test_the_database_failing_mid_callback_leaves_nothing_half_applied(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = shop.core
    for where, inject in sorted(FAILURES.items()):
        order = shop.order()
        no = shop.start(order.number).out_trade_no
        signed = shop.gateway.pay(no)
        outbox_before = shop.count("outbox")
        inbox_before = len(shop.inbox())

        with monkeypatch.context() as patch:
            injected = inject(patch)
            deliver_expecting_failure(shop, signed)
            assert injected() == 1, where

        assert core.orders.get(order.number).status is OrderStatus.PENDING, where
        assert core.payments.attempt(no).status is PaymentStatus.PENDING, where
        assert shop.events(order.number, OrderEvent.PAY) == 0, where
        assert core.payments.attempt(no).received is None, where
        assert shop.count("outbox") == outbox_before, where
        assert shop.coupon_uses(order.number) == [("TEN", "reserved")], where
        entries = shop.inbox()
        assert len(entries) == inbox_before + 1, where  # the notification itself was kept
        assert entries[-1]["status"] not in ("applied", "duplicate"), where
        assert entries[-1]["body"] == signed.body, where
        assert core.audit.verify().ok, where

        # The platform delivers again: the work is completed, once.
        reply = shop.deliver(signed)

        assert (reply.status, reply.body) == OK, where
        assert core.orders.get(order.number).status is OrderStatus.PAID, where
        assert shop.events(order.number, OrderEvent.PAY) == 1, where
        assert shop.outbox_kinds(order.number) == ["order.paid"], where
        assert shop.coupon_uses(order.number) == [("TEN", "consumed")], where
        assert shop.inbox()[-1]["status"] == "applied", where
        assert core.payments.run_due_jobs().activated == (order.number,), where
    assert shop.count("payment_events") == len(FAILURES)
    assert core.audit.verify().ok


def test_the_process_dying_after_commit_before_the_reply(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = shop.core
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    signed = shop.gateway.pay(no)
    original = FakeChannel.acknowledge
    deaths = Counter[str]()

    def acknowledge(self: FakeChannel, accepted: bool, message: str = "") -> Any:
        if not deaths:  # the apply committed; the process dies before it replies
            deaths["n"] += 1
            raise ProcessDied
        return original(self, accepted, message)

    monkeypatch.setattr(FakeChannel, "acknowledge", acknowledge)

    deliver_expecting_failure(shop, signed)

    assert deaths["n"] == 1
    assert core.orders.get(order.number).status is OrderStatus.PAID  # the commit happened
    outbox_after_first = shop.outbox()
    assert [m["kind"] for m in outbox_after_first] == ["order.paid"]

    reply = shop.deliver(signed)  # the platform got no answer and delivers again

    assert (reply.status, reply.body) == OK
    assert shop.inbox()[-1]["status"] == "duplicate"
    assert shop.events(order.number, OrderEvent.PAY) == 1
    assert shop.outbox() == outbox_after_first
    assert shop.count("payment_events") == 1
    core.payments.run_due_jobs()
    core.payments.run_due_jobs()
    assert shop.host.activation_calls == [(order.number, f"activate:{order.number}", 1)]


# ----------------------------------------------------------------------------- outbox
def test_outbox_events_are_retried_and_delivered_once_per_id(shop: Shop) -> None:
    core, host, clock = shop.core, shop.host, shop.clock
    host.notify_failures_per_event = 1
    number, _ = paid_order(shop)

    first = core.payments.run_due_jobs()

    assert first.activated == (number,)
    assert first.delivered == 0
    assert first.delivery_failures == 2  # order.paid and order.completed
    assert host.notified == []
    pending = shop.outbox()
    assert all(m["delivered_at"] is None and m["last_error"] for m in pending)
    assert "ConnectionError" in pending[0]["last_error"]
    assert core.payments.run_due_jobs().total == 0  # retried later, not at once

    clock.advance(61)
    second = core.payments.run_due_jobs()

    assert second.delivered == 2
    ids = [m["event_id"] for m in shop.outbox()]
    assert len(set(ids)) == 2
    assert host.notified_ids() == Counter(dict.fromkeys(ids, 1))
    assert Counter(host.notify_calls) == Counter(dict.fromkeys(ids, 2))  # same id on retry
    assert all(m["delivered_at"] is not None and m["attempts"] == 2 for m in shop.outbox())
    for _ in range(3):
        clock.advance(600)
        core.payments.run_due_jobs()
    assert len(host.notify_calls) == 4


# ----------------------------------------------------------------- platform not answering
def test_a_lost_checkout_answer_is_resolved_by_query_not_by_time(shop: Shop) -> None:
    core, gateway, clock = shop.core, shop.gateway, shop.clock
    order = shop.order()
    gateway.fail_next("create", Outcome.UNKNOWN)  # the platform made the trade; no answer

    started = core.payments.start(order.number, channel="fake", method="qr", actor=ADMIN)

    no = started.attempt.out_trade_no
    assert started.attempt.status is PaymentStatus.UNKNOWN
    assert started.checkout is not None
    assert started.checkout.outcome is Outcome.UNKNOWN
    (op,) = core.payments.operations(no)
    assert (op["kind"], op["state"]) == ("create", "unknown")
    assert gateway.trade(no).status is TradeStatus.WAIT

    # Time passes and the platform still does not answer: the attempt stays unknown.
    gateway.fail_next("query", Outcome.UNKNOWN, times=2)
    assert core.payments.run_due_jobs().reconciled == ()  # not due for a minute
    clock.advance(61)
    core.payments.run_due_jobs()
    clock.advance(121)
    core.payments.run_due_jobs()
    assert gateway.calls["query"] == 2
    assert core.payments.attempt(no).status is PaymentStatus.UNKNOWN
    assert core.orders.get(order.number).status is OrderStatus.PENDING

    # The payer paid; the notification was lost too. The next check finds the money.
    gateway.pay(no)
    clock.advance(5 * 60)
    report = core.payments.run_due_jobs()

    assert report.reconciled == (no,)
    assert core.payments.attempt(no).status is PaymentStatus.SUCCEEDED
    assert core.orders.get(order.number).status is OrderStatus.COMPLETED
    assert report.activated == (order.number,)
    queries = [o for o in core.payments.operations(no) if o["kind"] == "query"]
    assert [o["state"] for o in queries] == ["unknown", "unknown", "succeeded"]

    # A channel plugin that raises (a transport error escaping it) is an unknown outcome
    # too, not a failure and not an exception for the host.
    other = shop.order()
    gateway.fail_next("create", error=TimeoutError("read timed out"))
    started = core.payments.start(other.number, channel="fake", method="qr", actor=ADMIN)
    assert started.attempt.status is PaymentStatus.UNKNOWN
    assert started.checkout is not None
    assert "TimeoutError" in (started.checkout.message or "")
    clock.advance(61)
    core.payments.run_due_jobs()  # the platform never saw it: still waiting, not failed
    assert core.payments.attempt(started.attempt.out_trade_no).status is PaymentStatus.PENDING


def test_an_unanswered_query_at_the_deadline_does_not_cancel_a_paid_order(shop: Shop) -> None:
    """The timeout job must ask the platform before cancelling; when the platform does not
    answer (and refuses to close the trade because it is paid), the outcome is unknown and
    the order must wait for the next check — not be cancelled because time passed."""
    core, gateway, clock = shop.core, shop.gateway, shop.clock
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    gateway.pay(no)  # paid at the platform; its notification is lost
    gateway.fail_next("query", Outcome.UNKNOWN)
    clock.advance(16 * 60)

    core.payments.run_due_jobs()

    assert core.orders.get(order.number).status is not OrderStatus.CANCELED
    clock.advance(5 * 60)
    core.payments.run_due_jobs()
    assert core.orders.get(order.number).status in (OrderStatus.PAID, OrderStatus.COMPLETED)
    assert shop.anomaly_kinds(order.number) == []


# ------------------------------------------------------------------------ no lock held
class LockProbe:
    """From a connection of its own, try to write the order's and the attempt's rows with a
    short lock timeout: it fails if the engine holds a lock on them (or, on SQLite, any
    write transaction) while it calls a channel or a hook."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        url = shop.backend.url
        if url.startswith("sqlite"):
            self.engine = create_engine(url, connect_args={"timeout": 0.3})
        else:
            self.engine = create_engine(url)
        self.results: list[tuple[str, str | None]] = []
        self.blocked: list[tuple[str, str]] = []

    def __call__(self, where: str, number: str | None) -> None:
        tables = self.shop.core.tables
        try:
            with self.engine.connect() as conn, conn.begin():
                if self.engine.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET LOCAL lock_timeout = '300ms'")
                if number is not None:
                    o, a = tables.orders, tables.payment_attempts
                    conn.execute(update(o).where(o.c.number == number).values(version=o.c.version))
                    conn.execute(
                        update(a)
                        .where(a.c.out_trade_no.like(f"{number}%"))
                        .values(check_count=a.c.check_count)
                    )
                else:
                    conn.execute(update(tables.outbox).values(attempts=tables.outbox.c.attempts))
                conn.rollback()
        except OperationalError as exc:
            self.blocked.append((where, str(exc.orig)[:200]))
        self.results.append((where, number))

    def wrap(
        self, target: Any, name: str, where: str, number_of: Callable[..., str | None]
    ) -> None:
        original = getattr(target, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self(where, number_of(*args, **kwargs))
            return original(*args, **kwargs)

        setattr(target, name, wrapper)

    def close(self) -> None:
        self.engine.dispose()


def test_no_database_lock_is_held_while_a_channel_or_a_hook_is_called(shop: Shop) -> None:
    core, gateway, clock = shop.core, shop.gateway, shop.clock
    probe = LockProbe(shop)
    channel = core.channel("fake")

    def order_of(out_trade_no: str) -> str:
        return out_trade_no[:-6]  # the attempt number is the order number + 6 characters

    probe.wrap(channel, "create_checkout", "create", lambda req: order_of(req.out_trade_no))
    probe.wrap(channel, "query_payment", "query", order_of)
    probe.wrap(channel, "close", "close", order_of)
    shop.host.probe = probe
    try:
        paid = shop.order()
        no = shop.start(paid.number).out_trade_no
        assert order_of(no) == paid.number
        clock.advance(61)
        core.payments.run_due_jobs()  # reconciles (query)
        assert shop.deliver(gateway.pay(no)).status == 200
        core.payments.run_due_jobs()  # activates and notifies
        late = shop.order()
        shop.start(late.number)
        clock.advance(16 * 60)
        assert core.payments.run_due_jobs().canceled == (late.number,)  # query, close
    finally:
        probe.close()

    called = {where for where, _ in probe.results}
    assert called == {"create", "query", "close", "activate", "notify"}
    assert probe.blocked == []
