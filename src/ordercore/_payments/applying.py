"""Applying a payment: the one place where an attempt succeeds and its order is paid, or
what arrived becomes an anomaly; the activation planned with it; the attempt locks that
every payment use case shares.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from attrs import frozen

from ordercore._actor import Actor
from ordercore._anomalies.domain import AnomalyKind
from ordercore._context import Service
from ordercore._state import OrderStatus, PaymentEvent, PaymentStatus
from ordercore.channels import (
    PaymentChannel,
)
from ordercore.channels import PaymentEvent as ChannelPaymentEvent

from .coins import Coverage, coverage, fiat_share
from .domain import OPEN_ATTEMPT_STATES, ActivationMode, PaymentAttempt

if TYPE_CHECKING:
    from ordercore._orders.domain import Order
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork


__all__ = ["ApplyResult", "InboxRef", "InboxRow", "PaymentCore", "paid_key"]


@frozen
class ApplyResult:
    """What applying one channel event did: ``applied``, ``duplicate``, ``anomaly``,
    ``ignored`` or ``unknown_payment``."""

    status: str
    order_number: str | None = None
    out_trade_no: str | None = None
    reason: str | None = None


class InboxRow(Protocol):
    """The inbox row of the notification being applied, stored when its id is first needed
    (the event claim and an anomaly name it): :meth:`id` stores it, marked with the outcome
    ``expected`` if given, and gives its id; :meth:`claim` stores it and claims an event
    naming it in one statement where the database can (None where it cannot)."""

    def id(self, expected: ApplyResult | None) -> int: ...

    def claim(
        self, event_key: str, attempt_id: int | None, expected: ApplyResult
    ) -> bool | None: ...


#: What an applied event names as its origin: an inbox row's id, one stored when needed, or
#: nothing (a query, a review).
InboxRef = int | InboxRow | None


def _inbox_id(inbox: InboxRef, expected: ApplyResult | None = None) -> int | None:
    return inbox if inbox is None or isinstance(inbox, int) else inbox.id(expected)


def _claim(
    uow: UnitOfWork,
    key: str,
    attempt_id: int | None,
    inbox: InboxRef,
    expected: ApplyResult,
    now: datetime,
) -> bool:
    """Claim ``key`` (False: it was claimed before), naming the inbox row — stored with the
    claim in one statement if it is not stored yet and the database can."""
    if inbox is not None and not isinstance(inbox, int):
        claimed = inbox.claim(key, attempt_id, expected)
        if claimed is not None:
            return claimed
    inbox_id = _inbox_id(inbox, expected)
    return uow.payments.claim_event(key, attempt_id=attempt_id, inbox_id=inbox_id, now=now)


def paid_key(attempt: PaymentAttempt) -> str:
    """The dedupe key under which an attempt's payment is applied, whatever reported it."""
    return f"{attempt.channel}:paid:{attempt.out_trade_no}"


