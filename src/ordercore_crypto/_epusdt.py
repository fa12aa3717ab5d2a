"""The ``epusdt`` channel: Epusdt (USDT-TRC20; assimon/epusdt and its forks).

* signature: every field but ``signature``, empty values omitted, numbers written like Go's
  ``FormatFloat('f', -1)``, sorted ``k=v`` joined with ``&``; then MD5 of that text with the
  ``api_auth_token`` appended (assimon's original, the default) or HMAC-SHA256 keyed with the
  token (``signature = "hmac-sha256"``, the GMWallet fork's default); 32/64 lowercase hex;
* checkout: ``POST {gateway_url}{create_path}`` → the wallet address (``token``), the USDT
  amount Epusdt locked (``actual_amount``), ``expiration_time`` and ``payment_url``;
* callback: only ``status == 2`` pays; the reply is exactly ``ok``.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar, Final

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
from ._numbers import NumberError, canonical_json, go_number, parse_json

__all__ = ["EpusdtChannel", "signing_string"]

DEFAULT_CREATE_PATH: Final = "/api/v1/order/create-transaction"
_ALGORITHMS: Final = frozenset({"md5", "hmac-sha256"})
COIN: Final = "USDT"


def _value(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bool, dict, list)):
        raise NumberError(f"{key}: {type(value).__name__} cannot be signed")
    if isinstance(value, str):
        return value
    if isinstance(value, (Decimal, int)):
        return go_number(Decimal(value))
    raise NumberError(f"{key}: {type(value).__name__} cannot be signed")


def signing_string(params: Mapping[str, Any]) -> str:
    """The text Epusdt signs: sorted ``k=v`` pairs joined by ``&``, ``signature`` and empty
    values left out, numbers in Go's shortest form."""
    parts = []
    for key in sorted(params):
        if key == "signature":
            continue
        text = _value(key, params[key])
        if text is None or text == "":
            continue
        parts.append(f"{key}={text}")
    return "&".join(parts)


def sign(params: Mapping[str, Any], token: str, algorithm: str = "md5") -> str:
    text = signing_string(params)
    if algorithm == "hmac-sha256":
        return hmac.new(token.encode(), text.encode(), hashlib.sha256).hexdigest()
    return hashlib.md5((text + token).encode()).hexdigest()  # the protocol's choice


