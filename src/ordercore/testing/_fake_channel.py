"""The ``fake`` channel: :class:`FakeChannel` (HMAC-SHA256 webhooks, talking to a
:class:`FakeGateway`) and the ``ordercore_register_channels`` hook that offers it."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs

from ordercore._errors import ConfigurationError, MoneyError
from ordercore._money import Money, get_currency
from ordercore.channels import (
    Capabilities,
    ChannelConfig,
    Checkout,
    CheckoutRequest,
    HttpReply,
    Notification,
    NotificationResult,
    Outcome,
    PaymentChannel,
    PaymentEvent,
    PaymentQuery,
    RefundEvent,
    RefundRequest,
    RefundResult,
)
from ordercore.hookspecs import hookimpl
from ordercore.testing._fake_gateway import FakeGateway
from ordercore.testing._protocol import (
    DEFAULT_MERCHANT_ID,
    EVENT_TYPES,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TOLERANCE_SECONDS,
    _amount_text,
    fake_signature,
)
from ordercore.testing._records import _checkout_kind

if TYPE_CHECKING:
    from ordercore._config import Settings

_HEX_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}\Z")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}\Z")
_REQUIRED_FIELDS: Final = (
    "id",
    "type",
    "merchant_id",
    "out_trade_no",
    "trade_no",
    "amount",
    "currency",
)
_REFUND_FIELDS: Final = ("out_refund_no", "refund_no")


class _Malformed(Exception):
    """A notification body that breaks the fake platform's format."""


def _refuse_float(text: str) -> Any:
    raise _Malformed(f"a number with a fraction or exponent ({text[:20]}): amounts are strings")


