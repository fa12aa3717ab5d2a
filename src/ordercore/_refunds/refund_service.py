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
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from ordercore._actor import Actor
from ordercore._audit.chain import AuditEntry
from ordercore._context import check_limit
from ordercore._errors import (
    ChannelError,
    InvalidAmount,
    InvalidField,
    OrderCoreError,
    RefundDeadlinePassed,
    RefundUnavailable,
)
from ordercore._money import Money
from ordercore._orders.domain import Order
from ordercore._payments.domain import PaymentAttempt
from ordercore._permissions import Permission
from ordercore._state import (
    REFUND_MACHINE,
    OrderStatus,
    PaymentStatus,
    RefundEvent,
    RefundStatus,
)
from ordercore.channels import PaymentChannel

from .domain import (
    Refund,
    RefundDestination,
    RefundFailure,
)

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

from .domain import required_text
from .settlement import CALL_LEASE, RefundSettlement

__all__ = ["RefundService"]

_P = Permission


#: How long a refund being paid out is left alone before the job runner asks the channel
#: (the call in flight gets this long to come back).
def _destination(value: RefundDestination | str) -> RefundDestination:
    try:
        return RefundDestination(value)
    except ValueError:
        raise InvalidField(
            f"a refund goes to balance or original, not {value!r}", field="destination"
        ) from None


class RefundService(RefundSettlement):
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
            used = order.amounts.refunded.to_minor() + uow.refunds.reserved_minor(
                order_id=order.id, unfinished=True
            )
            limits.append(order.amounts.paid.to_minor() - used)
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
        why = required_text(reason, "reason")

        def work(uow: UnitOfWork, now: datetime) -> tuple[Refund, int | None]:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.REFUNDS_REQUEST, f"order:{number}", owner_id=order.customer_id)
            assert order.id is not None
            if out_trade_no is None and order.status in (OrderStatus.PENDING, OrderStatus.CANCELED):
                raise InvalidField(
                    f"order {number} is not paid (it is {order.status.value}): there is nothing "
                    "to refund",
                    field="number",
                    order=number,
                )
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
        refund.next_check_at = now + CALL_LEASE
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
        why = required_text(reason, "rejection reason")

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
