"""The payment engine: attempts, the callback pipeline, reviews, reconciliation, activation
and the job runner.

Rules this module keeps (design.md 3, 5, 6, 7):

* a platform is never called inside a database transaction: every call is recorded first as
  an *operation* (committed), made, then its outcome is applied in a new transaction;
* a notification is stored raw in the inbox (committed) before anything else, verified and
  parsed by its channel, then applied in one transaction that locks the order row, then the
  attempt row; an applied event is claimed by a unique key, so a second delivery changes
  nothing, however many workers receive it at once;
* what cannot be applied (amount or currency mismatch, payment after cancel, a second
  payment) is recorded as an anomaly and acknowledged, so the platform stops retrying; it
  never changes the order;
* side effects (activation, notifications) leave through the outbox or the activation
  queue, written in the same transaction as the state change and delivered at least once.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from attrs import frozen

from ordercore._actor import Actor
from ordercore._audit.chain import AuditEntry
from ordercore._context import Service, check_limit
from ordercore._errors import ChannelError, InvalidField, OrderCoreError
from ordercore._orders.wallet_service import wallet_audit
from ordercore._outbox import ActivationContext, OutboxMessage
from ordercore._permissions import Permission
from ordercore._state import CancelReason, OrderStatus, PaymentEvent, PaymentStatus
from ordercore.channels import (
    Checkout,
    CheckoutRequest,
    HttpReply,
    Notification,
    Outcome,
    PaymentChannel,
    PaymentQuery,
    RefundEvent,
    RefundResult,
)
from ordercore.channels import PaymentEvent as ChannelPaymentEvent

from .domain import (
    OPEN_ATTEMPT_STATES,
    ActivationMode,
    AnomalyKind,
    PaymentAttempt,
    backoff,
)

if TYPE_CHECKING:
    from ordercore._orders.domain import Order
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

__all__ = [
    "JobReport",
    "PaymentService",
    "StartedPayment",
]

_P = Permission
_REDACTED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
_UNKNOWN_CHANNEL = HttpReply(
    404, b'{"code":"FAIL","message":"unknown channel"}', {"content-type": "application/json"}
)


@frozen
class StartedPayment:
    """A new payment attempt and what to show the payer."""

    attempt: PaymentAttempt
    checkout: Checkout | None


@frozen
class ApplyResult:
    """What applying one channel event did: ``applied``, ``duplicate``, ``anomaly``,
    ``ignored`` or ``unknown_payment``."""

    status: str
    order_number: str | None = None
    out_trade_no: str | None = None
    reason: str | None = None


@frozen
class JobReport:
    """What one :meth:`PaymentService.run_due_jobs` pass did."""

    canceled: tuple[str, ...] = ()
    settled: tuple[str, ...] = ()
    reconciled: tuple[str, ...] = ()
    activated: tuple[str, ...] = ()
    activation_failures: tuple[str, ...] = ()
    refunds: tuple[str, ...] = ()
    delivered: int = 0
    delivery_failures: int = 0

    @property
    def total(self) -> int:
        return (
            len(self.canceled)
            + len(self.settled)
            + len(self.reconciled)
            + len(self.activated)
            + len(self.activation_failures)
            + len(self.refunds)
            + self.delivered
            + self.delivery_failures
        )


def _new_out_trade_no(number: str) -> str:
    return f"{number}{secrets.token_hex(3).upper()}"


def _paid_key(attempt: PaymentAttempt) -> str:
    """The dedupe key under which an attempt's payment is applied, whatever reported it."""
    return f"{attempt.channel}:paid:{attempt.out_trade_no}"


def _redact(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k.lower(): ("[redacted]" if k.lower() in _REDACTED_HEADERS else str(v))
        for k, v in headers.items()
    }


@frozen
class _Outcome:
    """What the inbox records for a processed notification."""

    status: str
    reason: str | None
    out_trade_no: str | None
    order_number: str | None


def _outcome(results: list[ApplyResult]) -> _Outcome:
    if not results:
        return _Outcome("ignored", "no event to apply", None, None)
    first = results[0]
    statuses = sorted({r.status for r in results})
    status = statuses[0] if len(statuses) == 1 else "+".join(statuses)
    if any(r.status == "unknown_payment" for r in results):
        status = "rejected"  # answered with the platform's failure acknowledgement
    reason = "; ".join(r.reason for r in results if r.reason) or None
    return _Outcome(status, reason, first.out_trade_no, first.order_number)


