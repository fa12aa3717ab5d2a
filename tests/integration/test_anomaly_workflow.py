"""The anomaly workflow (issue 5): identify → investigate → contact the customer → resolve by
an action, each step an audit record with its note. Actions do real work: refund a payment
the order never took (a duplicate payment, a payment after cancellation), ask the channel
again (resend), accept the amount that arrived, flag fraud. Illegal steps, actions that do
not fit the anomaly, and actors without the permission are refused and change nothing.

Happy paths run on every backend; refusals and edge cases on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import Backend, FakeClock, snapshot
from ordercore import (
    Actor,
    Anomaly,
    AnomalyKind,
    AnomalyStatus,
    IllegalTransition,
    InvalidAmount,
    InvalidField,
    NotFound,
    OrderEvent,
    OrderStatus,
    PaymentStatus,
    PermissionDenied,
    RefundError,
    RefundStatus,
)
from ordercore.channels import Outcome
from ordercore.testing import TradeStatus

from .payment_kit import ADMIN, Shop, cny, make_shop
from .test_refunds import Revoker, denied, refused

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
on_sqlite_and_postgresql = pytest.mark.parametrize("backend", [SQLITE, POSTGRESQL], indirect=True)

FINANCE = Actor.operator("fay", "finance")
SUPPORT = Actor.operator("sam", "support")


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def revoker() -> Revoker:
    return Revoker()


@pytest.fixture
def shop(backend: Backend, clock: FakeClock, revoker: Revoker) -> Iterator[Shop]:
    built = make_shop(backend, clock)
    built.core.register_plugin(revoker, name="revoker")
    yield built
    built.core.close()


def only_anomaly(shop: Shop, number: str, kind: AnomalyKind) -> Anomaly:
    (anomaly,) = shop.core.anomalies.list(order_number=number)
    assert (anomaly.kind, anomaly.status) == (kind, AnomalyStatus.OPEN)
    return anomaly


def duplicate_payment(shop: Shop) -> tuple[str, str, str, Anomaly]:
    """An order paid through two attempts: ``(number, first, second, anomaly)``; the
    second payment is the duplicate."""
    order = shop.order()
    first = shop.start(order.number).out_trade_no
    second = shop.start(order.number).out_trade_no
    shop.deliver(shop.gateway.pay(first))
    shop.deliver(shop.gateway.pay(second))
    return (
        order.number,
        first,
        second,
        only_anomaly(shop, order.number, AnomalyKind.DUPLICATE_PAYMENT),
    )


def short_payment(shop: Shop, amount: str) -> tuple[str, str, Anomaly]:
    """A pending order whose payer paid ``amount`` instead of 27.00: ``(number, no,
    anomaly)``."""
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    shop.deliver(shop.gateway.pay(no, amount=amount))
    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    return order.number, no, only_anomaly(shop, order.number, AnomalyKind.AMOUNT_MISMATCH)


def anomaly_steps(shop: Shop, number: str) -> list[tuple[str, dict[str, Any], str | None]]:
    """The order's anomaly audit records: ``(action, after, reason)``."""
    return [
        (r.action, json.loads(r.after or "{}"), r.reason)
        for r in shop.core.audit.records("order", number)
        if r.action.startswith("anomaly.")
    ]


