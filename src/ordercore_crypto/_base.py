"""What the three gateway channels share: settings checked at construction, the transport,
JSON calls whose lost answers are unknown outcomes, and amounts read as ``Decimal``."""

from __future__ import annotations

import hmac
import json
import urllib.parse
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar, Final

from ordercore import ConfigurationError, Money, OrderCoreError
from ordercore.channels import (
    Capabilities,
    ChannelConfig,
    ChannelRejection,
    HttpReply,
    PaymentChannel,
)

from ._http import HttpResponse, Transport, TransportError, UrllibTransport
from ._numbers import NumberError, parse_json

__all__ = ["COMMON_OPTIONS", "CryptoChannel", "Unanswered", "read_money", "read_rate", "same_hex"]

DEFAULT_TIMEOUT_SECONDS: Final = 15.0
COMMON_OPTIONS: Final = frozenset({"timeout_seconds", "transport"})


class Unanswered(Exception):
    """A gateway call with no usable answer (no answer, a 5xx, a body that is not JSON)."""


def same_hex(expected: str, received: str) -> bool:
    """Constant-time comparison of two hex digests (case-insensitive)."""
    return hmac.compare_digest(expected.lower().encode(), received.strip().lower().encode())


def read_rate(value: Any) -> Decimal | None:
    """A rate from a gateway (informational): a positive ``Decimal``, or None."""
    if value is None or isinstance(value, bool) or not isinstance(value, (Decimal, str)):
        return None
    try:
        rate = Decimal(str(value).strip())
    except ArithmeticError:
        return None
    return rate if rate.is_finite() and rate > 0 else None


def read_money(value: Any, currency: str) -> Money:
    """An amount from a gateway (a JSON number kept as ``Decimal``, or its text) — never
    through float; more decimals than the currency has is an error, not a rounding."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, str)):
        raise NumberError(f"amount {value!r} is not a number")
    try:
        return Money.of(Decimal(str(value).strip()), currency)
    except (OrderCoreError, ArithmeticError) as exc:
        raise NumberError(f"amount {value!r} {currency}: {exc}") from None


class CryptoChannel(PaymentChannel):
    """A crypto gateway: the payer sends coins to an address at an amount the gateway
    locked; refunds are not offered (refund to the balance, or record one made by hand)."""

    methods: ClassVar[frozenset[str]] = frozenset({"address"})
    capabilities: ClassVar[Capabilities] = Capabilities(
        query=True, close=False, refund=False, partial_refund=False, refund_notifications=False
    )
    #: the channel's own option names and secret names (``NAME_file`` / ``NAME_env``)
    options: ClassVar[frozenset[str]] = frozenset()
    secret_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: ChannelConfig, *, transport: Transport | None = None) -> None:
        super().__init__(config)
        known = self.options | COMMON_OPTIONS
        unknown = set(config.options) - known
        if unknown:
            raise self.config_error(
                f"unknown setting(s): {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(known))})"
            )
        unknown = set(config.secrets) - self.secret_names
        if unknown:
            raise self.config_error(
                f"unknown secret(s): {', '.join(sorted(s + '_file' for s in unknown))} "
                f"(known: {', '.join(sorted(s + '_file' for s in self.secret_names))})"
            )
        for name in sorted(self.secret_names):
            if not config.secrets.get(name) or not config.secret(name).strip():
                raise self.config_error(f"needs the secret {name} (set {name}_file or {name}_env)")
        timeout: object = config.options.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise self.config_error(f"timeout_seconds must be a number, not {timeout!r}")
        if not 0 < timeout <= 300:
            raise self.config_error(f"timeout_seconds must be in (0, 300], not {timeout!r}")
        self.timeout = float(timeout)
        chosen = transport or config.options.get("transport") or UrllibTransport()
        if not callable(getattr(chosen, "request", None)):
            raise self.config_error("transport must have a request(method, url, ...) method")
        self.transport: Transport = chosen

    # -- settings -----------------------------------------------------------------------------
    def config_error(self, message: str) -> ConfigurationError:
        return ConfigurationError(f"[channels.{self.config.name}] {message}", channel=self.name)

    def text_option(self, key: str, default: str | None = None) -> str | None:
        value = self.config.options.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.config_error(f"{key} must be text, not {type(value).__name__}")
        return str(value).strip() or None

    def required(self, key: str, value: str | None) -> str:
        if value is None:
            raise self.config_error(f"{key} is required")
        return value

    def url_option(self, key: str, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise self.config_error(f"{key} must be an http(s) URL, not {value!r}")
        return value.rstrip("/")

    def secret_text(self, name: str) -> str:
        return self.config.secret(name).decode("utf-8").strip()

    # -- calls --------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
    ) -> tuple[int, Any]:
        """``(status, parsed JSON)`` of a gateway call; :class:`Unanswered` when no answer
        came, the gateway failed (5xx, 408, 429) or its answer is not JSON."""
        sent = {"accept": "application/json", **headers}
        if body is not None:
            sent.setdefault("content-type", "application/json")
        try:
            response: HttpResponse = self.transport.request(method, url, body, sent, self.timeout)
        except TransportError as exc:
            raise Unanswered(str(exc)) from None
        if response.status >= 500 or response.status in (408, 429):
            raise Unanswered(f"HTTP {response.status} from {self.name}")
        try:
            return response.status, parse_json(response.body)
        except NumberError as exc:
            if response.status >= 400:
                return response.status, None
            raise Unanswered(f"HTTP {response.status} from {self.name}: {exc}") from None

    @staticmethod
    def dumps(payload: Mapping[str, Any]) -> bytes:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    # -- replies -------------------------------------------------------------------------------
    def acknowledge(self, accepted: bool, message: str = "") -> HttpReply:
        if accepted:
            return HttpReply(200, b"ok", {"content-type": "text/plain; charset=utf-8"})
        # A refusal of our own (a database error while applying): ask for a redelivery.
        return HttpReply(500, b"fail", {"content-type": "text/plain; charset=utf-8"})

    def refuse(self, rejection: ChannelRejection) -> HttpReply:
        """A definite refusal answers 400 (a forged or malformed notification: never
        redelivered); a retryable one (the gateway could not be asked) 503."""
        status = 503 if rejection.retryable else 400
        body = json.dumps({"error": rejection.code, "message": rejection.message[:200]})
        return HttpReply(status, body.encode(), {"content-type": "application/json"})
