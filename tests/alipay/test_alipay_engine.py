"""The alipay channel inside the real engine, on every backend: checkout through
``core.payments.start``, the sandbox's signed notifications POSTed over HTTP to the
``ordercore.web`` endpoint, applied once whatever the repeats and their order, refusals
answered ``fail`` and kept, and the query and close paths of reconciliation."""

from __future__ import annotations

from alipay_kit import ADMIN, Shop

from ordercore import OrderStatus
from ordercore._state import PaymentStatus
from ordercore.testing import make_refund_request

SUCCESS = (200, b"success")
FAIL = (400, b"fail")


def test_a_qr_payment_is_applied_once_through_the_http_endpoint(shop: Shop) -> None:
    order = shop.order()
    started = shop.start(order.number)
    no = started.attempt.out_trade_no
    assert started.checkout is not None
    assert started.checkout.kind == "qr"
    assert started.checkout.content == f"{shop.sandbox.url}/cashier/{no}"
    assert started.attempt.status is PaymentStatus.PENDING
    trade = shop.sandbox.trade(no)
    assert str(trade.total_amount) == "27.00 CNY"
    assert trade.notify_url == shop.notify_url
    assert trade.subject == f"Order {order.number}"

    sent = shop.sandbox.pay(no, charset="gbk")  # POSTed to /callbacks/alipay

    assert shop.sandbox.deliveries[-1][1:] == SUCCESS
    paid = shop.core.orders.get(order.number)
    assert paid.status is OrderStatus.PAID
    assert str(paid.amounts.paid) == "27.00 CNY"
    attempt = shop.core.payments.attempt(no)
    assert attempt.status is PaymentStatus.SUCCEEDED
    assert attempt.channel_trade_no == trade.trade_no

    # Alipay repeats a notification until it reads "success"; later, TRADE_FINISHED.
    assert shop.sandbox.deliver(sent) == SUCCESS
    finished = shop.sandbox.finish(no)
    assert shop.sandbox.deliveries[-1][0] is finished
    assert shop.sandbox.deliveries[-1][1:] == SUCCESS

    assert shop.pay_events(order.number) == 1
    statuses = [entry["status"] for entry in shop.inbox()]
    assert statuses == ["applied", "duplicate", "duplicate"]
    assert shop.core.anomalies.list(limit=10) == []


