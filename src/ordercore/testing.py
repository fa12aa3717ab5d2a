"""The public test kit: a fake payment channel, its in-memory platform, builders and fixtures.

For host developers, who want their payment tests offline, and for plugin authors, who want
something to copy and helpers to test their own channel (see ``docs/testing.md`` and
``docs/plugins.md``).

* :class:`FakeChannel` is a real channel (the HMAC-webhook family): notifications are JSON
  bodies signed with HMAC-SHA256 over ``f"{timestamp}.".encode() + body``, verified in
  constant time over the raw bytes, with a five-minute replay window. It talks to a
  :class:`FakeGateway` instead of the network.
* :class:`FakeGateway` is the platform: it keeps trades and refunds in memory (thread-safe),
  "pays" a trade by returning the signed notification the platform would send
  (:meth:`~FakeGateway.pay`), builds duplicate, out-of-order, stale, tampered and refund
  notifications (:meth:`~FakeGateway.notification_for`), delivers them over real HTTP
  (:meth:`~FakeGateway.deliver`), injects faults (:meth:`~FakeGateway.fail_next`: timeouts
  whose answer is lost after the work was done, platform errors) and counts every call.
* :func:`make_fake_channel`, :func:`fake_channel_config`, :func:`make_checkout_request`,
  :func:`make_refund_request` build what tests need; :func:`assert_channel_contract` and
  :func:`garbage_notifications` test any channel (yours too) against the rules every channel
  must keep.
* With ``pytest_plugins = ["ordercore.testing"]`` in a ``conftest.py``, the fixtures
  ``fake_gateway`` and ``fake_channel`` are available. pytest and hypothesis stay optional:
  this module imports without them.

The module also implements the ``ordercore_register_channels`` hook, so that registering it
as a plugin (``make_plugin_manager([ordercore.testing])``) offers the ``fake`` channel to
every configuration with a ``[channels.fake]`` table.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import itertools
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, NamedTuple

import attrs
from attrs import frozen

from ._errors import ConfigurationError, MoneyError
from ._money import Money, get_currency
from .channels import (
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
    Secret,
)
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from ._config import Settings

__all__ = [
    "DEFAULT_MERCHANT_ID",
    "DEFAULT_SECRET",
    "EVENT_TYPES",
    "GARBAGE_NOTIFICATIONS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "FakeChannel",
    "FakeGateway",
    "FakeGatewayError",
    "FakeRefund",
    "FakeTrade",
    "SignedNotification",
    "TradeStatus",
    "assert_channel_contract",
    "fake_channel_config",
    "fake_signature",
    "garbage_notifications",
    "make_checkout_request",
    "make_fake_channel",
    "make_refund_request",
    "ordercore_register_channels",
]

#: The header carrying the hex HMAC-SHA256 signature.
SIGNATURE_HEADER: Final = "x-fake-signature"
#: The header carrying the signing time (unix seconds), part of the signed message.
TIMESTAMP_HEADER: Final = "x-fake-timestamp"
#: A notification signed more than this many seconds before (or after) it was received is
#: refused as ``stale``.
TOLERANCE_SECONDS: Final = 300
#: The merchant id the fake channel uses unless ``options["merchant_id"]`` says otherwise.
DEFAULT_MERCHANT_ID: Final = "fake-merchant"
#: The webhook secret the builders use unless told otherwise.
DEFAULT_SECRET: Final = b"fake-webhook-secret"
#: The notification types the fake platform sends.
EVENT_TYPES: Final = frozenset(
    {"payment.succeeded", "payment.failed", "refund.succeeded", "refund.failed"}
)

_OPERATIONS: Final = frozenset({"create", "query", "refund", "query_refund", "close"})
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


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _amount_text(money: Money) -> str:
    """The fake platform's amount format: decimal text in the currency's unit, at its
    precision (``"30.00"`` CNY, ``"30"`` JPY, ``"0.00100000"`` BTC)."""
    return f"{money.amount:f}"


def fake_signature(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """The fake platform's signature: hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body``."""
    message = f"{timestamp}.".encode("ascii") + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


# -- the platform's records ----------------------------------------------------------------


class FakeGatewayError(Exception):
    """A test asked the fake platform for something it cannot do (pay an unknown or closed
    trade, settle a refund that is not pending...). Never raised to a channel."""


class TradeStatus(str, enum.Enum):
    """A trade's status on the fake platform."""

    WAIT = "WAIT"  #: created, waiting for the payer
    PAID = "PAID"
    FAILED = "FAILED"  #: the payer's payment failed; the trade can still be paid
    CLOSED = "CLOSED"  #: closed unpaid; it can no longer be paid

    def __str__(self) -> str:
        return self.value


