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
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from attrs import evolve, frozen

from ordercore._actor import Actor
from ordercore._context import check_limit
from ordercore._errors import ChannelError, OrderCoreError
from ordercore._orders.wallet_service import wallet_audit
from ordercore._permissions import Permission
from ordercore._risk.domain import RiskContext
from ordercore._state import OrderStatus, PaymentEvent, PaymentStatus
from ordercore.channels import (
    Checkout,
    CheckoutRequest,
    Outcome,
    PaymentChannel,
)

from .coins import CoinQuote
from .domain import (
    PaymentAttempt,
    backoff,
)

if TYPE_CHECKING:
    from ordercore._orders.domain import Order
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork


from .applying import paid_key
from .callbacks import CallbackPipeline
from .jobs import JobRunner
from .review import ProofReview

__all__ = [
    "PaymentService",
    "StartedPayment",
]

_P = Permission


@frozen
class StartedPayment:
    """A new payment attempt and what to show the payer."""

    attempt: PaymentAttempt
    checkout: Checkout | None


def _new_out_trade_no(number: str) -> str:
    return f"{number}{secrets.token_hex(3).upper()}"


class PaymentService(CallbackPipeline, ProofReview, JobRunner):
    """Paying orders through channels, and everything that follows a payment."""

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
        risk: RiskContext | None = None,
    ) -> StartedPayment:
        """Open a payment attempt for a pending order and create its checkout.

        The attempt and its ``create`` operation are committed before the channel is called;
        the channel's answer is applied afterwards. A lost answer leaves the attempt
        ``unknown`` for reconciliation. ``balance`` settles at once, in one transaction.
        Risk control judges the attempt (``risk``; ``client_ip`` fills its ip): anything
        but ``allow`` raises :class:`RiskBlocked` and writes only the decision.
        """
        if client_ip is not None and (risk is None or risk.ip is None):
            risk = evolve(risk or RiskContext(), ip=client_ip)
        client_ip = client_ip or (risk.ip if risk else None)
        chan = self.channel(channel)
        chosen = method or sorted(chan.methods)[0]
        if chosen not in chan.methods:
            raise ChannelError(
                f"channel {channel} has no method {chosen!r} "
                f"(it has {', '.join(sorted(chan.methods))})",
                channel=channel,
            )
        if getattr(chan, "settles_internally", False):
            return self._pay_from_balance(number, chan, actor, risk)

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
            self._ctx.risk.check_payment(
                uow, order=order, attempt=attempt, context=risk, actor=actor, now=now
            )
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
            if checkout.channel_reference is not None:
                current.checkout["reference"] = checkout.channel_reference
            if checkout.coin_amount is not None and checkout.coin_amount.is_positive():
                current.quote = CoinQuote(checkout.coin_amount, checkout.rate, checkout.pay_by)
                current.checkout["rate"] = None if checkout.rate is None else str(checkout.rate)
                current.checkout["pay_by"] = (
                    None if checkout.pay_by is None else checkout.pay_by.isoformat()
                )
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

    def _pay_from_balance(
        self, number: str, chan: PaymentChannel, actor: Actor, risk: RiskContext | None
    ) -> StartedPayment:
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
            self._ctx.risk.check_payment(
                uow, order=order, attempt=attempt, context=risk, actor=actor, now=now
            )
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
                paid_key(attempt),
                attempt_id=attempt.id,
                inbox_id=None,
                now=now,
            )
            self._order_paid(uow, order, attempt, now)
            return attempt

        attempt = self._run(work)
        return StartedPayment(attempt=attempt, checkout=None)

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