# ------------------------------------------------------------------------------- steps
def test_each_step_of_the_workflow_is_recorded_with_its_note(shop: Shop) -> None:
    core = shop.core
    number, _first, _second, anomaly = duplicate_payment(shop)

    looking = core.anomalies.investigate(anomaly.id, actor=FINANCE, note="two scans, 3 s apart")
    assert looking.status is AnomalyStatus.INVESTIGATING
    contacted = core.anomalies.contact(
        anomaly.id, actor=FINANCE, note="asked whether to refund or keep", channel="phone"
    )
    assert contacted.status is AnomalyStatus.CONTACTING
    # The customer's answer sends it back to investigation.
    core.anomalies.investigate(anomaly.id, actor=FINANCE, note="customer wants a refund")
    resolved = core.anomalies.resolve(anomaly.id, actor=FINANCE, note="kept as credit")

    assert resolved.status is AnomalyStatus.RESOLVED
    assert resolved.resolution == "kept as credit"
    assert resolved.resolved_at == shop.clock()
    steps = anomaly_steps(shop, number)
    assert [(action, after["status"], reason) for action, after, reason in steps] == [
        ("anomaly.investigate", "investigating", "two scans, 3 s apart"),
        ("anomaly.contact", "contacting", "asked whether to refund or keep"),
        ("anomaly.investigate", "investigating", "customer wants a refund"),
        ("anomaly.resolve", "resolved", "kept as credit"),
    ]
    assert steps[-1][1]["action"] == "dismiss"
    assert {a for a, _, _ in steps} <= {r.action for r in core.orders.details(number).log}
    # Contacting the customer is also a communication on the order.
    (communication,) = core.orders.get(number).communications
    assert (communication.channel, communication.text, communication.author) == (
        "phone",
        "asked whether to refund or keep",
        FINANCE,
    )
    assert core.refunds.for_order(number) == []  # dismissing moves no money
    assert core.audit.verify().ok


def test_an_anomaly_opened_by_hand_is_recorded_and_announced(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).out_trade_no

    opened = shop.core.anomalies.open(
        order.number,
        kind="payment_not_received",
        actor=FINANCE,
        note="customer sent a bank receipt",
        out_trade_no=no,
    )

    assert (opened.kind, opened.status) == (AnomalyKind.PAYMENT_NOT_RECEIVED, AnomalyStatus.OPEN)
    assert (opened.order_number, opened.out_trade_no) == (order.number, no)
    assert opened.evidence["note"] == "customer sent a bank receipt"
    assert anomaly_steps(shop, order.number)[0][0] == "anomaly.open"
    assert shop.outbox_kinds(order.number) == ["anomaly.opened"]


@on_sqlite_and_postgresql
def test_a_resolved_anomaly_takes_no_further_step(shop: Shop) -> None:
    core = shop.core
    _number, _first, _second, anomaly = duplicate_payment(shop)
    core.anomalies.resolve(anomaly.id, actor=ADMIN, note="kept as credit")

    refused(shop, InvalidField, lambda: core.anomalies.resolve(anomaly.id, actor=ADMIN, note="x"))
    refused(
        shop,
        InvalidField,
        lambda: core.anomalies.resolve(anomaly.id, actor=ADMIN, note="x", action="refund"),
    )
    refused(
        shop,
        IllegalTransition,
        lambda: core.anomalies.investigate(anomaly.id, actor=ADMIN, note="x"),
    )
    refused(
        shop, IllegalTransition, lambda: core.anomalies.contact(anomaly.id, actor=ADMIN, note="x")
    )
    assert core.refunds.for_order(anomaly.order_number or "") == []


@on_sqlite_and_postgresql
def test_an_illegal_or_empty_step_is_refused_and_changes_nothing(shop: Shop) -> None:
    core = shop.core
    _number, _first, _second, anomaly = duplicate_payment(shop)
    core.anomalies.investigate(anomaly.id, actor=ADMIN, note="looking")

    refused(
        shop,
        IllegalTransition,
        lambda: core.anomalies.investigate(anomaly.id, actor=ADMIN, note="x"),
    )
    for note in ("", "   "):
        refused(
            shop,
            InvalidField,
            lambda n=note: core.anomalies.contact(anomaly.id, actor=ADMIN, note=n),
        )
        refused(
            shop,
            InvalidField,
            lambda n=note: core.anomalies.resolve(anomaly.id, actor=ADMIN, note=n),
        )
    refused(
        shop,
        InvalidField,
        lambda: core.anomalies.resolve(anomaly.id, actor=ADMIN, note="x", action="forget"),
    )
    refused(shop, NotFound, lambda: core.anomalies.investigate(999_999, actor=ADMIN, note="x"))
    assert core.anomalies.get(anomaly.id).status is AnomalyStatus.INVESTIGATING


