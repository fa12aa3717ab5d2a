"""The fake payment platform: :class:`FakeGateway`, in memory and thread-safe."""

from __future__ import annotations

import itertools
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Final, Literal

import attrs

from ordercore._money import Money
from ordercore.channels import (
    Checkout,
    CheckoutRequest,
    Outcome,
    PaymentEvent,
    PaymentQuery,
    RefundRequest,
    RefundResult,
    Secret,
)
from ordercore.testing._protocol import (
    DEFAULT_MERCHANT_ID,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    _amount_text,
    _utcnow,
    fake_signature,
)
from ordercore.testing._records import (
    FakeGatewayError,
    FakeRefund,
    FakeTrade,
    SignedNotification,
    TradeStatus,
    _checkout_kind,
    _Fault,
    _fault_message,
    _fault_refund,
    _money,
    _Refund,
    _tampered,
    _Trade,
)

_OPERATIONS: Final = frozenset({"create", "query", "refund", "query_refund", "close"})



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
