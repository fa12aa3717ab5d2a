"""The refund engine and after-sales records.

Rules this module keeps (design.md 2, 4, 5, 6):

* a refund never exceeds what is still refundable: of its payment attempt (what it received
  minus every refund that is not rejected or failed) and, for the payment that settled the
  order, of the order (paid minus refunds) — checked under the order's row lock, which every
  refund path takes first (then the refund row);
* ``balance`` refunds are one transaction with the wallet; ``original`` refunds record the
  call (an operation, with the refund id the channel dedupes on) and commit *before* calling
  the channel, with no lock held, and apply the answer in a new transaction. A lost answer
  makes the refund ``unknown``; only a query or a notification resolves it, and a retry
  reuses the same refund id, so the platform pays it out at most once;
* what follows a refund (ledger, order's refunded amount and status, revocation,
  notification) happens in the transaction that makes it ``succeeded``, once.
"""

from __future__ import annotations

import builtins
import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from attrs import frozen

from ordercore._actor import Actor
from ordercore._audit.chain import AuditEntry
from ordercore._context import Service, check_limit
from ordercore._errors import (
    ChannelError,
    InvalidAmount,
    InvalidField,
    OrderCoreError,
    PermissionDenied,
    RefundDeadlinePassed,
    RefundUnavailable,
)
from ordercore._money import Money
from ordercore._orders.domain import Communication, Order
from ordercore._orders.wallet_service import return_deductions, wallet_audit
from ordercore._payments.domain import AnomalyKind, PaymentAttempt, backoff
from ordercore._permissions import Permission
from ordercore._state import (
    REFUND_MACHINE,
    IssueEvent,
    IssueStatus,
    OrderStatus,
    PaymentStatus,
    RefundEvent,
    RefundStatus,
)
from ordercore.channels import Outcome, PaymentChannel, RefundRequest, RefundResult

from .domain import (
    OPEN_REFUND_STATES,
    AfterSalesIssue,
    IssueStep,
    Refund,
    RefundDestination,
    RefundFailure,
)

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

__all__ = ["AfterSales", "AfterSalesService", "RefundService"]

_P = Permission
#: How long a refund being paid out is left alone before the job runner asks the channel
#: (the call in flight gets this long to come back).
_CALL_LEASE = timedelta(minutes=5)


@frozen
class AfterSales:
    """Everything after the sale of one order: refunds (with their history in the log),
    communications with the customer, and after-sales issues with their progress."""

    order_number: str
    refunds: tuple[Refund, ...]
    communications: tuple[Communication, ...]
    issues: tuple[AfterSalesIssue, ...]
    paid: Money
    refunded: Money
    refundable: Money


def _destination(value: RefundDestination | str) -> RefundDestination:
    try:
        return RefundDestination(value)
    except ValueError:
        raise InvalidField(
            f"a refund goes to balance or original, not {value!r}", field="destination"
        ) from None


def _required(text: str | None, what: str) -> str:
    if text is None or not str(text).strip():
        raise InvalidField(f"a refund {what} is required", field=what)
    return str(text).strip()


