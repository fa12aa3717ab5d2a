"""Orders: create (priced, idempotent, stock reserved), look up, list, change, cancel,
notes, flags and batches.

Each public method is one unit of work: it commits everything or nothing. Every call that
changes something takes an :class:`~ordercore.Actor`, checks its permission, validates its
input before it writes, and leaves an audit record of the change.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from attrs import evolve, frozen
from sqlalchemy.exc import IntegrityError

from ordercore._actor import Actor, ActorKind
from ordercore._anomalies.domain import Anomaly
from ordercore._audit.chain import (
    AuditEntry,
    AuditRecord,
    PendingAuditRecord,
    canonical_json,
)
from ordercore._context import Service, check_id, check_limit
from ordercore._errors import (
    IdempotencyConflict,
    InvalidAmount,
    InvalidField,
    InvalidQuantity,
    OrderCoreError,
    PermissionDenied,
)
from ordercore._money import Money, as_money
from ordercore._numbers import OrderNumberGenerator
from ordercore._payments.domain import OPEN_ATTEMPT_STATES, PaymentAttempt
from ordercore._permissions import Permission
from ordercore._refunds.domain import AfterSalesIssue, Refund
from ordercore._risk.domain import RiskContext
from ordercore._state import CancelReason, OrderStatus, PaymentEvent, Transition

from .amounts import AmountBreakdown
from .customer_service import CustomerService, NewCustomer
from .domain import Customer, Order, OrderLine, validate_tag
from .listing import OrderFilter, Page
from .pricing import ManualDiscount, UseAll, price_order
from .stock import reserve_stock
from .wallet import POINTS, LedgerEntry
from .wallet_service import return_deductions, wallet_audit

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork


_P = Permission


# -------------------------------------------------------------------------------- orders
@frozen
class BatchResult:
    """One order's outcome in a batch operation."""

    number: str
    ok: bool
    error: str | None = None
    error_type: str | None = None


