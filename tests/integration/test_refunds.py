"""Refunds end to end (issue 5): requests by customers and operators, review (and the optional
automatic approval), paying out to the wallet or back through the channel (the refund id
committed before the call, unknown outcomes resolved only by a query or a notification,
retries that pay out once), refund notifications, refund windows, typed refund failures, and
everything that follows a refund (wallet, order, revocation hook, audit, notifications).

Happy paths run on every backend; rejections and edge cases on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from sqlalchemy import select

import ordercore.testing
from helpers import Backend, FakeClock, audit_rows, snapshot
from ordercore import (
    ActivationContext,
    Actor,
    AutoApproval,
    IllegalTransition,
    InvalidAmount,
    InvalidField,
    Money,
    Order,
    OrderEvent,
    OrderNotFound,
    OrderStatus,
    PaymentStatus,
    PermissionDenied,
    Refund,
    RefundDeadlinePassed,
    RefundDestination,
    RefundError,
    RefundFailure,
    RefundNotFound,
    RefundStatus,
    RefundUnavailable,
    hookimpl,
)
from ordercore.adapters.sqlalchemy.wallet import WalletRepository
from ordercore.channels import Outcome
from ordercore.testing import fake_channel_config

from .payment_kit import ADMIN, Shop, cny, make_shop

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
on_sqlite_and_postgresql = pytest.mark.parametrize("backend", [SQLITE, POSTGRESQL], indirect=True)

SUPPORT = Actor.operator("sam", "support")
FINANCE = Actor.operator("fay", "finance")
OK = (200, b"OK")


# ----------------------------------------------------------------------------- helpers
class Revocation(NamedTuple):
    """One call of the host's ``ordercore_revoke_order`` hook, as the host saw it."""

    order: str
    refund: str
    amount: Money
    order_status: OrderStatus
    refunded: Money
    activation_id: str


class Revoker:
    """The host's revoke service: records every call; ``failures`` makes the next calls
    raise (so the outbox retries them)."""

    def __init__(self) -> None:
        self.calls: list[Revocation] = []
        #: ``ctx.attempt`` of each call (the delivery try)
        self.attempts: list[int] = []
        self.failures = 0

    @hookimpl
    def ordercore_revoke_order(self, order: Order, refund: Refund, ctx: ActivationContext) -> None:
        self.calls.append(
            Revocation(
                order.number,
                refund.refund_no,
                refund.amount,
                order.status,
                order.amounts.refunded,
                ctx.activation_id,
            )
        )
        self.attempts.append(ctx.attempt)
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("the revoke service is down")


@pytest.fixture
def revoker() -> Revoker:
    return Revoker()


@pytest.fixture
def shop(backend: Backend, clock: FakeClock, revoker: Revoker) -> Iterator[Shop]:
    built = make_shop(backend, clock)
    built.core.register_plugin(revoker, name="revoker")
    yield built
    built.core.close()


def reconfigured(shop: Shop, channels: dict[str, Any], **settings: Any) -> Shop:
    """The same database, platform and host under a core started with other settings (a
    host restarted with its configuration changed)."""
    core = shop.backend.core(shop.clock, channels=channels, **settings)
    core.register_plugin(ordercore.testing, name="ordercore.testing")
    core.register_plugin(shop.host, name="host")
    return dataclasses.replace(shop, core=core)


def paid(shop: Shop, **order_args: Any) -> tuple[str, str]:
    """A paid order (27.00 CNY with the default coupon): ``(number, out_trade_no)``."""
    order = shop.order(**order_args)
    no = shop.start(order.number).out_trade_no
    shop.deliver(shop.gateway.pay(no))
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID
    return order.number, no


def customer_of(shop: Shop) -> Actor:
    return Actor.customer(str(shop.customer_id))


def balance(shop: Shop) -> Money:
    return shop.core.wallet.balance(shop.customer_id, "CNY")


def ledger_consistent(shop: Shop) -> bool:
    return shop.core.wallet.ledger_sum(shop.customer_id, "CNY") == balance(shop).to_minor()


def refund_entries(shop: Shop, number: str) -> list[tuple[str, int]]:
    """The order's wallet entries that gave money back: ``(reason, delta)``."""
    entries = shop.core.orders.details(number).wallet_entries
    return [(e.reason, e.delta) for e in entries if e.reason.startswith("order.refund")]


def outbox_payloads(shop: Shop, number: str, kind: str) -> list[dict[str, Any]]:
    return [m["payload"] for m in shop.outbox(number) if m["kind"] == kind]


def refund_operations(shop: Shop, refund_no: str) -> list[dict[str, Any]]:
    """The stored operations of a refund (read with plain SQL on a fresh connection, so
    only what is committed shows)."""
    t = shop.core.tables
    ops, refunds = t.payment_operations, t.refunds
    query = (
        select(ops.c.kind, ops.c.state, ops.c.refund_id, ops.c.request)
        .join(refunds, refunds.c.id == ops.c.refund_id)
        .where(refunds.c.refund_no == refund_no)
        .order_by(ops.c.id)
    )
    with shop.core.engine.connect() as conn:
        return [
            {"kind": r.kind, "state": r.state, "refund_id": r.refund_id, **json.loads(r.request)}
            for r in conn.execute(query)
        ]


def lock_without_waiting(shop: Shop, refund_no: str) -> None:
    """Take the row locks of a refund, its order and its payment from another connection,
    without waiting: raises if someone holds them (on SQLite, whose transactions all take
    the write lock, it would wait for the busy timeout and then raise)."""
    t = shop.core.tables
    refund = shop.core.refunds.get(refund_no)
    rows = [
        (t.orders, t.orders.c.number == refund.order_number),
        (t.refunds, t.refunds.c.refund_no == refund_no),
        (t.payment_attempts, t.payment_attempts.c.out_trade_no == refund.out_trade_no),
    ]
    with shop.core.engine.connect() as conn:
        for table, where in rows:
            conn.execute(select(table.c.id).where(where).with_for_update(nowait=True)).one()
        conn.rollback()


def order_actions(shop: Shop, number: str) -> list[str]:
    return [r.action for r in shop.core.audit.records("order", number)]


def refused(shop: Shop, error: type[Exception], call: Callable[[], object]) -> Any:
    """``call`` raises ``error`` and the database is exactly as it was."""
    before = snapshot(shop.core)
    with pytest.raises(error) as caught:
        call()
    assert snapshot(shop.core) == before
    return caught.value


def denied(shop: Shop, call: Callable[[], object]) -> PermissionDenied:
    """``call`` raises PermissionDenied and writes only the audit record of the refusal."""
    tables = shop.core.tables
    audit = {tables.audit_log.name, tables.audit_head.name, tables.audit_pending.name}
    before = {k: v for k, v in snapshot(shop.core).items() if k not in audit}
    seen = len(audit_rows(shop.core))
    with pytest.raises(PermissionDenied) as caught:
        call()
    after = {k: v for k, v in snapshot(shop.core).items() if k not in audit}
    assert after == before
    (record,) = audit_rows(shop.core)[seen:]
    assert record["action"] == "permission.denied"
    return caught.value


