"""What the sandbox keeps (trades, refunds, platform keys) and what it shows a test."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

import attrs
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from ordercore import Money
from ordercore.channels import Notification

__all__ = [
    "ENDPOINTS",
    "ERROR_STATUS",
    "FAULTS",
    "NOTIFICATION_FAULTS",
    "PlatformKey",
    "Refund",
    "SandboxError",
    "SandboxNotification",
    "SandboxRefund",
    "SandboxTrade",
    "Trade",
]

#: The API endpoints, by the names :meth:`WechatSandbox.fail_next` takes.
ENDPOINTS: Final = frozenset(
    {"native", "h5", "query", "close", "refund", "refund_query", "certificates"}
)
#: What :meth:`WechatSandbox.fail_next` can do to the next call of an endpoint.
FAULTS: Final = frozenset(
    {
        "timeout",  # hold the connection, then drop it: no answer
        "disconnect",  # drop the connection at once
        "500",  # HTTP 500 SYSTEM_ERROR (signed, as WeChat signs its errors)
        "unsigned",  # the real answer without any Wechatpay-* signature header
        "bad_signature",  # the real answer, signed over other bytes
        "signtest",  # the real answer with a WECHATPAY/SIGNTEST/ signature
        "stale",  # the real answer, signed 10 minutes ago
        "unknown_serial",  # signed by a key the merchant does not know
        "error",  # a signed 4xx with ``code`` (nothing done)
    }
)
#: What :meth:`WechatSandbox.notification` can do to a notification.
NOTIFICATION_FAULTS: Final = frozenset(
    {"stale", "signtest", "bad_tag", "unknown_serial", "unsigned", "tampered"}
)
#: The HTTP status WeChat Pay answers each error code with.
ERROR_STATUS: Final = {
    "PARAM_ERROR": 400,
    "INVALID_REQUEST": 400,
    "ORDERPAID": 400,
    "ORDER_CLOSED": 400,
    "SIGN_ERROR": 401,
    "NOT_ENOUGH": 403,
    "USER_ACCOUNT_ABNORMAL": 403,
    "NO_AUTH": 403,
    "ORDER_NOT_EXIST": 404,
    "RESOURCE_NOT_EXISTS": 404,
    "NOT_FOUND": 404,
    "FREQUENCY_LIMITED": 429,
    "SYSTEM_ERROR": 500,
}


class SandboxError(Exception):
    """The test asked the sandbox for something it cannot do (pay an unknown or closed
    trade, settle a refund that is not processing...). Never sent to a channel."""


@attrs.define
class PlatformKey:
    """One platform key: ``serial`` is a ``PUB_KEY_ID_…`` (public-key mode) or the hex
    serial of ``certificate`` (certificate mode)."""

    serial: str
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate | None = None


@attrs.define
class Refund:
    out_refund_no: str
    refund_id: str
    amount: int
    total: int
    reason: str | None
    notify_url: str | None
    created: dt.datetime
    status: str
    success_time: dt.datetime | None = None


@attrs.define
class Trade:
    out_trade_no: str
    trade_type: str
    total: int
    description: str
    notify_url: str
    created: dt.datetime
    time_expire: str | None
    payer_client_ip: str | None = None
    state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: dt.datetime | None = None
    payer_total: int | None = None
    code: str = ""
    refunds: dict[str, Refund] = attrs.field(factory=dict)

    @property
    def refunded(self) -> int:
        """Fen refunded or being refunded (closed and abnormal refunds gave it back)."""
        return sum(r.amount for r in self.refunds.values() if r.status in ("SUCCESS", "PROCESSING"))


@frozen
class SandboxRefund:
    """One refund the sandbox holds."""

    out_refund_no: str
    refund_id: str
    amount: Money
    status: str
    reason: str | None


@frozen
class SandboxTrade:
    """A snapshot of one trade; ``state`` is WeChat's ``trade_state``."""

    out_trade_no: str
    transaction_id: str | None
    trade_type: str
    total: Money
    state: str
    description: str
    notify_url: str
    payer_client_ip: str | None
    refunded: Money
    refunds: tuple[SandboxRefund, ...]


@frozen
class SandboxNotification:
    """A notification as the sandbox sends it: the HTTP ``headers`` and raw ``body``; the
    decrypted ``resource`` (what was encrypted, before any fault); ``url`` is where it
    goes."""

    event_type: str
    headers: Mapping[str, str]
    body: bytes
    resource: Mapping[str, Any]
    url: str | None

    def to_notification(
        self, channel: str = "wechat", received_at: dt.datetime | None = None
    ) -> Notification:
        """The :class:`~ordercore.channels.Notification` a host builds on receipt."""
        return Notification(
            channel,
            {k.lower(): v for k, v in self.headers.items()},
            self.body,
            remote_addr="127.0.0.1",
            received_at=received_at,
        )
