"""What the sandbox keeps and hands out: its defaults and faults, trades and refunds, the
notifications it sends, and the small helpers for keys and amounts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Final

import attrs
from attrs import frozen
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ordercore import Money
from ordercore.channels import Notification
from ordercore_alipay import _sign

#: The application id the sandbox expects unless told otherwise.
DEFAULT_APP_ID: Final = "2021000000000001"
#: The merchant PID (seller_id) the sandbox uses unless told otherwise.
DEFAULT_SELLER_ID: Final = "2088000000000001"
#: What :meth:`AlipaySandbox.fail_next` can do to the next call.
FAULTS: Final = frozenset(
    {"timeout", "disconnect", "20000", "500", "bad_sign", "unsigned_error", "40004"}
)
_METHODS: Final = frozenset(
    {
        "alipay.trade.precreate",
        "alipay.trade.page.pay",
        "alipay.trade.wap.pay",
        "alipay.trade.query",
        "alipay.trade.refund",
        "alipay.trade.fastpay.refund.query",
        "alipay.trade.close",
    }
)
_BROWSER_METHODS: Final = frozenset({"alipay.trade.page.pay", "alipay.trade.wap.pay"})
_CREATED: Final = "CREATED"  # our own: created but not scanned, invisible to query/close
_BUYER_ID: Final = "2088102177846880"
_BUYER_LOGON: Final = "buy***@sandbox.example"


class SandboxError(Exception):
    """The test asked the sandbox for something it cannot do (pay an unknown or closed trade,
    refund notification for an unknown refund...). Never sent to a channel."""


def generate_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A new RSA private key (2048 bits: what RSA2 uses)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _as_private_key(value: rsa.RSAPrivateKey | bytes | None) -> rsa.RSAPrivateKey:
    if value is None:
        return generate_key()
    if isinstance(value, bytes):
        return _sign.load_private_key(value)
    return value


def _yuan(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}"


def _amount(text: object) -> Decimal | None:
    if not isinstance(text, str):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value != value.quantize(Decimal("0.01")):
        return None
    if not Decimal("0.01") <= value <= Decimal("100000000"):
        return None
    return value


# -- what the sandbox keeps ------------------------------------------------------------------
@attrs.define
class _Refund:
    out_request_no: str
    amount: Decimal
    reason: str | None
    gmt_refund: dt.datetime


@attrs.define
class _Trade:
    out_trade_no: str
    trade_no: str
    total: Decimal
    subject: str
    method: str
    notify_url: str | None
    return_url: str | None
    gmt_create: dt.datetime
    status: str = _CREATED
    gmt_payment: dt.datetime | None = None
    gmt_close: dt.datetime | None = None
    refunds: dict[str, _Refund] = attrs.field(factory=dict)

    @property
    def exists(self) -> bool:
        return self.status != _CREATED

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds.values()), Decimal("0.00"))


@frozen
class SandboxRefund:
    """One refund the sandbox made."""

    out_request_no: str
    amount: Money
    reason: str | None


@frozen
class SandboxTrade:
    """A snapshot of one trade. ``status`` is Alipay's ``trade_status``, or ``CREATED`` for a
    QR code nobody scanned yet (a trade Alipay does not know)."""

    out_trade_no: str
    trade_no: str
    total_amount: Money
    status: str
    subject: str
    notify_url: str | None
    refunded: Money
    refunds: tuple[SandboxRefund, ...]


@frozen
class SandboxNotification:
    """A notification as the sandbox sends it: the form's ``params`` (what was signed, or the
    tampered values), its ``charset`` and the raw ``body``; ``url`` is where it goes."""

    params: Mapping[str, str]
    charset: str
    body: bytes
    url: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": f"application/x-www-form-urlencoded; charset={self.charset}"}

    def to_notification(self, channel: str = "alipay") -> Notification:
        """The :class:`~ordercore.channels.Notification` a host builds on receipt."""
        return Notification(channel, self.headers, self.body, remote_addr="127.0.0.1")


@attrs.define
class _Fault:
    kind: str
    apply: bool
    sub_code: str | None


@frozen
class _Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json;charset=utf-8"
    hang: float = 0.0  # sleep, then drop the connection without an answer
    drop: bool = False  # drop the connection without an answer
    headers: Mapping[str, str] = attrs.field(factory=dict)
