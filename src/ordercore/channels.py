"""The payment channel interface that channel plugins implement.

A channel turns ordercore's intent into a platform's protocol and back. It never touches the
database and never changes a status: it returns *facts* (a checkout to show, semantic events
parsed from a verified notification, the outcome of a query, refund or close), and the payment
engine applies them through the state machines, once.

Three protocol families fit this one interface:

* form + RSA (Alipay): ``parse_notification`` verifies the form's signature with the
  platform's public key, ``acknowledge`` answers ``success``;
* JSON + headers + AES-GCM (WeChat Pay v3): ``parse_notification`` checks the header
  signature and timestamp, decrypts the resource, ``acknowledge`` answers 204 or a JSON error;
* HMAC webhooks (crypto gateways, the test kit's fake channel): ``parse_notification`` checks
  an HMAC header over the raw body in constant time.

Every outgoing call that may not come back (a timeout, a 5xx, Alipay's ``20000``) must be
reported as :attr:`Outcome.UNKNOWN` — never as a failure — so that only a later query or
notification decides it.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from attrs import field, frozen

from ._money import Money

__all__ = [
    "Capabilities",
    "ChannelConfig",
    "ChannelRejection",
    "Checkout",
    "CheckoutRequest",
    "HttpReply",
    "Notification",
    "NotificationResult",
    "Outcome",
    "PaymentChannel",
    "PaymentEvent",
    "PaymentQuery",
    "RefundEvent",
    "RefundRequest",
    "RefundResult",
    "Secret",
]


class Outcome(str, enum.Enum):
    """What a call to a platform achieved."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"  #: accepted, the result comes later (notification or query)
    UNKNOWN = "unknown"  #: no answer (timeout, 5xx, ``20000``): only a query can tell

    def __str__(self) -> str:
        return self.value


@frozen(repr=False)
class Secret:
    """Key material or a password: never in ``repr``, ``str``, logs or exports."""

    value: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def reveal(self) -> bytes:
        return self.value


@frozen
class ChannelConfig:
    """One channel's settings (``[channels.NAME]`` in the TOML file, or built in Python).

    ``options`` holds the channel's own settings (merchant ids, URLs, key file paths);
    ``secrets`` its key material, loaded from PEM files or environment variables and kept in
    :class:`Secret` so that it never shows up in ``repr`` or logs.
    """

    name: str
    enabled: bool = True
    notify_url: str | None = None
    min_amount: Money | None = None
    max_amount: Money | None = None
    fee_percent: str | None = None
    fee_fixed: str | None = None
    fee_currency: str | None = None
    fee_borne_by: str = "merchant"
    refund_deadline_days: int | None = None
    options: Mapping[str, Any] = field(factory=dict)
    secrets: Mapping[str, Secret] = field(factory=dict, repr=False)

    def secret(self, name: str) -> bytes:
        from ._errors import ConfigurationError

        try:
            return self.secrets[name].reveal()
        except KeyError:
            raise ConfigurationError(
                f"channel {self.name} needs the secret {name!r} (set {name}_file or {name}_env)",
                channel=self.name,
            ) from None


@frozen
class Capabilities:
    """What a channel can do besides taking payments."""

    query: bool = True
    close: bool = True
    refund: bool = True
    partial_refund: bool = True
    refund_notifications: bool = False


@frozen
class CheckoutRequest:
    """What the engine asks a channel to create for one payment attempt."""

    out_trade_no: str
    amount: Money
    subject: str
    method: str
    notify_url: str | None
    expires_at: datetime
    client_ip: str | None = None
    return_url: str | None = None


@frozen
class Checkout:
    """What the host shows the payer: ``kind`` is ``qr`` (``content`` is the QR text),
    ``redirect`` (``url``), ``form`` (``url`` + ``fields``), ``address`` (crypto: ``content``
    is the address, ``coin_amount`` what to send) or ``instructions`` (bank transfer)."""

    kind: str
    outcome: Outcome = Outcome.PENDING
    content: str | None = None
    url: str | None = None
    fields: Mapping[str, str] = field(factory=dict)
    coin_amount: Money | None = None
    channel_reference: str | None = None
    message: str | None = None


@frozen
class Notification:
    """A notification exactly as received: raw headers (lower-cased names) and raw body."""

    channel: str
    headers: Mapping[str, str]
    body: bytes
    remote_addr: str | None = None
    received_at: datetime | None = None


@frozen
class PaymentEvent:
    """A verified fact about a payment. ``paid`` is true only for a completed payment
    (``TRADE_SUCCESS``/``TRADE_FINISHED``, ``SUCCESS``, ``InvoiceSettled``...)."""

    out_trade_no: str
    paid: bool
    amount: Money | None
    channel_trade_no: str | None
    status: str
    merchant_id: str | None = None
    occurred_at: datetime | None = None
    event_id: str | None = None