@frozen
class FakeTrade:
    """A snapshot of one trade on the fake platform."""

    out_trade_no: str
    merchant_id: str
    amount: Money
    status: TradeStatus
    trade_no: str
    method: str
    subject: str
    notify_url: str | None
    paid_amount: Money | None
    refunded: Money
    paid_at: datetime | None


@frozen
class FakeRefund:
    """A snapshot of one refund on the fake platform (``outcome`` is SUCCEEDED, PENDING or
    FAILED)."""

    out_refund_no: str
    out_trade_no: str
    merchant_id: str
    amount: Money
    refund_no: str
    outcome: Outcome


@attrs.define
class _Trade:
    out_trade_no: str
    merchant_id: str
    amount: Money
    trade_no: str
    method: str
    subject: str
    notify_url: str | None
    status: TradeStatus = TradeStatus.WAIT
    paid_amount: Money | None = None
    paid_at: datetime | None = None

    def refunded(self, refunds: Mapping[str, _Refund]) -> Money:
        total = Money.zero(self.amount.currency)
        for refund in refunds.values():
            if refund.out_trade_no == self.out_trade_no and refund.outcome is not Outcome.FAILED:
                total = total + refund.amount
        return total


@attrs.define
class _Refund:
    out_refund_no: str
    out_trade_no: str
    merchant_id: str
    amount: Money
    refund_no: str
    outcome: Outcome

    def snapshot(self) -> FakeRefund:
        return FakeRefund(
            self.out_refund_no,
            self.out_trade_no,
            self.merchant_id,
            self.amount,
            self.refund_no,
            self.outcome,
        )

    def result(self) -> RefundResult:
        if self.outcome is Outcome.FAILED:
            return RefundResult(
                Outcome.FAILED, self.refund_no, code="REFUND_FAILED", message="refund failed"
            )
        return RefundResult(self.outcome, self.refund_no)


@attrs.define
class _Fault:
    outcome: Outcome
    code: str | None
    message: str | None
    lose_answer_after_apply: bool
    retryable: bool
    error: BaseException | None


