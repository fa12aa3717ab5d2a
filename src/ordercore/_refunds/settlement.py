"""Settling refunds: the call to the channel (recorded as an operation first, no lock held
while the platform answers), its answer, queries of refunds in doubt, refund notifications,
and the one place where a refund succeeds and its order's refunded amount moves.
"""

from __future__ import annotations

import builtins
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ordercore._actor import Actor
from ordercore._anomalies.domain import AnomalyKind
from ordercore._context import Service
from ordercore._errors import (
    ChannelError,
    OrderCoreError,
)
from ordercore._money import Money
from ordercore._orders.domain import Order
from ordercore._orders.wallet_service import return_deductions, wallet_audit
from ordercore._payments.domain import backoff
from ordercore._state import (
    OrderStatus,
    RefundEvent,
    RefundStatus,
)
from ordercore.channels import Outcome, PaymentChannel, RefundRequest, RefundResult

from .domain import (
    OPEN_REFUND_STATES,
    Refund,
    RefundDestination,
    RefundFailure,
)

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork


__all__ = ["CALL_LEASE", "RefundSettlement"]

#: How long a claimed refund check or channel call holds its row before another worker may
#: take it.
CALL_LEASE = timedelta(minutes=5)


class RefundSettlement(Service):
    """What a refund's channel says, applied: success, failure, pending or unknown."""

    @staticmethod
    def _payload(refund: Refund, **extra: Any) -> dict[str, Any]:
        return {
            "refund": refund.refund_no,
            "order": refund.order_number,
            "customer_id": refund.customer_id,
            "amount": str(refund.amount.amount),
            "currency": refund.amount.currency.code,
            "destination": refund.destination.value,
            "status": refund.status.value,
            "reason": refund.reason,
            **extra,
        }

    # -- reading --------------------------------------------------------------------------
    def get(self, refund_no: str) -> Refund:
        return self._read(lambda uow: uow.refunds.get(refund_no))

    # -- paying out through a channel ---------------------------------------------------
    def _request_for(self, refund: Refund) -> tuple[PaymentChannel, RefundRequest]:
        assert refund.out_trade_no is not None
        assert refund.channel is not None
        attempt = self._ctx.payments.attempt(refund.out_trade_no)
        chan = self._ctx.channel(refund.channel)
        return chan, RefundRequest(
            out_trade_no=attempt.out_trade_no,
            out_refund_no=refund.refund_no,
            amount=refund.amount,
            total=attempt.amount,
            reason=refund.reason[:80],
            channel_trade_no=attempt.channel_trade_no,
            notify_url=chan.config.notify_url,
        )

    def _call(self, refund_no: str, op_id: int) -> Refund:
        """Call the channel (no transaction open, nothing locked) and apply its answer."""
        refund = self.get(refund_no)
        try:
            chan, request = self._request_for(refund)
        except (ChannelError, OrderCoreError) as exc:  # unconfigured since approval
            result = RefundResult(Outcome.FAILED, code="not_configured", message=str(exc))
            failure: RefundFailure | None = RefundFailure.CHANNEL_NOT_CONFIGURED
        else:
            failure = None
            try:
                result = chan.refund(request)
            except Exception as exc:  # a transport error: the outcome is unknown
                result = RefundResult(Outcome.UNKNOWN, message=repr(exc)[:500])
        return self._run(
            lambda uow, now: self._apply_result(
                uow, refund_no, result, now, op_id=op_id, source="refund call", failure=failure
            )
        )

    def _classify(self, refund: Refund, result: RefundResult) -> RefundFailure:
        chan_map: dict[str, RefundFailure] = {}
        if refund.channel is not None:
            try:
                chan_map = dict(getattr(self._ctx.channel(refund.channel), "refund_failures", {}))
            except (ChannelError, OrderCoreError):
                return RefundFailure.CHANNEL_NOT_CONFIGURED
        if result.code is not None and result.code in chan_map:
            try:
                return RefundFailure(chan_map[result.code])
            except ValueError:  # a channel's mapping names no checklist item: its code stays
                pass
        return RefundFailure.CHANNEL_ERROR if result.retryable else RefundFailure.CHANNEL_REFUSED

    def _apply_result(
        self,
        uow: UnitOfWork,
        refund_no: str,
        result: RefundResult,
        now: datetime,
        *,
        op_id: int | None,
        source: str,
        failure: RefundFailure | None = None,
        tries: int | None = None,
    ) -> Refund:
        """Apply what the channel said about a refund (a call's answer, a query's or a
        notification's), under the order's then the refund's lock. Only a refund still
        waiting for its outcome changes; a late or repeated answer changes nothing."""
        if op_id is not None:
            uow.payments.finish_operation(
                op_id,
                state=result.outcome.value,
                now=now,
                response={
                    "channel_refund_no": result.channel_refund_no,
                    "code": result.code,
                    "message": result.message,
                },
            )
        found = uow.refunds.get(refund_no)
        order = uow.orders.get(found.order_number, lock=True)
        refund = uow.refunds.get(refund_no, lock=True)
        actor = Actor.channel(refund.channel or "refunds")
        waiting = refund.status in (RefundStatus.PROCESSING, RefundStatus.UNKNOWN)
        if tries is not None and refund.tries != tries and result.outcome is not Outcome.SUCCEEDED:
            # A retry started while the query was out: its answer is about an earlier try.
            result = RefundResult(Outcome.UNKNOWN, message="query overtaken by a retry")
        if result.outcome is Outcome.SUCCEEDED and refund.can(RefundEvent.SUCCEED):
            self._succeed_in(uow, order, refund, actor, now, result.channel_refund_no)
        elif (
            result.outcome is Outcome.FAILED
            and waiting
            and refund.uncertain
            and source == "refund call"
        ):
            # An earlier try's answer was lost, so the money may be out: a refused repeat is
            # no verdict on it. Only a query (or a notification) decides.
            if refund.status is RefundStatus.PROCESSING:
                refund.apply(
                    RefundEvent.LOSE_TRACK,
                    actor,
                    now,
                    f"call refused ({result.code or '-'}: {result.message or '-'}) after an "
                    "earlier lost answer: a query decides",
                )
            refund.next_check_at = now + backoff(0)
            uow.save_refund(refund, now)
        elif result.outcome is Outcome.FAILED and waiting:
            why = failure or self._classify(refund, result)
            refund.uncertain = False  # a verdict: the platform did not pay it out
            refund.fail(why, actor, now, result.message, channel_code=result.code)
            uow.save_refund(refund, now)
            uow.payments.add_outbox(
                "refund.failed",
                order.number,
                self._payload(refund, failure=why.value, retryable=refund.retryable),
                now,
            )
        elif (
            result.outcome is Outcome.UNKNOWN
            and refund.status is RefundStatus.PROCESSING
            and source == "refund call"
        ):
            refund.apply(RefundEvent.LOSE_TRACK, actor, now, f"{source}: {result.message or '-'}")
            refund.next_check_at = now + backoff(0)
            uow.save_refund(refund, now)
        elif waiting:  # pending (or no answer on an unknown refund): ask again later
            refund.next_check_at = now + backoff(refund.check_count)
            refund.check_count += 1
            uow.save_refund(refund, now)
        return refund

    def reconcile(self, refund_no: str) -> Refund:
        """Ask the channel about a refund being paid out or whose outcome is unknown, and
        apply the answer. A platform that does not know the refund (it was never made) makes
        it ``failed`` and retryable: ``retry`` sends it again with the same id."""
        refund = self.get(refund_no)
        if refund.status not in (RefundStatus.PROCESSING, RefundStatus.UNKNOWN):
            return refund
        tries = refund.tries
        try:
            chan, request = self._request_for(refund)
        except (ChannelError, OrderCoreError) as exc:
            result = RefundResult(Outcome.UNKNOWN, message=str(exc))
        else:
            op_id = self._run(
                lambda uow, now: uow.payments.start_operation(
                    kind="refund_query",
                    idempotency_key=f"refund_query:{refund_no}:{secrets.token_hex(8)}",
                    attempt_id=uow.payments.attempt(request.out_trade_no).id,
                    refund_id=refund.id,
                    now=now,
                    request={"out_refund_no": refund_no},
                )
            )
            try:
                result = chan.query_refund(request)
            except Exception as exc:
                result = RefundResult(Outcome.UNKNOWN, message=repr(exc)[:500])
            return self._run(
                lambda uow, now: self._apply_result(
                    uow, refund_no, result, now, op_id=op_id, source="query", tries=tries
                )
            )
        return self._run(
            lambda uow, now: self._apply_result(
                uow, refund_no, result, now, op_id=None, source="query"
            )
        )

    def check_due(self, now: datetime, *, batch: int = 100) -> builtins.list[str]:
        """Reconcile refunds whose check is due (the job runner's refund pass): those left
        ``processing`` past the call's lease and those ``unknown``."""
        due = self._run(
            lambda uow, _now: uow.refunds.claim_checks(now, limit=batch, lease=CALL_LEASE)
        )
        settled = []
        for refund_no in due:
            if self.reconcile(refund_no).status not in OPEN_REFUND_STATES:
                settled.append(refund_no)
        return settled

    # -- what follows a refund ----------------------------------------------------------
    def _succeed_in(
        self,
        uow: UnitOfWork,
        order: Order,
        refund: Refund,
        actor: Actor,
        now: datetime,
        channel_refund_no: str | None,
    ) -> None:
        """The money went back: record it everywhere, in the caller's transaction."""
        assert order.id is not None
        refund.channel_refund_no = channel_refund_no or refund.channel_refund_no
        refund.apply(RefundEvent.SUCCEED, actor, now, f"refund {refund.refund_no}")
        uow.save_refund(refund, now)
        if refund.destination is RefundDestination.BALANCE or refund.channel == "balance":
            entry = uow.wallet.apply(
                customer_id=order.customer_id,
                asset=refund.amount.currency.code,
                delta=refund.amount.to_minor(),
                reason="order.refund",
                actor=actor,
                at=now,
                order_id=order.id,
                idempotency_key=f"refund:{refund.refund_no}",
            )
            uow.record(wallet_audit(entry))
        full = False
        if refund.counts_toward_order and not self._fits(order, refund):
            # It had failed and its amount was refunded again meanwhile: the money went out
            # twice. Recorded as succeeded (it did), kept off the order, surfaced.
            refund.counts_toward_order = False
            uow.save_refund(refund, now)
            self._over_refund(uow, order, refund, now)
        elif refund.counts_toward_order:
            order.record_refund(refund.amount, actor, now, f"refund {refund.refund_no}")
            full = order.status is OrderStatus.REFUNDED
            if full:
                return_deductions(uow, order, actor, now, "refund")
                uow.payments.set_activation(order.id, due_at=None, locked_until=None)
            uow.payments.add_outbox(
                "order.revoke",
                order.number,
                self._payload(
                    refund, full=full, refunded=str(order.amounts.refunded.amount)
                ),
                now,
            )
        uow.payments.add_outbox(
            "refund.succeeded", order.number, self._payload(refund, full=full), now
        )

    @staticmethod
    def _fits(order: Order, refund: Refund) -> bool:
        return (
            order.status in (OrderStatus.PAID, OrderStatus.COMPLETED)
            and order.amounts.refunded + refund.amount <= order.amounts.paid
        )

    @staticmethod
    def _over_refund(uow: UnitOfWork, order: Order, refund: Refund, now: datetime) -> None:
        attempt_id = None
        if refund.out_trade_no is not None:
            attempt_id = uow.payments.attempt(refund.out_trade_no).id
        evidence = {
            "refund": refund.refund_no,
            "amount": str(refund.amount),
            "paid": str(order.amounts.paid),
            "refunded": str(order.amounts.refunded),
            "channel": refund.channel,
        }
        anomaly_id, created = uow.payments.open_anomaly(
            kind=AnomalyKind.OVER_REFUND,
            dedupe_key=f"over_refund:{refund.refund_no}",
            evidence=evidence,
            now=now,
            order_id=order.id,
            attempt_id=attempt_id,
        )
        if created:
            uow.payments.add_outbox(
                "anomaly.opened",
                order.number,
                {"anomaly": anomaly_id, "kind": AnomalyKind.OVER_REFUND.value, **evidence},
                now,
            )

    def apply_notification(
        self,
        uow: UnitOfWork,
        *,
        channel: str,
        out_refund_no: str,
        result: RefundResult,
        amount: Money | None,
        now: datetime,
    ) -> tuple[str, str | None, str | None]:
        """Apply a verified refund notification: ``(status, order_number, reason)`` with
        status ``applied``, ``duplicate``, ``anomaly`` or ``ignored``."""
        found = uow.refunds.find(out_refund_no)
        if found is None or found.channel != channel:
            return "ignored", None, f"refund {out_refund_no} is not ours"
        if amount is not None and amount != found.amount:
            assert found.out_trade_no is not None
            attempt = uow.payments.attempt(found.out_trade_no)
            anomaly_id, created = uow.payments.open_anomaly(
                kind=AnomalyKind.AMOUNT_MISMATCH,
                dedupe_key=f"amount_mismatch:{out_refund_no}:{amount}",
                evidence={
                    "refund": out_refund_no,
                    "expected": str(found.amount),
                    "received": str(amount),
                    "source": "refund notification",
                },
                now=now,
                order_id=found.order_id,
                attempt_id=attempt.id,
            )
            if created:
                uow.payments.add_outbox(
                    "anomaly.opened",
                    found.order_number,
                    {"anomaly": anomaly_id, "kind": "amount_mismatch", "refund": out_refund_no},
                    now,
                )
            return "anomaly", found.order_number, "refund amount mismatch"
        uow.orders.get(found.order_number, lock=True)
        before = uow.refunds.get(out_refund_no, lock=True).status  # read under the lock
        refund = self._apply_result(
            uow, out_refund_no, result, now, op_id=None, source="notification"
        )
        if refund.status is before:
            return "duplicate", refund.order_number, f"refund {out_refund_no} is {before.value}"
        return "applied", refund.order_number, None
