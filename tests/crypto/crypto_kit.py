"""What the crypto plugin's tests share: one adapter per gateway (the payer's actions on its
sandbox, a forged notification, the reply it expects), and the shop the engine tests drive.

(No ``__init__.py`` here, on purpose, like tests/alipay: the kit is imported by name.)"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import attrs

from helpers import Backend, FakeClock
from ordercore import Actor, OrderCore, StartedPayment
from ordercore._orders.domain import Order
from ordercore.channels import ChannelConfig
from ordercore.web import BackgroundServer
from ordercore_crypto.sandbox import (
    BtcpaySandbox,
    EpusdtSandbox,
    GatewaySandbox,
    NowpaymentsSandbox,
    SandboxNotification,
)

ADMIN = Actor.operator("alice", "admin")
GATEWAYS = ("btcpay", "epusdt", "nowpayments")
OK = (200, b"ok")


class Gateway:
    """A sandbox seen through what every test needs from it."""

    name: str
    sandbox: GatewaySandbox

    def config(self, notify_url: str | None) -> ChannelConfig:
        return self.sandbox.channel_config(notify_url=notify_url)  # type: ignore[attr-defined, no-any-return]

    def locked(self, no: str) -> Decimal:
        raise NotImplementedError

    def pay(
        self, no: str, coins: Decimal | None = None, *, late: bool = False
    ) -> list[SandboxNotification]:
        """Pay (delivered); returns the notifications sent."""
        raise NotImplementedError

    def paid_notification(self, no: str) -> SandboxNotification:
        """A valid notification saying paid, built without delivering."""
        raise NotImplementedError

    def forged(self, no: str) -> SandboxNotification:
        raise NotImplementedError

    def deliver(self, notification: SandboxNotification) -> tuple[int | None, bytes]:
        return self.sandbox.deliver(notification)


class Btcpay(Gateway):
    name = "btcpay"

    def __init__(self) -> None:
        self.sandbox = self.btcpay = BtcpaySandbox()

    def locked(self, no: str) -> Decimal:
        return self.btcpay.invoice(no).coin.amount

    def pay(
        self, no: str, coins: Decimal | None = None, *, late: bool = False
    ) -> list[SandboxNotification]:
        return self.btcpay.pay(no, coins, late=late)

    def paid_notification(self, no: str) -> SandboxNotification:
        return self.btcpay.pay(no, deliver=False)[-1]

    def forged(self, no: str) -> SandboxNotification:
        invoice = self.btcpay.invoice(no)
        return self.btcpay.webhook(
            invoice, "InvoiceSettled", secret="not-the-secret", overPaid=False
        )


class Epusdt(Gateway):
    name = "epusdt"

    def __init__(self, **kwargs: Any) -> None:
        self.sandbox = self.epusdt = EpusdtSandbox(**kwargs)

    def locked(self, no: str) -> Decimal:
        return self.epusdt.trade(no).actual_amount

    def pay(
        self, no: str, coins: Decimal | None = None, *, late: bool = False
    ) -> list[SandboxNotification]:
        assert not late, "Epusdt matches transfers only while the trade is open"
        return [self.epusdt.pay(no, coins)]

    def paid_notification(self, no: str) -> SandboxNotification:
        return self.epusdt.pay(no, deliver=False)

    def forged(self, no: str) -> SandboxNotification:
        trade = attrs.evolve(self.epusdt.trade(no), status=2)
        return self.epusdt.callback(trade, trade.actual_amount, token="not-the-token")


class Nowpayments(Gateway):
    name = "nowpayments"

    def __init__(self) -> None:
        self.sandbox = self.nowpayments = NowpaymentsSandbox()

    def locked(self, no: str) -> Decimal:
        return self.nowpayments.payment(no).pay_amount

    def pay(
        self, no: str, coins: Decimal | None = None, *, late: bool = False
    ) -> list[SandboxNotification]:
        return [self.nowpayments.pay(no, coins, late=late)]

    def paid_notification(self, no: str) -> SandboxNotification:
        return self.nowpayments.pay(no, deliver=False)

    def forged(self, no: str) -> SandboxNotification:
        payment = self.nowpayments.payment(no)
        paid = attrs.evolve(payment, status="finished", actually_paid=payment.pay_amount)
        return self.nowpayments.ipn(paid, secret="not-the-secret")


def make_gateway(name: str) -> Gateway:
    return {"btcpay": Btcpay, "epusdt": Epusdt, "nowpayments": Nowpayments}[name]()


class LateCore:
    """The web endpoint's view of a core built after the server."""

    payments: Any = None


@dataclass
class Shop:
    backend: Backend
    core: OrderCore
    clock: FakeClock
    gateway: Gateway
    server: BackgroundServer
    url: str
    customer_id: int

    @property
    def channel(self) -> str:
        return self.gateway.name

    def order(self) -> Order:
        """A pending order of 27.00 CNY."""
        return self.core.orders.create(
            customer_id=self.customer_id, items=[("vpn", 1)], actor=ADMIN
        )

    def start(self, number: str) -> StartedPayment:
        return self.core.payments.start(number, channel=self.channel, actor=ADMIN)

    def pay_events(self, number: str) -> int:
        from ordercore._state import OrderEvent

        return sum(1 for t in self.core.orders.get(number).history if t.event is OrderEvent.PAY)

    def inbox(self) -> list[dict[str, Any]]:
        return list(reversed(self.core.payments.notifications(limit=1000)))

    def anomalies(self) -> list[Any]:
        return list(self.core.anomalies.list(limit=100))