@on_sqlite_and_postgresql
def test_an_action_that_does_not_fit_the_anomaly_is_refused(shop: Shop) -> None:
    core = shop.core
    _number, _first, _second, duplicate = duplicate_payment(shop)
    _short, _no, mismatch = short_payment(shop, "20.00")
    misfits = [
        (duplicate, "accept"),
        (duplicate, "resend"),
        (mismatch, "resend"),
    ]
    for anomaly, action in misfits:
        error = refused(
            shop,
            InvalidField,
            lambda a=anomaly, act=action: core.anomalies.resolve(
                a.id, actor=ADMIN, note="x", action=act
            ),
        )
        assert error.field == "action", (anomaly.kind, action)
        assert core.anomalies.get(anomaly.id).status is AnomalyStatus.OPEN


@on_sqlite_and_postgresql
def test_an_anomaly_opened_by_hand_must_name_the_orders_own_payment(shop: Shop) -> None:
    core = shop.core
    number, _first, _second, _anomaly = duplicate_payment(shop)
    other = shop.order()
    foreign = shop.start(other.number).out_trade_no

    error = refused(
        shop,
        InvalidField,
        lambda: core.anomalies.open(
            number, kind="duplicate_payment", actor=ADMIN, note="x", out_trade_no=foreign
        ),
    )
    assert error.field == "payment"
    refused(
        shop,
        InvalidField,
        lambda: core.anomalies.open(number, kind="lost_parcel", actor=ADMIN, note="x"),
    )
    refused(
        shop,
        InvalidField,
        lambda: core.anomalies.open(number, kind="duplicate_payment", actor=ADMIN, note=" "),
    )
    # Without a payment named, there is nothing the refund action could give back.
    vague = core.anomalies.open(number, kind="duplicate_payment", actor=ADMIN, note="paid twice?")
    refused(
        shop,
        InvalidField,
        lambda: core.anomalies.resolve(vague.id, actor=ADMIN, note="x", action="refund"),
    )
    assert core.refunds.for_order(number) == []


@on_sqlite_and_postgresql
def test_only_operators_who_review_payments_work_on_anomalies(shop: Shop) -> None:
    core = shop.core
    number, _first, _second, anomaly = duplicate_payment(shop)
    customer = Actor.customer(str(shop.customer_id))

    for actor in (SUPPORT, customer):
        denied(shop, lambda a=actor: core.anomalies.investigate(anomaly.id, actor=a, note="x"))
        denied(shop, lambda a=actor: core.anomalies.contact(anomaly.id, actor=a, note="x"))
        # Refused before the action runs: no refund is left behind.
        denied(
            shop,
            lambda a=actor: core.anomalies.resolve(anomaly.id, actor=a, note="x", action="refund"),
        )
    assert core.anomalies.get(anomaly.id).status is AnomalyStatus.OPEN
    assert core.refunds.for_order(number) == []
    assert shop.gateway.refund_calls == 0


# ------------------------------------------------------------------------------ actions
def test_resolving_a_duplicate_payment_by_refund_gives_the_second_payment_back(
    shop: Shop, revoker: Revoker
) -> None:
    core, gateway = shop.core, shop.gateway
    number, first, second, anomaly = duplicate_payment(shop)

    resolved = core.anomalies.resolve(anomaly.id, actor=FINANCE, note="paid twice", action="refund")

    assert resolved.status is AnomalyStatus.RESOLVED
    (refund,) = core.refunds.for_order(number)
    assert resolved.resolution == f"refund {refund.refund_no}: paid twice"
    assert (refund.status, refund.out_trade_no, refund.amount) == (
        RefundStatus.SUCCEEDED,
        second,
        cny("27.00"),
    )
    assert not refund.counts_toward_order
    assert gateway.trade(second).refunded == cny("27.00")
    assert gateway.trade(first).refunded == cny("0.00")
    # The order keeps the payment it took.
    order = core.orders.get(number)
    assert order.status is OrderStatus.PAID
    assert (order.amounts.paid, order.amounts.refunded) == (cny("27.00"), cny("0.00"))
    assert core.refunds.refundable(number) == cny("27.00")
    assert core.refunds.refundable(number, out_trade_no=second) == cny("0.00")
    action, after, _reason = anomaly_steps(shop, number)[-1]
    assert (action, after["action"], after["refund"]) == (
        "anomaly.resolve",
        "refund",
        refund.refund_no,
    )

    core.payments.run_due_jobs()

    assert revoker.calls == []  # the order never took that money: nothing to revoke
    assert "refund.succeeded" in shop.host.notified_kinds(number)
    assert shop.host.activated == [number]  # the order itself is served as usual
    assert core.audit.verify().ok


