"""Manual review of payments that wait for an operator (bank transfer with proof)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ordercore._actor import Actor
from ordercore._errors import ChannelError, InvalidField
from ordercore._permissions import Permission
from ordercore._state import CancelReason, OrderStatus, PaymentEvent, PaymentStatus

from .domain import (
    PaymentAttempt,
)

if TYPE_CHECKING:
    from ordercore._orders.domain import Order
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

from .applying import PaymentCore, paid_key

__all__ = ["ProofReview"]

_P = Permission


class ProofReview(PaymentCore):
    """Submitting proof of a payment, and an operator's approval or rejection."""

    def _lock_review(
        self, uow: UnitOfWork, out_trade_no: str, actor: Actor
    ) -> tuple[Order, PaymentAttempt]:
        """Lock an attempt an operator reviews; it must be awaiting review."""
        order, attempt = self._lock_attempt(uow, out_trade_no, actor, _P.PAYMENTS_REVIEW)
        if attempt.status is not PaymentStatus.AWAITING_REVIEW:
            raise InvalidField(
                f"attempt {out_trade_no} is {attempt.status.value}, not awaiting review",
                field="attempt",
            )
        return order, attempt

    def submit_proof(
        self, out_trade_no: str, *, reference: str, actor: Actor, file: str | None = None
    ) -> PaymentAttempt:
        """Attach proof of a transfer; the attempt waits for an operator's review."""
        if not reference.strip():
            raise InvalidField("a transfer proof needs a reference", field="reference")

        def work(uow: UnitOfWork, now: datetime) -> PaymentAttempt:
            order, attempt = self._lock_attempt(
                uow, out_trade_no, actor, _P.ORDERS_VIEW, owner_only=True
            )
            if attempt.channel != "bank_transfer":
                raise ChannelError(
                    f"attempt {out_trade_no} is not a bank transfer", channel=attempt.channel
                )
            attempt.proof_reference = reference
            attempt.proof_file = file
            attempt.apply(PaymentEvent.SUBMIT_PROOF, actor, now, f"proof {reference}")
            attempt.next_check_at = None
            uow.save_attempt(attempt, now)
            uow.payments.add_outbox(
                "payment.awaiting_review",
                order.number,
                {"out_trade_no": out_trade_no, "reference": reference},
                now,
            )
            return attempt

        return self._run(work)

    def approve(
        self, out_trade_no: str, *, actor: Actor, note: str | None = None
    ) -> PaymentAttempt:
        """An operator confirms the transfer arrived: the order is paid (and activated)."""

        def work(uow: UnitOfWork, now: datetime) -> PaymentAttempt:
            order, attempt = self._lock_review(uow, out_trade_no, actor)
            if order.status is not OrderStatus.PENDING:
                raise InvalidField(
                    f"order {order.number} is {order.status.value}; approving would take a "
                    "second payment — reject it and refund the transfer instead",
                    field="attempt",
                )
            attempt.received = attempt.amount
            attempt.apply(PaymentEvent.SUCCEED, actor, now, note or "transfer confirmed")
            uow.save_attempt(attempt, now)
            uow.payments.claim_event(
                paid_key(attempt),
                attempt_id=attempt.id,
                inbox_id=None,
                now=now,
            )
            self._order_paid(uow, order, attempt, now)
            return attempt

        return self._run(work)

    def reject(self, out_trade_no: str, *, actor: Actor, reason: str) -> PaymentAttempt:
        """An operator refuses the proof: the attempt fails and the order is cancelled with
        reason ``rejected`` (stock, coupon, balance and points go back)."""
        if not reason or not reason.strip():
            raise InvalidField("a rejection needs a reason", field="reason")

        def work(uow: UnitOfWork, now: datetime) -> PaymentAttempt:
            order, attempt = self._lock_review(uow, out_trade_no, actor)
            attempt.failure_reason = reason
            attempt.apply(PaymentEvent.FAIL, actor, now, reason)
            uow.save_attempt(attempt, now)
            if order.status is OrderStatus.PENDING:
                self._ctx.orders._cancel_in(uow, order, CancelReason.REJECTED, actor, now, reason)
            uow.payments.add_outbox(
                "payment.rejected",
                order.number,
                {"out_trade_no": out_trade_no, "reason": reason},
                now,
            )
            return attempt

        return self._run(work)