class EpusdtChannel(CryptoChannel):
    """Epusdt and its forks; see ``docs/channels/crypto.md``."""

    name: ClassVar[str] = "epusdt"
    #: the headers the notification is verified with (the inbox keeps only these)
    notification_headers: ClassVar[frozenset[str] | None] = frozenset({"content-type"})
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY"})
    options: ClassVar[frozenset[str]] = frozenset(
        {"gateway_url", "redirect_url", "create_path", "pid", "signature"}
    )
    secret_names: ClassVar[frozenset[str]] = frozenset({"api_auth_token"})

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.gateway_url: str = self.required(
            "gateway_url", self.url_option("gateway_url", self.text_option("gateway_url"))
        )
        path = self.text_option("create_path", DEFAULT_CREATE_PATH) or DEFAULT_CREATE_PATH
        if not path.startswith("/"):
            raise self.config_error(f"create_path must start with '/', not {path!r}")
        self.create_path: str = path
        pid = config.options.get("pid")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, (str, int))):
            raise self.config_error("pid must be text or an integer")
        self.pid: str | int | None = pid
        algorithm = (self.text_option("signature", "md5") or "md5").lower()
        if algorithm not in _ALGORITHMS:
            raise self.config_error(f"signature must be md5 or hmac-sha256, not {algorithm!r}")
        self.algorithm: str = algorithm
        self.notify_url: str | None = self.url_option("notify_url", config.notify_url)
        self.redirect_url = self.url_option("redirect_url", self.text_option("redirect_url"))
        self._token = self.secret_text("api_auth_token")

    def sign(self, params: Mapping[str, Any]) -> str:
        return sign(params, self._token, self.algorithm)

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        if len(request.out_trade_no) > 32:
            return Checkout(kind="none", outcome=Outcome.FAILED, message="order_id over 32")
        if not (request.notify_url or self.notify_url):
            message = f"[channels.{self.config.name}] notify_url is required by Epusdt"
            return Checkout(kind="none", outcome=Outcome.FAILED, message=message)
        params: dict[str, Any] = {
            "order_id": request.out_trade_no,
            "amount": request.amount.amount,
            "notify_url": request.notify_url or self.notify_url,
            "redirect_url": request.return_url or self.redirect_url,
        }
        if self.pid is not None:
            params["pid"] = self.pid if isinstance(self.pid, str) else Decimal(self.pid)
        params = {k: v for k, v in params.items() if v is not None and v != ""}
        params["signature"] = self.sign(params)
        try:
            status, answer = self.call(
                "POST", self.gateway_url + self.create_path, {}, canonical_json(params).encode()
            )
        except (Unanswered, NumberError) as exc:
            return Checkout(kind="none", outcome=Outcome.UNKNOWN, message=str(exc))
        code = answer.get("status_code") if isinstance(answer, dict) else None
        data = answer.get("data") if isinstance(answer, dict) else None
        if status != 200 or code != 200 or not isinstance(data, dict):
            said = answer.get("message") if isinstance(answer, dict) else None
            return Checkout(
                kind="none", outcome=Outcome.FAILED, message=f"epusdt {code or status}: {said}"
            )
        try:
            coin = read_money(data.get("actual_amount"), COIN)
            trade_id = str(data["trade_id"])
        except (NumberError, KeyError) as exc:
            return Checkout(kind="none", outcome=Outcome.UNKNOWN, message=f"answer: {exc}")
        expires = data.get("expiration_time")
        pay_by = (
            datetime.fromtimestamp(int(expires), timezone.utc)
            if isinstance(expires, Decimal) and expires == expires.to_integral_value()
            else None
        )
        url = data.get("payment_url")
        return Checkout(
            kind="address",
            content=None if data.get("token") is None else str(data["token"]),
            url=None if url is None else str(url),
            coin_amount=coin,
            pay_by=pay_by,
            channel_reference=trade_id,
        )

    def parse_notification(self, notification: Notification) -> NotificationResult:
        try:
            body = parse_json(notification.body)
        except NumberError as exc:
            return NotificationResult.reject("malformed", str(exc))
        if not isinstance(body, dict):
            return NotificationResult.reject("malformed", "the callback is not a JSON object")
        received = body.get("signature")
        if not isinstance(received, str) or not received:
            return NotificationResult.reject("bad_signature", "no signature")
        try:
            expected = self.sign(body)
        except NumberError as exc:
            return NotificationResult.reject("malformed", str(exc))
        if not same_hex(expected, received):
            return NotificationResult.reject("bad_signature", "signature does not match")
        status = body.get("status")
        code = str(status) if isinstance(status, (str, Decimal)) else ""
        if code not in ("2", "3"):
            return NotificationResult()  # 1 = still waiting (some forks send it): nothing
        order_id, trade_id = body.get("order_id"), body.get("trade_id")
        if not isinstance(order_id, str) or not isinstance(trade_id, str):
            return NotificationResult.reject("malformed", "no order_id or trade_id")
        try:
            amount = read_money(body.get("amount"), "CNY")
            coin = read_money(body.get("actual_amount"), COIN) if code == "2" else None
        except NumberError as exc:
            return NotificationResult.reject("malformed", str(exc))
        event = PaymentEvent(
            out_trade_no=order_id,
            paid=code == "2",
            amount=amount,
            channel_trade_no=trade_id,
            status="paid" if code == "2" else "expired",
            event_id=f"{trade_id}:{code}",
            coin_amount=coin,
        )
        return NotificationResult(events=(event,))

    def query_checkout(self, out_trade_no: str, reference: str | None) -> PaymentQuery:
        """Epusdt's ``GET /pay/check-status/{trade_id}`` (the cashier page's poll). It says
        only the status: a paid trade stays UNKNOWN here (never cancelled by the timeout
        job) until the signed callback, which Epusdt retries, brings the amounts."""
        if reference is None:
            return PaymentQuery(Outcome.UNKNOWN, message="no Epusdt trade_id recorded")
        url = f"{self.gateway_url}/pay/check-status/{urllib.parse.quote(reference)}"
        try:
            status, answer = self.call("GET", url, {})
        except Unanswered as exc:
            return PaymentQuery(Outcome.UNKNOWN, message=str(exc))
        data = answer.get("data", answer) if isinstance(answer, dict) else None
        code = str(data.get("status")) if isinstance(data, dict) else ""
        if status != 200 or code not in ("1", "2", "3"):
            return PaymentQuery(Outcome.UNKNOWN, message=f"HTTP {status}: no status")
        if code == "1":
            return PaymentQuery(Outcome.PENDING, message="waiting for the transfer")
        if code == "3":
            return PaymentQuery(Outcome.FAILED, message="expired at Epusdt")
        return PaymentQuery(Outcome.UNKNOWN, message="paid at Epusdt: waiting for its callback")