def _refuse_constant(text: str) -> Any:
    raise _Malformed(f"{text} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Malformed(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def _header(headers: object, name: str) -> str | None:
    """The one value of header ``name`` (any case), or None when it is missing, repeated in
    several cases, or not text."""
    if not isinstance(headers, Mapping):
        return None
    found: list[object] = [
        value for key, value in headers.items() if isinstance(key, str) and key.lower() == name
    ]
    if len(found) != 1 or not isinstance(found[0], str):
        return None
    return found[0]


class FakeChannel(PaymentChannel):
    """The ``fake`` channel: HMAC-SHA256 webhooks, talking to a :class:`FakeGateway`.

    Configuration: ``options["merchant_id"]`` (default ``fake-merchant``), the secret
    ``webhook_secret``, and optionally ``options["gateway"]`` (a :class:`FakeGateway`;
    otherwise :meth:`FakeGateway.shared`). Creating the channel registers its merchant and
    secret with the gateway.

    :param gateway: the platform to talk to (overrides ``options["gateway"]``).
    :param clock: the channel's time for the replay window; default: the gateway's clock.
        A notification with ``received_at`` is judged against that time instead, so that a
        stored notification can be replayed later.
    """

    name: ClassVar[str] = "fake"
    methods: ClassVar[frozenset[str]] = frozenset({"qr", "page"})
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY", "USD", "JPY", "USDT", "BTC"})
    capabilities: ClassVar[Capabilities] = Capabilities(
        query=True,
        close=True,
        refund=True,
        partial_refund=True,
        refund_notifications=True,
    )
    notification_headers: ClassVar[frozenset[str] | None] = frozenset(
        {SIGNATURE_HEADER, TIMESTAMP_HEADER, "content-type"}
    )
    #: The fake platform's refund codes that name an item of the refund-failure checklist
    #: (make one with ``gateway.fail_next("refund", Outcome.FAILED, code=...)``).
    refund_failures: ClassVar[Mapping[str, str]] = {
        "NOT_ENOUGH_BALANCE": "merchant_balance_insufficient",
        "TRADE_NOT_EXIST": "missing_information",
        "TRADE_NOT_PAID": "missing_information",
        "REFUND_EXPIRED": "deadline_passed",
        "SYSTEM_ERROR": "channel_error",
    }

    def __init__(
        self,
        config: ChannelConfig,
        *,
        gateway: FakeGateway | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(config)
        merchant_id = config.options.get("merchant_id", DEFAULT_MERCHANT_ID)
        if not isinstance(merchant_id, str) or not merchant_id:
            raise ConfigurationError(
                f"channel {config.name}: merchant_id must be a non-empty string",
                channel=config.name,
            )
        configured = config.options.get("gateway")
        if configured is not None and not isinstance(configured, FakeGateway):
            raise ConfigurationError(
                f"channel {config.name}: options['gateway'] must be a FakeGateway",
                channel=config.name,
            )
        self.merchant_id: str = merchant_id
        self.gateway: FakeGateway = gateway or configured or FakeGateway.shared()
        self._clock = clock
        self.gateway.register_merchant(merchant_id, config.secret("webhook_secret"))

    def now(self) -> datetime:
        """The channel's current time (its clock, else the gateway's)."""
        return (self._clock or self.gateway.clock)()

    # -- outgoing calls -------------------------------------------------------------------
    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        if request.method not in self.methods:
            return Checkout(
                kind=request.method,
                outcome=Outcome.FAILED,
                message=f"fake does not support the method {request.method!r}",
            )
        if request.amount.currency.code not in self.currencies:
            return Checkout(
                kind=_checkout_kind(request.method),
                outcome=Outcome.FAILED,
                message=f"fake does not accept {request.amount.currency.code}",
            )
        if request.notify_url is None and self.config.notify_url is not None:
            request = attrs.evolve(request, notify_url=self.config.notify_url)
        return self.gateway.create_checkout(request, merchant_id=self.merchant_id)

    def query_payment(self, out_trade_no: str) -> PaymentQuery:
        return self.gateway.query(out_trade_no, merchant_id=self.merchant_id)

    def refund(self, request: RefundRequest) -> RefundResult:
        return self.gateway.refund(request, merchant_id=self.merchant_id)

    def query_refund(self, request: RefundRequest) -> RefundResult:
        return self.gateway.query_refund(request, merchant_id=self.merchant_id)

    def close(self, out_trade_no: str) -> Outcome:
        return self.gateway.close(out_trade_no, merchant_id=self.merchant_id)

    # -- notifications --------------------------------------------------------------------
    def acknowledge(self, accepted: bool, message: str = "") -> HttpReply:
        """200 ``OK`` when accepted; 400 with ``{"code": "FAIL", "message": ...}`` otherwise
        (the platform retries)."""
        if accepted:
            return HttpReply(200, b"OK", {"content-type": "text/plain; charset=utf-8"})
        body = json.dumps({"code": "FAIL", "message": message}, ensure_ascii=False)
        return HttpReply(400, body.encode("utf-8"), {"content-type": "application/json"})

    def parse_notification(self, notification: Notification) -> NotificationResult:
        """Verify and parse; never raises. Order of checks: headers (``malformed``), the
        signature over the raw bytes in constant time (``bad_signature``), the replay window
        (``stale``), the body (``malformed``; floats anywhere are refused), the event type
        (``unsupported``), the merchant (``wrong_merchant``)."""
        reject = NotificationResult.reject
        signature = _header(notification.headers, SIGNATURE_HEADER)
        if signature is None or not _HEX_SIGNATURE.match(signature):
            return reject("malformed", f"missing or garbled {SIGNATURE_HEADER} header")
        timestamp = _header(notification.headers, TIMESTAMP_HEADER)
        if timestamp is None or not _TIMESTAMP.match(timestamp):
            return reject("malformed", f"missing or garbled {TIMESTAMP_HEADER} header")
        body: object = notification.body
        if isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        if not isinstance(body, bytes):
            return reject("malformed", "the body is not bytes")
        expected = fake_signature(self.config.secret("webhook_secret"), timestamp, body)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
            return reject("bad_signature", "the signature does not match the body")
        received = notification.received_at
        try:
            now = int((received if isinstance(received, datetime) else self.now()).timestamp())
        except (OverflowError, ValueError, OSError):
            return reject("malformed", "the time of receipt is out of range")
        if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
            return reject(
                "stale", f"signed at {timestamp}, more than {TOLERANCE_SECONDS}s from now"
            )
        try:
            payload = json.loads(
                body.decode("utf-8"),
                parse_float=_refuse_float,
                parse_constant=_refuse_constant,
                object_pairs_hook=_unique_keys,
            )
        except _Malformed as exc:
            return reject("malformed", str(exc))
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError too
            return reject("malformed", "the body is not UTF-8 JSON")
        if not isinstance(payload, dict):
            return reject("malformed", "the body is not a JSON object")
        return self._events(payload, datetime.fromtimestamp(int(timestamp), timezone.utc))

    def _events(self, payload: dict[str, Any], signed_at: datetime) -> NotificationResult:
        reject = NotificationResult.reject
        kind = payload.get("type")
        if isinstance(kind, str) and kind not in EVENT_TYPES:
            return reject("unsupported", f"unknown event type {kind[:60]!r}")
        refund = isinstance(kind, str) and kind.startswith("refund.")
        names = _REQUIRED_FIELDS + (_REFUND_FIELDS if refund else ())
        fields: dict[str, str] = {}
        for name in names:
            value = payload.get(name)
            if not isinstance(value, str) or not value:
                return reject("malformed", f"{name} must be a non-empty string")
            fields[name] = value
        if fields["merchant_id"] != self.merchant_id:
            return reject("wrong_merchant", f"merchant {fields['merchant_id'][:60]!r} is not ours")
        try:
            amount = Money.of(fields["amount"], get_currency(fields["currency"]))
        except MoneyError as exc:
            return reject("malformed", f"bad amount: {exc.message}")
        if _amount_text(amount) != fields["amount"] or not amount.is_positive():
            return reject(
                "malformed",
                f"amount {fields['amount'][:40]!r} is not a positive amount written at "
                f"{amount.currency.code}'s precision",
            )
        event: PaymentEvent | RefundEvent
        if refund:
            event = RefundEvent(
                out_refund_no=fields["out_refund_no"],
                outcome=Outcome.SUCCEEDED if kind == "refund.succeeded" else Outcome.FAILED,
                amount=amount,
                channel_refund_no=fields["refund_no"],
                out_trade_no=fields["out_trade_no"],
                event_id=fields["id"],
            )
        else:
            event = PaymentEvent(
                out_trade_no=fields["out_trade_no"],
                paid=kind == "payment.succeeded",
                amount=amount,
                channel_trade_no=fields["trade_no"],
                status=fields["type"],
                merchant_id=fields["merchant_id"],
                occurred_at=signed_at,
                event_id=fields["id"],
            )
        return NotificationResult(events=(event,))


@hookimpl
def ordercore_register_channels(settings: Settings) -> Sequence[type[PaymentChannel]]:
    """Offer the ``fake`` channel when the configuration has a ``[channels.fake]`` table."""
    return [FakeChannel] if "fake" in settings.channels else []