class PaymentService(Service):
    """Paying orders through channels, and everything that follows a payment."""

    # -- channels --------------------------------------------------------------------------
    def channel(self, name: str) -> PaymentChannel:
        return self._ctx.channel(name)

    # -- starting a payment ----------------------------------------------------------------
    def start(
        self,
        number: str,
        *,
        channel: str,
        actor: Actor,
        method: str | None = None,
        client_ip: str | None = None,
        return_url: str | None = None,
    ) -> StartedPayment:
        """Open a payment attempt for a pending order and create its checkout.

        The attempt and its ``create`` operation are committed before the channel is called;
        the channel's answer is applied afterwards. A lost answer leaves the attempt
        ``unknown`` for reconciliation. ``balance`` settles at once, in one transaction.
        """
        chan = self.channel(channel)
        chosen = method or sorted(chan.methods)[0]
        if chosen not in chan.methods:
            raise ChannelError(
                f"channel {channel} has no method {chosen!r} "
                f"(it has {', '.join(sorted(chan.methods))})",
                channel=channel,
            )
        if getattr(chan, "settles_internally", False):
            return self._pay_from_balance(number, chan, actor)

        def open_attempt(uow: UnitOfWork, now: datetime) -> tuple[PaymentAttempt, int]:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.ORDERS_VIEW, f"order:{number}", owner_id=order.customer_id)
            self._check_payable(order, chan)
            assert order.id is not None
            attempt = PaymentAttempt(
                order_id=order.id,
                order_number=order.number,
                channel=chan.name,
                method=chosen,
                out_trade_no=_new_out_trade_no(order.number),
                amount=order.amounts.payable,
                created_at=now,
                expires_at=order.payment_deadline,
            )
            uow.save_attempt(attempt, now)
            uow.orders.set_channel(order, chan.name)
            assert attempt.id is not None
            op = uow.payments.start_operation(
                kind="create",
                idempotency_key=f"create:{attempt.out_trade_no}",
                attempt_id=attempt.id,
                now=now,
                request={"method": chosen, "amount": str(attempt.amount)},
            )
            return attempt, op

        attempt, op_id = self._run(open_attempt)
        request = CheckoutRequest(
            out_trade_no=attempt.out_trade_no,
            amount=attempt.amount,
            subject=f"Order {attempt.order_number}",
            method=chosen,
            notify_url=chan.config.notify_url,
            expires_at=attempt.expires_at or self._now() + timedelta(minutes=15),
            client_ip=client_ip,
            return_url=return_url,
        )
        try:
            checkout = chan.create_checkout(request)
        except OrderCoreError:
            raise
        except Exception as exc:  # a channel bug or a transport error: outcome unknown
            checkout = Checkout(kind="none", outcome=Outcome.UNKNOWN, message=repr(exc)[:500])

        def record(uow: UnitOfWork, now: datetime) -> PaymentAttempt:
            current = uow.payments.attempt(attempt.out_trade_no, lock=True)
            system = Actor.channel(chan.name)
            current.checkout = {
                "kind": checkout.kind,
                "content": checkout.content,
                "url": checkout.url,
                "fields": dict(checkout.fields),
                "coin_amount": None if checkout.coin_amount is None else str(checkout.coin_amount),
                "message": checkout.message,
            }
            if current.status is PaymentStatus.CREATED:
                if checkout.outcome in (Outcome.PENDING, Outcome.SUCCEEDED):
                    current.apply(PaymentEvent.SUBMIT, system, now)
                    if chan.capabilities.query:  # else only a notification or review decides
                        current.next_check_at = now + backoff(0)
                elif checkout.outcome is Outcome.UNKNOWN:
                    current.apply(PaymentEvent.LOSE_TRACK, system, now, checkout.message)
                    current.next_check_at = now + backoff(0)
                else:
                    current.failure_reason = checkout.message
                    current.apply(PaymentEvent.FAIL, system, now, checkout.message)
            uow.save_attempt(current, now)
            uow.payments.finish_operation(
                op_id,
                state=checkout.outcome.value,
                now=now,
                response={"kind": checkout.kind, "message": checkout.message},
            )
            return current

        return StartedPayment(attempt=self._run(record), checkout=checkout)

    @staticmethod
    def _check_payable(order: Order, chan: PaymentChannel) -> None:
        if order.status is not OrderStatus.PENDING:
            raise ChannelError(
                f"order {order.number} is {order.status.value}: only pending orders can be paid",
                order=order.number,
            )
        amount = order.amounts.payable
        if amount.currency.code not in chan.currencies:
            raise ChannelError(
                f"channel {chan.name} does not take {amount.currency.code}", channel=chan.name
            )
        low, high = chan.config.min_amount, chan.config.max_amount
        if low is not None and low.currency == amount.currency and amount < low:
            raise ChannelError(f"channel {chan.name} takes at least {low}", channel=chan.name)
        if high is not None and high.currency == amount.currency and amount > high:
            raise ChannelError(f"channel {chan.name} takes at most {high}", channel=chan.name)
        if not amount.is_positive():
            raise ChannelError(f"order {order.number} has nothing to pay", order=order.number)

    def _pay_from_balance(self, number: str, chan: PaymentChannel, actor: Actor) -> StartedPayment:
        def work(uow: UnitOfWork, now: datetime) -> PaymentAttempt:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.ORDERS_VIEW, f"order:{number}", owner_id=order.customer_id)
            self._check_payable(order, chan)
            assert order.id is not None
            attempt = PaymentAttempt(
                order_id=order.id,
                order_number=order.number,
                channel=chan.name,
                method="balance",
                out_trade_no=_new_out_trade_no(order.number),
                amount=order.amounts.payable,
                created_at=now,
            )
            uow.save_attempt(attempt, now)
            assert attempt.id is not None
            entry = uow.wallet.apply(
                customer_id=order.customer_id,
                asset=attempt.amount.currency.code,
                delta=-attempt.amount.to_minor(),
                reason="order.payment",
                actor=actor,
                at=now,
                order_id=order.id,
                idempotency_key=f"balance-payment:{attempt.out_trade_no}",
            )
            uow.record(wallet_audit(entry))
            attempt.received = attempt.amount
            attempt.apply(PaymentEvent.SUCCEED, Actor.channel(chan.name), now, "paid from balance")
            uow.save_attempt(attempt, now)
            uow.orders.set_channel(order, chan.name)
            uow.payments.claim_event(
                _paid_key(attempt),
                attempt_id=attempt.id,
                inbox_id=None,
                now=now,
            )
            self._order_paid(uow, order, attempt, now)
            return attempt

        attempt = self._run(work)
        return StartedPayment(attempt=attempt, checkout=None)

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
        uow.coupons.consume(order.id, now)
        mode, due = self._activation_plan(uow, order, now)
        uow.payments.set_activation(order.id, mode=mode.value, due_at=due, attempts=0, error=None)
        uow.payments.add_outbox(
            "order.paid",
            order.number,
            {
                "order": order.number,
                "customer_id": order.customer_id,
                "amount": str(order.amounts.paid_amount.amount),
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
        inbox_id: int | None,
        now: datetime,
    ) -> ApplyResult:
        """Apply a verified payment fact. Locks the order, then the attempt."""
        found = uow.payments.find_attempt(event.out_trade_no)
        if found is None or found.channel != channel:
            return ApplyResult(
                "unknown_payment", None, event.out_trade_no, "no such payment attempt"
            )
        order = uow.orders.get(found.order_number, lock=True, light=True)
        attempt = uow.payments.attempt(event.out_trade_no, lock=True)
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
        key = _paid_key(attempt)
        if attempt.status is PaymentStatus.SUCCEEDED or not uow.payments.claim_event(
            key, attempt_id=attempt.id, inbox_id=inbox_id, now=now
        ):
            return ApplyResult("duplicate", order.number, attempt.out_trade_no, "already applied")
        attempt.channel_trade_no = event.channel_trade_no or attempt.channel_trade_no
        attempt.received = event.amount
        attempt.apply(PaymentEvent.SUCCEED, actor, now, f"{source}: {event.status}")
        attempt.settles_order = order.status is OrderStatus.PENDING  # saved once, here
        uow.save_attempt(attempt, now)
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

    # -- the callback pipeline ------------------------------------------------------------
    def handle_callback(
        self,
        channel: str,
        headers: Mapping[str, str],
        body: bytes,
        remote_addr: str | None = None,
        *,
        replay_of: int | None = None,
        received_at: datetime | None = None,
    ) -> HttpReply:
        """Store, verify, apply and acknowledge one notification. Never raises for bad
        input: every refusal is answered the platform's way and left in the inbox."""
        try:
            chan = self.channel(channel)
        except (ChannelError, OrderCoreError):
            return _UNKNOWN_CHANNEL
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        inbox_id = self._run(
            lambda uow, now: uow.payments.add_inbox(
                channel=chan.name,
                headers=_redact(lowered),
                body=bytes(body),
                remote_addr=remote_addr,
                now=now,
                replay_of=replay_of,
            )
        )
        notification = Notification(
            channel=chan.name,
            headers=lowered,
            body=bytes(body),
            remote_addr=remote_addr,
            # A replay is judged as of its first arrival (freshness windows, signed times).
            received_at=received_at or self._now(),
        )
        try:
            parsed = chan.parse_notification(notification)
        except Exception as exc:  # a channel must not raise; if it does, it is a refusal
            self._mark_inbox(inbox_id, "rejected", f"channel error: {exc!r}"[:500])
            return chan.acknowledge(False, "internal error")
        if parsed.rejection is not None:
            self._mark_inbox(
                inbox_id, "rejected", f"{parsed.rejection.code}: {parsed.rejection.message}"
            )
            return chan.acknowledge(False, parsed.rejection.message)
        try:
            results, marked = self._apply_events(chan, parsed.events, inbox_id)
        except OrderCoreError as exc:
            # A refusal of our own while applying (it should not happen): keep the reason with
            # the notification, answer failure so the platform retries, replay once fixed.
            self._mark_inbox(inbox_id, "error", f"{type(exc).__name__}: {exc}"[:1000])
            return chan.acknowledge(False, "not applied")
        return self._answer(chan, inbox_id, results, marked)

    def _apply_events(
        self,
        chan: PaymentChannel,
        events: tuple[ChannelPaymentEvent | RefundEvent, ...],
        inbox_id: int,
    ) -> tuple[list[ApplyResult], bool]:
        """Apply the events; ``(results, marked)`` — a lone payment event (the usual case) is
        applied and its inbox entry marked in one transaction."""
        if len(events) == 1:
            event = events[0]

            def apply_and_mark(uow: UnitOfWork, now: datetime) -> ApplyResult:
                if isinstance(event, RefundEvent):
                    result = self._refund_event(uow, chan.name, event, now)
                else:
                    result = self._apply_payment(
                        uow,
                        event,
                        channel=chan.name,
                        source="notification",
                        inbox_id=inbox_id,
                        now=now,
                    )
                self._mark(uow, inbox_id, _outcome([result]), now)
                return result

            return [self._run(apply_and_mark)], True
        results: list[ApplyResult] = []
        for each in events:
            if isinstance(each, ChannelPaymentEvent):
                results.append(
                    self._run(
                        lambda uow, now, ev=each: self._apply_payment(  # type: ignore[misc]
                            uow,
                            ev,
                            channel=chan.name,
                            source="notification",
                            inbox_id=inbox_id,
                            now=now,
                        )
                    )
                )
            elif isinstance(each, RefundEvent):
                results.append(
                    self._run(
                        lambda uow, now, ev=each: self._refund_event(uow, chan.name, ev, now)  # type: ignore[misc]
                    )
                )
        return results, False

    def _answer(
        self, chan: PaymentChannel, inbox_id: int, results: list[ApplyResult], marked: bool
    ) -> HttpReply:
        outcome = _outcome(results)
        if not marked:
            self._run(lambda uow, now: self._mark(uow, inbox_id, outcome, now))
        if outcome.status == "rejected":
            return chan.acknowledge(False, "unknown payment")
        return chan.acknowledge(True)

    @staticmethod
    def _mark(uow: UnitOfWork, inbox_id: int, outcome: _Outcome, now: datetime) -> None:
        uow.payments.mark_inbox(
            inbox_id,
            status=outcome.status[:16],
            reason=outcome.reason,
            now=now,
            out_trade_no=None if outcome.out_trade_no is None else outcome.out_trade_no[:64],
            order_number=outcome.order_number,
        )

    def _refund_event(
        self, uow: UnitOfWork, channel: str, event: RefundEvent, now: datetime
    ) -> ApplyResult:
        """A verified refund fact, applied by the refund engine (never as a payment)."""
        status, number, reason = self._ctx.refunds.apply_notification(
            uow,
            channel=channel,
            out_refund_no=event.out_refund_no,
            result=RefundResult(
                event.outcome, event.channel_refund_no, code=event.code, message=event.message
            ),
            amount=event.amount,
            now=now,
        )
        return ApplyResult(status, number, event.out_trade_no, reason)

    def _mark_inbox(self, inbox_id: int, status: str, reason: str | None) -> None:
        outcome = _Outcome(status, reason, None, None)
        self._run(lambda uow, now: self._mark(uow, inbox_id, outcome, now))

    def notifications(
        self,
        *,
        limit: int = 50,
        before_id: int | None = None,
        status: str | None = None,
        order_number: str | None = None,
        channel: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Stored notifications, newest first (the callback log)."""
        return self._read(
            lambda uow: uow.payments.inbox_list(
                limit=check_limit(limit),
                before_id=before_id,
                status=status,
                order_number=order_number,
                channel=channel,
            )
        )

    def notification(self, inbox_id: int) -> dict[str, Any]:
        return self._read(lambda uow: uow.payments.inbox_entry(inbox_id))

    def replay(self, inbox_id: int, *, actor: Actor) -> HttpReply:
        """Process a stored notification again, exactly as received (its raw bytes). What
        was applied stays applied once; the replay gets an inbox record of its own."""
        self._check(actor, _P.PAYMENTS_REVIEW, f"inbox:{inbox_id}")
        entry = self.notification(inbox_id)
        return self.handle_callback(
            entry["channel"],
            entry["headers"],
            entry["body"],
            entry["remote_addr"],
            replay_of=inbox_id,
            received_at=entry["received_at"],
        )

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
                _paid_key(attempt),
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

    # -- reading ---------------------------------------------------------------------------
    def attempts(self, number: str) -> builtins.list[PaymentAttempt]:
        return self._read(lambda uow: uow.payments.attempts_for(uow.payments.order_id(number)))

    def attempt(self, out_trade_no: str) -> PaymentAttempt:
        return self._read(lambda uow: uow.payments.attempt(out_trade_no))

    def operations(self, out_trade_no: str) -> builtins.list[dict[str, Any]]:
        def work(uow: UnitOfWork) -> builtins.list[dict[str, Any]]:
            attempt = uow.payments.attempt(out_trade_no)
            assert attempt.id is not None
            return uow.payments.operations_for(attempt.id)

        return self._read(work)

    def list(
        self, *, limit: int = 50, before_id: int | None = None, status: str | None = None
    ) -> builtins.list[PaymentAttempt]:
        return self._read(
            lambda uow: uow.payments.list_attempts(
                limit=check_limit(limit), before_id=before_id, status=status
            )
        )

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
            if (
                answer is not None
                and answer.outcome is Outcome.SUCCEEDED
                and answer.event is not None
            ):
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
            if answer is not None and answer.outcome is Outcome.SUCCEEDED and answer.event:
                event = answer.event
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
            answer: PaymentQuery | None = chan.query_payment(attempt.out_trade_no)
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

    # -- activation ------------------------------------------------------------------------
    def schedule_activation(self, number: str, *, actor: Actor, at: datetime | None = None) -> None:
        """Activate a paid order now (``at`` None) or at a set time (``orders activate``)."""

        def work(uow: UnitOfWork, now: datetime) -> None:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.ORDERS_ACTIVATE, f"order:{number}")
            if order.status is not OrderStatus.PAID:
                raise InvalidField(
                    f"order {number} is {order.status.value}; only paid orders are activated",
                    field="order",
                )
            if at is not None and (at.tzinfo is None or at.utcoffset() is None):
                raise InvalidField("the activation time must be timezone-aware", field="at")
            assert order.id is not None
            uow.payments.set_activation(order.id, due_at=at or now, error=None, locked_until=None)
            uow.record(
                AuditEntry(
                    entity_kind="order",
                    entity_id=number,
                    action="order.activation_scheduled",
                    actor=actor,
                    at=now,
                    after={"due_at": at or now},
                )
            )

        self._run(work)

    def _activate_one(self, number: str, attempt_no: int, now: datetime) -> bool:
        order = self._ctx.orders.get(number)
        ctx = ActivationContext(
            activation_id=f"activate:{number}",
            attempt=attempt_no,
            actor=Actor.system("activation"),
            at=now,
        )
        try:
            self._ctx.plugins.hook.ordercore_activate_order(order=order, ctx=ctx)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]

            def failed(uow: UnitOfWork, at: datetime) -> None:
                current = uow.orders.get(number, lock=True)
                if current.status is not OrderStatus.PAID:
                    return
                assert current.id is not None
                uow.payments.set_activation(
                    current.id,
                    attempts=attempt_no,
                    error=error,
                    due_at=at + backoff(attempt_no - 1),
                    locked_until=None,
                )
                uow.payments.add_outbox(
                    "order.activation_failed",
                    number,
                    {"order": number, "attempt": attempt_no, "error": error},
                    at,
                )

            self._run(failed)
            return False

        def done(uow: UnitOfWork, at: datetime) -> None:
            current = uow.orders.get(number, lock=True)
            if current.status is not OrderStatus.PAID:
                return
            assert current.id is not None
            current.complete(Actor.system("activation"), at, "activated")
            uow.payments.set_activation(
                current.id, attempts=attempt_no, error=None, due_at=None, locked_until=None
            )
            uow.payments.add_outbox("order.completed", number, {"order": number}, at)

        self._run(done)
        return True

    # -- the job runner --------------------------------------------------------------------
    def run_due_jobs(self, now: datetime | None = None, *, batch: int = 100) -> JobReport:
        """One pass of every background job: timeout cancellation (querying first),
        reconciliation of pending/unknown attempts, due activations, refunds waiting for
        their outcome (queried) and outbox delivery (notifications, revocations).
        Safe in several processes at once on PostgreSQL (``FOR UPDATE SKIP LOCKED`` and
        leases); on SQLite run one."""
        moment = now or self._now()
        canceled: list[str] = []
        settled: list[str] = []
        lease = timedelta(minutes=5)
        expired = self._run(
            lambda uow, _now: uow.payments.claim_expired_orders(moment, limit=batch, lease=lease)
        )
        for number in expired:
            outcome = self.close_and_cancel(number, now=moment)
            if outcome == "canceled":
                canceled.append(number)
            elif outcome == "settled":
                settled.append(number)
        reconciled = []
        checks = self._run(
            lambda uow, _now: uow.payments.claim_checks(moment, limit=batch, lease=lease)
        )
        for out_trade_no in checks:
            result = self.reconcile(out_trade_no)
            if result.status in ("applied", "anomaly"):
                reconciled.append(out_trade_no)
        activated: list[str] = []
        failures: list[str] = []
        claims = self._run(
            lambda uow, _now: uow.payments.claim_activations(
                moment, limit=batch, lease=timedelta(minutes=5)
            )
        )
        for number, attempt_no in claims:
            (activated if self._activate_one(number, attempt_no, moment) else failures).append(
                number
            )
        refunds = self._ctx.refunds.check_due(moment, batch=batch)
        delivered, delivery_failures = self.deliver_outbox(moment, batch=batch)
        return JobReport(
            refunds=tuple(refunds),
            canceled=tuple(canceled),
            settled=tuple(settled),
            reconciled=tuple(reconciled),
            activated=tuple(activated),
            activation_failures=tuple(failures),
            delivered=delivered,
            delivery_failures=delivery_failures,
        )

    def deliver_outbox(self, now: datetime | None = None, *, batch: int = 100) -> tuple[int, int]:
        """Deliver due outbox messages through ``ordercore_notify``: ``(delivered, failed)``."""
        moment = now or self._now()
        messages = self._run(
            lambda uow, _now: uow.payments.claim_outbox(
                moment, limit=batch, lease=timedelta(minutes=5)
            )
        )
        delivered = failed = 0
        for message in messages:
            try:
                if message.kind == "order.revoke":
                    self._revoke(message, moment)
                else:
                    self._ctx.plugins.hook.ordercore_notify(event=message)
            except Exception as exc:
                failed += 1
                error = f"{type(exc).__name__}: {exc}"
                self._run(
                    lambda uow, _now, m=message, e=error: uow.payments.outbox_failed(  # type: ignore[misc]
                        m.id, e, moment + timedelta(minutes=1)
                    )
                )
            else:
                delivered += 1
                self._run(lambda uow, at, m=message: uow.payments.outbox_done(m.id, at))  # type: ignore[misc]
        return delivered, failed

    def _revoke(self, message: OutboxMessage, now: datetime) -> None:
        """Deliver an ``order.revoke`` message to ``ordercore_revoke_order`` (at least once;
        ``ctx.activation_id`` is stable across retries)."""
        assert message.order_number is not None
        refund_no = str(message.payload["refund"])
        ctx = ActivationContext(
            activation_id=f"revoke:{refund_no}",
            attempt=message.attempt,
            actor=Actor.system("refunds"),
            at=now,
        )
        self._ctx.plugins.hook.ordercore_revoke_order(
            order=self._ctx.orders.get(message.order_number),
            refund=self._ctx.refunds.get(refund_no),
            ctx=ctx,
        )
