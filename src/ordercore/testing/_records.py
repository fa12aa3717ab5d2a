"""What the fake platform keeps (trades, refunds, pending faults) and the signed
notifications it sends, with the small helpers :class:`FakeGateway` builds its answers
with."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import attrs
from attrs import frozen

from ordercore._money import Money
from ordercore.channels import Notification, Outcome, RefundResult

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


# -- helpers of the platform's answers -------------------------------------------------


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