def test_a_payment_after_cancellation_is_refunded_and_the_order_stays_cancelled(
    shop: Shop, revoker: Revoker
) -> None:
    core, gateway = shop.core, shop.gateway
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    shop.clock.advance(16 * 60)
    assert core.payments.run_due_jobs().canceled == (order.number,)
    shop.deliver(gateway.pay(no, force=True))
    anomaly = only_anomaly(shop, order.number, AnomalyKind.PAYMENT_AFTER_CANCEL)

    core.anomalies.resolve(
        anomaly.id, actor=FINANCE, note="order had expired", action="refund", destination="balance"
    )

    (refund,) = core.refunds.for_order(order.number)
    assert (refund.status, refund.out_trade_no, refund.destination.value) == (
        RefundStatus.SUCCEEDED,
        no,
        "balance",
    )
    assert core.wallet.balance(shop.customer_id, "CNY") == cny("27.00")
    assert core.wallet.ledger_sum(shop.customer_id, "CNY") == 2700
    canceled = core.orders.get(order.number)
    assert canceled.status is OrderStatus.CANCELED
    assert canceled.amounts.refunded == cny("0.00")
    assert core.anomalies.get(anomaly.id).status is AnomalyStatus.RESOLVED
    assert gateway.refund_calls == 0
    core.payments.run_due_jobs()
    assert revoker.calls == []


