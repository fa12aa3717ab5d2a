"""Use cases. Each public method is one unit of work: it commits everything or nothing.

Services take an :class:`~ordercore.Actor` for every call that changes something, validate
their input before they write, and leave an audit record of every change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from attrs import evolve, frozen
from sqlalchemy.exc import IntegrityError

from ._actor import Actor
from ._audit import AuditEntry, AuditRecord, ChainVerdict, verify_chain
from ._domain import AmountBreakdown, Customer, Order, OrderLine, Product, validate_tag
from ._errors import CurrencyMismatch, InvalidField, InvalidQuantity, OutOfStock, ProductInactive
from ._money import Money
from ._numbers import OrderNumberGenerator
from ._state import CancelReason, Transition

if TYPE_CHECKING:
    from ._core import OrderCore
    from .adapters.sqlalchemy.uow import UnitOfWork

__all__ = [
    "AuditService",
    "CustomerService",
    "OrderDetails",
    "OrderService",
    "ProductService",
]

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Service:
    def __init__(self, core: OrderCore) -> None:
        self._core = core

    def _uow(self) -> UnitOfWork:
        return self._core.unit_of_work()

    def _now(self) -> datetime:
        return self._core.clock()


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidField("limit must be a whole number from 1 to 1000", field="limit")
    return limit


class CustomerService(_Service):
    """Customers: add, find, show."""

    def add(
        self,
        *,
        name: str,
        actor: Actor,
        email: str | None = None,
        phone: str | None = None,
        external_ref: str | None = None,
        identity_verified: bool = False,
    ) -> Customer:
        """Add a customer. E-mail and external reference must be unique."""
        now = self._now()
        customer = Customer(
            name=name,
            email=email,
            phone=phone,
            external_ref=external_ref,
            identity_verified=identity_verified,
            created_at=now,
        )
        with self._uow() as uow:
            stored = uow.customers.add(customer, now)
            uow.record(
                AuditEntry(
                    entity_kind="customer",
                    entity_id=str(stored.id),
                    action="customer.add",
                    actor=actor,
                    at=now,
                    after={
                        "name": name,
                        "email": email,
                        "phone": phone,
                        "external_ref": external_ref,
                        "identity_verified": identity_verified,
                    },
                )
            )
            uow.commit()
        return stored

    def get(self, customer_id: int) -> Customer:
        with self._uow() as uow:
            return uow.customers.get(customer_id)

    def find(
        self, *, email: str | None = None, external_ref: str | None = None, name: str | None = None
    ) -> list[Customer]:
        with self._uow() as uow:
            return uow.customers.find(email=email, external_ref=external_ref, name=name)

    def list(self, *, limit: int = 50, after_id: int | None = None) -> list[Customer]:
        with self._uow() as uow:
            return uow.customers.list(limit=_limit(limit), after_id=after_id)


class ProductService(_Service):
    """The catalogue: add, list, show."""

    def add(
        self,
        *,
        sku: str,
        name: str,
        price: Money,
        actor: Actor,
        specs: Mapping[str, Any] | None = None,
        stock: int | None = None,
        low_stock_threshold: int | None = None,
        active: bool = True,
    ) -> Product:
        """Add a product. The sku must be new; the price must not be negative."""
        now = self._now()
        product = Product(
            sku=sku,
            name=name,
            price=price,
            specs=dict(specs or {}),
            stock=stock,
            low_stock_threshold=low_stock_threshold,
            active=active,
            created_at=now,
        )
        with self._uow() as uow:
            stored = uow.products.add(product, now)
            uow.record(
                AuditEntry(
                    entity_kind="product",
                    entity_id=sku,
                    action="product.add",
                    actor=actor,
                    at=now,
                    after={
                        "name": name,
                        "price": str(price.amount),
                        "currency": price.currency.code,
                        "specs": dict(stored.specs),
                        "stock": stock,
                        "active": active,
                    },
                )
            )
            uow.commit()
        return stored

    def get(self, sku: str) -> Product:
        with self._uow() as uow:
            return uow.products.get(sku)

    def list(
        self, *, limit: int = 50, after_sku: str | None = None, active: bool | None = None
    ) -> list[Product]:
        with self._uow() as uow:
            return uow.products.list(limit=_limit(limit), after_sku=after_sku, active=active)


@frozen
class OrderDetails:
    """An order with its customer and its full audit log (operation log)."""

    order: Order
    customer: Customer
    log: tuple[AuditRecord, ...]


class OrderService(_Service):
    """Orders: create, walk through the state machine, annotate, show."""

    _numbers = OrderNumberGenerator()

    def create(
        self,
        *,
        customer_id: int,
        items: Sequence[tuple[str, int]],
        actor: Actor,
        note: str | None = None,
        tags: Sequence[str] = (),
        special: bool = False,
        payment_timeout: timedelta | None = None,
    ) -> Order:
        """Create a pending order from ``(sku, quantity)`` items at current prices.

        Products must be active and in stock; stock is reserved (decremented under the
        product's row lock) in the same transaction. All lines must share one currency.
        """
        if not items:
            raise InvalidField("an order needs at least one item", field="items")
        for _, qty in items:
            if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                raise InvalidQuantity(
                    f"quantity must be a whole number ≥ 1, not {qty!r}", value=qty
                )
        for tag in tags:
            validate_tag(tag)
        now = self._now()
        timeout = payment_timeout or timedelta(minutes=self._core.settings.payment_timeout_minutes)
        with self._uow() as uow:
            customer = uow.customers.get(customer_id)
            # Lock products in sku order so that concurrent orders cannot deadlock.
            products = {
                sku: uow.products.get(sku, lock=True) for sku in sorted({s for s, _ in items})
            }
            lines: list[OrderLine] = []
            for sku, qty in items:
                product = products[sku]
                if not product.active:
                    raise ProductInactive(f"product {sku} is not for sale (inactive)", sku=sku)
                if product.stock is not None:
                    if product.stock < qty:
                        raise OutOfStock(
                            f"product {sku}: {qty} wanted, {product.stock} in stock", sku=sku
                        )
                    products[sku] = evolve(product, stock=product.stock - qty)
                lines.append(OrderLine.from_product(product, qty))
            currencies = {line.unit_price.currency.code for line in lines}
            if len(currencies) > 1:
                raise CurrencyMismatch(
                    f"an order is in one currency; these items mix {', '.join(sorted(currencies))}"
                )
            reserved = [p for p in products.values() if p.stock is not None]
            for product in reserved:
                uow.products.update(product, now)
            order = self._insert(uow, customer, lines, now, timeout, tags, special, actor)
            if note:
                order.add_note(note, actor, now)
            uow.commit()
        return order

    def _insert(
        self,
        uow: UnitOfWork,
        customer: Customer,
        lines: list[OrderLine],
        now: datetime,
        timeout: timedelta,
        tags: Sequence[str],
        special: bool,
        actor: Actor,
    ) -> Order:
        assert customer.id is not None
        for _attempt in range(5):
            order = Order(
                number=self._numbers.next(now),
                customer_id=customer.id,
                lines=tuple(lines),
                amounts=AmountBreakdown.for_lines(lines),
                created_at=now,
                payment_deadline=now + timeout,
                special=special,
                tags=frozenset(tags),
            )
            try:
                uow.orders.add(order)
            except IntegrityError:  # number taken by another process in the same millisecond
                continue
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
                        "payable": str(order.amounts.payable.amount),
                        "currency": order.currency.code,
                    },
                )
            )
            return order
        raise RuntimeError("could not allocate a unique order number")  # pragma: no cover

    def get(self, number: str) -> Order:
        with self._uow() as uow:
            return uow.orders.get(number)

    def details(self, number: str) -> OrderDetails:
        with self._uow() as uow:
            order = uow.orders.get(number)
            customer = uow.customers.get(order.customer_id)
            log = tuple(uow.audit.for_entity("order", number))
        return OrderDetails(order=order, customer=customer, log=log)

    def _change(self, number: str, change: Callable[[Order, datetime], Any]) -> Order:
        now = self._now()
        with self._uow() as uow:
            order = uow.orders.get(number, lock=True)
            change(order, now)
            uow.commit()
        return order

    def mark_paid(
        self, number: str, *, actor: Actor, amount: Money | None = None, reason: str | None = None
    ) -> Order:
        """Record that the payable amount arrived (an operator's confirmation). Payment
        channels arrive with the payment engine; this is the bare state change."""
        return self._change(
            number,
            lambda o, now: o.mark_paid(amount or o.amounts.payable, actor, now, reason),
        )

    def complete(self, number: str, *, actor: Actor, reason: str | None = None) -> Order:
        """Mark what was bought as activated."""
        return self._change(number, lambda o, now: o.complete(actor, now, reason))

    def cancel(
        self,
        number: str,
        *,
        actor: Actor,
        reason: CancelReason | str,
        note: str | None = None,
    ) -> Order:
        """Cancel a pending order and return its reserved stock, in one transaction."""
        now = self._now()
        with self._uow() as uow:
            order = uow.orders.get(number, lock=True)
            order.cancel(reason, actor, now, note)
            for line in order.lines:
                product = uow.products.get(line.sku, lock=True)
                if product.stock is not None:
                    uow.products.update(evolve(product, stock=product.stock + line.quantity), now)
            uow.commit()
        return order

    def record_refund(
        self, number: str, *, amount: Money, actor: Actor, reason: str | None = None
    ) -> Transition[Any, Any] | None:
        """Record money given back outside ordercore's refund flow (the bare state change)."""
        now = self._now()
        with self._uow() as uow:
            order = uow.orders.get(number, lock=True)
            transition = order.record_refund(amount, actor, now, reason)
            uow.commit()
        return transition

    def add_note(self, number: str, text: str, *, actor: Actor) -> Order:
        return self._change(number, lambda o, now: o.add_note(text, actor, now))

    def add_communication(
        self, number: str, *, channel: str, text: str, actor: Actor, direction: str = "outbound"
    ) -> Order:
        return self._change(
            number, lambda o, now: o.add_communication(channel, text, actor, now, direction)
        )

    def flag(self, number: str, tag: str, *, actor: Actor) -> Order:
        return self._change(number, lambda o, now: o.add_tag(tag, actor, now))

    def unflag(self, number: str, tag: str, *, actor: Actor) -> Order:
        return self._change(number, lambda o, now: o.remove_tag(tag, actor, now))

    def set_special(
        self, number: str, special: bool, *, actor: Actor, reason: str | None = None
    ) -> Order:
        return self._change(number, lambda o, now: o.set_special(special, actor, now, reason))


class AuditService(_Service):
    """The audit trail: verify the chain, read records."""

    def verify(self) -> ChainVerdict:
        """Recompute the whole chain; the verdict names the first broken record."""
        with self._uow() as uow:
            return verify_chain(
                uow.audit.records(), self._core.settings.audit_key, uow.audit.head()
            )

    def records(self, entity_kind: str, entity_id: str) -> list[AuditRecord]:
        with self._uow() as uow:
            return uow.audit.for_entity(entity_kind, entity_id)

    def count(self) -> int:
        with self._uow() as uow:
            return uow.audit.count()
