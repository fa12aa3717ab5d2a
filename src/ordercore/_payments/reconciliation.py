"""Reconciliation with the platforms: queries and closes, each recorded as an operation
(committed) before the call, with no lock held while the platform answers.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ordercore._actor import Actor
from ordercore._state import CancelReason, OrderStatus, PaymentEvent, PaymentStatus
from ordercore.channels import (
    Outcome,
    PaymentChannel,
    PaymentQuery,
)

from .domain import (
    OPEN_ATTEMPT_STATES,
    PaymentAttempt,
    backoff,
)

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

from .applying import ApplyResult, PaymentCore

__all__ = ["Reconciliation"]


def _applicable(answer: PaymentQuery) -> bool:
    """A query answer the payment engine applies: a payment, or coins that arrived (an
    under- or late payment a crypto gateway reports, which becomes an anomaly)."""
    event = answer.event
    if event is None:
        return False
    coins = event.coin_amount
    return answer.outcome is Outcome.SUCCEEDED or (coins is not None and coins.is_positive())


class Reconciliation(PaymentCore):
    """Asking a channel where an attempt stands, and closing attempts that are given up."""

    # -- reconciliation --------------------------------------------------------------------
    def reconcile(self, out_trade_no: str, *, source: str = "query") -> ApplyResult:
        """Ask the channel about one attempt and apply what it says (no lock held while
        asking). A lost answer keeps the attempt as it is and schedules the next check. A
        given-up attempt (cancelled or expired) is asked once more — money that arrived is
        applied (as an anomaly) — and then closed at the platform."""
        attempt = self.attempt(out_trade_no)
        chan = self.channel(attempt.channel)
        if attempt.status in (PaymentStatus.CANCELED, PaymentStatus.EXPIRED):
            return self._close_given_up(attempt, chan)
        answer = self._query(attempt, chan) if chan.capabilities.query else None

        def work(uow: UnitOfWork, now: datetime) -> ApplyResult:
            outcome = answer.outcome if answer is not None else Outcome.UNKNOWN
            if answer is not None and _applicable(answer):
                assert answer.event is not None
                return self._apply_payment(
                    uow, answer.event, channel=chan.name, source=source, inbox_id=None, now=now
                )
            order = uow.orders.get(attempt.order_number, lock=True)
            current = uow.payments.attempt(out_trade_no, lock=True)
            result = ApplyResult("unchanged", order.number, out_trade_no, outcome.value)
            if (
                answer is not None
                and answer.outcome is Outcome.FAILED
                and current.can(PaymentEvent.FAIL)
            ):
                current.apply(PaymentEvent.FAIL, Actor.channel(chan.name), now, answer.message)
                result = ApplyResult("applied", order.number, out_trade_no, "failed at the channel")
            elif (
                answer is not None
                and answer.outcome is Outcome.PENDING
                and current.status is PaymentStatus.UNKNOWN
            ):
                current.apply(PaymentEvent.RESUME, Actor.channel(chan.name), now, "still waiting")
            if current.status in OPEN_ATTEMPT_STATES:
                current.next_check_at = now + backoff(current.check_count + 1)
                current.check_count += 1
            uow.save_attempt(current, now)
            return result

        return self._run(work)

    def _begin_operation(self, kind: str, attempt: PaymentAttempt) -> int:
        """Record (and commit) an outgoing platform call before it is made."""
        return self._run(
            lambda uow, now: uow.payments.start_operation(
                kind=kind,
                idempotency_key=f"{kind}:{attempt.out_trade_no}:{secrets.token_hex(6)}",
                attempt_id=attempt.id,
                now=now,
            )
        )

    def _end_operation(self, op_id: int, outcome: Outcome, response: dict[str, Any]) -> None:
        self._run(
            lambda uow, now: uow.payments.finish_operation(
                op_id, state=outcome.value, now=now, response=response
            )
        )

    def _call_close(self, attempt: PaymentAttempt, chan: PaymentChannel) -> Outcome:
        """Close ``attempt`` at the platform, recorded as an operation (no lock held)."""
        op_id = self._begin_operation("close", attempt)
        error = None
        try:
            outcome = chan.close(attempt.out_trade_no)
        except Exception as exc:  # no answer: the trade may still be payable
            outcome, error = Outcome.UNKNOWN, repr(exc)[:500]
        self._end_operation(op_id, outcome, {"error": error})
        return outcome

    def _close_given_up(self, attempt: PaymentAttempt, chan: PaymentChannel) -> ApplyResult:
        if chan.capabilities.query:
            answer = self._query(attempt, chan)
            if answer is not None and _applicable(answer):
                event = answer.event
                assert event is not None
                return self._run(
                    lambda uow, now: self._apply_payment(
                        uow, event, channel=chan.name, source="query", inbox_id=None, now=now
                    )
                )
        outcome = self._call_close(attempt, chan) if chan.capabilities.close else Outcome.SUCCEEDED

        def record(uow: UnitOfWork, now: datetime) -> ApplyResult:
            current = uow.payments.attempt(attempt.out_trade_no, lock=True)
            if current.status not in (PaymentStatus.CANCELED, PaymentStatus.EXPIRED):
                return ApplyResult("unchanged", current.order_number, current.out_trade_no)
            if outcome is Outcome.SUCCEEDED:
                current.next_check_at = None
            else:
                current.next_check_at = now + backoff(current.check_count + 1)
                current.check_count += 1
            uow.save_attempt(current, now)
            return ApplyResult(
                "closed" if outcome is Outcome.SUCCEEDED else "unchanged",
                current.order_number,
                current.out_trade_no,
                f"close: {outcome.value}",
            )

        return self._run(record)

    def _query(self, attempt: PaymentAttempt, chan: PaymentChannel) -> PaymentQuery | None:
        """Ask the platform about ``attempt``, recorded as an operation; None = no answer."""
        op_id = self._begin_operation("query", attempt)
        error = None
        try:
            reference = (attempt.checkout or {}).get("reference")
            answer: PaymentQuery | None = chan.query_checkout(
                attempt.out_trade_no, None if reference is None else str(reference)
            )
        except Exception as exc:  # a transport error is an unknown outcome, never a failure
            answer, error = None, repr(exc)[:500]
        outcome = Outcome.UNKNOWN if answer is None else answer.outcome
        self._end_operation(
            op_id, outcome, {"message": error or (answer.message if answer else None)}
        )
        return answer

    def close_and_cancel(self, number: str, *, now: datetime | None = None) -> str:
        """The timeout path for one pending order past its deadline: query every open
        attempt first — if one was paid, settle instead — else close them at the channel and
        cancel the order with reason ``timeout``. Returns ``settled``, ``canceled`` or
        ``skipped`` (e.g. a transfer proof is waiting for review)."""
        attempts = self.attempts(number)
        if any(a.status is PaymentStatus.AWAITING_REVIEW for a in attempts):
            return "skipped"
        for attempt in attempts:
            if attempt.status not in OPEN_ATTEMPT_STATES or attempt.channel == "balance":
                continue
            chan = self.channel(attempt.channel)
            if chan.capabilities.query:
                result = self.reconcile(attempt.out_trade_no, source="timeout query")
                if self._ctx.orders.get(number).status is not OrderStatus.PENDING:
                    return "settled"
                if result.reason == Outcome.UNKNOWN.value:
                    return "skipped"  # no answer: only a later query may decide (guarantee 5)
            if chan.capabilities.close and self._call_close(attempt, chan) is not Outcome.SUCCEEDED:
                # Still payable, or paid meanwhile: never cancel what may be paid.
                paid = self._ctx.orders.get(number).status is not OrderStatus.PENDING
                return "settled" if paid else "skipped"

        def work(uow: UnitOfWork, at: datetime) -> str:
            order = uow.orders.get(number, lock=True)
            if order.status is not OrderStatus.PENDING:
                return "settled" if order.status is not OrderStatus.CANCELED else "canceled"
            moment = now or at
            if order.payment_deadline is not None and order.payment_deadline > moment:
                return "skipped"
            assert order.id is not None
            for attempt in uow.payments.attempts_for(order.id):
                if attempt.status in OPEN_ATTEMPT_STATES and attempt.can(PaymentEvent.EXPIRE):
                    attempt.apply(
                        PaymentEvent.EXPIRE, Actor.system("timeout"), at, "order timed out"
                    )
                    uow.save_attempt(attempt, at)
            self._ctx.orders._cancel_in(
                uow, order, CancelReason.TIMEOUT, Actor.system("timeout"), at, None
            )
            return "canceled"

        return self._run(work)
