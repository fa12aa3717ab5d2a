"""What the Alipay plugin's tests share besides fixtures: key pairs made once per worker, a
sandbox builder, the operator that acts, and the shop the engine tests drive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from helpers import Backend, FakeClock
from ordercore import Actor, OrderCore, StartedPayment
from ordercore._orders.domain import Order
from ordercore.web import BackgroundServer
from ordercore_alipay.sandbox import AlipaySandbox, generate_key

ADMIN = Actor.operator("alice", "admin")
#: A notify URL nothing listens on, for tests that build notifications without delivering.
NOWHERE = "http://127.0.0.1:9/callbacks/alipay"


@dataclass(frozen=True)
class Keys:
    app: rsa.RSAPrivateKey
    alipay: rsa.RSAPrivateKey
    stranger: rsa.RSAPrivateKey  # a key that is neither: signatures with it must fail


_KEYS: Keys | None = None


def keys() -> Keys:
    """RSA-2048 key pairs, generated once per process (xdist worker)."""
    global _KEYS
    if _KEYS is None:
        _KEYS = Keys(generate_key(), generate_key(), generate_key())
    return _KEYS


def make_sandbox(**kwargs: Any) -> AlipaySandbox:
    k = keys()
    kwargs.setdefault("app_private_key", k.app)
    kwargs.setdefault("alipay_private_key", k.alipay)
    kwargs.setdefault("hang_seconds", 3.0)
    return AlipaySandbox(**kwargs)


class LateCore:
    """The web endpoint's view of a core that is built after the server (the core's
    configuration needs the server's URL as notify_url)."""

    payments: Any = None


@dataclass
class Shop:
    backend: Backend
    core: OrderCore
    clock: FakeClock
    sandbox: AlipaySandbox
    server: BackgroundServer
    url: str
    customer_id: int

    @property
    def notify_url(self) -> str:
        return f"{self.url}/callbacks/alipay"

    def order(self) -> Order:
        """A pending order of 27.00 CNY."""
        return self.core.orders.create(
            customer_id=self.customer_id, items=[("vpn", 1)], actor=ADMIN
        )

    def start(self, number: str, method: str = "qr") -> StartedPayment:
        return self.core.payments.start(number, channel="alipay", method=method, actor=ADMIN)

    def pay_events(self, number: str) -> int:
        from ordercore._state import OrderEvent

        return sum(1 for t in self.core.orders.get(number).history if t.event is OrderEvent.PAY)

    def inbox(self) -> list[dict[str, Any]]:
        return list(reversed(self.core.payments.notifications(limit=1000)))
