"""The crypto step of ``ordercore demo``: one order per gateway against its loopback
sandbox, notifications over real HTTP to the demo's own endpoint."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from ordercore import Actor, OrderCore
from ordercore.channels import ChannelConfig
from ordercore.web import start_background_server

from .sandbox import BtcpaySandbox, EpusdtSandbox, NowpaymentsSandbox, SandboxNotification

__all__ = ["CryptoDemo"]


class CryptoDemo:
    """Start the three sandboxes (:meth:`configs` for ``OrderCore``), then :meth:`run`."""

    def __init__(self) -> None:
        self.btcpay = BtcpaySandbox()
        self.epusdt = EpusdtSandbox()
        self.nowpayments = NowpaymentsSandbox()
        for sandbox in (self.btcpay, self.epusdt, self.nowpayments):
            sandbox.start()

    def configs(self) -> dict[str, ChannelConfig]:
        # Where the gateways would call: the demo delivers to its own endpoint by hand.
        later = "http://127.0.0.1:9/callbacks/"
        return {
            "btcpay": self.btcpay.channel_config(),
            "epusdt": self.epusdt.channel_config(later + "epusdt"),
            "nowpayments": self.nowpayments.channel_config(later + "nowpayments"),
        }

    def stop(self) -> None:
        for sandbox in (self.btcpay, self.epusdt, self.nowpayments):
            sandbox.stop()

    def run(self, core: OrderCore, customer_id: int, sku: str, say: Callable[..., None]) -> None:
        admin = Actor.operator("alice", "admin")
        server, url = start_background_server(core)
        try:

            def pay(
                channel: str, send: Callable[[str], list[SandboxNotification]], how: str
            ) -> None:
                order = core.orders.create(customer_id=customer_id, items=[(sku, 1)], actor=admin)
                started = core.payments.start(order.number, channel=channel, actor=admin)
                checkout = started.checkout
                coin = checkout.coin_amount if checkout else None
                say(
                    f"order {order.number}: {channel} locked {coin} for {order.amounts.payable} "
                    f"(send to {checkout.content if checkout else '?'})",
                    order=order.number,
                )
                replies = []
                for notification in send(started.attempt.out_trade_no):
                    status, body = self._deliver(notification, f"{url}/callbacks/{channel}")
                    replies.append(f"{status} {body.decode()[:20]!r}")
                shown = core.orders.get(order.number)
                anomalies = core.anomalies.list(limit=100)
                kinds = [a.kind.value for a in anomalies if a.order_number == order.number]
                say(
                    f"order {order.number}: the payer {how}; {channel} notified "
                    f"({', '.join(replies)}); order {shown.status.value}"
                    + (f", anomaly {', '.join(kinds)}" if kinds else ""),
                    order=order.number,
                    status=shown.status.value,
                )

            pay(
                "btcpay",
                lambda no: self.btcpay.pay(no, deliver=False),
                "paid the invoice exactly (three signed webhooks, the invoice fetched each time)",
            )
            pay("epusdt", lambda no: [self.epusdt.pay(no, deliver=False)], "sent the USDT")
            pay(
                "nowpayments",
                lambda no: [
                    self.nowpayments.pay(
                        no,
                        (self.nowpayments.payment(no).pay_amount / 2).quantize(Decimal("0.01")),
                        deliver=False,
                    )
                ],
                "sent half the USDT (partially_paid: not paid)",
            )
        finally:
            server.shutdown()
            server.server_close()

    def _deliver(self, notification: SandboxNotification, url: str) -> tuple[int | None, bytes]:
        return self.btcpay.deliver(notification, url=url)