class PaymentCore(Service):
    """What every payment use case shares: the channel registry, applying a payment
    exactly once, anomalies, and the locks on an order and its attempt."""

    # -- channels --------------------------------------------------------------------------
    def channel(self, name: str) -> PaymentChannel:
        return self._ctx.channel(name)

    # -- what follows a payment -----------------------------------------------------------
    def _order_paid(
        self, uow: UnitOfWork, order: Order, attempt: PaymentAttempt, now: datetime
    ) -> None:
        """The order's payable arrived through ``attempt``: mark it paid, then what follows
        every payment. Same transaction as the caller's."""
        order.mark_paid(
            attempt.amount, Actor.channel(attempt.channel), now, f"attempt {attempt.out_trade_no}"
        )
        if not attempt.settles_order:
            attempt.settles_order = True
            uow.save_attempt(attempt, now)
        self.after_paid(uow, order, now, channel=attempt.channel, out_trade_no=attempt.out_trade_no)

    def after_paid(
        self,
        uow: UnitOfWork,
        order: Order,
        now: datetime,
        *,
        channel: str | None,
        out_trade_no: str | None,
    ) -> None:
        """What follows every payment of ``order`` (already marked paid), in the caller's
        transaction: the coupon use is consumed, activation is scheduled by its mode, the
        ``order.paid`` notification is queued, and other open attempts are cancelled."""
        assert order.id is not None
        if uow.orders.coupon_reserved(order.id) is not False:
            uow.coupons.consume(order.id, now)
        mode, due = self._activation_plan(uow, order, now)
        uow.payments.set_activation(order.id, mode=mode.value, due_at=due, attempts=0, error=None)
        uow.payments.add_outbox(
            "order.paid",
            order.number,
            {
                "order": order.number,
                "customer_id": order.customer_id,
                "amount": str(order.amounts.paid.amount),
                "currency": order.currency.code,
                "channel": channel,
                "out_trade_no": out_trade_no,
            },
            now,
        )
        # Other open attempts of this order can no longer be paid legitimately: mark them
        # canceled (a late payment on one of them becomes a duplicate-payment anomaly).
        for other in uow.payments.attempts_for(order.id):
            if other.out_trade_no != out_trade_no and other.status in OPEN_ATTEMPT_STATES:
                other.apply(
                    PaymentEvent.CANCEL,
                    Actor.system("payments"),
                    now,
                    "order paid by another attempt",
                )
                other.next_check_at = now  # close it at the platform (reconciliation)
                uow.save_attempt(other, now)

    def _activation_plan(
        self, uow: UnitOfWork, order: Order, now: datetime
    ) -> tuple[ActivationMode, datetime | None]:
        assert order.id is not None
        stored = uow.payments.activation(order.id)
        mode = ActivationMode(stored["mode"])
        if mode is ActivationMode.AUTO:
            return mode, now
        if mode is ActivationMode.DELAYED:
            if stored["due_at"] is not None:
                return mode, stored["due_at"]
            delays = [
                uow.products.get(line.sku).activation_delay_minutes or 0 for line in order.lines
            ]
            return mode, now + timedelta(minutes=max(delays, default=0))
        return mode, None

    def _anomaly(
        self,
        uow: UnitOfWork,
        kind: AnomalyKind,
        *,
        attempt: PaymentAttempt,
        evidence: dict[str, Any],
        dedupe: str,
        now: datetime,
    ) -> None:
        if "inbox_id" in evidence:  # an inbox row stored when needed is needed now
            evidence["inbox_id"] = _inbox_id(evidence["inbox_id"])
        anomaly_id, created = uow.payments.open_anomaly(
            kind=kind,
            dedupe_key=f"{kind.value}:{dedupe}",
            evidence=evidence,
            now=now,
            order_id=attempt.order_id,
            attempt_id=attempt.id,
        )
        if created:
            uow.payments.add_outbox(
                "anomaly.opened",
                attempt.order_number,
                {"anomaly": anomaly_id, "kind": kind.value, **evidence},
                now,
            )

    def _apply_payment(
        self,
        uow: UnitOfWork,
        event: ChannelPaymentEvent,
        *,
        channel: str,
        source: str,
        inbox_id: InboxRef,
        now: datetime,
    ) -> ApplyResult:
        """Apply a verified payment fact. Locks the order, then the attempt."""
        # One statement locks the attempt's order (read light, with its lines) and the
        # order's attempts (this one, and the others a payment cancels).
        found = uow.payments.lock_for_payment(event.out_trade_no)
        attempt = None
        if found is not None:
            order, attempts = found
            attempt = next((a for a in attempts if a.out_trade_no == event.out_trade_no), None)
        if attempt is None or attempt.channel != channel:
            return ApplyResult(
                "unknown_payment", None, event.out_trade_no, "no such payment attempt"
            )
        result = ApplyResult("applied", order.number, attempt.out_trade_no)
        actor = Actor.channel(channel)
        evidence: dict[str, Any] = {
            "out_trade_no": attempt.out_trade_no,
            "channel": channel,
            "channel_trade_no": event.channel_trade_no,
            "status": event.status,
            "expected": str(attempt.amount),
            "received": None if event.amount is None else str(event.amount),
            "source": source,
            "inbox_id": inbox_id,
        }
        coins = self._judge_coins(uow, attempt, event, evidence, now)
        if isinstance(coins, ApplyResult):
            return coins
        if not event.paid:
            if attempt.status in OPEN_ATTEMPT_STATES and attempt.can(PaymentEvent.FAIL):
                attempt.failure_reason = event.status
                attempt.apply(PaymentEvent.FAIL, actor, now, f"{source}: {event.status}")
                uow.save_attempt(attempt, now)
                return result
            return ApplyResult("ignored", order.number, attempt.out_trade_no, f"{event.status}")
        if event.amount is None:
            return ApplyResult("ignored", order.number, attempt.out_trade_no, "paid without amount")
        if event.amount.currency != attempt.amount.currency:
            self._anomaly(
                uow,
                AnomalyKind.CURRENCY_MISMATCH,
                attempt=attempt,
                evidence=evidence,
                dedupe=f"{attempt.out_trade_no}:{event.amount}",
                now=now,
            )
            return ApplyResult("anomaly", order.number, attempt.out_trade_no, "currency mismatch")
        if event.amount != attempt.amount:
            self._anomaly(
                uow,
                AnomalyKind.AMOUNT_MISMATCH,
                attempt=attempt,
                evidence=evidence,
                dedupe=f"{attempt.out_trade_no}:{event.amount}",
                now=now,
            )
            return ApplyResult("anomaly", order.number, attempt.out_trade_no, "amount mismatch")
        key = paid_key(attempt)
        if attempt.status is PaymentStatus.SUCCEEDED or not _claim(
            uow, key, attempt.id, inbox_id, result, now
        ):
            return ApplyResult("duplicate", order.number, attempt.out_trade_no, "already applied")
        attempt.channel_trade_no = event.channel_trade_no or attempt.channel_trade_no
        attempt.received = event.amount
        attempt.apply(PaymentEvent.SUCCEED, actor, now, f"{source}: {event.status}")
        attempt.settles_order = order.status is OrderStatus.PENDING  # saved once, here
        uow.save_attempt(attempt, now)
        if coins is Coverage.OVER and attempt.quote is not None:
            assert event.coin_amount is not None
            evidence["excess"] = str(event.coin_amount - attempt.quote.amount)
            self._anomaly(
                uow,
                AnomalyKind.OVERPAYMENT,
                attempt=attempt,
                evidence=evidence,
                dedupe=attempt.out_trade_no,
                now=now,
            )
        if order.status is OrderStatus.CANCELED:
            self._anomaly(
                uow,
                AnomalyKind.PAYMENT_AFTER_CANCEL,
                attempt=attempt,
                evidence=evidence,
                dedupe=attempt.out_trade_no,
                now=now,
            )
            return ApplyResult(
                "anomaly", order.number, attempt.out_trade_no, "payment after cancel"
            )
        if order.status is not OrderStatus.PENDING:
            self._anomaly(
                uow,
                AnomalyKind.DUPLICATE_PAYMENT,
                attempt=attempt,
                evidence=evidence,
                dedupe=attempt.out_trade_no,
                now=now,
            )
            return ApplyResult("anomaly", order.number, attempt.out_trade_no, "duplicate payment")
        self._order_paid(uow, order, attempt, now)
        return result

    def _judge_coins(
        self,
        uow: UnitOfWork,
        attempt: PaymentAttempt,
        event: ChannelPaymentEvent,
        evidence: dict[str, Any],
        now: datetime,
    ) -> ApplyResult | Coverage | None:
        """Compare the coins a crypto gateway reports with what it locked (see
        :mod:`ordercore._payments.coins`): an anomaly's result when the event must not pay
        (a coin mismatch, an underpayment, a late payment), else the coverage — or None when
        the attempt has no quote or the event reports no coins."""
        quote, received = attempt.quote, event.coin_amount
        if quote is None or received is None:
            return None
        evidence["coin_expected"] = str(quote.amount)
        evidence["coin_received"] = str(received)
        evidence["rate"] = None if quote.rate is None else str(quote.rate)
        number, out = attempt.order_number, attempt.out_trade_no
        if received.currency != quote.amount.currency:
            self._anomaly(
                uow,
                AnomalyKind.CURRENCY_MISMATCH,
                attempt=attempt,
                evidence=evidence,
                dedupe=f"{out}:{received}",
                now=now,
            )
            return ApplyResult("anomaly", number, out, "coin mismatch")
        cover = coverage(quote, received)
        if cover is Coverage.NONE:
            return None
        if attempt.status is not PaymentStatus.SUCCEEDED and attempt.coin_received != received:
            attempt.coin_received = received
            uow.save_attempt(attempt, now)
        if cover is Coverage.UNDER:
            evidence["shortfall"] = str(quote.amount - received)
            # What accepting it would pay: the order's share that these coins cover.
            evidence["received"] = str(fiat_share(attempt.amount, quote, received))
            self._anomaly(
                uow,
                AnomalyKind.UNDERPAYMENT,
                attempt=attempt,
                evidence=evidence,
                dedupe=f"{out}:{received}",
                now=now,
            )
            return ApplyResult("anomaly", number, out, "underpayment")
        late = event.late or quote.is_late(event.occurred_at)
        if event.paid and late and attempt.status is not PaymentStatus.SUCCEEDED:
            evidence["pay_by"] = None if quote.pay_by is None else quote.pay_by.isoformat()
            self._anomaly(
                uow,
                AnomalyKind.LATE_PAYMENT,
                attempt=attempt,
                evidence=evidence,
                dedupe=out,
                now=now,
            )
            return ApplyResult("anomaly", number, out, "late payment")
        return cover

    # -- bank transfer review -------------------------------------------------------------
    def _lock_attempt(
        self,
        uow: UnitOfWork,
        out_trade_no: str,
        actor: Actor,
        permission: str,
        *,
        owner_only: bool = False,
    ) -> tuple[Order, PaymentAttempt]:
        """Lock the attempt's order, check ``actor`` on it, then lock the attempt (the lock
        order every payment path keeps: order first, then attempt)."""
        found = uow.payments.attempt(out_trade_no)
        order = uow.orders.get(found.order_number, lock=True)
        owner = order.customer_id if owner_only else None
        self._check(actor, permission, f"order:{order.number}", owner_id=owner)
        return order, uow.payments.attempt(out_trade_no, lock=True)

    # -- reading ---------------------------------------------------------------------------
    def attempts(self, number: str) -> builtins.list[PaymentAttempt]:
        return self._read(lambda uow: uow.payments.attempts_for(uow.payments.order_id(number)))

    def attempt(self, out_trade_no: str) -> PaymentAttempt:
        return self._read(lambda uow: uow.payments.attempt(out_trade_no))
