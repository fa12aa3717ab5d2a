"""Crypto gateway channels for ordercore: BTCPay Server, Epusdt and NOWPayments.

Registered through the ``ordercore`` entry-point group (``crypto = "ordercore_crypto"``): a
``[channels.btcpay]``, ``[channels.epusdt]`` or ``[channels.nowpayments]`` table enables each.
A crypto attempt keeps the order's amount *and* the coin amount the gateway locked; the
engine compares what the gateway reports with it (under-, over- and late payment are
anomalies). See ``docs/channels/crypto.md``.

* :class:`BtcpayChannel`, :class:`EpusdtChannel`, :class:`NowpaymentsChannel` — the channels;
* :class:`Transport` — the one-method HTTP interface they use (:class:`UrllibTransport`);
* ``ordercore_crypto.sandbox`` — local gateways for tests, the demo and development.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ordercore import hookimpl

from ._btcpay import BtcpayChannel
from ._epusdt import EpusdtChannel
from ._http import HttpResponse, Transport, TransportError, UrllibTransport
from ._nowpayments import NowpaymentsChannel

if TYPE_CHECKING:
    from ordercore import Settings
    from ordercore.channels import PaymentChannel

__all__ = [
    "BtcpayChannel",
    "EpusdtChannel",
    "HttpResponse",
    "NowpaymentsChannel",
    "Transport",
    "TransportError",
    "UrllibTransport",
    "ordercore_register_channels",
]


@hookimpl
def ordercore_register_channels(settings: Settings) -> Sequence[type[PaymentChannel]]:
    """Offer the three crypto channels (each is instantiated when it is configured)."""
    return [BtcpayChannel, EpusdtChannel, NowpaymentsChannel]
