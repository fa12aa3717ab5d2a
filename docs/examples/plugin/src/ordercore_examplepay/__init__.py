"""ExamplePay for ordercore: a hosted payment page and HMAC-signed webhooks.

ExamplePay is an imaginary platform. The payer is sent to its hosted checkout page; once they
have paid, the platform POSTs a JSON notification whose raw body is signed with HMAC-SHA256
(the webhook secret as key) in the header ``x-examplepay-signature``. ExamplePay cannot
query, refund or close a payment, and the channel says so in its capabilities.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

from ordercore import Money, OrderCoreError, Settings
from ordercore.channels import (
    Capabilities,
    Checkout,
    CheckoutRequest,
    HttpReply,
    Notification,
    NotificationResult,
    PaymentChannel,
    PaymentEvent,
)
from ordercore.hookspecs import hookimpl

__all__ = ["SIGNATURE_HEADER", "ExamplePayChannel", "ordercore_register_channels", "sign"]

SIGNATURE_HEADER = "x-examplepay-signature"
CHECKOUT_URL = "https://pay.example.com/checkout"
FIELDS = ("id", "account", "reference", "status", "amount", "currency")


def sign(secret: bytes, body: bytes) -> str:
    """The signature ExamplePay puts in ``x-examplepay-signature``: HMAC-SHA256 of the raw
    body, in hexadecimal. (The platform signs; tests use this to play the platform.)"""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _no_float(text: str) -> Any:
    raise ValueError("amounts are strings, never floats")


class ExamplePayChannel(PaymentChannel):
    name: ClassVar[str] = "examplepay"
    methods: ClassVar[frozenset[str]] = frozenset({"page"})
    currencies: ClassVar[frozenset[str]] = frozenset({"USD", "EUR"})
    capabilities: ClassVar[Capabilities] = Capabilities(
        query=False, close=False, refund=False, partial_refund=False
    )
    # The keys of [channels.examplepay] besides the common ones: a typo disables the channel.
    option_names: ClassVar[frozenset[str] | None] = frozenset(
        {"account", "checkout_url", "webhook_secret"}
    )
    # The only header parse_notification reads, hence the only one the inbox keeps.
    notification_headers: ClassVar[frozenset[str] | None] = frozenset({SIGNATURE_HEADER})

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        query = urlencode(
            {
                "account": self.config.options["account"],
                "reference": request.out_trade_no,
                "amount": f"{request.amount.amount:f}",
                "currency": request.amount.currency.code,
            }
        )
        page = self.config.options.get("checkout_url", CHECKOUT_URL)
        return Checkout(kind="redirect", url=f"{page}?{query}")

    def parse_notification(self, notification: Notification) -> NotificationResult:
        # 1. The signature, over the raw bytes, in constant time.
        signature = notification.headers.get(SIGNATURE_HEADER)
        if not isinstance(signature, str):
            return NotificationResult.reject("malformed", "no signature header")
        expected = sign(self.config.secret("webhook_secret"), notification.body)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            return NotificationResult.reject("bad_signature", "the signature does not match")
        # 2. The body: never raise, never accept a float.
        try:
            data = json.loads(notification.body, parse_float=_no_float)
            fields = {key: data[key] for key in FIELDS}
            if not all(isinstance(value, str) for value in fields.values()):
                raise ValueError("every field is a string")
            amount = Money.of(fields["amount"], fields["currency"])
        except (ValueError, KeyError, TypeError, RecursionError, OrderCoreError):
            return NotificationResult.reject("malformed", "unreadable notification body")
        # 3. Our own business fields; the engine checks the order, amount and currency.
        if fields["account"] != self.config.options["account"]:
            return NotificationResult.reject("wrong_merchant", "not our account")
        event = PaymentEvent(
            out_trade_no=fields["reference"],
            paid=fields["status"] == "paid",
            amount=amount,
            channel_trade_no=fields["id"],
            status=fields["status"],
            merchant_id=fields["account"],
            event_id=fields["id"],
        )
        return NotificationResult(events=(event,))

    def acknowledge(self, accepted: bool, message: str = "") -> HttpReply:
        if accepted:
            return HttpReply(200, b"")
        return HttpReply(400, message.encode("utf-8"))


@hookimpl
def ordercore_register_channels(settings: Settings) -> Sequence[type[PaymentChannel]]:
    return [ExamplePayChannel] if "examplepay" in settings.channels else []