class SignedNotification(NamedTuple):
    """A notification as the fake platform sends it: lower-case ``headers`` and the raw
    ``body``. Unpacks as ``headers, body``."""

    headers: dict[str, str]
    body: bytes

    def to_notification(
        self,
        channel: str = "fake",
        *,
        remote_addr: str | None = None,
        received_at: datetime | None = None,
    ) -> Notification:
        """The :class:`~ordercore.channels.Notification` a host would build on receipt."""
        return Notification(
            channel, dict(self.headers), self.body, remote_addr=remote_addr, received_at=received_at
        )

    def payload(self) -> dict[str, Any]:
        """The body parsed (for assertions; the channel itself never re-parses trusted
        data)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


# -- the platform -------------------------------------------------------------------------


class FakeGateway:
    """An in-memory payment platform for :class:`FakeChannel`. Thread-safe.

    The channel side calls :meth:`create_checkout`, :meth:`query`, :meth:`refund`,
    :meth:`query_refund` and :meth:`close`; the test side calls :meth:`pay`,
    :meth:`fail_payment`, :meth:`settle_refund`, :meth:`notification_for`, :meth:`deliver`
    and :meth:`fail_next`, and reads :attr:`calls`, :attr:`refund_calls`,
    :attr:`refunds_made`, :attr:`sent`, :meth:`trade` and :meth:`refund_record`.

    :param clock: returns the platform's time (signing timestamps, ``paid_at``); default: the
        wall clock. Give it the clock your ordercore instance uses, so that notifications are
        not stale to it. Settable later through :attr:`clock`.
    :param refund_mode: ``"sync"`` (refunds succeed at once) or ``"async"`` (refunds answer
        PENDING and complete with :meth:`settle_refund`, which returns the refund
        notification).
    """

    _shared: ClassVar[FakeGateway | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        refund_mode: Literal["sync", "async"] = "sync",
    ) -> None:
        if refund_mode not in ("sync", "async"):
            raise ValueError(f"refund_mode must be 'sync' or 'async', not {refund_mode!r}")
        self.clock: Callable[[], datetime] = clock or _utcnow
        self.refund_mode = refund_mode
        self._lock = threading.RLock()
        self._merchants: dict[str, Secret] = {}
        self._trades: dict[str, _Trade] = {}
        self._refunds: dict[str, _Refund] = {}
        self._faults: dict[str, deque[_Fault]] = {op: deque() for op in _OPERATIONS}
        self._ids = itertools.count(1)
        #: How many times each operation was called: ``create``, ``query``, ``refund``,
        #: ``query_refund``, ``close`` (channel side), ``pay``, ``fail_payment``,
        #: ``settle_refund``, ``notification``, ``deliver`` (test side).
        self.calls: Counter[str] = Counter()
        #: Refunds actually recorded (one per ``out_refund_no``, whatever the retries).
        self.refunds_made = 0
        #: Every notification built, in order.
        self.sent: list[SignedNotification] = []

    @classmethod
    def shared(cls) -> FakeGateway:
        """The process-wide gateway used by a :class:`FakeChannel` configured without one
        (e.g. instantiated by the engine from a ``[channels.fake]`` TOML table). Tests should
        prefer their own gateway (``fake_channel_config(gateway=...)``)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"<FakeGateway trades={len(self._trades)} refunds={len(self._refunds)} "
                f"calls={dict(self.calls)}>"
            )

    # -- set-up ---------------------------------------------------------------------------
    def register_merchant(self, merchant_id: str, secret: bytes) -> None:
        """Declare a merchant and its webhook secret (a :class:`FakeChannel` does this when
        it is created). Registering again replaces the secret."""
        if not isinstance(secret, bytes) or not secret:
            raise ValueError("the webhook secret must be non-empty bytes")
        with self._lock:
            self._merchants[merchant_id] = Secret(secret)

    def fail_next(
        self,
        op: str,
        outcome: Outcome = Outcome.UNKNOWN,
        *,
        code: str | None = None,
        message: str | None = None,
        lose_answer_after_apply: bool = True,
        retryable: bool = False,
        error: BaseException | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``op`` (``create``, ``query``, ``refund``,
        ``query_refund``, ``close``) go wrong.

        ``Outcome.UNKNOWN`` simulates a timeout: with ``lose_answer_after_apply`` (the default)
        the platform *does* the work and only the answer is lost — the dangerous case a retry
        or a query must resolve; without it, nothing happens. ``Outcome.FAILED`` is a
        platform error with ``code`` (default ``SYSTEM_ERROR``), nothing done. ``error``
        makes the call raise that exception instead (a broken plugin).
        """
        if op not in _OPERATIONS:
            raise ValueError(f"unknown operation {op!r}; one of {sorted(_OPERATIONS)}")
        if outcome not in (Outcome.UNKNOWN, Outcome.FAILED):
            raise ValueError("a fault's outcome is Outcome.UNKNOWN or Outcome.FAILED")
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = _Fault(outcome, code, message, lose_answer_after_apply, retryable, error)
        with self._lock:
            self._faults[op].extend([fault] * times)

    def reset_faults(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            for queue in self._faults.values():
                queue.clear()

    # -- inspection -----------------------------------------------------------------------
    @property
    def refund_calls(self) -> int:
        """How many times :meth:`refund` was called (retries included)."""
        return self.calls["refund"]

    def trade(self, out_trade_no: str) -> FakeTrade:
        """A snapshot of the trade; :class:`FakeGatewayError` if there is none."""
        with self._lock:
            t = self._get_trade(out_trade_no)
            return FakeTrade(
                t.out_trade_no,
                t.merchant_id,
                t.amount,
                t.status,
                t.trade_no,
                t.method,
                t.subject,
                t.notify_url,
                t.paid_amount,
                t.refunded(self._refunds),
                t.paid_at,
            )

    def trades(self) -> list[FakeTrade]:
        """Snapshots of every trade, in creation order."""
        with self._lock:
            return [self.trade(no) for no in self._trades]

    def refund_record(self, out_refund_no: str) -> FakeRefund:
        """A snapshot of the refund; :class:`FakeGatewayError` if there is none."""
        with self._lock:
            try:
                return self._refunds[out_refund_no].snapshot()
            except KeyError:
                raise FakeGatewayError(f"no refund {out_refund_no!r}") from None

    def refunds(self) -> list[FakeRefund]:
        """Snapshots of every refund, in order."""
        with self._lock:
            return [r.snapshot() for r in self._refunds.values()]

    # -- the channel side -----------------------------------------------------------------
    def create_checkout(
        self, request: CheckoutRequest, *, merchant_id: str = DEFAULT_MERCHANT_ID
    ) -> Checkout:
        """Register the trade (status ``WAIT``) and return what the payer sees: for ``qr``,
        ``Checkout(kind="qr", content="fakepay://pay/OUT_TRADE_NO")``; for ``page``, a
        redirect. Creating the same ``out_trade_no`` again with the same amount returns the
        same checkout; with another amount it fails (``DUPLICATE_OUT_TRADE_NO``)."""
        with self._lock:
            self.calls["create"] += 1
            fault = self._take_fault("create")
            if fault is not None and not self._applies(fault):
                return Checkout(
                    kind=_checkout_kind(request.method),
                    outcome=fault.outcome,
                    message=_fault_message(fault),
                )
            checkout = self._create(request, merchant_id)
            if fault is not None:
                return Checkout(
                    kind=checkout.kind, outcome=Outcome.UNKNOWN, message=_fault_message(fault)
                )
            return checkout

    def _create(self, request: CheckoutRequest, merchant_id: str) -> Checkout:
        kind = _checkout_kind(request.method)
        no = request.out_trade_no
        existing = self._trades.get(no)
        if existing is not None:
            if existing.amount != request.amount or existing.merchant_id != merchant_id:
                return Checkout(
                    kind=kind,
                    outcome=Outcome.FAILED,
                    message=f"DUPLICATE_OUT_TRADE_NO: {no} exists with another amount",
                )
            if existing.status is TradeStatus.CLOSED:
                return Checkout(kind=kind, outcome=Outcome.FAILED, message="TRADE_CLOSED")
            trade = existing
        else:
            trade = _Trade(
                out_trade_no=no,
                merchant_id=merchant_id,
                amount=request.amount,
                trade_no=f"FAKE{next(self._ids):012d}",
                method=request.method,
                subject=request.subject,
                notify_url=request.notify_url,
            )
            self._trades[no] = trade
        quoted = urllib.parse.quote(no, safe="")
        if kind == "redirect":
            return Checkout(
                kind="redirect",
                url=f"https://fakepay.invalid/pay/{quoted}",
                channel_reference=trade.trade_no,
            )
        return Checkout(
            kind="qr", content=f"fakepay://pay/{quoted}", channel_reference=trade.trade_no
        )

    def query(self, out_trade_no: str, *, merchant_id: str = DEFAULT_MERCHANT_ID) -> PaymentQuery:
        """SUCCEEDED with a :class:`~ordercore.channels.PaymentEvent` when paid, PENDING while
        waiting (or when the trade does not exist: never scanned), FAILED when closed or
        failed."""
        with self._lock:
            self.calls["query"] += 1
            fault = self._take_fault("query")
            if fault is not None:
                return PaymentQuery(fault.outcome, message=_fault_message(fault))
            trade = self._trades.get(out_trade_no)
            if trade is None or trade.merchant_id != merchant_id:
                return PaymentQuery(Outcome.PENDING, message="TRADE_NOT_EXIST")
            if trade.status is TradeStatus.PAID:
                event = PaymentEvent(
                    out_trade_no=trade.out_trade_no,
                    paid=True,
                    amount=trade.paid_amount,
                    channel_trade_no=trade.trade_no,
                    status=str(trade.status),
                    merchant_id=trade.merchant_id,
                    occurred_at=trade.paid_at,
                )
                return PaymentQuery(Outcome.SUCCEEDED, event=event)
            if trade.status is TradeStatus.WAIT:
                return PaymentQuery(Outcome.PENDING, message="WAIT")
            return PaymentQuery(Outcome.FAILED, message=str(trade.status))

    def refund(
        self, request: RefundRequest, *, merchant_id: str = DEFAULT_MERCHANT_ID
    ) -> RefundResult:
        """Refund once per ``out_refund_no``: a retry with the same number and amount returns
        the first answer and refunds nothing more (:attr:`refund_calls` counts the calls,
        :attr:`refunds_made` the refunds). Refusals: ``TRADE_NOT_EXIST``, ``TRADE_NOT_PAID``,
        ``CURRENCY_MISMATCH``, ``INVALID_AMOUNT``, ``TOTAL_MISMATCH`` (``request.total`` is
        not the trade's amount), ``REFUND_AMOUNT_EXCEEDED``, ``REFUND_NO_REUSED`` (same number,
        another refund)."""
        with self._lock:
            self.calls["refund"] += 1
            fault = self._take_fault("refund")
            if fault is not None and not self._applies(fault):
                return _fault_refund(fault)
            result = self._refund(request, merchant_id)
            if fault is not None:
                return _fault_refund(fault)
            return result

    def _refund(self, request: RefundRequest, merchant_id: str) -> RefundResult:
        existing = self._refunds.get(request.out_refund_no)
        if existing is not None:
            if (
                existing.out_trade_no != request.out_trade_no
                or existing.amount != request.amount
                or existing.merchant_id != merchant_id
            ):
                return RefundResult(
                    Outcome.FAILED,
                    code="REFUND_NO_REUSED",
                    message=f"{request.out_refund_no} was used for another refund",
                )
            return existing.result()
        trade = self._trades.get(request.out_trade_no)
        if trade is None or trade.merchant_id != merchant_id:
            return RefundResult(Outcome.FAILED, code="TRADE_NOT_EXIST", message="no such trade")
        if trade.status is not TradeStatus.PAID or trade.paid_amount is None:
            return RefundResult(Outcome.FAILED, code="TRADE_NOT_PAID", message=str(trade.status))
        paid = trade.paid_amount
        if request.amount.currency != paid.currency or request.total.currency != paid.currency:
            return RefundResult(
                Outcome.FAILED, code="CURRENCY_MISMATCH", message=f"the trade is in {paid.currency}"
            )
        if not request.amount.is_positive():
            return RefundResult(Outcome.FAILED, code="INVALID_AMOUNT", message="amount <= 0")
        if request.total != trade.amount:
            return RefundResult(
                Outcome.FAILED,
                code="TOTAL_MISMATCH",
                message=f"total {request.total} is not the trade's {trade.amount}",
            )
        if trade.refunded(self._refunds) + request.amount > paid:
            return RefundResult(
                Outcome.FAILED,
                code="REFUND_AMOUNT_EXCEEDED",
                message=f"refunds would exceed the paid {paid}",
            )
        outcome = Outcome.PENDING if self.refund_mode == "async" else Outcome.SUCCEEDED
        refund = _Refund(
            out_refund_no=request.out_refund_no,
            out_trade_no=request.out_trade_no,
            merchant_id=merchant_id,
            amount=request.amount,
            refund_no=f"FAKER{next(self._ids):012d}",
            outcome=outcome,
        )
        self._refunds[request.out_refund_no] = refund
        self.refunds_made += 1
        return refund.result()

    def query_refund(
        self, request: RefundRequest, *, merchant_id: str = DEFAULT_MERCHANT_ID
    ) -> RefundResult:
        """The refund's outcome, or FAILED ``REFUND_NOT_EXIST`` (retryable: the refund was
        never made, retrying with the same ``out_refund_no`` is safe)."""
        with self._lock:
            self.calls["query_refund"] += 1
            fault = self._take_fault("query_refund")
            if fault is not None:
                # A query that fails is no answer about the refund (the channel contract).
                answer = _fault_refund(fault)
                return attrs.evolve(answer, outcome=Outcome.UNKNOWN)
            refund = self._refunds.get(request.out_refund_no)
            if refund is None or refund.merchant_id != merchant_id:
                return RefundResult(
                    Outcome.FAILED,
                    code="REFUND_NOT_EXIST",
                    message=f"no refund {request.out_refund_no}",
                    retryable=True,
                )
            return refund.result()

    def close(self, out_trade_no: str, *, merchant_id: str = DEFAULT_MERCHANT_ID) -> Outcome:
        """Close an unpaid trade: SUCCEEDED (also for an unknown or already closed trade),
        FAILED for a paid one."""
        with self._lock:
            self.calls["close"] += 1
            fault = self._take_fault("close")
            if fault is not None and not self._applies(fault):
                return fault.outcome
            outcome = self._close(out_trade_no, merchant_id)
            return Outcome.UNKNOWN if fault is not None else outcome

    def _close(self, out_trade_no: str, merchant_id: str) -> Outcome:
        trade = self._trades.get(out_trade_no)
        if trade is None or trade.merchant_id != merchant_id:
            return Outcome.SUCCEEDED
        if trade.status is TradeStatus.PAID:
            return Outcome.FAILED
        trade.status = TradeStatus.CLOSED
        return Outcome.SUCCEEDED

    # -- the test side: the payer and the platform's notifications ------------------------
    def pay(
        self,
        out_trade_no: str,
        amount: Money | str | None = None,
        trade_no: str | None = None,
        *,
        tamper: bool = False,
        force: bool = False,
    ) -> SignedNotification:
        """The payer pays: the trade becomes ``PAID`` and the signed ``payment.succeeded``
        notification is returned (and appended to :attr:`sent`), ready for
        :meth:`deliver` or ``channel.parse_notification(n.to_notification())``.

        :param amount: what was paid, if not the trade's amount (an amount mismatch; a
            :class:`~ordercore.Money` of another currency for a currency mismatch).
        :param trade_no: the platform's trade number, if not the one assigned at creation.
        :param tamper: change the amount in the body *after* signing (an attacker).
        :param force: pay a closed or already paid trade (a late payment racing a close, a
            second payment); otherwise that raises :class:`FakeGatewayError`.
        """
        with self._lock:
            self.calls["pay"] += 1
            trade = self._get_trade(out_trade_no)
            if trade.status in (TradeStatus.CLOSED, TradeStatus.PAID) and not force:
                raise FakeGatewayError(
                    f"trade {out_trade_no} is {trade.status}: pass force=True to pay it anyway, "
                    "or build the notification with notification_for()"
                )
            paid = _money(amount, trade.amount)
            trade.status = TradeStatus.PAID
            trade.paid_amount = paid
            trade.paid_at = self.clock()
            if trade_no is not None:
                trade.trade_no = trade_no
            return self._notification(trade, "payment.succeeded", paid, tamper=tamper)

    def fail_payment(self, out_trade_no: str) -> SignedNotification:
        """The payer's payment fails: status ``FAILED`` and a signed ``payment.failed``
        notification."""
        with self._lock:
            self.calls["fail_payment"] += 1
            trade = self._get_trade(out_trade_no)
            if trade.status is not TradeStatus.WAIT:
                raise FakeGatewayError(f"trade {out_trade_no} is {trade.status}, not WAIT")
            trade.status = TradeStatus.FAILED
            return self._notification(trade, "payment.failed", trade.amount)

    def settle_refund(self, out_refund_no: str, *, succeeded: bool = True) -> SignedNotification:
        """Complete a PENDING refund (``refund_mode="async"``) and return its signed
        ``refund.succeeded`` / ``refund.failed`` notification."""
        with self._lock:
            self.calls["settle_refund"] += 1
            try:
                refund = self._refunds[out_refund_no]
            except KeyError:
                raise FakeGatewayError(f"no refund {out_refund_no!r}") from None
            if refund.outcome is not Outcome.PENDING:
                raise FakeGatewayError(f"refund {out_refund_no} is {refund.outcome}, not pending")
            refund.outcome = Outcome.SUCCEEDED if succeeded else Outcome.FAILED
            trade = self._get_trade(refund.out_trade_no)
            kind = "refund.succeeded" if succeeded else "refund.failed"
            return self._notification(trade, kind, refund.amount, refund=refund)

    def notification_for(
        self,
        out_trade_no: str,
        event_type: str = "payment.succeeded",
        *,
        amount: Money | str | None = None,
        trade_no: str | None = None,
        merchant_id: str | None = None,
        out_refund_no: str | None = None,
        refund_no: str | None = None,
        event_id: str | None = None,
        timestamp: int | None = None,
        secret: bytes | None = None,
        tamper: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> SignedNotification:
        """Build a signed notification without changing any state: duplicates (pass the
        ``event_id`` again, or re-deliver a :class:`SignedNotification`), out-of-order events
        (``payment.failed`` after ``payment.succeeded``), stale ones (an old ``timestamp``),
        tampered ones (``tamper``), another merchant's (``merchant_id``), refund events
        (``event_type="refund.succeeded"`` with ``out_refund_no``), or any body at all
        (``extra`` overrides body fields after they are built — ``{"amount": 30.0}`` for a
        float). Values not given come from the trade (and the refund) when they exist.

        :param secret: sign with this secret instead of the merchant's (a bad signature).
        """
        with self._lock:
            self.calls["notification"] += 1
            trade = self._trades.get(out_trade_no)
            refund = self._refunds.get(out_refund_no) if out_refund_no is not None else None
            fallback = refund.amount if refund is not None else None
            if fallback is None and trade is not None:
                fallback = trade.paid_amount or trade.amount
            if amount is None and fallback is None:
                raise FakeGatewayError(f"no trade {out_trade_no!r}: pass amount=")
            money = _money(amount, fallback)
            merchant = merchant_id or (trade.merchant_id if trade else DEFAULT_MERCHANT_ID)
            body: dict[str, Any] = {
                "id": event_id or self._event_id(),
                "type": event_type,
                "merchant_id": merchant,
                "out_trade_no": out_trade_no,
                "trade_no": trade_no or (trade.trade_no if trade else "FAKE000000000000"),
                "amount": _amount_text(money),
                "currency": money.currency.code,
            }
            if event_type.startswith("refund.") or out_refund_no is not None:
                body["out_refund_no"] = out_refund_no or "R-unknown"
                body["refund_no"] = refund_no or (refund.refund_no if refund else "FAKER0")
            if extra:
                body.update(extra)
            key = secret if secret is not None else self._secret_for(merchant, trade)
            return self._sign(body, key, timestamp=timestamp, tamper=tamper)

    def deliver(
        self, url: str, headers: Mapping[str, str], body: bytes, *, timeout: float = 10.0
    ) -> tuple[int, bytes]:
        """POST the notification to ``url`` over real HTTP (urllib) and return the answer's
        status and body — an HTTP error status is returned, not raised (a connection error
        raises :class:`urllib.error.URLError`). Use
        ``gateway.deliver(url, *signed)`` with a :class:`SignedNotification`."""
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"deliver needs an http(s) URL, not {url!r}")
        with self._lock:
            self.calls["deliver"] += 1
        all_headers = {"content-type": "application/json", "user-agent": "fakepay-notify/1"}
        all_headers.update(headers)
        request = urllib.request.Request(url, data=body, headers=all_headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), bytes(exc.read())

    # -- internals ------------------------------------------------------------------------
    def _get_trade(self, out_trade_no: str) -> _Trade:
        try:
            return self._trades[out_trade_no]
        except KeyError:
            raise FakeGatewayError(f"no trade {out_trade_no!r} on the fake platform") from None

    def _take_fault(self, op: str) -> _Fault | None:
        queue = self._faults[op]
        if not queue:
            return None
        fault = queue.popleft()
        if fault.error is not None:
            raise fault.error
        return fault

    @staticmethod
    def _applies(fault: _Fault) -> bool:
        """Whether the platform does the work despite the fault (an answer lost after)."""
        return fault.outcome is Outcome.UNKNOWN and fault.lose_answer_after_apply

    def _event_id(self) -> str:
        return f"evt_{next(self._ids):012d}"

    def _secret_for(self, merchant_id: str, trade: _Trade | None) -> bytes:
        secret = self._merchants.get(merchant_id)
        if secret is None and trade is not None:
            secret = self._merchants.get(trade.merchant_id)
        if secret is None:
            raise FakeGatewayError(
                f"merchant {merchant_id!r} is not registered: create a FakeChannel on this "
                "gateway, call register_merchant(), or pass secret="
            )
        return secret.reveal()

    def _notification(
        self,
        trade: _Trade,
        event_type: str,
        amount: Money,
        *,
        refund: _Refund | None = None,
        tamper: bool = False,
    ) -> SignedNotification:
        body: dict[str, Any] = {
            "id": self._event_id(),
            "type": event_type,
            "merchant_id": trade.merchant_id,
            "out_trade_no": trade.out_trade_no,
            "trade_no": trade.trade_no,
            "amount": _amount_text(amount),
            "currency": amount.currency.code,
        }
        if refund is not None:
            body["out_refund_no"] = refund.out_refund_no
            body["refund_no"] = refund.refund_no
        return self._sign(body, self._secret_for(trade.merchant_id, trade), tamper=tamper)

    def _sign(
        self,
        body: Mapping[str, Any],
        secret: bytes,
        *,
        timestamp: int | None = None,
        tamper: bool = False,
    ) -> SignedNotification:
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        ts = str(int(self.clock().timestamp()) if timestamp is None else timestamp)
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: fake_signature(secret, ts, raw),
            TIMESTAMP_HEADER: ts,
        }
        if tamper:
            raw = _tampered(body)
        signed = SignedNotification(headers, raw)
        self.sent.append(signed)
        return signed


def _tampered(body: Mapping[str, Any]) -> bytes:
    """The body with a 9 put in front of its amount ("30.00" -> "930.00"), signature kept."""
    changed = dict(body)
    changed["amount"] = f"9{changed.get('amount', '')}"
    return json.dumps(changed, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _money(amount: Money | str | None, default: Money | None) -> Money:
    if isinstance(amount, Money):
        return amount
    if default is None:
        raise FakeGatewayError("an amount is needed")
    if amount is None:
        return default
    return Money.of(amount, default.currency)


def _checkout_kind(method: str) -> str:
    return "redirect" if method == "page" else "qr"


def _fault_message(fault: _Fault) -> str:
    if fault.message:
        return fault.message
    if fault.outcome is Outcome.UNKNOWN:
        return "no answer from the platform (simulated timeout)"
    return f"{fault.code or 'SYSTEM_ERROR'} (simulated failure)"


def _fault_refund(fault: _Fault) -> RefundResult:
    if fault.outcome is Outcome.UNKNOWN:
        return RefundResult(Outcome.UNKNOWN, message=_fault_message(fault), retryable=True)
    return RefundResult(
        fault.outcome,
        code=fault.code or "SYSTEM_ERROR",
        message=_fault_message(fault),
        retryable=fault.retryable,
    )


# -- the channel ---------------------------------------------------------------------------


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


# -- builders ------------------------------------------------------------------------------


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


# -- checks for any channel ----------------------------------------------------------------

_DEEP = b"[" * 100_000 + b"]" * 100_000

#: ``(headers, body)`` pairs no channel may accept or crash on.
GARBAGE_NOTIFICATIONS: Final[tuple[tuple[dict[str, str], bytes], ...]] = (
    ({}, b""),
    ({}, b"{}"),
    ({"content-type": "application/json"}, b"not json"),
    ({"content-type": "application/json"}, b"\xff\xfe\x00garbage"),
    ({"content-type": "application/json"}, b'{"amount": 30.0}'),
    ({"content-type": "application/json"}, b'{"amount": NaN, "id": 1e999}'),
    ({"content-type": "application/json"}, b"[1, 2, 3]"),
    ({"content-type": "application/json"}, _DEEP),
    ({"content-type": "application/x-www-form-urlencoded"}, b"a=1&sign=xyz&sign_type=RSA2"),
    ({"content-type": "application/x-www-form-urlencoded"}, b"%%%&&&==="),
    ({SIGNATURE_HEADER: "0" * 64, TIMESTAMP_HEADER: "1"}, b'{"type": "payment.succeeded"}'),
    ({SIGNATURE_HEADER: "zz", TIMESTAMP_HEADER: "-1"}, b"\x00" * 64),
    ({"wechatpay-signature": "AAAA", "wechatpay-timestamp": "x", "wechatpay-nonce": ""}, b"{"),
    ({"btcpay-sig": "sha256=00", "x-nowpayments-sig": "00", "x-cc-webhook-signature": ""}, b"{}"),
)


def assert_channel_contract(
    channel: PaymentChannel,
    samples: Sequence[tuple[Mapping[str, str], bytes]] = GARBAGE_NOTIFICATIONS,
) -> None:
    """Check what every channel must do, whatever its platform; raise ``AssertionError``
    otherwise. It checks the declarations (name, methods, currencies, capabilities), that
    :meth:`~ordercore.channels.PaymentChannel.acknowledge` builds an
    :class:`~ordercore.channels.HttpReply` both ways, and that each garbage notification in
    ``samples`` comes back as a rejection (no events) rather than an exception."""
    cls = type(channel)
    problems: list[str] = []
    if not isinstance(getattr(cls, "name", None), str) or not re.fullmatch(
        r"[a-z][a-z0-9_]*", cls.name
    ):
        problems.append("name must be a lower-case identifier (the [channels.NAME] table)")
    for attr in ("methods", "currencies"):
        value = getattr(cls, attr, None)
        if not isinstance(value, frozenset) or not value:
            problems.append(f"{attr} must be a non-empty frozenset of str")
        elif not all(isinstance(v, str) for v in value):
            problems.append(f"{attr} must hold strings only")
    for code in getattr(cls, "currencies", ()) or ():
        try:
            get_currency(code)
        except MoneyError:
            problems.append(f"currency {code!r} is not registered (ordercore.register_currency)")
    if not isinstance(getattr(cls, "capabilities", None), Capabilities):
        problems.append("capabilities must be a Capabilities instance")
    for accepted in (True, False):
        reply: object = channel.acknowledge(accepted, "rejected by the contract check")
        if not isinstance(reply, HttpReply) or not isinstance(reply.body, bytes):
            problems.append(f"acknowledge({accepted}) must return an HttpReply with bytes")
    for index, (headers, body) in enumerate(samples):
        notification = Notification(getattr(cls, "name", "?"), dict(headers), body)
        try:
            result: object = channel.parse_notification(notification)
        except Exception as exc:
            problems.append(f"garbage sample {index} raised {type(exc).__name__}: {exc}"[:300])
            continue
        if not isinstance(result, NotificationResult):
            problems.append(f"garbage sample {index} did not return a NotificationResult")
        elif result.rejection is None or result.events:
            problems.append(f"garbage sample {index} was not rejected: {result!r}"[:300])
    if problems:
        raise AssertionError(
            f"{cls.__name__} breaks the channel contract:\n- " + "\n- ".join(problems)
        )


def garbage_notifications(channel: str = "fake") -> SearchStrategy[Notification]:
    """A hypothesis strategy of random notifications for ``channel``: random header names
    and values (the usual signature headers among them) and random bodies (bytes, text,
    JSON-ish). Needs hypothesis (the ``test`` extra)::

        @given(garbage_notifications("mypay"))
        def test_garbage_is_rejected(notification):
            result = channel.parse_notification(notification)
            assert result.rejection is not None and not result.events
    """
    from hypothesis import strategies as st

    names = st.sampled_from(
        [
            SIGNATURE_HEADER,
            TIMESTAMP_HEADER,
            "content-type",
            "wechatpay-signature",
            "wechatpay-timestamp",
            "wechatpay-nonce",
            "wechatpay-serial",
            "btcpay-sig",
            "x-nowpayments-sig",
            "x-cc-webhook-signature",
        ]
    ) | st.text(max_size=30)
    values = st.text(max_size=80) | st.sampled_from(["", "0" * 64, "sha256=", "1700000000"])
    json_ish = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
        ),
        max_leaves=12,
    ).map(lambda value: json.dumps(value).encode("utf-8"))
    bodies = st.binary(max_size=300) | st.text(max_size=200).map(str.encode) | json_ish
    return st.builds(
        Notification,
        channel=st.just(channel),
        headers=st.dictionaries(names, values, max_size=6),
        body=bodies,
    )


# -- pytest fixtures (only when pytest is importable) --------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is in the test extra only
    pass
else:

    @pytest.fixture
    def fake_gateway() -> FakeGateway:
        """A fresh :class:`FakeGateway` (wall clock, synchronous refunds)."""
        return FakeGateway()

    @pytest.fixture
    def fake_channel(fake_gateway: FakeGateway) -> FakeChannel:
        """A :class:`FakeChannel` on ``fake_gateway``, with :data:`DEFAULT_SECRET`."""
        channel, _ = make_fake_channel(gateway=fake_gateway)
        return channel
