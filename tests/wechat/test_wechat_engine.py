"""The wechat channel inside the real engine, on every backend: checkout through
``core.payments.start``, the sandbox's encrypted, signed notifications POSTed over HTTP to the
``ordercore.web`` endpoint, applied once whatever the repeats and their order, every forged
one refused with nothing applied and an inbox record, refunds (PROCESSING settled only by
REFUND.SUCCESS, lost answers settled by a query), and the timeout path.

Each test covers several cases on fresh orders of one database: a database per case would make
the suite slow on the server backends."""

from __future__ import annotations

import json
from typing import Any

from wechat_kit import ADMIN, Shop

from ordercore import OrderStatus, PaymentStatus, RefundFailure, RefundStatus

ACCEPTED = (204, b"")
#: Notification faults and the rejection code each must get.
FORGERIES = {
    "stale": "stale",
    "signtest": "bad_signature",
    "bad_tag": "bad_encryption",
    "unknown_serial": "bad_signature",
    "unsigned": "malformed",
    "tampered": "bad_signature",
}


def refused(answer: tuple[int, bytes]) -> str:
    """The message of a refusal: 400 with ``{"code":"FAIL","message":…}``."""
    status, body = answer
    assert status == 400
    data = json.loads(body)
    assert data["code"] == "FAIL"
    assert isinstance(data["message"], str)
    assert data["message"]
    return str(data["message"])


def reasons(shop: Shop) -> list[tuple[str, str]]:
    return [(e["status"], (e["reason"] or "").split(":")[0]) for e in shop.inbox()]


def refund(shop: Shop, number: str, amount: str) -> Any:
    made = shop.core.refunds.request(
        number, amount=amount, destination="original", reason="test", actor=ADMIN
    )
    if made.status is RefundStatus.REQUESTED:
        made = shop.core.refunds.approve(made.refund_no, actor=ADMIN)
    return made


def test_a_native_payment_is_applied_once_however_often_it_is_notified(shop: Shop) -> None:
    order = shop.order()
    started = shop.start(order.number)
    no = started.attempt.out_trade_no
    assert started.checkout.kind == "qr"
    assert started.checkout.content.startswith("weixin://wxpay/bizpayurl?pr=")
    assert started.attempt.status is PaymentStatus.PENDING
    trade = shop.sandbox.trade(no)
    assert (str(trade.total), trade.trade_type) == ("27.00 CNY", "NATIVE")
    assert trade.notify_url == shop.notify_url
    assert trade.description == f"Order {order.number}"

    sent = shop.sandbox.pay(no)  # POSTed to /callbacks/wechat

    assert shop.sandbox.deliveries[-1][1:] == ACCEPTED
    paid = shop.core.orders.get(order.number)
    assert paid.status is OrderStatus.PAID
    assert str(paid.amounts.paid) == "27.00 CNY"
    attempt = shop.core.payments.attempt(no)
    assert attempt.status is PaymentStatus.SUCCEEDED
    assert attempt.channel_trade_no == shop.sandbox.trade(no).transaction_id

    # WeChat repeats a notification until it reads 2xx: the same one twice more.
    assert shop.sandbox.deliver(sent) == ACCEPTED
    assert shop.sandbox.deliver(sent) == ACCEPTED

    assert shop.pay_events(order.number) == 1
    assert [e["status"] for e in shop.inbox()] == ["applied", "duplicate", "duplicate"]
    assert shop.core.anomalies.list(limit=10) == []


def test_every_forged_notification_is_refused_and_kept(shop: Shop) -> None:
    order = shop.order()
    no = shop.start(order.number).attempt.out_trade_no
    shop.sandbox.pay(no, deliver=False)
    expected: list[tuple[str, str]] = []

    for fault, code in FORGERIES.items():
        refused(shop.sandbox.deliver(shop.sandbox.notification(no, fault=fault)))
        expected.append(("rejected", code))
    for changes in ({"mchid": "1900000999"}, {"appid": "wx0000000000000999"}):
        message = refused(shop.sandbox.deliver(shop.sandbox.notification(no, changes=changes)))
        assert "is not ours" in message
        expected.append(("rejected", "wrong_merchant"))
    wrong_key = shop.sandbox.notification(no, apiv3_key=b"A" * 32)
    refused(shop.sandbox.deliver(wrong_key))
    expected.append(("rejected", "bad_encryption"))

    assert reasons(shop) == expected
    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    assert shop.core.payments.attempt(no).status is PaymentStatus.PENDING
    assert shop.core.anomalies.list(limit=10) == []
    # The genuine notification still pays, once.
    assert shop.sandbox.deliver(shop.sandbox.notification(no)) == ACCEPTED
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID
    assert shop.pay_events(order.number) == 1