# ------------------------------------------------------------------- requests and review
def test_a_customer_asks_for_part_of_a_payment_back_to_balance_and_an_operator_approves(
    shop: Shop, revoker: Revoker
) -> None:
    core = shop.core
    number, no = paid(shop)

    requested = core.refunds.request(
        number,
        amount="5.00",
        destination="balance",
        reason="one week unused",
        actor=customer_of(shop),
    )

    assert requested.status is RefundStatus.REQUESTED
    assert requested.refund_no == f"{number}R01"
    assert (requested.amount, requested.destination) == (cny("5.00"), RefundDestination.BALANCE)
    assert requested.out_trade_no == no
    assert requested.requested_by == customer_of(shop)
    assert balance(shop) == cny("0.00")  # nothing moves before the review
    assert core.refunds.refundable(number) == cny("22.00")  # the request holds its amount
    assert outbox_payloads(shop, number, "refund.requested")[0]["amount"] == "5.00"

    done = core.refunds.approve(requested.refund_no, actor=FINANCE, note="fine")

    # Approving a balance refund completes it in the same call (one transaction).
    assert done.status is RefundStatus.SUCCEEDED
    assert done.decided_by == FINANCE
    assert done.completed_at == shop.clock()
    assert balance(shop) == cny("5.00")
    assert ledger_consistent(shop)
    assert refund_entries(shop, number) == [("order.refund", 500)]
    order = core.orders.get(number)
    assert order.status is OrderStatus.PAID  # a partial refund keeps the status
    assert order.amounts.refunded == cny("5.00")
    assert shop.gateway.refund_calls == 0
    assert shop.outbox_kinds(number) == [
        "order.paid",
        "refund.requested",
        "refund.approved",
        "order.revoke",
        "refund.succeeded",
    ]
    (succeeded,) = outbox_payloads(shop, number, "refund.succeeded")
    assert (succeeded["refund"], succeeded["full"]) == (done.refund_no, False)
    actions = order_actions(shop, number)
    for action in ("refund.request", "refund.approve", "refund.start", "refund.succeed"):
        assert actions.count(action) == 1, action
    assert "order.refunded_amount" in actions
    (listed,) = core.orders.details(number).refunds
    assert (listed.refund_no, listed.status) == (done.refund_no, RefundStatus.SUCCEEDED)

    assert revoker.calls == []  # the hook runs from the outbox, after the commit
    core.payments.run_due_jobs()
    assert revoker.calls == [
        Revocation(
            number,
            done.refund_no,
            cny("5.00"),
            OrderStatus.COMPLETED,  # activated by the same job pass, before the outbox
            cny("5.00"),
            f"revoke:{done.refund_no}",
        )
    ]
    assert "refund.succeeded" in shop.host.notified_kinds(number)
    assert core.audit.verify().ok


