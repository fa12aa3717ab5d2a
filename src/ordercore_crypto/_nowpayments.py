"""The ``nowpayments`` channel: NOWPayments (hosted; many coins), IPN callbacks.

* checkout: ``POST {api_url}/payment`` (``x-api-key``) → ``pay_address``, ``pay_amount`` in
  ``pay_currency`` (the locked coin amount) and ``payment_id``;
* IPN: ``x-nowpayments-sig`` = hex HMAC-SHA512(IPN secret, the body parsed and written back
  as JavaScript's ``JSON.stringify`` would write it with keys sorted recursively) — the one
  scheme signed over a re-serialisation; the raw body stays in the inbox all the same;
* only ``finished`` pays; ``partially_paid`` is an underpayment (``actually_paid`` short);
* query: ``GET {api_url}/payment/{payment_id}``.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from datetime import datetime, timezone
from typing import Any, ClassVar, Final

from ordercore import Money, OrderCoreError, get_currency
from ordercore.channels import (
    Checkout,
    CheckoutRequest,
    Notification,
    NotificationResult,
    Outcome,
    PaymentEvent,
    PaymentQuery,
)

from ._base import CryptoChannel, Unanswered, read_money, same_hex
from ._numbers import NumberError, canonical_json, parse_json

__all__ = ["COINS", "NowpaymentsChannel", "ipn_signature"]

DEFAULT_API_URL: Final = "https://api.nowpayments.io/v1"
#: NOWPayments ``pay_currency`` tickers and the ordercore currency their amounts are in.
COINS: Final = {
    "btc": "BTC",
    "usdttrc20": "USDT",
    "usdterc20": "USDT",
    "usdtbsc": "USDT",
    "usdtsol": "USDT",
    "usdtmatic": "USDT",
    "usdcerc20": "USDC",
    "usdcbsc": "USDC",
}
_WAITING: Final = frozenset({"waiting", "confirming", "confirmed", "sending"})
_DEAD: Final = frozenset({"failed", "expired", "refunded"})


def ipn_signature(secret: bytes, body: Any) -> str:
    """hex HMAC-SHA512 over the canonical JSON of the parsed body."""
    return hmac.new(secret, canonical_json(body).encode(), hashlib.sha512).hexdigest()


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class NowpaymentsChannel(CryptoChannel):
    """NOWPayments; see ``docs/channels/crypto.md``."""

    name: ClassVar[str] = "nowpayments"
    #: the headers the notification is verified with (the inbox keeps only these)
    notification_headers: ClassVar[frozenset[str] | None] = frozenset(
        {"content-type", "x-nowpayments-sig"}
    )
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY", "USD", "EUR", "GBP", "HKD", "JPY"})
    options: ClassVar[frozenset[str]] = frozenset({"api_url", "pay_currency"})
    secret_names: ClassVar[frozenset[str]] = frozenset({"api_key", "ipn_secret"})

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.api_url: str = (
            self.url_option("api_url", self.text_option("api_url")) or DEFAULT_API_URL
        )
        pay_currency = (self.text_option("pay_currency") or "").lower()
        if pay_currency not in COINS:
            raise self.config_error(
                f"pay_currency must be one of {', '.join(sorted(COINS))}, not {pay_currency!r}"
            )
        self.pay_currency: str = pay_currency
        self.coin: str = COINS[pay_currency]
        get_currency(self.coin)
        self.notify_url: str | None = self.url_option("notify_url", config.notify_url)
        self._api_key = self.secret_text("api_key")
        self._ipn_secret = self.config.secret("ipn_secret").strip()

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key}

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        payload = {
            "price_amount": str(request.amount.amount),
            "price_currency": request.amount.currency.code.lower(),
            "pay_currency": self.pay_currency,
            "order_id": request.out_trade_no,
            "order_description": request.subject,
        }
        notify = request.notify_url or self.notify_url
        if notify:
            payload["ipn_callback_url"] = notify
        try:
            status, answer = self.call(
                "POST", f"{self.api_url}/payment", self._headers(), self.dumps(payload)
            )
        except Unanswered as exc:
            return Checkout(kind="none", outcome=Outcome.UNKNOWN, message=str(exc))
        if status not in (200, 201) or not isinstance(answer, dict):
            message = answer.get("message") if isinstance(answer, dict) else None
            return Checkout(
                kind="none", outcome=Outcome.FAILED, message=f"HTTP {status}: {message}"
            )
        try:
            payment_id = answer["payment_id"]
            coin = read_money(answer.get("pay_amount"), self.coin)
            if str(answer.get("pay_currency", "")).lower() != self.pay_currency:
                raise NumberError(f"pay_currency {answer.get('pay_currency')!r}")
        except (KeyError, NumberError) as exc:
            return Checkout(kind="none", outcome=Outcome.UNKNOWN, message=f"answer: {exc}")
        price = answer.get("price_amount")
        rate = None
        if price is not None:
            try:
                rate = read_money(price, request.amount.currency.code).amount / coin.amount
            except (NumberError, ArithmeticError):
                rate = None
        return Checkout(
            kind="address",
            content=None if answer.get("pay_address") is None else str(answer["pay_address"]),
            coin_amount=coin,
            rate=rate,
            pay_by=_time(answer.get("expiration_estimate_date")),
            channel_reference=str(payment_id),
        )

    # -- IPN ----------------------------------------------------------------------------------
    def parse_notification(self, notification: Notification) -> NotificationResult:
        received = notification.headers.get("x-nowpayments-sig", "")
        if not received:
            return NotificationResult.reject("bad_signature", "no x-nowpayments-sig header")
        try:
            body = parse_json(notification.body)
            expected = ipn_signature(self._ipn_secret, body)
        except NumberError as exc:
            return NotificationResult.reject("malformed", str(exc))
        if not same_hex(expected, received):
            return NotificationResult.reject("bad_signature", "x-nowpayments-sig does not match")
        if not isinstance(body, dict):
            return NotificationResult.reject("malformed", "the IPN is not a JSON object")
        try:
            event = self._event(body)
        except (NumberError, OrderCoreError) as exc:
            return NotificationResult.reject("malformed", str(exc))
        return NotificationResult(events=() if event is None else (event,))

    def _event(self, body: dict[str, Any]) -> PaymentEvent | None:
        status = body.get("payment_status")
        if status in _WAITING:
            return None
        if status not in _DEAD and status not in ("finished", "partially_paid"):
            raise NumberError(f"unknown payment_status {status!r}")
        order_id = body.get("order_id")
        if not isinstance(order_id, str) or not order_id:
            raise NumberError("no order_id")
        pay_currency = str(body.get("pay_currency") or "").lower()
        coin_code = COINS.get(pay_currency)
        if coin_code is None:
            raise NumberError(f"pay_currency {pay_currency!r} is not one ordercore knows")
        amount = read_money(body.get("price_amount"), str(body.get("price_currency", "")).upper())
        # In another coin than quoted, the engine records a currency mismatch.
        paid_coins: Money = read_money(body.get("actually_paid", "0"), coin_code)
        return PaymentEvent(
            out_trade_no=order_id,
            paid=status == "finished",
            amount=amount,
            channel_trade_no=str(body.get("payment_id")),
            status=str(status),
            occurred_at=_time(body.get("updated_at")),
            event_id=f"{body.get('payment_id')}:{status}",
            coin_amount=paid_coins,
        )

    def query_checkout(self, out_trade_no: str, reference: str | None) -> PaymentQuery:
        if reference is None:
            return PaymentQuery(Outcome.UNKNOWN, message="no NOWPayments payment_id recorded")
        url = f"{self.api_url}/payment/{urllib.parse.quote(reference)}"
        try:
            status, answer = self.call("GET", url, self._headers())
        except Unanswered as exc:
            return PaymentQuery(Outcome.UNKNOWN, message=str(exc))
        if status != 200 or not isinstance(answer, dict):
            return PaymentQuery(Outcome.UNKNOWN, message=f"HTTP {status}")
        try:
            event = self._event(answer)
        except (NumberError, OrderCoreError) as exc:
            return PaymentQuery(Outcome.UNKNOWN, message=str(exc))
        if event is None:
            return PaymentQuery(Outcome.PENDING, message=str(answer.get("payment_status")))
        if event.out_trade_no != out_trade_no:
            return PaymentQuery(Outcome.UNKNOWN, message="the payment belongs to another attempt")
        if event.paid:
            return PaymentQuery(Outcome.SUCCEEDED, event=event)
        if event.coin_amount is not None and event.coin_amount.is_positive():
            return PaymentQuery(Outcome.PENDING, event=event, message=event.status)
        return PaymentQuery(Outcome.FAILED, event=event, message=event.status)