def test_trade_finished_before_trade_success_pays_once(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    success = shop.sandbox.pay(no, deliver=False)
    finished = shop.sandbox.notification(no, trade_status="TRADE_FINISHED")

    assert shop.sandbox.deliver(finished) == SUCCESS
    assert shop.sandbox.deliver(success) == SUCCESS

    assert shop.core.orders.get(order.number).status is OrderStatus.PAID
    assert shop.pay_events(order.number) == 1


def test_refused_notifications_change_nothing_and_are_kept(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    shop.sandbox.scan(no)
    tampered = shop.sandbox.notification(
        no, trade_status="TRADE_SUCCESS", tamper={"total_amount": "0.01"}
    )
    foreign = shop.sandbox.notification(
        no, trade_status="TRADE_SUCCESS", extra={"app_id": "2021000000000999"}
    )
    weak = shop.sandbox.notification(no, trade_status="TRADE_SUCCESS", sign_type="RSA")

    for notification in (tampered, foreign, weak):
        assert shop.sandbox.deliver(notification) == FAIL

    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    reasons = [(e["status"], (e["reason"] or "").split(":")[0]) for e in shop.inbox()]
    assert reasons == [
        ("rejected", "bad_signature"),
        ("rejected", "wrong_merchant"),
        ("rejected", "bad_signature"),
    ]


def test_a_signed_amount_mismatch_is_an_anomaly_not_a_payment(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    shop.sandbox.scan(no)
    other = shop.sandbox.notification(
        no, trade_status="TRADE_SUCCESS", extra={"total_amount": "0.01"}
    )

    assert shop.sandbox.deliver(other) == SUCCESS  # verified and recorded: no retries

    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    kinds = [a.kind.value for a in shop.core.anomalies.list(limit=10)]
    assert kinds == ["amount_mismatch"]


def test_a_refund_notification_is_never_a_second_payment(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    shop.sandbox.pay(no)
    channel = shop.core.channel("alipay")
    refund = make_refund_request(no, "10.00", total="27.00", out_refund_no="R-engine")
    assert channel.refund(refund).outcome.value == "succeeded"

    shop.sandbox.notify_refund(no, "R-engine")

    assert shop.sandbox.deliveries[-1][1:] == SUCCESS
    after = shop.core.orders.get(order.number)
    assert after.status is OrderStatus.PAID
    assert str(after.amounts.paid) == "27.00 CNY"
    assert shop.pay_events(order.number) == 1
    assert shop.core.anomalies.list(limit=10) == []


def test_a_lost_notification_is_settled_by_the_query(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    assert shop.core.payments.reconcile(no).status == "unchanged"  # TRADE_NOT_EXIST: pending
    shop.sandbox.pay(no, deliver=False)

    result = shop.core.payments.reconcile(no)

    assert result.status == "applied"
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID
    assert shop.sandbox.deliveries == []


def test_the_timeout_closes_unscanned_and_scanned_qr_codes(shop: Shop) -> None:
    never = shop.order()
    never_no = shop.start(never.number).attempt.out_trade_no
    scanned = shop.order()
    scanned_no = shop.start(scanned.number).attempt.out_trade_no
    shop.sandbox.scan(scanned_no)
    shop.clock.advance(16 * 60)  # past the 15-minute payment deadline

    assert shop.core.payments.close_and_cancel(never.number) == "canceled"
    assert shop.core.payments.close_and_cancel(scanned.number) == "canceled"

    assert shop.core.orders.get(never.number).status is OrderStatus.CANCELED
    assert shop.core.orders.get(scanned.number).status is OrderStatus.CANCELED
    assert shop.sandbox.trade(never_no).status == "CREATED"  # Alipay never knew it
    assert shop.sandbox.trade(scanned_no).status == "TRADE_CLOSED"
    assert shop.sandbox.calls["alipay.trade.close"] == 2


def test_a_paid_trade_is_never_cancelled_by_the_timeout(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    shop.sandbox.pay(no, deliver=False)  # the notification is lost
    shop.clock.advance(16 * 60)

    assert shop.core.payments.close_and_cancel(order.number) == "settled"
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID


def test_a_refund_through_the_refund_engine(shop: Shop) -> None:
    from ordercore._refunds.domain import RefundStatus

    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    shop.sandbox.pay(no)
    shop.sandbox.fail_next("alipay.trade.refund", "20000", apply=True)  # answer lost, refund made

    refund = shop.core.refunds.request(
        order.number, amount="10.00", destination="original", reason="test", actor=ADMIN
    )
    if refund.status is RefundStatus.REQUESTED:
        refund = shop.core.refunds.approve(refund.refund_no, actor=ADMIN)
    assert refund.status is RefundStatus.UNKNOWN

    settled = shop.core.refunds.reconcile(refund.refund_no)  # the refund query finds it

    assert settled.status is RefundStatus.SUCCEEDED
    assert shop.sandbox.refunds_made == 1
    (made,) = shop.sandbox.trade(no).refunds
    assert (made.out_request_no, str(made.amount)) == (refund.refund_no, "10.00 CNY")
    assert str(shop.core.orders.get(order.number).amounts.refunded) == "10.00 CNY"
    shop.sandbox.notify_refund(no, refund.refund_no)  # the notification changes nothing more
    assert shop.sandbox.deliveries[-1][1:] == SUCCESS
    assert shop.sandbox.refunds_made == 1
    assert str(shop.core.orders.get(order.number).amounts.refunded) == "10.00 CNY"


def test_a_refund_refused_for_the_merchant_balance_is_retryable(shop: Shop) -> None:
    from ordercore._refunds.domain import RefundFailure, RefundStatus

    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    shop.sandbox.pay(no)
    shop.sandbox.seller_balance_insufficient = True

    refund = shop.core.refunds.request(
        order.number, amount="27.00", destination="original", reason="test", actor=ADMIN
    )
    if refund.status is RefundStatus.REQUESTED:
        refund = shop.core.refunds.approve(refund.refund_no, actor=ADMIN)

    assert refund.status is RefundStatus.FAILED
    assert refund.failure is RefundFailure.MERCHANT_BALANCE_INSUFFICIENT
    assert refund.channel_code == "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    assert refund.retryable
    shop.sandbox.seller_balance_insufficient = False
    retried = shop.core.refunds.retry(refund.refund_no, actor=ADMIN)
    assert retried.status is RefundStatus.SUCCEEDED
    assert shop.sandbox.refunds_made == 1
    assert shop.core.orders.get(order.number).status is OrderStatus.REFUNDED