def test_resend_finds_a_payment_whose_notification_was_lost(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    gateway.pay(no)  # paid at the platform; the notification never arrives
    anomaly = core.anomalies.open(
        order.number,
        kind="payment_not_received",
        actor=FINANCE,
        note="customer says they paid",
        out_trade_no=no,
    )

    resolved = core.anomalies.resolve(
        anomaly.id, actor=FINANCE, note="asked the platform", action="resend"
    )

    assert resolved.status is AnomalyStatus.RESOLVED
    assert resolved.resolution == "resend: asked the platform"
    paid = core.orders.get(order.number)
    assert paid.status is OrderStatus.PAID
    assert paid.amounts.paid == cny("27.00")
    assert core.payments.attempt(no).status is PaymentStatus.SUCCEEDED
    assert shop.events(order.number, OrderEvent.PAY) == 1
    assert "query" in [op["kind"] for op in core.payments.operations(no)]
    assert shop.outbox_kinds(order.number) == ["anomaly.opened", "order.paid"]


@on_sqlite_and_postgresql
def test_resend_without_a_payment_at_the_platform_leaves_the_anomaly_open(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    anomaly = core.anomalies.open(
        order.number,
        kind="payment_not_received",
        actor=FINANCE,
        note="customer says they paid",
        out_trade_no=no,
    )

    with pytest.raises(InvalidField) as caught:
        core.anomalies.resolve(anomaly.id, actor=FINANCE, note="asked", action="resend")

    assert caught.value.field == "action"
    assert gateway.calls["query"] == 1  # it asked
    assert gateway.trade(no).status is TradeStatus.WAIT
    assert core.anomalies.get(anomaly.id).status is AnomalyStatus.OPEN
    assert core.orders.get(order.number).status is OrderStatus.PENDING
    assert "anomaly.resolve" not in [a for a, _, _ in anomaly_steps(shop, order.number)]
    # Once the money is there, the same action resolves it.
    gateway.pay(no)
    core.anomalies.resolve(anomaly.id, actor=FINANCE, note="asked again", action="resend")
    assert core.orders.get(order.number).status is OrderStatus.PAID


def test_accepting_a_short_payment_pays_the_order_with_what_arrived(
    shop: Shop, revoker: Revoker
) -> None:
    core = shop.core
    number, no, anomaly = short_payment(shop, "20.00")
    assert anomaly.evidence["received"] == "20.00 CNY"

    core.anomalies.resolve(anomaly.id, actor=FINANCE, note="customer paid less", action="accept")

    order = core.orders.get(number)
    assert order.status is OrderStatus.PAID
    assert order.amounts.paid == cny("20.00")
    assert order.amounts.payable == cny("27.00")
    attempt = core.payments.attempt(no)
    assert (attempt.status, attempt.received) == (PaymentStatus.SUCCEEDED, cny("20.00"))
    assert shop.events(number, OrderEvent.PAY) == 1
    assert "order.paid" in shop.outbox_kinds(number)
    assert core.anomalies.get(anomaly.id).status is AnomalyStatus.RESOLVED
    assert anomaly_steps(shop, number)[-1][1]["paid"] == "20.00 CNY"
    # A refund is limited to what was received.
    assert core.refunds.refundable(number) == cny("20.00")
    with pytest.raises(InvalidAmount):
        core.refunds.request(
            number, amount="20.01", destination="original", reason="r", actor=ADMIN
        )
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    refund = core.refunds.approve(refund.refund_no, actor=ADMIN)
    assert (refund.status, refund.amount) == (RefundStatus.SUCCEEDED, cny("20.00"))
    assert core.orders.get(number).status is OrderStatus.REFUNDED
    assert shop.gateway.refund_record(refund.refund_no).amount == cny("20.00")
    core.payments.run_due_jobs()
    assert [c.amount for c in revoker.calls] == [cny("20.00")]


@on_sqlite_and_postgresql
def test_an_amount_cannot_be_accepted_once_the_order_is_paid(shop: Shop) -> None:
    core = shop.core
    number, _no, anomaly = short_payment(shop, "20.00")
    core.orders.mark_paid(number, actor=ADMIN, reason="paid the rest by hand")

    refused(
        shop,
        InvalidField,
        lambda: core.anomalies.resolve(anomaly.id, actor=ADMIN, note="x", action="accept"),
    )
    assert core.anomalies.get(anomaly.id).status is AnomalyStatus.OPEN


def test_marking_fraud_flags_the_order_and_tells_the_host(shop: Shop) -> None:
    core = shop.core
    number, _first, _second, anomaly = duplicate_payment(shop)

    resolved = core.anomalies.resolve(anomaly.id, actor=FINANCE, note="stolen card", action="fraud")

    assert resolved.status is AnomalyStatus.RESOLVED
    assert resolved.resolution == "fraud: stolen card"
    order = core.orders.get(number)
    assert "fraud" in order.tags
    assert order.status is OrderStatus.PAID  # a flag, not a state change
    message = [m for m in shop.outbox(number) if m["kind"] == "anomaly.fraud"]
    assert [(m["payload"]["anomaly"], m["payload"]["customer_id"]) for m in message] == [
        (anomaly.id, shop.customer_id)
    ]
    assert "order.flag" in [r.action for r in core.audit.records("order", number)]
    action, after, _reason = anomaly_steps(shop, number)[-1]
    assert (action, after["action"]) == ("anomaly.resolve", "fraud")
    assert core.refunds.for_order(number) == []
    core.payments.run_due_jobs()
    assert "anomaly.fraud" in shop.host.notified_kinds(number)


@on_sqlite_and_postgresql
def test_a_refund_action_whose_refund_fails_leaves_the_anomaly_open(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    number, _first, second, anomaly = duplicate_payment(shop)
    gateway.fail_next("refund", Outcome.FAILED, code="NOT_ENOUGH_BALANCE")

    with pytest.raises(RefundError) as caught:
        core.anomalies.resolve(anomaly.id, actor=FINANCE, note="paid twice", action="refund")

    (refund,) = core.refunds.for_order(number)
    assert (caught.value.code, caught.value.retryable) == ("merchant_balance_insufficient", True)
    assert refund.refund_no in str(caught.value)
    assert (refund.status, refund.retryable) == (RefundStatus.FAILED, True)
    assert core.anomalies.get(anomaly.id).status is AnomalyStatus.OPEN
    assert "anomaly.resolve" not in [a for a, _, _ in anomaly_steps(shop, number)]
    # Retried, the duplicate money goes back once; then the anomaly is closed.
    assert core.refunds.retry(refund.refund_no, actor=FINANCE).status is RefundStatus.SUCCEEDED
    assert gateway.trade(second).refunded == cny("27.00")
    assert gateway.refunds_made == 1
    refused(
        shop,
        InvalidAmount,
        lambda: core.anomalies.resolve(anomaly.id, actor=FINANCE, note="x", action="refund"),
    )
    core.anomalies.resolve(anomaly.id, actor=FINANCE, note=f"{refund.refund_no} retried")
    assert core.anomalies.get(anomaly.id).status is AnomalyStatus.RESOLVED


@on_sqlite_and_postgresql
def test_nothing_is_written_when_a_refund_action_is_refused(shop: Shop) -> None:
    core = shop.core
    number, _first, _second, anomaly = duplicate_payment(shop)
    before = snapshot(core)
    restricted = Actor.operator("rita", "reviewer")
    core.authorizer = type(core.authorizer)(extra_roles={"reviewer": {"payments.review"}})

    with pytest.raises(PermissionDenied):  # it may review payments, not refund them
        core.anomalies.resolve(anomaly.id, actor=restricted, note="x", action="refund")

    assert core.refunds.for_order(number) == []
    assert core.anomalies.get(anomaly.id).status is AnomalyStatus.OPEN
    assert snapshot(core)[core.tables.refunds.name] == before[core.tables.refunds.name]


# ------------------------------------------------------------------ wrong amounts
@on_sqlite_and_postgresql
def test_an_overpayment_is_not_accepted_but_refunded_in_full(shop: Shop) -> None:
    core = shop.core
    number, no, anomaly = short_payment(shop, "30.00")

    error = refused(
        shop,
        InvalidField,
        lambda: core.anomalies.resolve(anomaly.id, actor=ADMIN, note="x", action="accept"),
    )
    assert "refund" in str(error)
    core.anomalies.resolve(anomaly.id, actor=ADMIN, note="sent back", action="refund")

    assert shop.gateway.trade(no).refunded == cny("30.00")  # nothing stranded
    (refund,) = core.refunds.for_order(number)
    assert (refund.amount, refund.counts_toward_order) == (cny("30.00"), False)
    order = core.orders.get(number)
    assert (order.status, order.amounts.paid) == (OrderStatus.PENDING, cny("0.00"))
    assert core.anomalies.get(anomaly.id).status is AnomalyStatus.RESOLVED


@on_sqlite_and_postgresql
def test_a_mismatched_payment_on_an_order_paid_meanwhile_is_refunded(shop: Shop) -> None:
    core = shop.core
    number, no, anomaly = short_payment(shop, "20.00")
    core.orders.mark_paid(number, actor=ADMIN, reason="paid in full at the desk")

    core.anomalies.resolve(anomaly.id, actor=ADMIN, note="sent back", action="refund")

    assert shop.gateway.trade(no).refunded == cny("20.00")
    attempt = core.payments.attempt(no)
    assert (attempt.status, attempt.received) == (PaymentStatus.SUCCEEDED, cny("20.00"))
    assert not attempt.settles_order
    order = core.orders.get(number)
    assert (order.status, order.amounts.paid) == (OrderStatus.PAID, cny("27.00"))
    assert order.amounts.refunded == cny("0.00")
    assert core.refunds.refundable(number) == cny("27.00")
    assert core.anomalies.get(anomaly.id).status is AnomalyStatus.RESOLVED