@on_sqlite_and_postgresql
def test_a_balance_refund_is_one_transaction_with_the_wallet(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    number, _no = paid(shop)
    refund = shop.core.refunds.request(number, destination="balance", reason="r", actor=ADMIN)

    def broken(self: WalletRepository, **change: Any) -> Any:
        raise RuntimeError("the wallet write failed")

    monkeypatch.setattr(WalletRepository, "apply", broken)
    # The wallet write fails after the refund, the order and the outbox were changed in the
    # same transaction: all of it is rolled back.
    refused(shop, RuntimeError, lambda: shop.core.refunds.approve(refund.refund_no, actor=ADMIN))
    monkeypatch.undo()

    assert shop.core.refunds.get(refund.refund_no).status is RefundStatus.REQUESTED
    done = shop.core.refunds.approve(refund.refund_no, actor=ADMIN)
    assert done.status is RefundStatus.SUCCEEDED
    assert balance(shop) == cny("27.00")


def test_partial_refunds_of_one_payment_reach_the_paid_amount_and_refund_the_order(
    shop: Shop, revoker: Revoker
) -> None:
    core = shop.core
    number, no = paid(shop)
    first = core.refunds.request(
        number,
        amount="10.00",
        destination="original",
        reason="part",
        actor=ADMIN,
        out_trade_no=no,
    )
    first = core.refunds.approve(first.refund_no, actor=ADMIN)
    second = core.refunds.request(
        number, amount=cny("7.00"), destination="balance", reason="part", actor=ADMIN
    )
    second = core.refunds.approve(second.refund_no, actor=ADMIN)
    assert core.orders.get(number).status is OrderStatus.PAID
    assert core.refunds.refundable(number) == cny("10.00")

    rest = core.refunds.request(number, destination="original", reason="the rest", actor=ADMIN)

    assert rest.amount == cny("10.00")  # no amount: everything still refundable
    rest = core.refunds.approve(rest.refund_no, actor=ADMIN)
    assert [r.status for r in (first, second, rest)] == [RefundStatus.SUCCEEDED] * 3
    assert [r.refund_no for r in (first, second, rest)] == [f"{number}R0{i}" for i in (1, 2, 3)]
    order = core.orders.get(number)
    assert order.status is OrderStatus.REFUNDED
    assert order.amounts.refunded == cny("27.00")
    assert shop.events(number, OrderEvent.REFUND) == 1
    assert core.refunds.refundable(number) == cny("0.00")
    # Two refunds went back through the platform, each once, against the same trade.
    assert shop.gateway.refunds_made == 2
    assert shop.gateway.trade(no).refunded == cny("20.00")
    assert sorted(r.out_refund_no for r in shop.gateway.refunds()) == [
        first.refund_no,
        rest.refund_no,
    ]
    assert balance(shop) == cny("7.00")
    assert ledger_consistent(shop)
    after_sales = core.after_sales.show(number)
    assert (after_sales.paid, after_sales.refunded, after_sales.refundable) == (
        cny("27.00"),
        cny("27.00"),
        cny("0.00"),
    )
    assert [p["full"] for p in outbox_payloads(shop, number, "refund.succeeded")] == [
        False,
        False,
        True,
    ]

    core.payments.run_due_jobs()

    assert [(c.refund, c.amount) for c in revoker.calls] == [
        (first.refund_no, cny("10.00")),
        (second.refund_no, cny("7.00")),
        (rest.refund_no, cny("10.00")),
    ]
    # The order arrives refunded (the hook reads it when the outbox is delivered).
    assert {c.order_status for c in revoker.calls} == {OrderStatus.REFUNDED}
    assert len({c.activation_id for c in revoker.calls}) == 3
    # The fully refunded order is never activated afterwards.
    assert shop.host.activation_calls == []
    core.payments.run_due_jobs()
    assert len(revoker.calls) == 3
    assert core.audit.verify().ok


def test_a_full_refund_gives_back_the_balance_deducted_at_checkout(shop: Shop) -> None:
    core = shop.core
    core.wallet.credit(shop.customer_id, cny("4.00"), reason="top-up", actor=ADMIN)
    number, _no = paid(shop, use_balance=cny("4.00"))
    assert core.orders.get(number).amounts.paid == cny("23.00")
    assert balance(shop) == cny("0.00")

    refund = core.refunds.request(number, destination="original", reason="all", actor=ADMIN)
    refund = core.refunds.approve(refund.refund_no, actor=ADMIN)

    assert refund.amount == cny("23.00")
    assert core.orders.get(number).status is OrderStatus.REFUNDED
    assert refund_entries(shop, number) == [("order.refund_return", 400)]
    assert balance(shop) == cny("4.00")
    assert ledger_consistent(shop)


def test_a_rejection_is_recorded_frees_the_amount_and_notifies_the_customer(
    shop: Shop, revoker: Revoker
) -> None:
    core = shop.core
    number, _no = paid(shop)
    refund = core.refunds.request(
        number, destination="balance", reason="changed my mind", actor=customer_of(shop)
    )
    assert core.refunds.refundable(number) == cny("0.00")

    rejected = core.refunds.reject(refund.refund_no, actor=FINANCE, reason="service was used")

    assert rejected.status is RefundStatus.REJECTED
    assert (rejected.decided_by, rejected.decision_note) == (FINANCE, "service was used")
    assert core.refunds.get(refund.refund_no).status is RefundStatus.REJECTED
    (payload,) = outbox_payloads(shop, number, "refund.rejected")
    assert payload["rejection"] == "service was used"
    assert payload["customer_id"] == shop.customer_id
    assert "refund.reject" in order_actions(shop, number)
    assert core.refunds.refundable(number) == cny("27.00")
    assert balance(shop) == cny("0.00")
    assert core.orders.get(number).amounts.refunded == cny("0.00")
    core.payments.run_due_jobs()
    assert "refund.rejected" in shop.host.notified_kinds(number)
    assert revoker.calls == []
    # Rejected is final.
    refused(shop, IllegalTransition, lambda: core.refunds.approve(refund.refund_no, actor=ADMIN))


@on_sqlite_and_postgresql
def test_refunds_are_listed_by_order_and_status(shop: Shop) -> None:
    core = shop.core
    number, _no = paid(shop)
    other, _ = paid(shop)
    a = core.refunds.request(number, amount="1.00", destination="balance", reason="a", actor=ADMIN)
    b = core.refunds.request(number, amount="2.00", destination="balance", reason="b", actor=ADMIN)
    c = core.refunds.request(other, amount="3.00", destination="balance", reason="c", actor=ADMIN)
    core.refunds.approve(b.refund_no, actor=ADMIN)

    assert [r.refund_no for r in core.refunds.for_order(number)] == [a.refund_no, b.refund_no]
    by_order = core.refunds.list(order_number=number)
    assert sorted(r.refund_no for r in by_order) == [a.refund_no, b.refund_no]
    waiting = core.refunds.list(status="requested")
    assert sorted(r.refund_no for r in waiting) == [a.refund_no, c.refund_no]
    assert [r.refund_no for r in core.refunds.list(status="succeeded")] == [b.refund_no]
    with pytest.raises(InvalidField):
        core.refunds.list(status="lost")


# ----------------------------------------------------------------- automatic approval
@on_sqlite_and_postgresql
def test_without_rules_every_request_waits_for_an_operator(shop: Shop) -> None:
    number, _no = paid(shop)
    refund = shop.core.refunds.request(
        number, amount="0.01", destination="balance", reason="tiny", actor=customer_of(shop)
    )
    assert refund.status is RefundStatus.REQUESTED
    assert balance(shop) == cny("0.00")


RULES = AutoApproval(
    max_amount=Decimal("10.00"),
    within_hours=24,
    never_activated=True,
    destinations=frozenset({RefundDestination.BALANCE, RefundDestination.ORIGINAL}),
)


def test_a_request_within_the_auto_approval_rules_is_paid_out_at_once(
    backend: Backend, clock: FakeClock
) -> None:
    shop = make_shop(backend, clock, refund_auto_approve=RULES)
    number, _no = paid(shop)
    clock.advance(23 * 3600)

    to_balance = shop.core.refunds.request(
        number, amount="10.00", destination="balance", reason="r", actor=customer_of(shop)
    )
    to_channel = shop.core.refunds.request(
        number, amount="1.00", destination="original", reason="r", actor=customer_of(shop)
    )

    assert to_balance.status is RefundStatus.SUCCEEDED
    assert to_balance.decided_by == Actor.system("auto-approval")
    assert to_channel.status is RefundStatus.SUCCEEDED
    assert shop.gateway.refunds_made == 1
    assert balance(shop) == cny("10.00")
    assert shop.core.orders.get(number).amounts.refunded == cny("11.00")
    assert shop.outbox_kinds(number).count("refund.approved") == 2


AUTO_CASES = {
    # case: (rules, hours after payment, activate first, amount, destination)
    "above-max-amount": (RULES, 1, False, "10.01", "balance"),
    "too-long-after-payment": (RULES, 25, False, "1.00", "balance"),
    "already-activated": (RULES, 1, True, "1.00", "balance"),
    "destination-not-allowed": (
        AutoApproval(destinations=frozenset({RefundDestination.BALANCE})),
        1,
        False,
        "1.00",
        "original",
    ),
}


@on_sqlite_and_postgresql
@pytest.mark.parametrize("case", sorted(AUTO_CASES))
def test_a_request_breaking_any_auto_approval_rule_waits_for_review(
    backend: Backend, clock: FakeClock, case: str
) -> None:
    rules, hours, activate, amount, destination = AUTO_CASES[case]
    shop = make_shop(backend, clock, refund_auto_approve=rules)
    number, _no = paid(shop)
    if activate:
        shop.core.payments.run_due_jobs()
        assert shop.core.orders.get(number).status is OrderStatus.COMPLETED
    clock.advance(hours * 3600)

    refund = shop.core.refunds.request(
        number, amount=amount, destination=destination, reason="r", actor=customer_of(shop)
    )

    assert refund.status is RefundStatus.REQUESTED
    assert refund.decided_by is None
    assert shop.gateway.refund_calls == 0
    assert balance(shop) == cny("0.00")


# ------------------------------------------------------------- paying out through a channel
def test_the_refund_id_is_committed_before_the_channel_is_called(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = shop.core
    number, no = paid(shop)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    seen: list[tuple[str, list[dict[str, Any]], RefundStatus]] = []
    real = shop.gateway.refund

    def probe(request: Any, **kwargs: Any) -> Any:
        # What another connection sees while the platform is being called: the refund and
        # its operation committed, and no lock held.
        lock_without_waiting(shop, request.out_refund_no)
        stored = core.refunds.get(request.out_refund_no).status
        seen.append((request.out_refund_no, refund_operations(shop, request.out_refund_no), stored))
        return real(request, **kwargs)

    monkeypatch.setattr(shop.gateway, "refund", probe)

    done = core.refunds.approve(refund.refund_no, actor=ADMIN)

    assert done.status is RefundStatus.SUCCEEDED
    ((sent_no, ops, status_during_call),) = seen
    assert sent_no == refund.refund_no
    assert status_during_call is RefundStatus.PROCESSING
    (op,) = ops
    assert (op["kind"], op["state"], op["out_refund_no"]) == ("refund", "pending", sent_no)
    assert op["refund_id"] == done.id
    (after,) = refund_operations(shop, refund.refund_no)
    assert after["state"] == "succeeded"
    (record,) = shop.gateway.refunds()
    assert (record.out_refund_no, record.out_trade_no, record.amount) == (
        refund.refund_no,
        no,
        cny("27.00"),
    )
    assert done.channel_refund_no == record.refund_no
    assert core.orders.get(number).status is OrderStatus.REFUNDED


def test_an_async_refund_completes_with_its_notification_which_is_no_payment(
    shop: Shop, revoker: Revoker
) -> None:
    core, gateway = shop.core, shop.gateway
    gateway.refund_mode = "async"
    number, no = paid(shop)
    payment_events = shop.count("payment_events")
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)

    processing = core.refunds.approve(refund.refund_no, actor=ADMIN)

    assert processing.status is RefundStatus.PROCESSING
    assert core.orders.get(number).amounts.refunded == cny("0.00")
    assert core.refunds.refundable(number) == cny("0.00")  # held while it is paid out
    notification = gateway.settle_refund(refund.refund_no)

    reply = shop.deliver(notification)

    assert (reply.status, reply.body) == OK
    done = core.refunds.get(refund.refund_no)
    assert done.status is RefundStatus.SUCCEEDED
    assert done.channel_refund_no == gateway.refund_record(refund.refund_no).refund_no
    order = core.orders.get(number)
    assert order.status is OrderStatus.REFUNDED
    entry = shop.inbox()[-1]
    assert (entry["status"], entry["order_number"]) == ("applied", number)
    # A refund notification never counts as a payment.
    assert shop.count("payment_events") == payment_events
    assert shop.events(number, OrderEvent.PAY) == 1
    assert core.payments.attempt(no).status is PaymentStatus.SUCCEEDED
    assert order.amounts.paid == cny("27.00")

    # Delivered again: acknowledged, applied nothing.
    assert (shop.deliver(notification).status, shop.inbox()[-1]["status"]) == (200, "duplicate")
    assert shop.outbox_kinds(number).count("refund.succeeded") == 1
    core.payments.run_due_jobs()
    assert [c.refund for c in revoker.calls] == [refund.refund_no]


@on_sqlite_and_postgresql
def test_an_async_refund_whose_notification_is_lost_is_settled_by_a_query_after_the_lease(
    shop: Shop,
) -> None:
    core, gateway = shop.core, shop.gateway
    gateway.refund_mode = "async"
    number, _no = paid(shop)
    refund = core.refunds.request(
        number, amount="7.00", destination="original", reason="r", actor=ADMIN
    )
    core.refunds.approve(refund.refund_no, actor=ADMIN)

    # The call in flight is left alone during its lease.
    assert core.payments.run_due_jobs().refunds == ()
    assert gateway.calls["query_refund"] == 0
    shop.clock.advance(6 * 60)
    assert core.payments.run_due_jobs().refunds == ()  # asked: still pending at the platform
    assert gateway.calls["query_refund"] == 1
    assert core.refunds.get(refund.refund_no).status is RefundStatus.PROCESSING
    gateway.settle_refund(refund.refund_no)  # the notification is never delivered
    shop.clock.advance(3600)

    report = core.payments.run_due_jobs()

    assert report.refunds == (refund.refund_no,)
    assert core.refunds.get(refund.refund_no).status is RefundStatus.SUCCEEDED
    assert core.orders.get(number).amounts.refunded == cny("7.00")
    assert gateway.refunds_made == 1


def test_a_lost_answer_leaves_the_refund_unknown_until_a_query_resolves_it(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    number, _no = paid(shop)
    gateway.fail_next("refund", Outcome.UNKNOWN, lose_answer_after_apply=True)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)

    unknown = core.refunds.approve(refund.refund_no, actor=ADMIN)

    assert unknown.status is RefundStatus.UNKNOWN
    assert gateway.refunds_made == 1  # the platform did pay it out
    assert core.orders.get(number).amounts.refunded == cny("0.00")
    assert core.refunds.refundable(number) == cny("0.00")  # an unknown refund holds its amount
    with pytest.raises(InvalidAmount):
        core.refunds.request(number, amount="0.01", destination="balance", reason="r", actor=ADMIN)
    (op,) = refund_operations(shop, refund.refund_no)
    assert op["state"] == "unknown"

    shop.clock.advance(30 * 86400)  # time alone resolves nothing
    assert core.refunds.get(refund.refund_no).status is RefundStatus.UNKNOWN

    report = core.payments.run_due_jobs()

    assert report.refunds == (refund.refund_no,)
    assert core.refunds.get(refund.refund_no).status is RefundStatus.SUCCEEDED
    assert core.orders.get(number).status is OrderStatus.REFUNDED
    assert (gateway.refund_calls, gateway.calls["query_refund"], gateway.refunds_made) == (1, 1, 1)
    assert [op["kind"] for op in refund_operations(shop, refund.refund_no)] == [
        "refund",
        "refund_query",
    ]


def test_retrying_an_unknown_refund_reuses_its_refund_id_and_pays_out_once(
    shop: Shop, revoker: Revoker
) -> None:
    core, gateway = shop.core, shop.gateway
    number, _no = paid(shop)
    gateway.fail_next("refund", Outcome.UNKNOWN, lose_answer_after_apply=True)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    assert core.refunds.approve(refund.refund_no, actor=ADMIN).status is RefundStatus.UNKNOWN

    retried = core.refunds.retry(refund.refund_no, actor=ADMIN)

    assert retried.status is RefundStatus.SUCCEEDED
    assert retried.tries == 2
    assert (gateway.refund_calls, gateway.refunds_made) == (2, 1)
    ops = refund_operations(shop, refund.refund_no)
    assert [(op["kind"], op["out_refund_no"], op["try"]) for op in ops] == [
        ("refund", refund.refund_no, 1),
        ("refund", refund.refund_no, 2),
    ]
    assert core.orders.get(number).amounts.refunded == cny("27.00")
    core.payments.run_due_jobs()
    assert len(revoker.calls) == 1


@on_sqlite_and_postgresql
def test_an_unknown_refund_the_platform_never_made_fails_retryably_and_retry_pays_it(
    shop: Shop,
) -> None:
    core, gateway = shop.core, shop.gateway
    number, _no = paid(shop)
    # The transport fails before the platform sees the request (a connect timeout).
    gateway.fail_next("refund", error=TimeoutError("connect timed out"))
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    unknown = core.refunds.approve(refund.refund_no, actor=ADMIN)
    assert unknown.status is RefundStatus.UNKNOWN
    assert gateway.refunds_made == 0

    failed = core.refunds.reconcile(refund.refund_no)

    assert failed.status is RefundStatus.FAILED
    assert failed.failure is RefundFailure.CHANNEL_ERROR
    assert failed.retryable
    assert core.refunds.refundable(number) == cny("27.00")  # a failed refund holds nothing
    retried = core.refunds.retry(refund.refund_no, actor=ADMIN)
    assert retried.status is RefundStatus.SUCCEEDED
    assert gateway.refunds_made == 1
    assert gateway.refund_record(refund.refund_no).amount == cny("27.00")


def failed_original_refund(shop: Shop, number: str) -> Refund:
    """A full refund through the channel that the platform refused (a system error)."""
    shop.gateway.fail_next("refund", Outcome.FAILED, code="SYSTEM_ERROR", retryable=True)
    refund = shop.core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    failed = shop.core.refunds.approve(refund.refund_no, actor=ADMIN)
    assert failed.status is RefundStatus.FAILED
    return failed


@on_sqlite_and_postgresql
def test_a_late_success_after_a_recorded_failure_wins(shop: Shop) -> None:
    """The platform says the money went out after we recorded a failure: the refund
    succeeded (leaving it failed would let it be paid out a second time)."""
    core = shop.core
    number, no = paid(shop)
    refund = failed_original_refund(shop, number)

    reply = shop.deliver(
        shop.gateway.notification_for(
            no, "refund.succeeded", amount="27.00", out_refund_no=refund.refund_no
        )
    )

    assert reply.status == 200
    assert shop.inbox()[-1]["status"] == "applied"
    assert core.refunds.get(refund.refund_no).status is RefundStatus.SUCCEEDED
    assert core.orders.get(number).status is OrderStatus.REFUNDED
    assert core.anomalies.list(order_number=number) == []


@on_sqlite_and_postgresql
def test_a_late_success_of_a_refund_paid_again_meanwhile_is_an_over_refund_anomaly(
    shop: Shop, revoker: Revoker
) -> None:
    core = shop.core
    number, no = paid(shop)
    refund = failed_original_refund(shop, number)
    again = core.refunds.request(number, destination="balance", reason="r", actor=ADMIN)
    core.refunds.approve(again.refund_no, actor=ADMIN)
    assert core.orders.get(number).status is OrderStatus.REFUNDED

    shop.deliver(
        shop.gateway.notification_for(
            no, "refund.succeeded", amount="27.00", out_refund_no=refund.refund_no
        )
    )

    late = core.refunds.get(refund.refund_no)
    assert late.status is RefundStatus.SUCCEEDED  # it did go out
    assert not late.counts_toward_order
    order = core.orders.get(number)
    assert (order.amounts.paid, order.amounts.refunded) == (cny("27.00"), cny("27.00"))
    (anomaly,) = core.anomalies.list(order_number=number)
    assert (anomaly.kind.value, anomaly.evidence["refund"]) == ("over_refund", refund.refund_no)
    assert "anomaly.opened" in shop.outbox_kinds(number)
    core.payments.run_due_jobs()
    assert [c.refund for c in revoker.calls] == [again.refund_no]


@on_sqlite_and_postgresql
def test_an_unknown_refund_is_resolved_by_the_platforms_notification(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    number, no = paid(shop)
    gateway.fail_next("refund", Outcome.UNKNOWN, lose_answer_after_apply=True)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    assert core.refunds.approve(refund.refund_no, actor=ADMIN).status is RefundStatus.UNKNOWN

    reply = shop.deliver(
        gateway.notification_for(no, "refund.succeeded", out_refund_no=refund.refund_no)
    )

    assert reply.status == 200
    assert core.refunds.get(refund.refund_no).status is RefundStatus.SUCCEEDED
    assert core.orders.get(number).status is OrderStatus.REFUNDED
    assert core.payments.run_due_jobs().refunds == ()  # nothing left to ask
    assert (gateway.refund_calls, gateway.calls["query_refund"], gateway.refunds_made) == (1, 0, 1)


@on_sqlite_and_postgresql
def test_a_notification_that_overtakes_the_calls_answer_is_applied_once(
    shop: Shop, revoker: Revoker, monkeypatch: pytest.MonkeyPatch
) -> None:
    core, gateway = shop.core, shop.gateway
    number, no = paid(shop)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    real = gateway.refund

    def answer_after_the_notification(request: Any, **kwargs: Any) -> Any:
        result = real(request, **kwargs)
        notification = gateway.notification_for(
            no, "refund.succeeded", out_refund_no=request.out_refund_no
        )
        assert shop.deliver(notification).status == 200
        return result

    monkeypatch.setattr(gateway, "refund", answer_after_the_notification)

    done = core.refunds.approve(refund.refund_no, actor=ADMIN)

    assert done.status is RefundStatus.SUCCEEDED
    assert shop.inbox()[-1]["status"] == "applied"
    assert core.orders.get(number).amounts.refunded == cny("27.00")
    assert shop.outbox_kinds(number).count("refund.succeeded") == 1
    assert order_actions(shop, number).count("refund.succeed") == 1
    (op,) = refund_operations(shop, refund.refund_no)
    assert op["state"] == "succeeded"  # the call's answer is still recorded
    core.payments.run_due_jobs()
    assert len(revoker.calls) == 1


@on_sqlite_and_postgresql
def test_a_refund_notification_with_another_amount_is_an_anomaly(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    gateway.refund_mode = "async"
    number, no = paid(shop)
    refund = core.refunds.request(
        number, amount="5.00", destination="original", reason="r", actor=ADMIN
    )
    core.refunds.approve(refund.refund_no, actor=ADMIN)

    reply = shop.deliver(
        gateway.notification_for(
            no, "refund.succeeded", amount="50.00", out_refund_no=refund.refund_no
        )
    )

    assert reply.status == 200
    assert shop.inbox()[-1]["status"] == "anomaly"
    (anomaly,) = core.anomalies.list(order_number=number)
    assert anomaly.kind.value == "amount_mismatch"
    assert (anomaly.evidence["refund"], anomaly.evidence["received"]) == (
        refund.refund_no,
        "50.00 CNY",
    )
    assert core.refunds.get(refund.refund_no).status is RefundStatus.PROCESSING
    assert core.orders.get(number).amounts.refunded == cny("0.00")


def test_a_payment_from_the_balance_goes_back_to_the_balance(shop: Shop) -> None:
    core = shop.core
    core.wallet.credit(shop.customer_id, cny("30.00"), reason="top-up", actor=ADMIN)
    order = shop.order()
    core.payments.start(order.number, channel="balance", actor=ADMIN)
    assert balance(shop) == cny("3.00")

    refund = core.refunds.request(
        order.number, destination="original", reason="r", actor=customer_of(shop)
    )
    refund = core.refunds.approve(refund.refund_no, actor=ADMIN)

    assert refund.status is RefundStatus.SUCCEEDED
    assert balance(shop) == cny("30.00")
    assert ledger_consistent(shop)
    assert refund_entries(shop, order.number) == [("order.refund", 2700)]
    assert shop.gateway.refund_calls == 0
    assert core.orders.get(order.number).status is OrderStatus.REFUNDED


# ------------------------------------------------------------------ refund notifications
@on_sqlite_and_postgresql
def test_a_refund_notification_for_an_unknown_refund_id_is_acknowledged_and_ignored(
    shop: Shop,
) -> None:
    number, no = paid(shop)
    before = snapshot(shop.core)
    inbox = shop.core.tables.inbox.name
    signed = shop.gateway.notification_for(
        no, "refund.succeeded", amount="27.00", out_refund_no=f"{number}R09"
    )

    reply = shop.deliver(signed)

    assert (reply.status, reply.body) == OK  # acknowledged, so the platform stops
    entry = shop.inbox()[-1]
    assert entry["status"] == "ignored"
    assert "not ours" in entry["reason"]
    after = snapshot(shop.core)
    assert {k: v for k, v in after.items() if k != inbox} == {
        k: v for k, v in before.items() if k != inbox
    }
    assert shop.core.orders.get(number).amounts.refunded == cny("0.00")


@on_sqlite_and_postgresql
def test_a_refund_notification_for_a_refund_still_under_review_changes_nothing(
    shop: Shop,
) -> None:
    number, no = paid(shop)
    waiting = shop.core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    before = snapshot(shop.core)
    inbox = shop.core.tables.inbox.name

    reply = shop.deliver(
        shop.gateway.notification_for(
            no, "refund.succeeded", amount="27.00", out_refund_no=waiting.refund_no
        )
    )

    assert reply.status == 200
    assert shop.inbox()[-1]["status"] != "applied"
    after = snapshot(shop.core)
    assert {k: v for k, v in after.items() if k != inbox} == {
        k: v for k, v in before.items() if k != inbox
    }
    assert shop.core.refunds.get(waiting.refund_no).status is RefundStatus.REQUESTED


@on_sqlite_and_postgresql
def test_a_tampered_refund_notification_is_rejected_and_changes_nothing(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    gateway.refund_mode = "async"
    number, no = paid(shop)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    core.refunds.approve(refund.refund_no, actor=ADMIN)
    gateway.settle_refund(refund.refund_no)
    tampered = gateway.notification_for(
        no, "refund.succeeded", out_refund_no=refund.refund_no, tamper=True
    )

    reply = shop.deliver(tampered)

    assert reply.status == 400
    entry = shop.inbox()[-1]
    assert entry["status"] == "rejected"
    assert entry["reason"].startswith("bad_signature:")
    assert core.refunds.get(refund.refund_no).status is RefundStatus.PROCESSING
    assert core.orders.get(number).amounts.refunded == cny("0.00")
    # The genuine one still applies.
    shop.deliver(gateway.notification_for(no, "refund.succeeded", out_refund_no=refund.refund_no))
    assert core.refunds.get(refund.refund_no).status is RefundStatus.SUCCEEDED


@on_sqlite_and_postgresql
def test_a_refund_failed_notification_fails_the_refund_and_frees_its_amount(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    gateway.refund_mode = "async"
    number, _no = paid(shop)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    core.refunds.approve(refund.refund_no, actor=ADMIN)

    reply = shop.deliver(gateway.settle_refund(refund.refund_no, succeeded=False))

    assert reply.status == 200
    failed = core.refunds.get(refund.refund_no)
    assert failed.status is RefundStatus.FAILED
    assert core.refunds.refundable(number) == cny("27.00")
    (payload,) = outbox_payloads(shop, number, "refund.failed")
    assert payload["failure"] == failed.failure.value  # type: ignore[union-attr]
    assert core.orders.get(number).status is OrderStatus.PAID


# --------------------------------------------------------------- refund failures as data
def test_a_merchant_balance_shortfall_fails_the_refund_retryably_and_a_retry_pays_it(
    shop: Shop, revoker: Revoker
) -> None:
    core, gateway = shop.core, shop.gateway
    number, _no = paid(shop)
    gateway.fail_next("refund", Outcome.FAILED, code="NOT_ENOUGH_BALANCE")
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)

    failed = core.refunds.approve(refund.refund_no, actor=ADMIN)

    assert failed.status is RefundStatus.FAILED
    assert failed.failure is RefundFailure.MERCHANT_BALANCE_INSUFFICIENT
    assert failed.channel_code == "NOT_ENOUGH_BALANCE"
    assert failed.retryable
    (payload,) = outbox_payloads(shop, number, "refund.failed")
    assert (payload["failure"], payload["retryable"]) == ("merchant_balance_insufficient", True)
    assert gateway.refunds_made == 0
    assert core.orders.get(number).amounts.refunded == cny("0.00")
    core.payments.run_due_jobs()
    assert revoker.calls == []

    shop.clock.advance(3600)  # the merchant tops up its account
    done = core.refunds.retry(refund.refund_no, actor=ADMIN)

    assert done.status is RefundStatus.SUCCEEDED
    assert done.failure is None
    assert gateway.refunds_made == 1
    assert core.orders.get(number).status is OrderStatus.REFUNDED
    core.payments.run_due_jobs()
    assert [c.refund for c in revoker.calls] == [refund.refund_no]


@on_sqlite_and_postgresql
def test_a_channel_removed_from_the_configuration_refuses_original_refunds(shop: Shop) -> None:
    number, _no = paid(shop)
    waiting = shop.core.refunds.request(
        number, amount="2.00", destination="original", reason="r", actor=ADMIN
    )
    restarted = reconfigured(shop, channels={})

    error = refused(
        restarted,
        RefundUnavailable,
        lambda: restarted.core.refunds.request(
            number, destination="original", reason="r", actor=ADMIN
        ),
    )
    assert (error.code, error.retryable) == ("channel_not_configured", False)
    assert "balance" in str(error)
    # Approving a request made before the change is refused the same way, nothing changed.
    error = refused(
        restarted,
        RefundUnavailable,
        lambda: restarted.core.refunds.approve(waiting.refund_no, actor=ADMIN),
    )
    assert error.code == "channel_not_configured"
    assert restarted.core.refunds.get(waiting.refund_no).status is RefundStatus.REQUESTED

    # To balance still works.
    done = restarted.core.refunds.request(
        number, amount="5.00", destination="balance", reason="r", actor=ADMIN
    )
    assert restarted.core.refunds.approve(done.refund_no, actor=ADMIN).status is (
        RefundStatus.SUCCEEDED
    )
    assert balance(restarted) == cny("5.00")
    assert shop.gateway.refund_calls == 0


@on_sqlite_and_postgresql
def test_an_order_paid_by_hand_refunds_to_balance_only(shop: Shop) -> None:
    core = shop.core
    order = shop.order()
    core.orders.mark_paid(order.number, actor=ADMIN, reason="cash at the desk")

    error = refused(
        shop,
        RefundUnavailable,
        lambda: core.refunds.request(order.number, destination="original", reason="r", actor=ADMIN),
    )

    assert (error.code, error.retryable) == ("missing_information", False)
    refund = core.refunds.request(order.number, destination="balance", reason="r", actor=ADMIN)
    assert refund.out_trade_no is None
    assert core.refunds.approve(refund.refund_no, actor=ADMIN).status is RefundStatus.SUCCEEDED
    assert balance(shop) == cny("27.00")
    assert core.orders.get(order.number).status is OrderStatus.REFUNDED


@on_sqlite_and_postgresql
def test_past_the_refund_window_original_refunds_are_refused_and_balance_suggested(
    shop: Shop,
) -> None:
    windowed = reconfigured(
        shop, channels={"fake": fake_channel_config(gateway=shop.gateway, refund_deadline_days=90)}
    )
    core = windowed.core
    number, _no = paid(windowed)
    windowed.clock.advance(89 * 86400)
    early = core.refunds.request(
        number, amount="1.00", destination="original", reason="r", actor=ADMIN
    )
    assert core.refunds.approve(early.refund_no, actor=ADMIN).status is RefundStatus.SUCCEEDED
    late = core.refunds.request(
        number, amount="1.00", destination="original", reason="r", actor=ADMIN
    )
    windowed.clock.advance(2 * 86400)

    error = refused(
        windowed,
        RefundDeadlinePassed,
        lambda: core.refunds.request(number, destination="original", reason="r", actor=ADMIN),
    )

    assert isinstance(error, RefundError)
    assert (error.code, error.retryable) == ("deadline_passed", False)
    assert "balance" in str(error)
    # A request waiting for review is refused at approval, and stays as it was.
    refused(
        windowed, RefundDeadlinePassed, lambda: core.refunds.approve(late.refund_no, actor=ADMIN)
    )
    core.refunds.reject(late.refund_no, actor=ADMIN, reason="past the window")
    done = core.refunds.request(number, destination="balance", reason="r", actor=ADMIN)
    assert core.refunds.approve(done.refund_no, actor=ADMIN).status is RefundStatus.SUCCEEDED
    assert balance(windowed) == cny("26.00")
    assert core.orders.get(number).status is OrderStatus.REFUNDED
    assert windowed.gateway.refunds_made == 1


@on_sqlite_and_postgresql
def test_a_refusal_the_platform_calls_final_fails_the_refund_not_retryably(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    number, _no = paid(shop)
    gateway.fail_next("refund", Outcome.FAILED, code="RISK_CONTROL", retryable=False)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)

    failed = core.refunds.approve(refund.refund_no, actor=ADMIN)

    assert failed.status is RefundStatus.FAILED
    assert failed.failure is RefundFailure.CHANNEL_REFUSED
    assert failed.channel_code == "RISK_CONTROL"
    assert not failed.retryable
    assert core.refunds.refundable(number) == cny("27.00")
    # The money can still go back another way.
    other = core.refunds.request(number, destination="balance", reason="r", actor=ADMIN)
    assert core.refunds.approve(other.refund_no, actor=ADMIN).status is RefundStatus.SUCCEEDED


@on_sqlite_and_postgresql
def test_a_revocation_the_host_fails_is_retried_with_the_same_id(
    shop: Shop, revoker: Revoker
) -> None:
    core = shop.core
    number, _no = paid(shop)
    refund = core.refunds.request(number, destination="balance", reason="r", actor=ADMIN)
    core.refunds.approve(refund.refund_no, actor=ADMIN)
    revoker.failures = 1

    assert core.payments.run_due_jobs().delivery_failures == 1
    shop.clock.advance(120)
    core.payments.run_due_jobs()

    assert [c.activation_id for c in revoker.calls] == [f"revoke:{refund.refund_no}"] * 2
    assert revoker.attempts == [1, 2]
    core.payments.run_due_jobs()
    assert len(revoker.calls) == 2


@on_sqlite_and_postgresql
def test_a_failed_refund_is_retried_only_within_what_is_still_refundable(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    number, _no = paid(shop)
    gateway.fail_next("refund", Outcome.FAILED, code="NOT_ENOUGH_BALANCE")
    failed = core.refunds.request(
        number, amount="20.00", destination="original", reason="r", actor=ADMIN
    )
    assert core.refunds.approve(failed.refund_no, actor=ADMIN).status is RefundStatus.FAILED
    # Meanwhile most of the money went back another way.
    other = core.refunds.request(
        number, amount="10.00", destination="balance", reason="r", actor=ADMIN
    )
    core.refunds.approve(other.refund_no, actor=ADMIN)

    refused(shop, InvalidAmount, lambda: core.refunds.retry(failed.refund_no, actor=ADMIN))

    assert core.refunds.get(failed.refund_no).status is RefundStatus.FAILED
    assert gateway.refunds_made == 0


@on_sqlite_and_postgresql
def test_a_refund_the_platform_refused_as_too_late_is_not_retried(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    number, _no = paid(shop)
    gateway.fail_next("refund", Outcome.FAILED, code="REFUND_EXPIRED")
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    failed = core.refunds.approve(refund.refund_no, actor=ADMIN)
    assert failed.failure is RefundFailure.DEADLINE_PASSED
    assert not failed.retryable

    error = refused(
        shop, RefundDeadlinePassed, lambda: core.refunds.retry(refund.refund_no, actor=ADMIN)
    )

    assert "balance" in str(error)
    assert gateway.refund_calls == 1


# ------------------------------------------------------------------------- permissions
@on_sqlite_and_postgresql
def test_only_the_customer_or_an_operator_with_the_permission_may_ask_for_a_refund(
    shop: Shop,
) -> None:
    core = shop.core
    number, _no = paid(shop)
    stranger = core.customers.add(name="Han Meimei", email="han@example.com", actor=ADMIN)

    denied(
        shop,
        lambda: core.refunds.request(
            number, destination="balance", reason="r", actor=Actor.customer(str(stranger.id))
        ),
    )
    # Nor may an operator whose role does not grant refunds.request.
    denied(
        shop,
        lambda: core.refunds.request(
            number, destination="balance", reason="r", actor=Actor.operator("ivy", "intern")
        ),
    )
    assert core.refunds.for_order(number) == []


@on_sqlite_and_postgresql
def test_support_and_customers_may_not_approve_reject_or_retry(shop: Shop) -> None:
    core = shop.core
    number, _no = paid(shop)
    refund = core.refunds.request(number, destination="balance", reason="r", actor=SUPPORT)
    assert refund.requested_by == SUPPORT

    for actor in (SUPPORT, customer_of(shop)):
        denied(shop, lambda a=actor: core.refunds.approve(refund.refund_no, actor=a))
        denied(shop, lambda a=actor: core.refunds.reject(refund.refund_no, actor=a, reason="no"))
        denied(shop, lambda a=actor: core.refunds.retry(refund.refund_no, actor=a))

    assert core.refunds.get(refund.refund_no).status is RefundStatus.REQUESTED
    assert balance(shop) == cny("0.00")
    assert core.audit.verify().ok


# -------------------------------------------------------------------------- rejections
@on_sqlite_and_postgresql
def test_a_refund_of_an_unknown_order_is_refused(shop: Shop) -> None:
    refused(
        shop,
        OrderNotFound,
        lambda: shop.core.refunds.request(
            "NO-SUCH-ORDER", destination="balance", reason="r", actor=ADMIN
        ),
    )


@on_sqlite_and_postgresql
def test_an_unpaid_order_has_nothing_to_refund(shop: Shop) -> None:
    order = shop.order()
    shop.start(order.number)
    assert shop.core.refunds.refundable(order.number) == cny("0.00")
    for amount in (None, "1.00"):
        error = refused(
            shop,
            InvalidField,
            lambda a=amount: shop.core.refunds.request(
                order.number, amount=a, destination="balance", reason="r", actor=ADMIN
            ),
        )
        assert "is not paid (it is pending)" in str(error)


BAD_AMOUNTS = {
    "zero": "0.00",
    "negative-zero": "-0.00",
    "negative": "-1.00",
    "not-a-number": Decimal("NaN"),
    "bool": True,
    "too-many-decimals": "1.001",
    "float": 1.5,
    "other-currency": Money.of("1.00", "USD"),
    "garbage": "one yuan",
    "more-than-paid": "27.01",
}


@on_sqlite_and_postgresql
def test_a_bad_amount_is_refused_and_writes_nothing(shop: Shop) -> None:
    number, _no = paid(shop)
    for case, amount in BAD_AMOUNTS.items():
        error = refused(
            shop,
            InvalidAmount,
            lambda a=amount: shop.core.refunds.request(  # type: ignore[misc]
                number, amount=a, destination="balance", reason="r", actor=ADMIN
            ),
        )
        assert str(error), case
    assert shop.core.refunds.for_order(number) == []


@on_sqlite_and_postgresql
def test_a_request_never_exceeds_what_is_still_refundable(shop: Shop) -> None:
    core = shop.core
    number, _no = paid(shop)
    held = core.refunds.request(
        number, amount="20.00", destination="original", reason="r", actor=ADMIN
    )

    # While the first request waits for review, it holds its amount.
    refused(
        shop,
        InvalidAmount,
        lambda: core.refunds.request(
            number, amount="7.01", destination="balance", reason="r", actor=ADMIN
        ),
    )
    core.refunds.request(number, amount="7.00", destination="balance", reason="r", actor=ADMIN)
    refused(
        shop,
        InvalidAmount,
        lambda: core.refunds.request(number, destination="balance", reason="r", actor=ADMIN),
    )
    core.refunds.reject(held.refund_no, actor=ADMIN, reason="too much")
    assert core.refunds.refundable(number) == cny("20.00")


@on_sqlite_and_postgresql
def test_money_refunded_by_hand_counts_against_what_is_refundable(shop: Shop) -> None:
    core = shop.core
    number, _no = paid(shop)
    core.orders.record_refund(number, amount=cny("10.00"), actor=ADMIN, reason="cash at the desk")

    assert core.refunds.refundable(number) == cny("17.00")
    refused(
        shop,
        InvalidAmount,
        lambda: core.refunds.request(
            number, amount="17.01", destination="balance", reason="r", actor=ADMIN
        ),
    )
    rest = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    assert rest.amount == cny("17.00")
    assert core.refunds.approve(rest.refund_no, actor=ADMIN).status is RefundStatus.SUCCEEDED
    assert core.orders.get(number).status is OrderStatus.REFUNDED


@on_sqlite_and_postgresql
def test_money_held_by_a_waiting_request_cannot_be_recorded_as_refunded_by_hand(
    shop: Shop,
) -> None:
    core = shop.core
    number, _no = paid(shop)
    waiting = core.refunds.request(
        number, amount="20.00", destination="balance", reason="r", actor=ADMIN
    )

    refused(
        shop,
        InvalidAmount,
        lambda: core.orders.record_refund(
            number, amount=cny("7.01"), actor=ADMIN, reason="cash at the desk"
        ),
    )
    core.orders.record_refund(number, amount=cny("7.00"), actor=ADMIN, reason="cash at the desk")
    core.refunds.approve(waiting.refund_no, actor=ADMIN)

    assert balance(shop) == cny("20.00")
    assert core.orders.get(number).status is OrderStatus.REFUNDED
    assert core.anomalies.list(order_number=number) == []


@on_sqlite_and_postgresql
def test_a_request_overtaken_by_a_late_success_is_not_paid_out(shop: Shop) -> None:
    core = shop.core
    number, no = paid(shop)
    failed = failed_original_refund(shop, number)
    waiting = core.refunds.request(number, destination="balance", reason="r", actor=ADMIN)
    shop.deliver(
        shop.gateway.notification_for(
            no, "refund.succeeded", amount="27.00", out_refund_no=failed.refund_no
        )
    )
    assert core.orders.get(number).status is OrderStatus.REFUNDED

    refused(shop, InvalidAmount, lambda: core.refunds.approve(waiting.refund_no, actor=ADMIN))

    assert balance(shop) == cny("0.00")
    assert core.anomalies.list(order_number=number) == []
    core.refunds.reject(waiting.refund_no, actor=ADMIN, reason="refunded through the platform")


@on_sqlite_and_postgresql
def test_a_bad_destination_or_an_empty_reason_is_refused(shop: Shop) -> None:
    number, _no = paid(shop)
    request = shop.core.refunds.request
    error = refused(
        shop,
        InvalidField,
        lambda: request(number, destination="bank", reason="r", actor=ADMIN),
    )
    assert error.field == "destination"
    for reason in ("", "   "):
        error = refused(
            shop,
            InvalidField,
            lambda r=reason: request(number, destination="balance", reason=r, actor=ADMIN),
        )
        assert error.field == "reason"


@on_sqlite_and_postgresql
def test_a_refund_against_a_payment_that_is_not_the_orders_is_refused(shop: Shop) -> None:
    number, _no = paid(shop)
    other = shop.order()
    unpaid = shop.start(other.number).out_trade_no
    for no in (unpaid, "NO-SUCH-PAYMENT"):
        refused(
            shop,
            InvalidField,
            lambda n=no: shop.core.refunds.request(
                number, out_trade_no=n, destination="balance", reason="r", actor=ADMIN
            ),
        )


@on_sqlite_and_postgresql
def test_an_unknown_refund_id_is_not_found(shop: Shop) -> None:
    refunds = shop.core.refunds
    calls: list[Callable[[], object]] = [
        lambda: refunds.get("NOPER01"),
        lambda: refunds.approve("NOPER01", actor=ADMIN),
        lambda: refunds.reject("NOPER01", actor=ADMIN, reason="no"),
        lambda: refunds.retry("NOPER01", actor=ADMIN),
        lambda: refunds.reconcile("NOPER01"),
    ]
    for call in calls:
        refused(shop, RefundNotFound, call)


@on_sqlite_and_postgresql
def test_a_decided_refund_cannot_be_decided_again(shop: Shop) -> None:
    core = shop.core
    number, _no = paid(shop)
    refund = core.refunds.request(
        number, amount="5.00", destination="balance", reason="r", actor=ADMIN
    )
    core.refunds.approve(refund.refund_no, actor=ADMIN)

    refused(shop, IllegalTransition, lambda: core.refunds.approve(refund.refund_no, actor=ADMIN))
    refused(
        shop,
        IllegalTransition,
        lambda: core.refunds.reject(refund.refund_no, actor=ADMIN, reason="no"),
    )
    assert balance(shop) == cny("5.00")
    assert order_actions(shop, number).count("refund.approve") == 1


@on_sqlite_and_postgresql
def test_a_rejection_needs_a_reason(shop: Shop) -> None:
    number, _no = paid(shop)
    refund = shop.core.refunds.request(number, destination="balance", reason="r", actor=ADMIN)
    for reason in ("", "  "):
        refused(
            shop,
            InvalidField,
            lambda r=reason: shop.core.refunds.reject(refund.refund_no, actor=ADMIN, reason=r),
        )
    assert shop.core.refunds.get(refund.refund_no).status is RefundStatus.REQUESTED


@on_sqlite_and_postgresql
def test_only_a_failed_or_unknown_refund_is_retried(shop: Shop) -> None:
    core = shop.core
    number, _no = paid(shop)
    waiting = core.refunds.request(
        number, amount="1.00", destination="original", reason="r", actor=ADMIN
    )
    done = core.refunds.request(
        number, amount="1.00", destination="original", reason="r", actor=ADMIN
    )
    core.refunds.approve(done.refund_no, actor=ADMIN)

    for refund_no, state in ((done.refund_no, "succeeded"), (waiting.refund_no, "requested")):
        error = refused(
            shop, IllegalTransition, lambda n=refund_no: core.refunds.retry(n, actor=ADMIN)
        )
        assert (error.state, error.event) == (state, "retry")
    assert shop.gateway.refund_calls == 1