def test_amount_total_is_compared_never_payer_total(shop: Shop) -> None:
    cheap_order = shop.order()
    cheap = shop.start(cheap_order.number).attempt.out_trade_no
    shop.sandbox.pay(cheap, deliver=False)
    tampered = {"amount": {"total": 1, "payer_total": 1, "currency": "CNY"}}
    # Signed by WeChat but for another amount: recorded, acknowledged, never a payment.
    assert shop.sandbox.deliver(shop.sandbox.notification(cheap, changes=tampered)) == ACCEPTED
    assert shop.core.orders.get(cheap_order.number).status is OrderStatus.PENDING
    assert [a.kind.value for a in shop.core.anomalies.list(limit=10)] == ["amount_mismatch"]

    coupon_order = shop.order()
    coupon = shop.start(coupon_order.number).attempt.out_trade_no
    sent = shop.sandbox.pay(coupon, payer_total=2000)  # 7.00 paid by a coupon
    assert sent.resource["amount"]["payer_total"] == 2000
    assert shop.sandbox.deliveries[-1][1:] == ACCEPTED
    assert str(shop.core.orders.get(coupon_order.number).amounts.paid) == "27.00 CNY"
    assert len(shop.core.anomalies.list(limit=10)) == 1


def test_the_timeout_closes_unpaid_trades_and_never_cancels_a_paid_one(shop: Shop) -> None:
    unpaid = shop.order()
    unpaid_no = shop.start(unpaid.number).attempt.out_trade_no
    paid = shop.order()
    paid_no = shop.start(paid.number).attempt.out_trade_no
    shop.sandbox.pay(paid_no, deliver=False)  # its notification is lost
    shop.clock.advance(16 * 60)  # past the 15-minute payment deadline

    assert shop.core.payments.close_and_cancel(unpaid.number) == "canceled"
    assert shop.core.payments.close_and_cancel(paid.number) == "settled"

    assert shop.core.orders.get(unpaid.number).status is OrderStatus.CANCELED
    assert shop.sandbox.trade(unpaid_no).state == "CLOSED"
    assert shop.core.orders.get(paid.number).status is OrderStatus.PAID


def test_a_processing_partial_refund_completes_only_on_refund_success(shop: Shop) -> None:
    number, no = shop.paid_order()
    shop.sandbox.refund_processing = True

    made = refund(shop, number, "10.00")

    assert made.status is RefundStatus.PROCESSING
    assert shop.core.refunds.reconcile(made.refund_no).status is RefundStatus.PROCESSING
    assert str(shop.core.orders.get(number).amounts.refunded) == "0.00 CNY"
    (held,) = shop.sandbox.trade(no).refunds
    assert (held.out_refund_no, str(held.amount), held.status) == (
        made.refund_no,
        "10.00 CNY",
        "PROCESSING",
    )
    sent = shop.sandbox.settle_refund(made.refund_no, deliver=False)
    for fault in FORGERIES:  # forged REFUND.SUCCESS: refused, nothing applied
        refused(shop.sandbox.deliver(shop.sandbox.refund_notification(made.refund_no, fault=fault)))
    assert shop.core.refunds.get(made.refund_no).status is RefundStatus.PROCESSING

    assert shop.sandbox.deliver(sent) == ACCEPTED  # the genuine one

    assert shop.core.refunds.get(made.refund_no).status is RefundStatus.SUCCEEDED
    after = shop.core.orders.get(number)
    assert after.status is OrderStatus.PAID  # a partial refund keeps the status
    assert str(after.amounts.refunded) == "10.00 CNY"
    assert shop.sandbox.deliver(sent) == ACCEPTED  # repeated: nothing more
    assert str(shop.core.orders.get(number).amounts.refunded) == "10.00 CNY"
    assert shop.sandbox.refunds_made == 1
    assert shop.pay_events(number) == 1
    statuses = [e["status"] for e in shop.inbox()]
    assert statuses == ["applied", *["rejected"] * len(FORGERIES), "applied", "duplicate"]


