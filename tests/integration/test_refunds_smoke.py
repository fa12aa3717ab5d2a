from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import Backend, FakeClock
from ordercore import OrderStatus, RefundDeadlinePassed
from ordercore._state import RefundStatus

from .payment_kit import ADMIN, Shop, cny, make_shop


@pytest.fixture
def shop(backend: Backend, clock: FakeClock) -> Iterator[Shop]:
    built = make_shop(backend, clock)
    yield built
    built.core.close()


def paid(shop: Shop) -> str:
    order = shop.order()
    attempt = shop.start(order.number)
    shop.deliver(shop.gateway.pay(attempt.out_trade_no))
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID
    return order.number


def test_smoke(shop: Shop) -> None:
    core = shop.core
    number = paid(shop)
    r = core.refunds.request(number, amount="5.00", destination="balance", reason="partial", actor=ADMIN)
    assert r.status is RefundStatus.REQUESTED
    r = core.refunds.approve(r.refund_no, actor=ADMIN)
    assert r.status is RefundStatus.SUCCEEDED
    assert core.wallet.balance(shop.customer_id, "CNY") == cny("5.00")
    r2 = core.refunds.request(number, destination="original", reason="rest", actor=ADMIN)
    assert r2.amount == cny("22.00")
    r2 = core.refunds.approve(r2.refund_no, actor=ADMIN)
    assert r2.status is RefundStatus.SUCCEEDED, r2
    order = core.orders.get(number)
    assert order.status is OrderStatus.REFUNDED
    assert shop.gateway.refunds_made == 1
    details = core.orders.details(number)
    assert len(details.refunds) == 2
    shop.core.payments.run_due_jobs()
    assert "order.revoke" in shop.outbox_kinds(number)
    a = core.after_sales.show(number)
    assert a.refundable == cny("0.00")


def test_unknown_then_retry(shop: Shop) -> None:
    core = shop.core
    number = paid(shop)
    shop.gateway.fail_next("refund", lose_answer_after_apply=True)
    r = core.refunds.request(number, destination="original", reason="x", actor=ADMIN)
    r = core.refunds.approve(r.refund_no, actor=ADMIN)
    assert r.status is RefundStatus.UNKNOWN
    r = core.refunds.retry(r.refund_no, actor=ADMIN)
    assert r.status is RefundStatus.SUCCEEDED
    assert shop.gateway.refunds_made == 1
    assert shop.gateway.refund_calls == 2


def test_deadline(backend: Backend, clock: FakeClock) -> None:
    from ordercore.testing import FakeGateway, fake_channel_config

    shop = make_shop(backend, clock)
    gateway = shop.gateway
    shop.core.settings.channels["fake"] = fake_channel_config(gateway=gateway, refund_deadline_days=90)  # type: ignore[index]
    shop.core._channels = None
    core = shop.core
    number = paid(shop)
    shop.clock.advance(400 * 86400)
    with pytest.raises(RefundDeadlinePassed):
        core.refunds.request(number, destination="original", reason="x", actor=ADMIN)