class RefundService(Service):
    """Refund requests, review, processing through channels or the wallet, and retries."""

    # -- what may be refunded -----------------------------------------------------------
    def _target(
        self, uow: UnitOfWork, order: Order, out_trade_no: str | None
    ) -> PaymentAttempt | None:
        """The payment a refund is against: the one named, else the one that settled the
        order (None when the order was marked paid by hand)."""
        assert order.id is not None
        attempts = uow.payments.attempts_for(order.id)
        if out_trade_no is not None:
            for attempt in attempts:
                if attempt.out_trade_no == out_trade_no:
                    if attempt.status is not PaymentStatus.SUCCEEDED or attempt.received is None:
                        raise InvalidField(
                            f"payment {out_trade_no} is {attempt.status.value}: "
                            "only received money can be refunded",
                            field="payment",
                        )
                    return attempt
            raise InvalidField(
                f"order {order.number} has no payment {out_trade_no!r}", field="payment"
            )
        for attempt in attempts:
            if attempt.settles_order:
                return attempt
        return None

    @staticmethod
    def _left(uow: UnitOfWork, order: Order, attempt: PaymentAttempt | None) -> Money:
        """What can still be refunded of ``attempt`` (and of the order, when the payment
        settled it): received (paid) minus refunds made, recorded by hand or under way."""
        counts = attempt is None or attempt.settles_order
        if counts and order.status not in (OrderStatus.PAID, OrderStatus.COMPLETED):
            return Money.zero(order.currency)
        room = RefundService._room(uow, order, attempt)
        return room if room.is_positive() else Money.zero(order.currency)

    @staticmethod
    def _room(uow: UnitOfWork, order: Order, attempt: PaymentAttempt | None) -> Money:
        """Like :meth:`_left` for a paid order, but not clamped at zero (negative when
        refunds already exceed what they may: a request overtaken by a late success)."""
        assert order.id is not None
        limits = []
        if attempt is not None:
            assert attempt.id is not None
            assert attempt.received is not None
            used = uow.refunds.reserved_minor(attempt_id=attempt.id)
            limits.append(attempt.received.to_minor() - used)
        if attempt is None or attempt.settles_order:
            used = order.amounts.refunded_amount.to_minor() + uow.refunds.reserved_minor(
                order_id=order.id, unfinished=True
            )
            limits.append(order.amounts.paid_amount.to_minor() - used)
        return Money.from_minor(min(limits) if limits else 0, order.currency)

    def refundable(self, number: str, *, out_trade_no: str | None = None) -> Money:
        """What can still be refunded of ``number``'s payment (or of ``out_trade_no``)."""

        def work(uow: UnitOfWork) -> Money:
            order = uow.orders.get(number)
            return self._left(uow, order, self._target(uow, order, out_trade_no))

        return self._read(work)

    def _refund_channel(
        self, refund: Refund, attempt: PaymentAttempt | None, now: datetime
    ) -> PaymentChannel | None:
        """The channel an ``original`` refund goes through (None: it settles in the wallet).
        Raises the typed refusal when it cannot (not configured, cannot refund, past the
        refund window)."""
        if refund.destination is RefundDestination.BALANCE:
            return None
        if attempt is None:
            raise RefundUnavailable(
                f"order {refund.order_number} was paid by hand, not through a channel: "
                "refund it to balance",
                code=RefundFailure.MISSING_INFORMATION.value,
                retryable=False,
                order=refund.order_number,
            )
        try:
            chan = self._ctx.channel(attempt.channel)
        except (ChannelError, OrderCoreError):
            raise RefundUnavailable(
                f"channel {attempt.channel} is not configured here: configure it, or refund "
                "to balance",
                code=RefundFailure.CHANNEL_NOT_CONFIGURED.value,
                retryable=False,
                order=refund.order_number,
                channel=attempt.channel,
            ) from None
        if getattr(chan, "settles_internally", False):
            return None
        caps = chan.capabilities
        partial = attempt.received is not None and refund.amount < attempt.received
        if not caps.refund or (partial and not caps.partial_refund):
            what = "refunds" if not caps.refund else "partial refunds"
            raise RefundUnavailable(
                f"channel {chan.name} cannot make {what}: refund to balance instead",
                code=RefundFailure.REFUND_UNSUPPORTED.value,
                retryable=False,
                order=refund.order_number,
                channel=chan.name,
            )
        days = chan.config.refund_deadline_days
        if days is not None and attempt.paid_at is not None:
            deadline = attempt.paid_at + timedelta(days=days)
            if now > deadline:
                raise RefundDeadlinePassed(
                    f"payment {attempt.out_trade_no} was made on {attempt.paid_at:%Y-%m-%d}; "
                    f"channel {chan.name} refunds for {days} days (until {deadline:%Y-%m-%d}): "
                    "refund to balance instead",
                    code=RefundFailure.DEADLINE_PASSED.value,
                    retryable=False,
                    order=refund.order_number,
                    channel=chan.name,
                )
        return chan

    # -- requesting ---------------------------------------------------------------------
    def request(
        self,
        number: str,
        *,
        amount: Money | Decimal | str | None = None,
        destination: RefundDestination | str,
        reason: str,
        actor: Actor,
        out_trade_no: str | None = None,
    ) -> Refund:
        """Ask for (part of) a payment back; ``amount`` None = everything still refundable.

        Customers ask for their own orders, operators with ``refunds.request``. The request
        waits for review unless the configured automatic-approval rules let it through; an
        approved ``balance`` refund is complete when this returns, an ``original`` one has
        been sent to the channel.
        """
        where = _destination(destination)
        why = _required(reason, "reason")

        def work(uow: UnitOfWork, now: datetime) -> tuple[Refund, int | None]:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.REFUNDS_REQUEST, f"order:{number}", owner_id=order.customer_id)
            assert order.id is not None
            attempt = self._target(uow, order, out_trade_no)
            left = self._left(uow, order, attempt)
            money = left if amount is None else self._money(amount, order)
            if not money.is_positive():
                raise InvalidAmount(
                    f"order {number}: nothing left to refund"
                    if amount is None
                    else f"a refund must be positive, not {money}",
                    order=number,
                )
            if money > left:
                raise InvalidAmount(
                    f"order {number}: at most {left} can still be refunded (asked {money})",
                    order=number,
                )
            refund = Refund(
                refund_no=f"{order.number}R{uow.refunds.count_for_order(order.id) + 1:02d}",
                order_id=order.id,
                order_number=order.number,
                customer_id=order.customer_id,
                amount=money,
                destination=where,
                reason=why,
                requested_by=actor,
                requested_at=now,
                out_trade_no=None if attempt is None else attempt.out_trade_no,
                channel=None if attempt is None else attempt.channel,
                counts_toward_order=attempt is None or attempt.settles_order,
            )
            self._refund_channel(refund, attempt, now)
            refund.pending_audit.append(
                AuditEntry(
                    entity_kind="order",
                    entity_id=order.number,
                    action="refund.request",
                    actor=actor,
                    at=now,
                    after={
                        "refund": refund.refund_no,
                        "status": refund.status.value,
                        "amount": str(money),
                        "destination": where.value,
                        "payment": refund.out_trade_no,
                    },
                    reason=why,
                )
            )
            uow.save_refund(refund, now)
            uow.payments.add_outbox("refund.requested", order.number, self._payload(refund), now)
            rules = self._ctx.settings.refund_auto_approve
            if rules is not None and rules.allows(
                amount=money,
                destination=where,
                paid_at=order.paid_at if attempt is None else attempt.paid_at,
                activated=order.status is OrderStatus.COMPLETED,
                now=now,
            ):
                op = self._approve_in(
                    uow, order, refund, attempt, Actor.system("auto-approval"), now, "rules"
                )
                return refund, op
            return refund, None

        refund, op = self._run(work)
        return refund if op is None else self._call(refund.refund_no, op)

    @staticmethod
    def _money(amount: Money | Decimal | str, order: Order) -> Money:
        if isinstance(amount, Money):
            if amount.currency != order.currency:
                raise InvalidAmount(
                    f"order {order.number} is in {order.currency.code}, not {amount.currency.code}",
                    order=order.number,
                )
            return amount
        return Money.of(amount, order.currency)

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

    # -- review ---------------------------------------------------------------------------
    def _lock(
        self, uow: UnitOfWork, refund_no: str, actor: Actor, permission: str
    ) -> tuple[Order, Refund, PaymentAttempt | None]:
        """Lock the refund's order, check ``actor``, then lock the refund (the lock order of
        every refund path)."""
        found = uow.refunds.get(refund_no)
        order = uow.orders.get(found.order_number, lock=True)
        self._check(actor, permission, f"order:{order.number}")
        refund = uow.refunds.get(refund_no, lock=True)
        attempt = None if refund.out_trade_no is None else uow.payments.attempt(refund.out_trade_no)
        return order, refund, attempt

    def _approve_in(
        self,
        uow: UnitOfWork,
        order: Order,
        refund: Refund,
        attempt: PaymentAttempt | None,
        actor: Actor,
        now: datetime,
        note: str | None,
    ) -> int | None:
        """Approve and start paying out, in the caller's transaction. A wallet refund is
        complete when this returns (None); a channel refund returns the operation to call."""
        chan = self._refund_channel(refund, attempt, now)
        REFUND_MACHINE.next_state(refund.refund_no, refund.status, RefundEvent.APPROVE)
        if refund.counts_toward_order and order.status not in (
            OrderStatus.PAID,
            OrderStatus.COMPLETED,
        ):
            raise InvalidAmount(
                f"refund {refund.refund_no}: order {order.number} is {order.status.value}, "
                "nothing is left to refund: reject it",
                order=order.number,
            )
        # The room left, unclamped, with this refund's own hold given back.
        left = self._room(uow, order, attempt) + refund.amount
        if refund.amount > left:
            raise InvalidAmount(
                f"refund {refund.refund_no}: only {left} is still refundable (money was "
                "refunded meanwhile): reject it",
                order=order.number,
            )
        refund.apply(RefundEvent.APPROVE, actor, now, note)
        uow.payments.add_outbox("refund.approved", order.number, self._payload(refund), now)
        return self._start_in(uow, order, refund, attempt, chan, actor, now)

    def _start_in(
        self,
        uow: UnitOfWork,
        order: Order,
        refund: Refund,
        attempt: PaymentAttempt | None,
        chan: PaymentChannel | None,
        actor: Actor,
        now: datetime,
    ) -> int | None:
        event = RefundEvent.START if refund.status is RefundStatus.APPROVED else RefundEvent.RETRY
        refund.apply(event, actor, now, "paying out")
        refund.tries += 1
        if chan is None:
            self._succeed_in(uow, order, refund, Actor.system("refunds"), now, None)
            return None
        assert attempt is not None
        assert attempt.id is not None
        refund.next_check_at = now + _CALL_LEASE
        uow.save_refund(refund, now)
        return uow.payments.start_operation(
            kind="refund",
            idempotency_key=f"refund:{refund.refund_no}:{refund.tries}",
            attempt_id=attempt.id,
            refund_id=refund.id,
            now=now,
            request={
                "out_refund_no": refund.refund_no,
                "amount": str(refund.amount),
                "try": refund.tries,
            },
        )

    def approve(self, refund_no: str, *, actor: Actor, note: str | None = None) -> Refund:
        """Approve a requested refund (``refunds.approve``). A ``balance`` refund completes in
        the same transaction; an ``original`` one is sent to its channel at once."""

        def work(uow: UnitOfWork, now: datetime) -> int | None:
            order, refund, attempt = self._lock(uow, refund_no, actor, _P.REFUNDS_APPROVE)
            return self._approve_in(uow, order, refund, attempt, actor, now, note)

        op = self._run(work)
        return self.get(refund_no) if op is None else self._call(refund_no, op)

    def reject(self, refund_no: str, *, actor: Actor, reason: str) -> Refund:
        """Refuse a requested refund; the reason is recorded and the customer notified."""
        why = _required(reason, "rejection reason")

        def work(uow: UnitOfWork, now: datetime) -> Refund:
            order, refund, _attempt = self._lock(uow, refund_no, actor, _P.REFUNDS_APPROVE)
            refund.apply(RefundEvent.REJECT, actor, now, why)
            uow.save_refund(refund, now)
            uow.payments.add_outbox(
                "refund.rejected", order.number, self._payload(refund, rejection=why), now
            )
            return refund

        return self._run(work)

    def retry(self, refund_no: str, *, actor: Actor) -> Refund:
        """Send a failed or unknown refund again, with the same refund id (the platform pays
        it out at most once). A refund that failed past its channel's window stays failed:
        request a ``balance`` refund instead."""

        def work(uow: UnitOfWork, now: datetime) -> int | None:
            order, refund, attempt = self._lock(uow, refund_no, actor, _P.REFUNDS_APPROVE)
            REFUND_MACHINE.next_state(refund_no, refund.status, RefundEvent.RETRY)
            if refund.failure is RefundFailure.DEADLINE_PASSED:
                raise RefundDeadlinePassed(
                    f"refund {refund_no} is past its channel's refund window: request a "
                    "refund to balance instead",
                    code=RefundFailure.DEADLINE_PASSED.value,
                    retryable=False,
                    refund=refund_no,
                )
            if refund.status is RefundStatus.FAILED:  # a failed refund holds nothing
                left = self._left(uow, order, attempt)
                if refund.amount > left:
                    raise InvalidAmount(
                        f"refund {refund_no}: only {left} is still refundable now",
                        order=order.number,
                    )
            chan = self._refund_channel(refund, attempt, now)
            return self._start_in(uow, order, refund, attempt, chan, actor, now)

        op = self._run(work)
        return self.get(refund_no) if op is None else self._call(refund_no, op)

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
            lambda uow, _now: uow.refunds.claim_checks(now, limit=batch, lease=_CALL_LEASE)
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
                    refund, full=full, refunded=str(order.amounts.refunded_amount.amount)
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
            and order.amounts.refunded_amount + refund.amount <= order.amounts.paid_amount
        )

    @staticmethod
    def _over_refund(uow: UnitOfWork, order: Order, refund: Refund, now: datetime) -> None:
        attempt_id = None
        if refund.out_trade_no is not None:
            attempt_id = uow.payments.attempt(refund.out_trade_no).id
        evidence = {
            "refund": refund.refund_no,
            "amount": str(refund.amount),
            "paid": str(order.amounts.paid_amount),
            "refunded": str(order.amounts.refunded_amount),
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

    # -- reading --------------------------------------------------------------------------
    def get(self, refund_no: str) -> Refund:
        return self._read(lambda uow: uow.refunds.get(refund_no))

    def list(
        self,
        *,
        limit: int = 50,
        before_id: int | None = None,
        status: str | None = None,
        order_number: str | None = None,
    ) -> builtins.list[Refund]:
        if status is not None:
            try:
                RefundStatus(status)
            except ValueError:
                names = ", ".join(s.value for s in RefundStatus)
                raise InvalidField(
                    f"refund status must be one of {names}", field="status"
                ) from None

        def work(uow: UnitOfWork) -> builtins.list[Refund]:
            order_id = uow.payments.order_id(order_number) if order_number else None
            return uow.refunds.list(
                limit=check_limit(limit), before_id=before_id, status=status, order_id=order_id
            )

        return self._read(work)

    def for_order(self, number: str) -> builtins.list[Refund]:
        return self._read(lambda uow: uow.refunds.for_order(uow.payments.order_id(number)))


class AfterSalesService(Service):
    """After-sales records: issues followed to resolution, and the whole after-sales view."""

    def open(
        self, number: str, *, subject: str, actor: Actor, note: str | None = None
    ) -> AfterSalesIssue:
        """Open an after-sales issue on an order (a customer's problem to follow)."""
        text = _required(subject, "subject")[:200]

        def work(uow: UnitOfWork, now: datetime) -> AfterSalesIssue:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.ORDERS_EDIT, f"order:{number}")
            assert order.id is not None
            issue = AfterSalesIssue(
                order_number=order.number, subject=text, opened_by=actor, opened_at=now
            )
            issue.steps.append(IssueStep(IssueStatus.OPEN, actor, now, note or text))
            uow.save_issue(issue, order_id=order.id)
            uow.record(
                AuditEntry(
                    entity_kind="order",
                    entity_id=order.number,
                    action="issue.open",
                    actor=actor,
                    at=now,
                    after={"issue": issue.id, "status": issue.status.value, "subject": text},
                    reason=note,
                )
            )
            return issue

        return self._run(work)

    def move(
        self, issue_id: int, event: IssueEvent | str, *, actor: Actor, note: str
    ) -> AfterSalesIssue:
        """Move an issue on (``investigate``, ``ask_customer``, ``resolve``, ``reopen``)."""
        try:
            ev = IssueEvent(event)
        except ValueError:
            names = ", ".join(e.value for e in IssueEvent)
            raise InvalidField(f"issue step must be one of {names}", field="event") from None
        text = _required(note, "note")

        def work(uow: UnitOfWork, now: datetime) -> AfterSalesIssue:
            found = uow.refunds.issue(issue_id)
            order = uow.orders.get(found.order_number, lock=True)
            self._check(actor, _P.ORDERS_EDIT, f"order:{order.number}")
            issue = uow.refunds.issue(issue_id, lock=True)
            issue.move(ev, actor, now, text)
            assert order.id is not None
            uow.save_issue(issue, order_id=order.id, new_steps=1)
            if ev is IssueEvent.RESOLVE:
                uow.payments.add_outbox(
                    "issue.resolved",
                    order.number,
                    {"issue": issue_id, "order": order.number, "resolution": text},
                    now,
                )
            return issue

        return self._run(work)

    def issue(self, issue_id: int) -> AfterSalesIssue:
        return self._read(lambda uow: uow.refunds.issue(issue_id))

    def show(self, number: str, *, actor: Actor | None = None) -> AfterSales:
        """An order's after-sales record: refunds, communications and issues."""

        def work(uow: UnitOfWork) -> AfterSales:
            order = uow.orders.get(number)
            if actor is not None:
                self._check(actor, _P.ORDERS_VIEW, f"order:{number}", owner_id=order.customer_id)
            assert order.id is not None
            refunds = self._ctx.refunds
            attempt = refunds._target(uow, order, None)
            return AfterSales(
                order_number=order.number,
                refunds=tuple(uow.refunds.for_order(order.id)),
                communications=tuple(order.communications),
                issues=tuple(uow.refunds.issues_for(order.id)),
                paid=order.amounts.paid_amount,
                refunded=order.amounts.refunded_amount,
                refundable=refunds._left(uow, order, attempt),
            )

        try:
            return self._read(work)
        except PermissionDenied as exc:
            self._record_refusal(exc, self._now())
            raise
