"""Alipay channel plugin for ordercore (RSA2: face-to-face QR, PC page and H5 pay).

Registered through the ``ordercore`` entry-point group (``alipay = "ordercore_alipay"``): a
``[channels.alipay]`` table in the configuration enables it. See ``docs/channels/alipay.md``.

* :class:`AlipayChannel` — the channel (``qr``, ``page``, ``h5``; queries, refunds, close);
* :class:`Transport` — the one-method HTTP interface it reaches the gateway through
  (:class:`UrllibTransport` by default);
* ``ordercore_alipay.sandbox`` — a local Alipay gateway for tests and development.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ordercore import hookimpl

from ._channel import AlipayChannel
from ._settings import DEFAULT_GATEWAY_URL, RETRYABLE_REFUND_CODES, SANDBOX_GATEWAY_URL
from ._transport import HttpResponse, Transport, TransportError, UrllibTransport
from ._wire import GatewayReply

if TYPE_CHECKING:
    from ordercore import Settings
    from ordercore.channels import PaymentChannel

__all__ = [
    "DEFAULT_GATEWAY_URL",
    "RETRYABLE_REFUND_CODES",
    "SANDBOX_GATEWAY_URL",
    "AlipayChannel",
    "GatewayReply",
    "HttpResponse",
    "Transport",
    "TransportError",
    "UrllibTransport",
    "ordercore_register_channels",
]


@hookimpl
def ordercore_register_channels(settings: Settings) -> Sequence[type[PaymentChannel]]:
    """Offer the ``alipay`` channel (ordercore instantiates it when it is configured)."""
    return [AlipayChannel]
