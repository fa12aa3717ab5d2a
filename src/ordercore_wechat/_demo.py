"""The WeChat Pay step of ``ordercore demo``: one order paid through the ``wechat`` channel
against its loopback sandbox (signed requests and answers, an AES-256-GCM notification over
real HTTP), then partly refunded — WeChat Pay answers PROCESSING and REFUND.SUCCESS settles
it."""

from __future__ import annotations

from collections.abc import Callable

from ordercore import Actor, OrderCore
from ordercore.channels import ChannelConfig
from ordercore.web import start_background_server

from .sandbox import WechatSandbox

__all__ = ["WechatDemo"]


class WechatDemo:
    """A started sandbox, its channel configuration, and the demo step."""

    def __init__(self) -> None:
        self.sandbox = WechatSandbox().start()

    def config(self) -> ChannelConfig:
        # WeChat Pay needs a notify_url; the step delivers to the real endpoint itself.
        return self.sandbox.channel_config(
            notify_url="http://127.0.0.1:9/callbacks/wechat", timeout_seconds=10
        )

    def stop(self) -> None:
        self.sandbox.stop()

    def run(self, core: OrderCore, customer_id: int, sku: str, say: Callable[..., None]) -> None:
        admin = Actor.operator("alice", "admin")
        finance = Actor.operator("frank", "finance")
        server, url = start_background_server(core)
        try:
            order = core.orders.create(customer_id=customer_id, items=[(sku, 1)], actor=admin)
            started = core.payments.start(
                order.number, channel="wechat", method="native", actor=admin
            )
            code = started.checkout.content if started.checkout else ""
            say(
                f"order {order.number}: WeChat Pay QR code {code} from the sandbox "
                "(POST /v3/pay/transactions/native, signed both ways)",
                order=order.number,
            )
            notification = self.sandbox.pay(started.attempt.out_trade_no, deliver=False)
            status, _ = self.sandbox.deliver(notification, url=f"{url}/callbacks/wechat")
            say(
                f"order {order.number}: WeChat Pay's encrypted, signed notification answered "
                f"HTTP {status}; order {core.orders.get(order.number).status.value}",
                order=order.number,
            )
            refund = core.refunds.request(
                order.number,
                amount="5.00",
                destination="original",
                reason="unused days",
                actor=Actor.customer(customer_id),
            )
            self.sandbox.refund_processing = True
            refund = core.refunds.approve(refund.refund_no, actor=finance)
            settled = self.sandbox.settle_refund(refund.refund_no, deliver=False)
            status, _ = self.sandbox.deliver(settled, url=f"{url}/callbacks/wechat")
            refund = core.refunds.get(refund.refund_no)
            paid = core.orders.get(order.number)
            say(
                f"refund {refund.refund_no}: PROCESSING, then REFUND.SUCCESS answered HTTP "
                f"{status}; refund {refund.status.value}; order {paid.status.value}, refunded "
                f"{paid.amounts.refunded}",
                order=order.number,
                refund=refund.refund_no,
                refund_status=refund.status.value,
                status=paid.status.value,
                refunded=str(paid.amounts.refunded.amount),
            )
        finally:
            server.shutdown()
            server.server_close()
