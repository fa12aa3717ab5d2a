"""The ``btcpay`` channel: BTCPay Server's Greenfield API (self-hosted; BTC and more).

* checkout: ``POST {server_url}/api/v1/stores/{store_id}/invoices`` (``Authorization: token
  KEY``) with ``metadata.orderId`` = the attempt's ``out_trade_no``, then the invoice's
  payment methods for the locked coin amount, rate and address;
* webhooks: ``BTCPay-Sig: sha256=<hex HMAC-SHA256(secret, raw body)>`` checked in constant
  time, then the invoice is fetched and its ``status`` acted on — a webhook is only a hint
  (a webhook saying Settled for an invoice that says New pays nothing);
* replies: 200 accepts; a forged or malformed webhook gets a 4xx (never redelivered);
  when the invoice cannot be fetched, a 503 (BTCPay redelivers only after a 5xx).
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar, Final

from ordercore import Money
from ordercore.channels import (
    Checkout,
    CheckoutRequest,
    Notification,
    NotificationResult,
    Outcome,
    PaymentEvent,
    PaymentQuery,
)

from ._base import CryptoChannel, Unanswered, read_money, read_rate, same_hex
from ._numbers import NumberError, parse_json

__all__ = ["BtcpayChannel"]

#: Webhook types that may change what an invoice means for the order; others are ignored.
_RELEVANT: Final = frozenset(
    {
        "InvoiceSettled",
        "InvoiceExpired",
        "InvoiceInvalid",
        "InvoiceProcessing",
        "InvoiceReceivedPayment",
        "InvoicePaymentSettled",
    }
)
_SPEED: Final = frozenset({"HighSpeed", "MediumSpeed", "LowSpeed", "LowMediumSpeed"})


class BtcpayChannel(CryptoChannel):
    """BTCPay Server (Greenfield API v1); see ``docs/channels/crypto.md``."""

    name: ClassVar[str] = "btcpay"
    #: the headers the notification is verified with (the inbox keeps only these)
    notification_headers: ClassVar[frozenset[str] | None] = frozenset(
        {"content-type", "btcpay-sig"}
    )
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY", "USD", "EUR", "GBP", "HKD", "JPY"})
    options: ClassVar[frozenset[str]] = frozenset(
        {"server_url", "store_id", "expiration_minutes", "speed_policy", "redirect_url"}
    )
    secret_names: ClassVar[frozenset[str]] = frozenset({"api_key", "webhook_secret"})

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.server_url: str = self.required(
            "server_url", self.url_option("server_url", self.text_option("server_url"))
        )
        store = self.required("store_id", self.text_option("store_id"))
        if not store.replace("-", "").replace("_", "").isalnum():
            raise self.config_error(f"store_id {store!r} is not a BTCPay store id")
        self.store_id: str = store
        minutes = config.options.get("expiration_minutes", 15)
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 1440:
            raise self.config_error(f"expiration_minutes must be 1 to 1440, not {minutes!r}")
        self.expiration_minutes: int = minutes
        speed = self.text_option("speed_policy")
        if speed is not None and speed not in _SPEED:
            raise self.config_error(f"speed_policy must be one of {', '.join(sorted(_SPEED))}")
        self.speed_policy: str | None = speed
        self.notify_url: str | None = self.url_option("notify_url", config.notify_url)
        self.redirect_url = self.url_option("redirect_url", self.text_option("redirect_url"))
        self._api_key = self.secret_text("api_key")
        self._webhook_secret = self.config.secret("webhook_secret").strip()

    # -- the API ----------------------------------------------------------------------------
    @property
    def invoices_url(self) -> str:
        return f"{self.server_url}/api/v1/stores/{urllib.parse.quote(self.store_id)}/invoices"

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"token {self._api_key}"}

    def _get(self, path: str) -> tuple[int, Any]:
        return self.call("GET", f"{self.invoices_url}/{path}", self._headers())

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        checkout: dict[str, Any] = {"expirationMinutes": self.expiration_minutes}
        if self.speed_policy:
            checkout["speedPolicy"] = self.speed_policy
        redirect = request.return_url or self.redirect_url
        if redirect:
            checkout["redirectURL"] = redirect
        payload = {
            "amount": str(request.amount.amount),
            "currency": request.amount.currency.code,
            "metadata": {"orderId": request.out_trade_no, "itemDesc": request.subject},
            "checkout": checkout,
        }
        try:
            status, invoice = self.call(
                "POST", self.invoices_url, self._headers(), self.dumps(payload)
            )
        except Unanswered as exc:
            return Checkout(kind="none", outcome=Outcome.UNKNOWN, message=str(exc))
        if status != 200 or not isinstance(invoice, dict) or not invoice.get("id"):
            return Checkout(kind="none", outcome=Outcome.FAILED, message=_error(status, invoice))
        invoice_id = str(invoice["id"])
        url = invoice.get("checkoutLink")
        pay_by = _unix(invoice.get("expirationTime"))
        try:
            method = self._payment_method(invoice_id)
        except (Unanswered, NumberError) as exc:  # the invoice exists: pay through its page
            return Checkout(
                kind="redirect",
                url=None if url is None else str(url),
                channel_reference=invoice_id,
                pay_by=pay_by,
                message=f"payment methods not read: {exc}",
            )
        address, coin, rate = method if method is not None else (None, None, None)
        return Checkout(
            kind="address" if address else "redirect",
            content=address,
            url=None if url is None else str(url),
            coin_amount=coin,
            rate=rate,
            pay_by=pay_by,
            channel_reference=invoice_id,
        )

    def _payment_method(self, invoice_id: str) -> tuple[str | None, Money, Decimal | None] | None:
        """The first payment method of the invoice: ``(address, amount due, rate)``."""
        status, methods = self._get(f"{urllib.parse.quote(invoice_id)}/payment-methods")
        if status != 200 or not isinstance(methods, list) or not methods:
            return None
        first = methods[0]
        if not isinstance(first, dict):
            raise NumberError("payment method is not an object")
        coin = _coin_code(first)
        return (
            None if first.get("destination") is None else str(first["destination"]),
            read_money(first.get("amount"), coin),
            read_rate(first.get("rate")),
        )

    def _paid(self, invoice_id: str) -> Money | None:
        """The coins paid to the invoice (its first payment method's ``paymentMethodPaid``)."""
        status, methods = self._get(f"{urllib.parse.quote(invoice_id)}/payment-methods")
        if status != 200 or not isinstance(methods, list) or not methods:
            return None
        first = methods[0]
        if not isinstance(first, dict):
            raise NumberError("payment method is not an object")
        return read_money(first.get("paymentMethodPaid", "0"), _coin_code(first))

    # -- webhooks ---------------------------------------------------------------------------
    def parse_notification(self, notification: Notification) -> NotificationResult:
        header = notification.headers.get("btcpay-sig", "")
        if not header.startswith("sha256="):
            return NotificationResult.reject("bad_signature", "no BTCPay-Sig: sha256=... header")
        expected = hmac.new(self._webhook_secret, notification.body, hashlib.sha256).hexdigest()
        if not same_hex(expected, header[len("sha256=") :]):
            return NotificationResult.reject("bad_signature", "BTCPay-Sig does not match the body")
        try:
            body = parse_json(notification.body)
        except NumberError as exc:
            return NotificationResult.reject("malformed", str(exc))
        if not isinstance(body, dict):
            return NotificationResult.reject("malformed", "the webhook is not a JSON object")
        kind, invoice_id = body.get("type"), body.get("invoiceId")
        if body.get("storeId") != self.store_id:
            return NotificationResult.reject(
                "wrong_merchant", f"store {body.get('storeId')!r} is not {self.store_id}"
            )
        if kind not in _RELEVANT:
            return NotificationResult()  # acknowledged, nothing to apply (InvoiceCreated...)
        if not isinstance(invoice_id, str) or not invoice_id:
            return NotificationResult.reject("malformed", "no invoiceId")
        try:
            event = self._invoice_event(invoice_id, event_id=_text(body.get("deliveryId")))
        except Unanswered as exc:
            return NotificationResult.reject("unavailable", str(exc), retryable=True)
        except (NumberError, LookupError) as exc:
            return NotificationResult.reject("malformed", f"invoice {invoice_id}: {exc}")
        return NotificationResult(events=() if event is None else (event,))

    def _invoice_event(self, invoice_id: str, event_id: str | None) -> PaymentEvent | None:
        """What the invoice itself says (fetched from the server): a payment event, or None
        while it is still New or Processing."""
        status, invoice = self._get(urllib.parse.quote(invoice_id))
        if status == 404:
            raise LookupError("the server has no such invoice")
        if status != 200 or not isinstance(invoice, dict):
            raise NumberError(_error(status, invoice))
        if invoice.get("id") != invoice_id:
            raise NumberError("the server answered for another invoice")
        state = str(invoice.get("status"))
        extra = str(invoice.get("additionalStatus") or "None")
        metadata = invoice.get("metadata")
        out_trade_no = metadata.get("orderId") if isinstance(metadata, dict) else None
        if not isinstance(out_trade_no, str):
            raise NumberError("the invoice has no metadata.orderId")
        if state in ("New", "Processing"):
            return None
        amount = read_money(invoice.get("amount"), _fiat_code(invoice.get("currency")))
        paid = state == "Settled"
        late = state == "Expired" and extra == "PaidLate"
        coins = self._paid(invoice_id) if state in ("Settled", "Expired") else None
        return PaymentEvent(
            out_trade_no=out_trade_no,
            paid=paid or late,
            amount=amount,
            channel_trade_no=invoice_id,
            status=state if extra == "None" else f"{state}/{extra}",
            event_id=event_id,
            coin_amount=coins,
            late=late,
        )

    def query_checkout(self, out_trade_no: str, reference: str | None) -> PaymentQuery:
        if reference is None:
            return PaymentQuery(Outcome.UNKNOWN, message="no BTCPay invoice id recorded")
        try:
            event = self._invoice_event(reference, event_id=None)
        except Unanswered as exc:
            return PaymentQuery(Outcome.UNKNOWN, message=str(exc))
        except (NumberError, LookupError) as exc:
            return PaymentQuery(Outcome.UNKNOWN, message=f"invoice {reference}: {exc}")
        if event is None:
            return PaymentQuery(Outcome.PENDING, message="invoice New or Processing")
        if event.out_trade_no != out_trade_no:
            return PaymentQuery(Outcome.UNKNOWN, message="the invoice belongs to another attempt")
        if event.paid and not event.late:
            return PaymentQuery(Outcome.SUCCEEDED, event=event)
        if event.late or (event.coin_amount is not None and event.coin_amount.is_positive()):
            return PaymentQuery(Outcome.PENDING, event=event, message=event.status)
        return PaymentQuery(Outcome.FAILED, event=event, message=event.status)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _fiat_code(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise NumberError("the invoice has no currency")
    return value.upper()


def _coin_code(method: dict[str, Any]) -> str:
    """``BTC`` from ``currency`` (or from ``paymentMethodId``: ``BTC``, ``BTC-CHAIN``...)."""
    code = method.get("currency") or str(method.get("paymentMethodId") or "").split("-")[0]
    if not isinstance(code, str) or not code:
        raise NumberError("the payment method names no currency")
    return code.upper()


def _unix(value: object) -> datetime | None:
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return datetime.fromtimestamp(int(value), timezone.utc)
    return None


def _error(status: int, body: object) -> str:
    if isinstance(body, dict) and body.get("message"):
        return f"HTTP {status}: {body.get('code') or ''} {body['message']}".strip()[:300]
    return f"HTTP {status}"
