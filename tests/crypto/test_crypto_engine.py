"""The three crypto channels inside the real engine, on every backend: checkout locks a coin
amount that is stored with the attempt; the sandbox's signed notifications reach the
``ordercore.web`` endpoint over HTTP; a genuine payment pays once whatever the repeats;
forgeries are refused and kept; under-, over- and late payments become anomalies."""

from __future__ import annotations

from decimal import Decimal

import pytest
from crypto_kit import ADMIN, OK, Shop

from ordercore import OrderStatus
from ordercore._state import PaymentStatus


def test_a_genuine_payment_pays_once_and_repeats_change_nothing(shop: Shop) -> None:
    order = shop.order()
    started = shop.start(order.number)
    no = started.attempt.out_trade_no
    checkout = started.checkout
    assert checkout is not None
    assert checkout.kind == "address"
    assert checkout.content  # the address to pay
    locked = shop.gateway.locked(no)
    assert checkout.coin_amount is not None
    assert checkout.coin_amount.amount == locked
    assert isinstance(checkout.coin_amount.amount, Decimal)
    stored = shop.core.payments.attempt(no)  # read back from the database
    assert stored.status is PaymentStatus.PENDING
    assert stored.quote is not None
    assert stored.quote.amount == checkout.coin_amount
    assert stored.quote.pay_by is not None
    assert str(stored.amount) == "27.00 CNY"

    sent = shop.gateway.pay(no)
    for notification in sent:
        assert notification.url == f"{shop.url}/callbacks/{shop.channel}"
    assert [d[1:] for d in shop.gateway.sandbox.deliveries] == [OK] * len(sent)
    paid = shop.core.orders.get(order.number)
    assert paid.status is OrderStatus.PAID
    assert str(paid.amounts.paid) == "27.00 CNY"
    attempt = shop.core.payments.attempt(no)
    assert attempt.status is PaymentStatus.SUCCEEDED
    assert attempt.coin_received == checkout.coin_amount

    for notification in sent:  # the gateway redelivers
        assert shop.gateway.deliver(notification) == OK
    assert shop.pay_events(order.number) == 1
    assert shop.anomalies() == []
    statuses = [entry["status"] for entry in shop.inbox()]
    assert statuses.count("applied") == 1
    assert "rejected" not in statuses


def test_a_forged_notification_is_refused_and_kept(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no

    status, _ = shop.gateway.deliver(shop.gateway.forged(no))

    assert status == 400
    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    assert shop.core.payments.attempt(no).status is PaymentStatus.PENDING
    (entry,) = shop.inbox()
    assert entry["status"] == "rejected"
    assert entry["reason"].startswith("bad_signature")
    assert shop.anomalies() == []
    shop.gateway.pay(no)  # the genuine one still pays
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID


def test_an_underpayment_never_pays_and_opens_an_anomaly(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    locked = shop.gateway.locked(no)
    short = (locked / 2).quantize(Decimal("0.000001"))

    shop.gateway.pay(no, short)

    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    assert shop.core.payments.attempt(no).status is not PaymentStatus.SUCCEEDED
    assert shop.core.payments.attempt(no).coin_received is not None
    (anomaly,) = shop.anomalies()
    assert anomaly.kind.value == "underpayment"
    assert anomaly.out_trade_no == no
    assert Decimal(anomaly.evidence["coin_received"].split()[0]) == short
    assert Decimal(anomaly.evidence["coin_expected"].split()[0]) == locked
    assert Decimal(anomaly.evidence["shortfall"].split()[0]) == locked - short
    # What accepting would pay: the share the coins cover, rounded down.
    received = Decimal(anomaly.evidence["received"].split()[0])
    assert Decimal("13.00") <= received <= Decimal("13.50")
    assert shop.pay_events(order.number) == 0
    # An operator may accept the share of the order that the coins cover.
    shop.core.anomalies.resolve(anomaly.id, action="accept", note="customer agreed", actor=ADMIN)
    paid = shop.core.orders.get(order.number)
    assert paid.status is OrderStatus.PAID
    assert paid.amounts.paid.amount == received


def test_an_overpayment_pays_and_records_the_excess(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    locked = shop.gateway.locked(no)
    extra = Decimal("0.000001")

    shop.gateway.pay(no, locked + extra)

    paid = shop.core.orders.get(order.number)
    assert paid.status is OrderStatus.PAID
    assert str(paid.amounts.paid) == "27.00 CNY"
    (anomaly,) = shop.anomalies()
    assert anomaly.kind.value == "overpayment"
    assert Decimal(anomaly.evidence["excess"].split()[0]) == extra
    assert shop.pay_events(order.number) == 1


@pytest.mark.parametrize("gateway", ["btcpay", "nowpayments"], indirect=True)
def test_a_late_payment_waits_for_an_operator(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no

    shop.gateway.pay(no, late=True)

    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    (anomaly,) = shop.anomalies()
    assert anomaly.kind.value == "late_payment"
    assert shop.pay_events(order.number) == 0
    # The operator accepts it: the order is paid with the invoice's amount.
    shop.core.anomalies.resolve(anomaly.id, action="accept", note="rate still fine", actor=ADMIN)
    paid = shop.core.orders.get(order.number)
    assert paid.status is OrderStatus.PAID
    assert str(paid.amounts.paid) == "27.00 CNY"


@pytest.mark.parametrize("gateway", ["btcpay", "nowpayments"], indirect=True)
def test_a_lost_notification_is_found_by_the_query(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    shop.gateway.paid_notification(no)  # paid at the gateway; the webhook never arrives

    result = shop.core.payments.reconcile(no)

    assert result.status == "applied"
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID
    assert shop.core.payments.reconcile(no).status in ("duplicate", "unchanged")
    assert shop.pay_events(order.number) == 1
