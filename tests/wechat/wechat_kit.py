"""What the WeChat plugin's tests share besides fixtures: key pairs made once per worker, a
sandbox builder, the operator that acts, and the shop the engine tests drive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from helpers import Backend, FakeClock
from ordercore import Actor, OrderCore
from ordercore.channels import PaymentChannel
from ordercore.web import BackgroundServer
from ordercore_wechat.sandbox import WechatSandbox, generate_key

ADMIN = Actor.operator("alice", "admin")
#: A notify URL nothing listens on, for tests that build notifications without delivering.
NOWHERE = "http://127.0.0.1:9/callbacks/wechat"
#: An APIv3 key for the tests (32 ASCII characters).
APIV3_KEY = b"0123456789abcdefABCDEF0123456789"


@dataclass(frozen=True)
class Keys:
    merchant: rsa.RSAPrivateKey
    platform: rsa.RSAPrivateKey
    stranger: rsa.RSAPrivateKey  # a key that is neither: signatures with it must fail


_KEYS: Keys | None = None


def keys() -> Keys:
    """RSA-2048 key pairs, generated once per process (xdist worker)."""
    global _KEYS
    if _KEYS is None:
        _KEYS = Keys(generate_key(), generate_key(), generate_key())
    return _KEYS


def make_sandbox(**kwargs: Any) -> WechatSandbox:
    k = keys()
    kwargs.setdefault("merchant_private_key", k.merchant)
    kwargs.setdefault("platform_private_key", k.platform)
    kwargs.setdefault("merchant_serial_no", "5157F09EFDC096DE15EBE81A47057A7232F1B8E1")
    kwargs.setdefault("apiv3_key", APIV3_KEY)
    kwargs.setdefault("hang_seconds", 0.5)
    return WechatSandbox(**kwargs)


def channel_from_table(table: dict[str, Any]) -> PaymentChannel:
    """The channel ordercore builds from a ``[channels.wechat]`` table (key files read,
    ``NAME_env`` looked up), through the public API: no database is touched."""
    core = OrderCore.from_url("sqlite://", channels={"wechat": table})
    try:
        return core.channel("wechat")
    finally:
        core.close()


class LateCore:
    """The web endpoint's view of a core that is built after the server (the core's
    configuration needs the server's URL as notify_url)."""

    payments: Any = None


@dataclass
class Shop:
    backend: Backend
    core: OrderCore
    clock: FakeClock
    sandbox: WechatSandbox
    server: BackgroundServer
    url: str
    customer_id: int

    @property
    def notify_url(self) -> str:
        return f"{self.url}/callbacks/wechat"

    def order(self) -> Any:
        """A pending order of 27.00 CNY."""
        return self.core.orders.create(
            customer_id=self.customer_id, items=[("vpn", 1)], actor=ADMIN
        )

    def start(self, number: str, method: str = "native", client_ip: str | None = None) -> Any:
        return self.core.payments.start(
            number, channel="wechat", method=method, client_ip=client_ip, actor=ADMIN
        )

    def paid_order(self) -> tuple[str, str]:
        """A 27.00 CNY order paid through the sandbox: ``(number, out_trade_no)``."""
        order = self.order()
        no = self.start(order.number).attempt.out_trade_no
        self.sandbox.pay(no)
        assert self.sandbox.deliveries[-1][1] == 204
        return order.number, no

    def pay_events(self, number: str) -> int:
        return sum(1 for t in self.core.orders.get(number).history if t.event.value == "pay")

    def inbox(self) -> list[dict[str, Any]]:
        return list(reversed(self.core.payments.notifications(limit=1000)))