@frozen
class RefundEvent:
    """A verified fact about a refund."""

    out_refund_no: str
    outcome: Outcome
    amount: Money | None
    channel_refund_no: str | None = None
    out_trade_no: str | None = None
    event_id: str | None = None
    #: for a failed refund: the platform's error code (looked up in ``refund_failures``)
    code: str | None = None
    message: str | None = None


@frozen
class ChannelRejection:
    """Why a notification was refused (``code``: ``bad_signature``, ``stale``,
    ``malformed``, ``wrong_merchant``, ``unsupported``...). It is stored in the inbox and
    answered with the platform's failure acknowledgement."""

    code: str
    message: str


@frozen
class NotificationResult:
    """What :meth:`PaymentChannel.parse_notification` found: events, or a rejection."""

    events: tuple[PaymentEvent | RefundEvent, ...] = ()
    rejection: ChannelRejection | None = None

    @classmethod
    def reject(cls, code: str, message: str) -> NotificationResult:
        return cls(rejection=ChannelRejection(code, message))


@frozen
class HttpReply:
    """The exact HTTP answer a platform expects."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(factory=dict)


@frozen
class PaymentQuery:
    """The answer to a payment query. ``outcome`` SUCCEEDED = paid (``event`` carries the
    details), FAILED = closed/failed, PENDING = still waiting for the payer (or, Alipay's
    ``TRADE_NOT_EXIST``, not scanned yet), UNKNOWN = no answer."""

    outcome: Outcome
    event: PaymentEvent | None = None
    message: str | None = None


@frozen
class RefundRequest:
    """A refund to make through the channel; ``out_refund_no`` is the idempotency key the
    platform knows (Alipay ``out_request_no``, WeChat ``out_refund_no``), reused on retry."""

    out_trade_no: str
    out_refund_no: str
    amount: Money
    total: Money
    reason: str | None = None
    channel_trade_no: str | None = None
    notify_url: str | None = None


@frozen
class RefundResult:
    """The outcome of a refund call (or query); ``code`` is the platform's error code."""

    outcome: Outcome
    channel_refund_no: str | None = None
    code: str | None = None
    message: str | None = None
    retryable: bool = False


class PaymentChannel(abc.ABC):
    """Implement this to add a payment channel (see ``docs/plugins.md``).

    Class attributes declare what the channel is; methods do the protocol work. Methods that
    call a platform must never raise for a lost answer: they return ``Outcome.UNKNOWN``.
    """

    #: The channel's name: ``[channels.NAME]`` and ``POST /callbacks/NAME``.
    name: ClassVar[str]
    #: Checkout methods: ``qr``, ``h5``, ``page``, ``transfer``, ``address``, ``balance``...
    methods: ClassVar[frozenset[str]]
    #: Currency codes it accepts.
    currencies: ClassVar[frozenset[str]]
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: The platform's refund error codes (``RefundResult.code``) that name an item of the
    #: refund-failure checklist, as :class:`~ordercore.RefundFailure` values, e.g.
    #: ``{"ACQ.SELLER_BALANCE_NOT_ENOUGH": "merchant_balance_insufficient"}``. Other codes
    #: count as ``channel_error`` when the result is retryable, else ``channel_refused``.
    refund_failures: ClassVar[Mapping[str, str]] = {}
    #: The channel's own settings (``options`` and ``secrets`` names, without ``_file`` or
    #: ``_env``), besides the common ones; a table with any other key disables the channel.
    #: None (the default) accepts any key and leaves checking to the channel.
    option_names: ClassVar[frozenset[str] | None] = None

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Create what the payer needs (QR text, URL, address...)."""

    @abc.abstractmethod
    def parse_notification(self, notification: Notification) -> NotificationResult:
        """Verify the raw notification and turn it into semantic events, or a rejection.
        Must not raise on garbage: return ``NotificationResult.reject(...)``."""

    @abc.abstractmethod
    def acknowledge(self, accepted: bool, message: str = "") -> HttpReply:
        """The exact reply the platform expects for an accepted or a refused notification."""

    def query_payment(self, out_trade_no: str) -> PaymentQuery:
        """Ask the platform about a payment attempt."""
        return PaymentQuery(Outcome.UNKNOWN, message=f"{self.name} cannot query payments")

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund through the platform, with ``request.out_refund_no`` as its idempotency key."""
        return RefundResult(
            Outcome.FAILED, code="unsupported", message=f"{self.name} cannot refund"
        )

    def query_refund(self, request: RefundRequest) -> RefundResult:
        """Ask the platform about a refund made with ``request.out_refund_no``.

        FAILED is a verdict: the platform says the refund failed, or that it does not exist
        (it was never made; a retry with the same number is safe). A query that itself
        failed (timeout, system error) is UNKNOWN."""
        return RefundResult(Outcome.UNKNOWN, message=f"{self.name} cannot query refunds")

    def close(self, out_trade_no: str) -> Outcome:
        """Close an unpaid attempt so it can no longer be paid."""
        return Outcome.SUCCEEDED