def test_h5_not_yet_paid_and_a_lost_notification_settled_by_the_query(shop: Shop) -> None:
    order = shop.order()
    started = shop.start(order.number, method="h5", client_ip="203.0.113.7")
    no = started.attempt.out_trade_no
    assert started.checkout.kind == "redirect"
    assert started.checkout.url.startswith(f"{shop.sandbox.url}/cashier/{no}?prepay_id=wx")
    trade = shop.sandbox.trade(no)
    assert (trade.trade_type, trade.payer_client_ip) == ("MWEB", "203.0.113.7")
    without_ip = shop.start(shop.order().number, method="h5")
    assert without_ip.attempt.status is PaymentStatus.FAILED
    assert shop.sandbox.calls["h5"] == 1  # refused before any call

    # NOTPAY and USERPAYING are "not yet", never a failure of the attempt.
    for state in ("NOTPAY", "USERPAYING"):
        waiting = shop.sandbox.notification(no, changes={"trade_state": state})
        assert shop.sandbox.deliver(waiting) == ACCEPTED
        assert shop.core.payments.attempt(no).status is PaymentStatus.PENDING
    assert shop.core.payments.reconcile(no).status == "unchanged"  # the query says NOTPAY
    assert shop.core.payments.attempt(no).status is PaymentStatus.PENDING

    paid = shop.sandbox.pay(no, deliver=False)  # paid; the notification is lost
    for fault in ("unsigned", "bad_signature", "signtest", "stale", "unknown_serial", "500"):
        shop.sandbox.fail_next("query", fault)
        assert shop.core.payments.reconcile(no).status != "applied"
        assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    assert shop.core.payments.reconcile(no).status == "applied"
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID

    assert shop.sandbox.deliver(paid) == ACCEPTED  # late, then an older one: nothing more
    assert shop.sandbox.deliver(waiting) == ACCEPTED
    assert shop.core.payments.attempt(no).status is PaymentStatus.SUCCEEDED
    assert shop.pay_events(order.number) == 1


def test_refunds_that_end_badly_lose_their_answer_or_lack_balance(shop: Shop) -> None:
    shop.sandbox.refund_processing = True
    for status in ("ABNORMAL", "CLOSED"):  # a PROCESSING refund that ends badly fails
        number, _ = shop.paid_order()
        made = refund(shop, number, "10.00")
        shop.sandbox.settle_refund(made.refund_no, status)
        assert shop.sandbox.deliveries[-1][1:] == ACCEPTED
        failed = shop.core.refunds.get(made.refund_no)
        assert (failed.status, failed.channel_code) == (RefundStatus.FAILED, status)
        assert str(shop.core.orders.get(number).amounts.refunded) == "0.00 CNY"
    shop.sandbox.refund_processing = False

    for fault in ("timeout", "500", "unsigned"):  # the refund is made; its answer is lost
        number, no = shop.paid_order()
        made_before = shop.sandbox.refunds_made
        shop.sandbox.fail_next("refund", fault)
        made = refund(shop, number, "10.00")
        assert made.status is RefundStatus.UNKNOWN, fault
        assert shop.core.refunds.reconcile(made.refund_no).status is RefundStatus.SUCCEEDED
        assert shop.sandbox.refunds_made == made_before + 1
        assert [r.out_refund_no for r in shop.sandbox.trade(no).refunds] == [made.refund_no]
        assert str(shop.core.orders.get(number).amounts.refunded) == "10.00 CNY"

    number, _ = shop.paid_order()  # NOT_ENOUGH: failed, retryable, paid out once on retry
    shop.sandbox.balance_insufficient = True
    made_before = shop.sandbox.refunds_made
    made = refund(shop, number, "27.00")
    assert made.status is RefundStatus.FAILED
    assert made.failure is RefundFailure.MERCHANT_BALANCE_INSUFFICIENT
    assert (made.channel_code, made.retryable) == ("NOT_ENOUGH", True)
    shop.sandbox.balance_insufficient = False
    retried = shop.core.refunds.retry(made.refund_no, actor=ADMIN)
    assert retried.status is RefundStatus.SUCCEEDED
    assert shop.sandbox.refunds_made == made_before + 1
    assert shop.core.orders.get(number).status is OrderStatus.REFUNDED
