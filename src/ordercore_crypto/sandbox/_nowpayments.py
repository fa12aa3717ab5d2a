"""A local NOWPayments API: payments in memory, IPNs signed over the canonical JSON."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any

from attrs import define

from ordercore.channels import ChannelConfig, Secret
from ordercore_crypto._numbers import canonical_json, parse_json

from ._base import GatewaySandbox, SandboxError, SandboxNotification

__all__ = ["NowpaymentsPayment", "NowpaymentsSandbox", "python_style"]

_PAYMENT = re.compile(r"/v1/payment(?:/([0-9]+))?\Z")
_DECIMALS = {"btc": 8, "usdttrc20": 6, "usdterc20": 6}


def python_style(value: Decimal) -> str:
    """A number written the way a Python or PHP sender writes a float: ``25.0``, ``3.6e-05``
    (the channel must sign it as JavaScript would: ``25``, ``0.000036``)."""
    if value == value.to_integral_value():
        return f"{value.to_integral_value()}.0"
    if abs(value) < Decimal("0.0001"):
        sign, digits, exponent = value.normalize().as_tuple()
        assert isinstance(exponent, int)
        mantissa = "".join(map(str, digits))
        power = exponent + len(digits) - 1
        head = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
        return f"{'-' if sign else ''}{head}e-{abs(power):02d}"
    return format(value.normalize(), "f")


def _dump(value: Any) -> str:
    """Pretty JSON (keys in the sender's order) with numbers in :func:`python_style`."""
    if isinstance(value, Decimal):
        return python_style(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dump(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


@define
class NowpaymentsPayment:
    payment_id: int
    order_id: str
    price_amount: Decimal
    price_currency: str
    pay_amount: Decimal
    pay_currency: str
    pay_address: str
    ipn_callback_url: str | None
    created_at: datetime
    expires_at: datetime
    status: str = "waiting"
    actually_paid: Decimal = Decimal(0)
    updated_at: datetime | None = None

    def json(self) -> dict[str, Any]:
        return {
            "payment_id": self.payment_id,
            "invoice_id": None,
            "payment_status": self.status,
            "pay_address": self.pay_address,
            "price_amount": self.price_amount,
            "price_currency": self.price_currency,
            "pay_amount": self.pay_amount,
            "actually_paid": self.actually_paid,
            "pay_currency": self.pay_currency,
            "order_id": self.order_id,
            "order_description": "ordercore",
            "purchase_id": str(self.payment_id + 7),
            "created_at": self.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "updated_at": (self.updated_at or self.created_at).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "outcome_amount": self.actually_paid * Decimal("0.995"),
            "outcome_currency": self.pay_currency,
            "fee": {
                "currency": self.pay_currency,
                "depositFee": Decimal(0),
                "withdrawalFee": Decimal("0.000036"),
                "serviceFee": self.actually_paid * Decimal("0.005"),
            },
        }


class NowpaymentsSandbox(GatewaySandbox):
    """NOWPayments on loopback (``api_url`` = ``{url}/v1``). ``rate``: order currency per
    coin; ``pay_currency``: the coin's ticker."""

    name = "nowpayments"

    def __init__(
        self, *, rate: Decimal = Decimal("7.2"), pay_currency: str = "usdttrc20", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.rate, self.pay_currency = rate, pay_currency
        self.api_key = self.new_id("NP")
        self.ipn_secret = self.new_id("ipn")
        self.payments: dict[int, NowpaymentsPayment] = {}

    @property
    def api_url(self) -> str:
        return f"{self.url}/v1"

    def channel_config(self, notify_url: str | None = None, **options: Any) -> ChannelConfig:
        return ChannelConfig(
            name="nowpayments",
            notify_url=notify_url,
            options={"api_url": self.api_url, "pay_currency": self.pay_currency, **options},
            secrets={
                "api_key": Secret(self.api_key.encode()),
                "ipn_secret": Secret(self.ipn_secret.encode()),
            },
        )

    def config_table(self, directory: Path, notify_url: str | None = None) -> str:
        key = self.write_secret(directory, "nowpayments-api-key", self.api_key)
        secret = self.write_secret(directory, "nowpayments-ipn-secret", self.ipn_secret)
        lines = [
            "[channels.nowpayments]",
            f"api_url = {json.dumps(self.api_url)}",
            f"pay_currency = {json.dumps(self.pay_currency)}",
            f"api_key_file = {json.dumps(str(key))}",
            f"ipn_secret_file = {json.dumps(str(secret))}",
        ]
        if notify_url:
            lines.append(f"notify_url = {json.dumps(notify_url)}")
        return "\n".join(lines) + "\n"

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        self.requests.append((method, path))
        if headers.get("x-api-key") != self.api_key:
            return 403, {"statusCode": 403, "code": "INVALID_API_KEY", "message": "Invalid api key"}
        found = _PAYMENT.match(path)
        if found is None:
            return 404, {"statusCode": 404, "message": "not found"}
        if found.group(1) is not None:
            payment = self.payments.get(int(found.group(1)))
            if payment is None:
                return 404, {"statusCode": 404, "message": "payment not found"}
            return 200, _dump(payment.json()).encode()
        request = parse_json(body)
        price = Decimal(str(request["price_amount"]))
        decimals = _DECIMALS.get(str(request["pay_currency"]), 8)
        now = self.now()
        payment = NowpaymentsPayment(
            payment_id=5_000_000_000 + len(self.payments) + 1,
            order_id=str(request["order_id"]),
            price_amount=price,
            price_currency=str(request["price_currency"]),
            pay_amount=(price / self.rate).quantize(Decimal(1).scaleb(-decimals), ROUND_UP),
            pay_currency=str(request["pay_currency"]),
            pay_address="T" + self.new_id()[:33],
            ipn_callback_url=request.get("ipn_callback_url"),
            created_at=now,
            expires_at=now + timedelta(minutes=20),
        )
        self.payments[payment.payment_id] = payment
        answer = payment.json()
        answer["expiration_estimate_date"] = payment.expires_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return 201, _dump(answer).encode()

    def payment(self, out_trade_no: str) -> NowpaymentsPayment:
        for payment in self.payments.values():
            if payment.order_id == out_trade_no:
                return payment
        raise SandboxError(f"no payment for {out_trade_no!r}")

    def pay(
        self,
        out_trade_no: str,
        coins: Decimal | str | None = None,
        *,
        late: bool = False,
        deliver: bool = True,
        secret: str | None = None,
    ) -> SandboxNotification:
        """The payer sends ``coins`` (default: exactly ``pay_amount``): fewer make it
        ``partially_paid``, as many or more ``finished``; ``late`` after the expiry."""
        with self._lock:
            payment = self.payment(out_trade_no)
            payment.actually_paid += payment.pay_amount if coins is None else Decimal(str(coins))
            short = payment.actually_paid < payment.pay_amount
            payment.status = "partially_paid" if short else "finished"
            payment.updated_at = payment.expires_at + timedelta(minutes=5) if late else self.now()
            hook = self.ipn(payment, secret=secret)
        if deliver:
            self.deliver(hook)
        return hook

    def ipn(self, payment: NowpaymentsPayment, *, secret: str | None = None) -> SandboxNotification:
        """The IPN for ``payment``'s current state, signed with the IPN secret (or
        ``secret``: a forgery)."""
        body = payment.json()
        raw = _dump(body).encode()
        parsed = parse_json(raw)
        key = (secret or self.ipn_secret).encode()
        signature = hmac.new(key, canonical_json(parsed).encode(), hashlib.sha512).hexdigest()
        return SandboxNotification(
            payment.ipn_callback_url,
            {"content-type": "application/json", "x-nowpayments-sig": signature},
            raw,
        )
