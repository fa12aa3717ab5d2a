"""WeChat Pay API v3 channel plugin for ordercore: Native (QR) and H5 payments.

Registered through the ``ordercore`` entry-point group (``wechat = "ordercore_wechat"``): a
``[channels.wechat]`` table in the configuration enables it. See ``docs/channels/wechat.md``.

* :class:`WechatChannel` — the channel (``native``, ``h5``; queries, refunds, close);
* :class:`Transport` — the one-method HTTP interface it reaches WeChat Pay through
  (:class:`UrllibTransport` by default);
* ``ordercore_wechat.sandbox`` — a local WeChat Pay gateway for tests and development.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ordercore import hookimpl

from ._channel import RETRYABLE_REFUND_CODES, WechatChannel, WechatReply
from ._config import DEFAULT_GATEWAY_URL, DEFAULT_REFUND_DEADLINE_DAYS, DEFAULT_TIMEOUT_SECONDS
from ._transport import HttpResponse, Transport, TransportError, UrllibTransport

if TYPE_CHECKING:
    from ordercore import Settings
    from ordercore.channels import PaymentChannel

__all__ = [
    "DEFAULT_GATEWAY_URL",
    "DEFAULT_REFUND_DEADLINE_DAYS",
    "DEFAULT_TIMEOUT_SECONDS",
    "RETRYABLE_REFUND_CODES",
    "HttpResponse",
    "Transport",
    "TransportError",
    "UrllibTransport",
    "WechatChannel",
    "WechatReply",
    "ordercore_register_channels",
]


@hookimpl
def ordercore_register_channels(settings: Settings) -> Sequence[type[PaymentChannel]]:
    """Offer the ``wechat`` channel (ordercore instantiates it when it is configured)."""
    return [WechatChannel]
