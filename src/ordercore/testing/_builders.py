"""Builders of what tests need: a fake channel's configuration, a fake channel and its
platform, checkout and refund requests."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ordercore._money import Money
from ordercore.channels import ChannelConfig, CheckoutRequest, RefundRequest, Secret
from ordercore.testing._fake_channel import FakeChannel
from ordercore.testing._fake_gateway import FakeGateway
from ordercore.testing._protocol import DEFAULT_MERCHANT_ID, DEFAULT_SECRET, _utcnow


def fake_channel_config(
    *,
    secret: bytes = DEFAULT_SECRET,
    merchant_id: str = DEFAULT_MERCHANT_ID,
    gateway: FakeGateway | None = None,
    notify_url: str | None = None,
    **fields: Any,
) -> ChannelConfig:
    """A :class:`~ordercore.channels.ChannelConfig` for the ``fake`` channel. ``fields`` are
    other ``ChannelConfig`` fields (``min_amount``, ``fee_percent``, ``enabled``...)."""
    options: dict[str, Any] = {"merchant_id": merchant_id}
    if gateway is not None:
        options["gateway"] = gateway
    options.update(fields.pop("options", {}))
    return ChannelConfig(
        name="fake",
        notify_url=notify_url,
        options=options,
        secrets={"webhook_secret": Secret(secret)},
        **fields,
    )


def make_fake_channel(
    secret: bytes = DEFAULT_SECRET,
    gateway: FakeGateway | None = None,
    *,
    merchant_id: str = DEFAULT_MERCHANT_ID,
    notify_url: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> tuple[FakeChannel, FakeGateway]:
    """A fake channel and its platform (a new :class:`FakeGateway` unless given)."""
    gw = gateway if gateway is not None else FakeGateway(clock=clock)
    config = fake_channel_config(
        secret=secret, merchant_id=merchant_id, gateway=gw, notify_url=notify_url
    )
    return FakeChannel(config, gateway=gw, clock=clock), gw


_checkout_numbers = itertools.count(1)


def make_checkout_request(
    out_trade_no: str | None = None,
    amount: Money | str = "30.00",
    currency: str = "CNY",
    *,
    method: str = "qr",
    subject: str = "Test order",
    notify_url: str | None = "http://127.0.0.1/callbacks/fake",
    expires_at: datetime | None = None,
    client_ip: str | None = None,
    return_url: str | None = None,
) -> CheckoutRequest:
    """A :class:`~ordercore.channels.CheckoutRequest` with sensible defaults (a fresh
    ``out_trade_no``, 30.00 CNY, ``qr``, expiring in 15 minutes)."""
    money = amount if isinstance(amount, Money) else Money.of(amount, currency)
    return CheckoutRequest(
        out_trade_no=out_trade_no or f"T{next(_checkout_numbers):08d}",
        amount=money,
        subject=subject,
        method=method,
        notify_url=notify_url,
        expires_at=expires_at or _utcnow() + timedelta(minutes=15),
        client_ip=client_ip,
        return_url=return_url,
    )


def make_refund_request(
    out_trade_no: str,
    amount: Money | str = "30.00",
    currency: str = "CNY",
    *,
    out_refund_no: str | None = None,
    total: Money | str | None = None,
    reason: str | None = None,
    channel_trade_no: str | None = None,
    notify_url: str | None = None,
) -> RefundRequest:
    """A :class:`~ordercore.channels.RefundRequest`; ``total`` defaults to ``amount`` (a full
    refund), ``out_refund_no`` to ``R-`` + ``out_trade_no``."""
    money = amount if isinstance(amount, Money) else Money.of(amount, currency)
    whole = money if total is None else total
    return RefundRequest(
        out_trade_no=out_trade_no,
        out_refund_no=out_refund_no or f"R-{out_trade_no}",
        amount=money,
        total=whole if isinstance(whole, Money) else Money.of(whole, money.currency),
        reason=reason,
        channel_trade_no=channel_trade_no,
        notify_url=notify_url,
    )
