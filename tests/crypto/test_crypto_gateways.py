"""What each gateway does its own way: BTCPay acts on the fetched invoice (never on the
webhook's word) and answers 5xx only when it could not ask; Epusdt replies exactly ``ok``,
pays on status 2 only and has forks; NOWPayments keeps the raw body and checks the coin.
Faults in the gateways' APIs leave outcomes unknown, never failed."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import attrs
import pytest
from crypto_kit import OK, Epusdt, Shop

from ordercore import Money, OrderStatus
from ordercore._state import PaymentStatus
from ordercore.channels import CheckoutRequest, Notification, Outcome
from ordercore_crypto import EpusdtChannel

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
BTCPAY = pytest.mark.parametrize("gateway", ["btcpay"], indirect=True)
EPUSDT = pytest.mark.parametrize("gateway", ["epusdt"], indirect=True)
NOWPAYMENTS = pytest.mark.parametrize("gateway", ["nowpayments"], indirect=True)


@SQLITE
@BTCPAY
def test_btcpay_a_webhook_saying_settled_for_a_new_invoice_pays_nothing(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    sandbox = shop.gateway.btcpay  # type: ignore[attr-defined]
    invoice = sandbox.invoice(no)
    claim = sandbox.webhook(invoice, "InvoiceSettled", overPaid=False)  # genuinely signed

    assert sandbox.deliver(claim) == OK

    assert invoice.status == "New"
    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    (entry,) = shop.inbox()
    assert entry["status"] == "ignored"
    assert ("GET", f"/api/v1/stores/{sandbox.store_id}/invoices/{invoice.id}") in sandbox.requests


@SQLITE
@BTCPAY
def test_btcpay_unreachable_invoice_answers_503_and_the_redelivery_pays(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    sandbox = shop.gateway.btcpay  # type: ignore[attr-defined]
    settled = shop.gateway.paid_notification(no)

    sandbox.fail_next("http500")
    status, body = sandbox.deliver(settled)
    assert status == 503  # BTCPay redelivers after a 5xx only
    assert b"unavailable" in body
    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    sandbox.fail_next("drop")
    assert sandbox.deliver(settled)[0] == 503

    assert sandbox.deliver(settled) == OK
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID
    assert [e["status"] for e in shop.inbox()] == ["rejected", "rejected", "applied"]


@SQLITE
@BTCPAY
def test_btcpay_another_store_and_garbage_are_definite_refusals(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    sandbox = shop.gateway.btcpay  # type: ignore[attr-defined]
    invoice = sandbox.invoice(no)
    sandbox.store_id, real = "OtherStore", sandbox.store_id
    foreign = sandbox.webhook(invoice, "InvoiceSettled")
    sandbox.store_id = real
    assert sandbox.deliver(foreign)[0] == 400
    garbage = attrs.evolve(foreign, body=b"not json")
    assert sandbox.deliver(garbage)[0] == 400
    reasons = [e["reason"].split(":")[0] for e in shop.inbox()]
    assert reasons == ["wrong_merchant", "bad_signature"]


@SQLITE
@BTCPAY
def test_btcpay_an_invoice_that_expires_unpaid_fails_the_attempt(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    sandbox = shop.gateway.btcpay  # type: ignore[attr-defined]
    assert sandbox.deliver(sandbox.expire(no)) == OK
    assert shop.core.payments.attempt(no).status is PaymentStatus.FAILED
    assert shop.anomalies() == []


@SQLITE
@EPUSDT
def test_epusdt_replies_exactly_ok_and_pays_on_status_2_only(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    sandbox = shop.gateway.epusdt  # type: ignore[attr-defined]
    trade = sandbox.trade(no)
    waiting = sandbox.callback(trade, trade.actual_amount)  # status 1, some forks send it
    assert sandbox.deliver(waiting) == (200, b"ok")
    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    assert shop.core.payments.reconcile(no).reason == "pending"

    assert sandbox.deliver(sandbox.pay(no, deliver=False)) == (200, b"ok")
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID
    # Paid at Epusdt: its status endpoint says 2, which alone is not applied (no amounts).
    assert shop.core.payments.reconcile(no).status in ("duplicate", "unchanged")


@SQLITE
@EPUSDT
def test_epusdt_an_expired_trade_fails_the_attempt(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    sandbox = shop.gateway.epusdt  # type: ignore[attr-defined]
    assert sandbox.deliver(sandbox.expire(no)) == OK
    assert shop.core.payments.attempt(no).status is PaymentStatus.FAILED


@pytest.mark.parametrize(
    "fork",
    [
        {"algorithm": "hmac-sha256", "create_path": "/payments/gmpay/v1/order/create-transaction"},
        {"decimals": 2},
    ],
    ids=["gmwallet-hmac", "two-decimals"],
)
def test_epusdt_forks_sign_and_round_their_way(fork: dict[str, object]) -> None:

    gateway = Epusdt(**fork)
    with gateway.sandbox:
        channel = EpusdtChannel(gateway.config("http://127.0.0.1:9/callbacks/epusdt"))
        checkout = channel.create_checkout(
            CheckoutRequest(
                out_trade_no="O123",
                amount=Money.of("27.00", "CNY"),
                subject="VPN",
                method="address",
                notify_url=None,
                expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc),
            )
        )
        assert checkout.outcome is Outcome.PENDING, checkout.message
        assert checkout.coin_amount is not None
        expected = gateway.epusdt.trade("O123").actual_amount
        assert checkout.coin_amount.amount == expected
        hook = gateway.epusdt.pay("O123", deliver=False)
        (event,) = channel.parse_notification(Notification("epusdt", {}, hook.body)).events
        assert event.paid
        assert event.coin_amount == checkout.coin_amount  # compared as Decimal, not as text


def test_epusdt_a_refused_create_fails_the_checkout_and_a_lost_one_is_unknown() -> None:

    gateway = Epusdt()
    with gateway.sandbox:
        request = CheckoutRequest(
            out_trade_no="O9",
            amount=Money.of("27.00", "CNY"),
            subject="VPN",
            method="address",
            notify_url="http://127.0.0.1:9/cb",
            expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc),
        )
        gateway.epusdt.fail_next("drop")
        channel = EpusdtChannel(gateway.config(None))
        assert channel.create_checkout(request).outcome is Outcome.UNKNOWN
        gateway.epusdt.token, real = "another-token", gateway.epusdt.token
        refused = channel.create_checkout(request)
        assert refused.outcome is Outcome.FAILED
        assert "401" in (refused.message or "")
        gateway.epusdt.token = real
        assert channel.create_checkout(request).outcome is Outcome.PENDING


@SQLITE
@NOWPAYMENTS
def test_nowpayments_keeps_the_raw_body_and_checks_the_coin(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    sandbox = shop.gateway.nowpayments  # type: ignore[attr-defined]
    payment = sandbox.payment(no)
    in_btc = attrs.evolve(
        payment, status="finished", pay_currency="btc", actually_paid=Decimal("0.00005625")
    )
    hook = sandbox.ipn(in_btc)
    assert b'"price_amount": 27.0,' in hook.body  # a Python-style float on the wire

    assert sandbox.deliver(hook) == OK

    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    (anomaly,) = shop.anomalies()
    assert anomaly.kind.value == "currency_mismatch"
    (entry,) = shop.inbox()
    assert entry["body"] == hook.body  # the raw bytes, not the canonical form
    sent = shop.gateway.pay(no)
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID
    assert (
        shop.core.notification(entry["id"])["body"] == hook.body
        if hasattr(shop.core, "notification")
        else sent
    )


@SQLITE
@NOWPAYMENTS
def test_a_gateway_that_does_not_answer_leaves_the_attempt_unknown(shop: Shop) -> None:
    order = shop.order()
    shop.gateway.sandbox.fail_next("http500")
    started = shop.start(order.number)
    assert started.attempt.status is PaymentStatus.UNKNOWN
    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    (operation,) = shop.core.payments.operations(started.attempt.out_trade_no)
    assert operation["state"] == "unknown"


@SQLITE
@pytest.mark.parametrize("gateway", ["btcpay", "epusdt", "nowpayments"], indirect=True)
def test_the_timeout_job_never_cancels_an_order_its_gateway_says_is_paid(shop: Shop) -> None:
    paid, waiting = shop.order(), shop.order()
    paid_no = shop.start(paid.number).attempt.out_trade_no
    shop.start(waiting.number)
    missed = shop.gateway.paid_notification(paid_no)  # paid; the notification is lost
    shop.clock.advance(3 * 24 * 3600)  # both orders are past their payment deadline

    outcome = shop.core.payments.close_and_cancel(paid.number)

    if shop.channel == "epusdt":  # its status endpoint has no amounts: wait for the callback
        assert outcome == "skipped"
        assert shop.core.orders.get(paid.number).status is OrderStatus.PENDING
        assert shop.gateway.deliver(missed) == OK
    else:
        assert outcome == "settled"
    assert shop.core.orders.get(paid.number).status is OrderStatus.PAID
    assert shop.core.payments.close_and_cancel(waiting.number) == "canceled"
    assert shop.core.orders.get(waiting.number).status is OrderStatus.CANCELED