@frozen
class OrderDetails:
    """An order with its customer, its full audit log (operation log), its wallet entries,
    payments, anomalies, refunds and after-sales issues (communications are on the order)."""

    order: Order
    customer: Customer
    log: tuple[AuditRecord | PendingAuditRecord, ...]
    coupons: tuple[tuple[str, str], ...] = ()
    wallet_entries: tuple[LedgerEntry, ...] = ()
    payments: tuple[PaymentAttempt, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    activation: Mapping[str, Any] | None = None
    refunds: tuple[Refund, ...] = ()
    issues: tuple[AfterSalesIssue, ...] = ()


def _request_hash(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()


class OrderService(Service):
    """Orders: create (priced), walk through the state machine, annotate, find, show."""

    _numbers = OrderNumberGenerator()

    def create(
        self,
        *,
        items: Sequence[tuple[str, int]],
        actor: Actor,
        customer_id: int | None = None,
        new_customer: NewCustomer | None = None,
        coupon: str | None = None,
        manual_discount: ManualDiscount | None = None,
        use_balance: Money | Decimal | str | UseAll | None = None,
        use_points: int = 0,
        channel: str | None = None,
        note: str | None = None,
        tags: Sequence[str] = (),
        special: bool = False,
        payment_timeout: timedelta | None = None,
        idempotency_key: str | None = None,
        activation: str | None = None,
        risk: RiskContext | None = None,
    ) -> Order:
        """Create an order, priced (tiers, coupon, manual discount, balance, points, fee).

        In one transaction: the customer is found or created, stock is reserved under the
        products' row locks, the coupon use is reserved under the coupon's row lock, balance
        and points are debited. An order whose payable is zero is paid at once. With an
        ``idempotency_key`` the same request returns the same order and a different request
        raises :class:`IdempotencyConflict`. ``risk`` (client ip, device id...) is judged by
        risk control: a ``block`` raises :class:`RiskBlocked` and writes only the decision.
        """
        if (customer_id is None) == (new_customer is None):
            raise InvalidField("give either customer_id or new_customer", field="customer")
        if customer_id is not None:
            check_id(customer_id, "customer_id")
        given: object = items  # checked as it comes: hosts pass what their users sent
        if isinstance(given, (str, bytes)) or not items:
            raise InvalidField("an order needs at least one item", field="items")
        for item in items:
            pair: object = item
            if not (
                isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)
            ):
                raise InvalidField(
                    f"items are (sku, quantity) pairs, such as ('VPN-1M', 1), not {item!r}",
                    field="items",
                )
        for _, qty in items:
            if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= 1_000_000:
                raise InvalidQuantity(
                    f"quantity must be a whole number from 1 to 1000000, not {qty!r}", value=qty
                )
        for tag in tags:
            validate_tag(tag)
        if idempotency_key is not None and not (
            isinstance(idempotency_key, str)
            and 1 <= len(idempotency_key) <= 128
            and idempotency_key == idempotency_key.strip()
        ):
            raise InvalidField("an idempotency key is 1-128 characters", field="idempotency_key")
        fee_rule = self._ctx.fee_rule(channel) if channel else None
        timeout = payment_timeout or timedelta(minutes=self._ctx.settings.payment_timeout_minutes)
        request = {
            "customer_id": customer_id,
            "new_customer": None
            if new_customer is None
            else [new_customer.name, new_customer.email, new_customer.external_ref],
            "items": [[sku, qty] for sku, qty in items],
            "coupon": coupon,
            "manual_discount": None
            if manual_discount is None
            else [str(manual_discount.amount), manual_discount.reason],
            "use_balance": "all"
            if isinstance(use_balance, UseAll)
            else (None if use_balance is None else str(use_balance)),
            "use_points": use_points,
            "channel": channel,
            "note": note,
            "tags": sorted(tags),
            "special": special,
            "activation": activation,
        }
        request_hash = _request_hash(request)

        def existing(uow: UnitOfWork) -> Order | None:
            if idempotency_key is None:
                return None
            found = uow.orders.find_by_idempotency_key(idempotency_key)
            if found is None:
                return None
            number, stored_hash = found
            if stored_hash != request_hash:
                raise IdempotencyConflict(
                    f"idempotency key {idempotency_key!r} was used for a different order "
                    f"request (order {number})",
                    idempotency_key=idempotency_key,
                    order=number,
                )
            return uow.orders.get(number)

        def work(uow: UnitOfWork, now: datetime) -> Order:
            self._check(actor, _P.ORDERS_CREATE, "order:new", owner_id=customer_id)
            if manual_discount is not None:
                self._check(actor, _P.ORDERS_DISCOUNT, "order:new")
            if new_customer is not None:
                self._check(actor, _P.CUSTOMERS_MANAGE, "order:new")
            found = existing(uow)
            if found is not None:
                return found
            if new_customer is not None:
                customer = CustomerService._find_or_insert(uow, new_customer, actor, now)
            else:
                assert customer_id is not None
                customer = uow.customers.get(customer_id)
            assert customer.id is not None
            lines, products = reserve_stock(uow, items, now)
            currency = lines[0].unit_price.currency
            coupon_obj = uow.coupons.get(coupon, lock=True) if coupon else None
            # The wallet is read (and its rows locked) only when the order draws on it.
            balance_held = Money.from_minor(
                0
                if use_balance is None
                else uow.wallet.balance(customer.id, currency.code, lock=True),
                currency,
            )
            points_held = uow.wallet.balance(customer.id, POINTS, lock=True) if use_points else 0
            modes = {p.activation_mode for p in products}
            plan = activation or next((m for m in ("manual", "delayed") if m in modes), "auto")
            if plan not in ("auto", "manual", "delayed"):
                raise InvalidField("activation must be auto, manual or delayed", field="activation")
            balance_asked = (
                use_balance
                if use_balance is None or isinstance(use_balance, UseAll)
                else as_money(use_balance, currency, what="use_balance")
            )
            priced = price_order(
                lines,
                now=now,
                coupon=coupon_obj,
                manual_discount=manual_discount,
                use_balance=balance_asked,
                balance_available=balance_held,
                use_points=use_points,
                points_available=points_held,
                points_rate=self._ctx.settings.points_rate,
                fee_rule=fee_rule,
            )
            order = self._insert(
                uow,
                customer,
                lines,
                priced.breakdown,
                now,
                timeout,
                tags,
                special,
                actor,
                idempotency_key,
                request_hash,
                {"activation_mode": str(plan), "channel": channel or None},
            )
            assert order.id is not None
            self._ctx.risk.check_order(
                uow, order=order, customer=customer, context=risk, actor=actor, now=now
            )
            if coupon_obj is not None:
                uow.coupons.reserve(
                    coupon_obj,
                    order_id=order.id,
                    customer_id=customer.id,
                    discount=priced.coupon_discount,
                    now=now,
                )
            if priced.balance_used.is_positive():
                entry = uow.wallet.apply(
                    customer_id=customer.id,
                    asset=currency.code,
                    delta=-priced.balance_used.to_minor(),
                    reason="order.balance_deduction",
                    actor=actor,
                    at=now,
                    order_id=order.id,
                )
                uow.record(wallet_audit(entry))
            if priced.points_used:
                entry = uow.wallet.apply(
                    customer_id=customer.id,
                    asset=POINTS,
                    delta=-priced.points_used,
                    reason="order.points_deduction",
                    actor=actor,
                    at=now,
                    order_id=order.id,
                )
                uow.record(wallet_audit(entry))
            if note:
                order.add_note(note, actor, now)
            if order.amounts.payable.is_zero():
                order.mark_paid(
                    order.amounts.payable,
                    Actor.system(),
                    now,
                    "covered by balance, points or discounts",
                )
                self._ctx.payments.after_paid(uow, order, now, channel=None, out_trade_no=None)
            return order

        try:
            return self._run(work)
        except PermissionDenied:
            raise
        except (IntegrityError, OrderCoreError):
            # A concurrent request with the same key may have won while this one waited on a
            # lock (and then found the stock, the coupon or the balance taken, or the number
            # or key index occupied). Everything here was rolled back; if the winner's order
            # exists now, it is this request's answer too.
            if idempotency_key is None:
                raise
            again = self._read(existing)
            if again is None:
                raise
            return again

    def _insert(
        self,
        uow: UnitOfWork,
        customer: Customer,
        lines: list[OrderLine],
        amounts: AmountBreakdown,
        now: datetime,
        timeout: timedelta,
        tags: Sequence[str],
        special: bool,
        actor: Actor,
        idempotency_key: str | None,
        request_hash: str,
        columns: dict[str, Any],
    ) -> Order:
        assert customer.id is not None
        for _attempt in range(5):
            order = Order(
                number=self._numbers.next(now),
                customer_id=customer.id,
                lines=tuple(lines),
                amounts=amounts,
                created_at=now,
                payment_deadline=now + timeout,
                special=special,
                tags=frozenset(tags),
            )
            try:
                uow.orders.add(
                    order,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    columns=columns,
                )
            except IntegrityError:
                if idempotency_key is not None and uow.orders.find_by_idempotency_key(
                    idempotency_key
                ):
                    raise
                continue  # number taken by another process in the same millisecond
            uow.record(
                AuditEntry(
                    entity_kind="order",
                    entity_id=order.number,
                    action="order.create",
                    actor=actor,
                    at=now,
                    after={
                        "status": order.status.value,
                        "customer_id": customer.id,
                        "lines": [[ln.sku, ln.quantity, str(ln.unit_price.amount)] for ln in lines],
                        "amounts": amounts.as_dict(),
                        "currency": order.currency.code,
                    },
                )
            )
            return order
        raise RuntimeError("could not allocate a unique order number")  # pragma: no cover

    def get(self, number: str) -> Order:
        return self._read(lambda uow: uow.orders.get(number))

    def details(self, number: str, *, actor: Actor | None = None) -> OrderDetails:
        def work(uow: UnitOfWork) -> OrderDetails:
            order = uow.orders.get(number)
            if actor is not None:
                self._check(actor, _P.ORDERS_VIEW, f"order:{number}", owner_id=order.customer_id)
            assert order.id is not None
            return OrderDetails(
                order=order,
                customer=uow.customers.get(order.customer_id),
                log=tuple(uow.audit.for_entity("order", number)),
                coupons=tuple(uow.coupons.for_order(order.id)),
                wallet_entries=tuple(uow.wallet.for_order(order.id)),
                payments=tuple(uow.payments.attempts_for(order.id)),
                anomalies=tuple(uow.payments.anomalies(limit=100, order_id=order.id)),
                activation=uow.payments.activation(order.id),
                refunds=tuple(uow.refunds.for_order(order.id)),
                issues=tuple(uow.refunds.issues_for(order.id)),
            )

        try:
            return self._read(work)
        except PermissionDenied as exc:
            self._record_refusal(exc, self._now())
            raise

    def list(
        self,
        flt: OrderFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        actor: Actor | None = None,
    ) -> Page:
        """Orders matching ``flt``, newest first, one keyset page at a time."""
        flt = flt or OrderFilter()

        def work(uow: UnitOfWork) -> Page:
            if actor is not None:
                if actor.kind is ActorKind.CUSTOMER:
                    if flt.customer_id is None or str(flt.customer_id) != actor.id:
                        self._check(actor, _P.ORDERS_VIEW, "orders:list", owner_id=-1)
                else:
                    self._check(actor, _P.ORDERS_VIEW, "orders:list")
            return uow.list_orders(flt, limit=check_limit(limit), cursor=cursor)

        try:
            return self._read(work)
        except PermissionDenied as exc:
            self._record_refusal(exc, self._now())
            raise

    def _change(
        self,
        number: str,
        permission: str,
        actor: Actor,
        change: Callable[[Order, datetime], Any],
        *,
        owner_ok: bool = False,
    ) -> Order:
        def work(uow: UnitOfWork, now: datetime) -> Order:
            order = uow.orders.get(number, lock=True)
            self._check(
                actor,
                permission,
                f"order:{number}",
                owner_id=order.customer_id if owner_ok else -1,
            )
            change(order, now)
            return order

        return self._run(work)

    def mark_paid(
        self, number: str, *, actor: Actor, amount: Money | None = None, reason: str | None = None
    ) -> Order:
        """Record that the payable amount arrived (an operator's confirmation); the coupon
        use becomes consumed. Payment channels arrive with the payment engine."""

        def work(uow: UnitOfWork, now: datetime) -> Order:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.ORDERS_PAY, f"order:{number}")
            order.mark_paid(amount or order.amounts.payable, actor, now, reason)
            self._ctx.payments.after_paid(uow, order, now, channel=None, out_trade_no=None)
            return order

        return self._run(work)

    def complete(self, number: str, *, actor: Actor, reason: str | None = None) -> Order:
        """Mark what was bought as activated (by hand: the activation queue is cleared)."""

        def work(uow: UnitOfWork, now: datetime) -> Order:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.ORDERS_ACTIVATE, f"order:{number}")
            order.complete(actor, now, reason)
            assert order.id is not None
            uow.payments.set_activation(order.id, due_at=None, locked_until=None)
            return order

        return self._run(work)

    def cancel(
        self,
        number: str,
        *,
        actor: Actor,
        reason: CancelReason | str,
        note: str | None = None,
    ) -> Order:
        """Cancel a pending order. In one transaction: reserved stock goes back, the coupon
        use is released, and balance and points deducted for it are credited back.

        Customers cancel their own orders (reason ``user``); operators need ``orders.cancel``
        and must give a note with reason ``admin``."""
        try:
            why = CancelReason(reason)
        except ValueError:
            reasons = ", ".join(r.value for r in CancelReason)
            raise InvalidField(
                f"cancel reason must be one of {reasons}, not {reason!r}", field="reason"
            ) from None
        allowed = {
            ActorKind.CUSTOMER: {CancelReason.USER},
            ActorKind.OPERATOR: {CancelReason.ADMIN},
            ActorKind.SYSTEM: {CancelReason.TIMEOUT, CancelReason.SYSTEM, CancelReason.REJECTED},
            ActorKind.CHANNEL: set(),
        }[actor.kind]
        if why not in allowed:
            names = ", ".join(sorted(r.value for r in allowed)) or "none"
            who = actor.kind.value
            article = "an" if who[0] in "aeiou" else "a"
            raise InvalidField(
                f"{article} {who} cancels with reason {names}, not {why.value}", field="reason"
            )

        def work(uow: UnitOfWork, now: datetime) -> Order:
            order = uow.orders.get(number, lock=True)  # an unknown order is said first
            self._check(actor, _P.ORDERS_CANCEL, f"order:{number}", owner_id=order.customer_id)
            if why is CancelReason.ADMIN and not (note and note.strip()):
                raise InvalidField("an operator's cancellation needs a reason text", field="note")
            self._cancel_in(uow, order, why, actor, now, note)
            return order

        return self._run(work)

    @staticmethod
    def _cancel_in(
        uow: UnitOfWork,
        order: Order,
        why: CancelReason,
        actor: Actor,
        now: datetime,
        note: str | None,
    ) -> None:
        """Cancel ``order`` (locked by the caller) and give back what it held: stock, the
        coupon use, balance and points. Part of the caller's transaction."""
        order.cancel(why, actor, now, note)
        assert order.id is not None
        for attempt in uow.payments.attempts_for(order.id):
            if attempt.status in OPEN_ATTEMPT_STATES and attempt.can(PaymentEvent.CANCEL):
                attempt.apply(PaymentEvent.CANCEL, actor, now, f"order canceled ({why.value})")
                attempt.next_check_at = now  # close it at the platform (reconciliation)
                uow.save_attempt(attempt, now)
        for line in sorted(order.lines, key=lambda ln: ln.sku):
            product = uow.products.get(line.sku, lock=True)
            if product.stock is not None:
                uow.products.update(evolve(product, stock=product.stock + line.quantity), now)
        uow.coupons.release(order.id, now)
        return_deductions(uow, order, actor, now, "cancel")

    def cancel_expired(
        self, *, now: datetime | None = None, limit: int = 100
    ) -> builtins.list[str]:
        """Cancel pending orders whose payment deadline has passed (reason ``timeout``).

        The payment engine's job runner calls this after asking the channels; here it is the
        bare service call. Returns the numbers cancelled."""
        moment = now or self._now()
        numbers = self._read(
            lambda uow: uow.orders.expired_pending(moment, limit=check_limit(limit))
        )
        done = []
        for number in numbers:
            order = self.get(number)
            if order.status is OrderStatus.PENDING:
                self.cancel(number, actor=Actor.system("timeout"), reason=CancelReason.TIMEOUT)
                done.append(number)
        return done

    def batch(
        self, action: str, numbers: Sequence[str], *, actor: Actor, reason: str | None = None
    ) -> builtins.list[BatchResult]:
        """Apply ``action`` (``approve`` a transfer under review, ``activate``, ``cancel``) to
        each order in turn; a failure is reported for that order and the rest go on."""
        if action not in ("approve", "activate", "cancel"):
            raise InvalidField("batch action must be approve, activate or cancel", field="action")
        if action == "cancel" and not (reason and reason.strip()):
            raise InvalidField("a batch cancellation needs a reason", field="reason")
        results: builtins.list[BatchResult] = []
        for number in numbers:
            try:
                if action == "cancel":
                    why = (
                        CancelReason.SYSTEM
                        if actor.kind is ActorKind.SYSTEM
                        else CancelReason.ADMIN
                    )
                    self.cancel(number, actor=actor, reason=why, note=reason)
                elif action == "activate":
                    self._ctx.payments.schedule_activation(number, actor=actor)
                else:
                    waiting = [
                        a
                        for a in self._ctx.payments.attempts(number)
                        if a.status.value == "awaiting_review"
                    ]
                    if not waiting:
                        raise InvalidField(
                            f"order {number} has no payment awaiting review", field="order"
                        )
                    self._ctx.payments.approve(waiting[-1].out_trade_no, actor=actor, note=reason)
            except OrderCoreError as exc:
                results.append(BatchResult(number, False, str(exc), type(exc).__name__))
            else:
                results.append(BatchResult(number, True))
        return results

    def record_refund(
        self, number: str, *, amount: Money, actor: Actor, reason: str | None = None
    ) -> Transition[Any, Any] | None:
        """Record money given back outside ordercore's refund flow (the bare state change)."""

        def work(uow: UnitOfWork, now: datetime) -> Transition[Any, Any] | None:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.REFUNDS_APPROVE, f"order:{number}")
            assert order.id is not None
            held = uow.refunds.reserved_minor(order_id=order.id, unfinished=True)
            left = order.amounts.paid - order.amounts.refunded
            if (
                held
                and amount.currency == order.currency
                and amount.to_minor() > left.to_minor() - held
            ):
                holding = Money.from_minor(held, order.currency)
                room = Money.from_minor(max(left.to_minor() - held, 0), order.currency)
                raise InvalidAmount(
                    f"order {number}: refunds under way hold {holding}; at most {room} "
                    "can be recorded",
                    order=number,
                )
            return order.record_refund(amount, actor, now, reason)

        return self._run(work)

    def add_note(self, number: str, text: str, *, actor: Actor) -> Order:
        return self._change(
            number, _P.ORDERS_EDIT, actor, lambda o, now: o.add_note(text, actor, now)
        )

    def add_communication(
        self, number: str, *, channel: str, text: str, actor: Actor, direction: str = "outbound"
    ) -> Order:
        return self._change(
            number,
            _P.ORDERS_EDIT,
            actor,
            lambda o, now: o.add_communication(channel, text, actor, now, direction),
        )

    def flag(self, number: str, tag: str, *, actor: Actor) -> Order:
        return self._change(
            number, _P.ORDERS_EDIT, actor, lambda o, now: o.add_tag(tag, actor, now)
        )

    def unflag(self, number: str, tag: str, *, actor: Actor) -> Order:
        return self._change(
            number, _P.ORDERS_EDIT, actor, lambda o, now: o.remove_tag(tag, actor, now)
        )

    def set_special(
        self, number: str, special: bool, *, actor: Actor, reason: str | None = None
    ) -> Order:
        return self._change(
            number,
            _P.ORDERS_EDIT,
            actor,
            lambda o, now: o.set_special(special, actor, now, reason),
        )
