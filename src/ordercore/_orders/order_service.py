"""Use cases. Each public method is one unit of work: it commits everything or nothing.

Services take an :class:`~ordercore.Actor` for every call that changes something, check its
permission, validate their input before they write, and leave an audit record of every
change. A refused permission writes only the audit record of the refusal.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import evolve, frozen
from sqlalchemy.exc import IntegrityError

from ordercore._actor import Actor, ActorKind
from ordercore._audit.chain import (
    AuditEntry,
    AuditRecord,
    ChainVerdict,
    canonical_json,
    verify_chain,
)
from ordercore._errors import (
    CurrencyMismatch,
    CustomerNotFound,
    IdempotencyConflict,
    InvalidAmount,
    InvalidField,
    InvalidQuantity,
    OrderCoreError,
    OutOfStock,
    PermissionDenied,
    ProductInactive,
)
from ordercore._money import Money, get_currency
from ordercore._numbers import OrderNumberGenerator
from ordercore._payments.domain import OPEN_ATTEMPT_STATES, Anomaly, PaymentAttempt
from ordercore._permissions import Permission
from ordercore._refunds.domain import AfterSalesIssue, Refund
from ordercore._state import CancelReason, OrderStatus, PaymentEvent, Transition

from .domain import (
    AmountBreakdown,
    Customer,
    Order,
    OrderLine,
    Product,
    QuantityTier,
    validate_tag,
)
from .listing import OrderFilter, Page
from .pricing import Coupon, CouponKind, ManualDiscount, UseAll, price_order
from .wallet import POINTS, LedgerEntry, WalletSnapshot

if TYPE_CHECKING:
    from ordercore._core import OrderCore
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

__all__ = [
    "AuditService",
    "BatchResult",
    "CouponService",
    "CustomerService",
    "NewCustomer",
    "OrderDetails",
    "OrderService",
    "ProductService",
    "WalletService",
]

T = TypeVar("T")
Clock = Callable[[], datetime]
_P = Permission


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidField("limit must be a whole number from 1 to 1000", field="limit")
    return limit


class _Service:
    def __init__(self, core: OrderCore) -> None:
        self._core = core

    def _uow(self) -> UnitOfWork:
        return self._core.unit_of_work()

    def _now(self) -> datetime:
        return self._core.clock()

    def _check(
        self, actor: Actor, permission: str, target: str, *, owner_id: int | None = None
    ) -> None:
        self._core.authorizer.check(actor, permission, owner_id=owner_id, target=target)

    def _run(self, work: Callable[[UnitOfWork, datetime], T]) -> T:
        """Run ``work`` in one unit of work and commit. A PermissionDenied raised inside rolls
        the work back and is recorded, alone, in a transaction of its own."""
        now = self._now()
        try:
            with self._uow() as uow:
                result = work(uow, now)
                uow.commit()
                return result
        except PermissionDenied as exc:
            self._record_refusal(exc, now)
            raise

    def _read(self, work: Callable[[UnitOfWork], T]) -> T:
        with self._uow() as uow:
            return work(uow)

    def _record_refusal(self, exc: PermissionDenied, now: datetime) -> None:
        actor = exc.context.get("actor")
        if not isinstance(actor, Actor):  # pragma: no cover - always set by Authorizer.check
            return
        with self._uow() as uow:
            uow.record(
                AuditEntry(
                    entity_kind="permission",
                    entity_id=str(exc.context.get("target") or "-")[:64],
                    action="permission.denied",
                    actor=actor,
                    at=now,
                    after={"permission": exc.context.get("permission")},
                    reason=str(exc),
                )
            )
            uow.commit()


# ----------------------------------------------------------------------------- customers
@frozen
class NewCustomer:
    """A customer to find (by e-mail, then external reference, then exact name) or create
    while creating an order."""

    name: str
    email: str | None = None
    phone: str | None = None
    external_ref: str | None = None


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

        def work(uow: UnitOfWork, now: datetime) -> Customer:
            self._check(actor, _P.CUSTOMERS_MANAGE, f"customer:{email or external_ref or name}")
            customer = Customer(
                name=name,
                email=email,
                phone=phone,
                external_ref=external_ref,
                identity_verified=identity_verified,
                created_at=now,
            )
            return self._insert(uow, customer, actor, now)

        return self._run(work)

    @staticmethod
    def _insert(uow: UnitOfWork, customer: Customer, actor: Actor, now: datetime) -> Customer:
        stored = uow.customers.add(customer, now)
        uow.record(
            AuditEntry(
                entity_kind="customer",
                entity_id=str(stored.id),
                action="customer.add",
                actor=actor,
                at=now,
                after={
                    "name": customer.name,
                    "email": customer.email,
                    "phone": customer.phone,
                    "external_ref": customer.external_ref,
                    "identity_verified": customer.identity_verified,
                },
            )
        )
        return stored

    @staticmethod
    def _find_or_insert(uow: UnitOfWork, new: NewCustomer, actor: Actor, now: datetime) -> Customer:
        for criteria in (
            {"email": new.email} if new.email else None,
            {"external_ref": new.external_ref} if new.external_ref else None,
            # A name alone identifies nobody when an e-mail or a reference was given.
            {"name": new.name} if not (new.email or new.external_ref) else None,
        ):
            if criteria:
                found = uow.customers.find(**criteria)
                if len(found) == 1:
                    return found[0]
        customer = Customer(
            name=new.name,
            email=new.email,
            phone=new.phone,
            external_ref=new.external_ref,
            created_at=now,
        )
        return CustomerService._insert(uow, customer, actor, now)

    def get(self, customer_id: int) -> Customer:
        return self._read(lambda uow: uow.customers.get(customer_id))

    def resolve(self, reference: str) -> Customer:
        """Find a customer by id, e-mail or external reference (as the CLI's ``--customer``)."""

        def work(uow: UnitOfWork) -> Customer:
            if reference.isdigit():
                return uow.customers.get(int(reference))
            key = "email" if "@" in reference else "external_ref"
            found = uow.customers.find(**{key: reference})
            if not found:
                raise CustomerNotFound(f"no customer with {key} {reference!r}", reference=reference)
            return found[0]

        return self._read(work)

    def find(
        self, *, email: str | None = None, external_ref: str | None = None, name: str | None = None
    ) -> list[Customer]:
        return self._read(
            lambda uow: uow.customers.find(email=email, external_ref=external_ref, name=name)
        )

    def list(self, *, limit: int = 50, after_id: int | None = None) -> list[Customer]:
        return self._read(lambda uow: uow.customers.list(limit=_limit(limit), after_id=after_id))


# ------------------------------------------------------------------------------ products
class ProductService(_Service):
    """The catalogue: add, update, list, show."""

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
        tiers: Sequence[QuantityTier] = (),
    ) -> Product:
        """Add a product. The sku must be new; the price must not be negative."""

        def work(uow: UnitOfWork, now: datetime) -> Product:
            self._check(actor, _P.PRODUCTS_MANAGE, f"product:{sku}")
            product = Product(
                sku=sku,
                name=name,
                price=price,
                specs=dict(specs or {}),
                stock=stock,
                low_stock_threshold=low_stock_threshold,
                active=active,
                tiers=tuple(tiers),
                created_at=now,
            )
            stored = uow.products.add(product, now)
            uow.record(
                AuditEntry(
                    entity_kind="product",
                    entity_id=sku,
                    action="product.add",
                    actor=actor,
                    at=now,
                    after=_product_audit(stored),
                )
            )
            return stored

        return self._run(work)

    def update(
        self,
        sku: str,
        *,
        actor: Actor,
        name: str | None = None,
        price: Money | None = None,
        stock: int | None = None,
        clear_stock: bool = False,
        low_stock_threshold: int | None = None,
        active: bool | None = None,
        specs: Mapping[str, Any] | None = None,
        tiers: Sequence[QuantityTier] | None = None,
        reason: str | None = None,
    ) -> Product:
        """Change a product; orders keep the snapshot they were sold with."""

        def work(uow: UnitOfWork, now: datetime) -> Product:
            self._check(actor, _P.PRODUCTS_MANAGE, f"product:{sku}")
            before = uow.products.get(sku, lock=True)
            changes: dict[str, Any] = {}
            if name is not None:
                changes["name"] = name
            if price is not None:
                if price.currency != before.price.currency:
                    raise CurrencyMismatch(
                        f"product {sku} is priced in {before.price.currency.code}; "
                        f"a new price in {price.currency.code} is refused"
                    )
                changes["price"] = price
            if clear_stock:
                changes["stock"] = None
            elif stock is not None:
                changes["stock"] = stock
            if low_stock_threshold is not None:
                changes["low_stock_threshold"] = low_stock_threshold
            if active is not None:
                changes["active"] = active
            if specs is not None:
                changes["specs"] = dict(specs)
            if tiers is not None:
                changes["tiers"] = tuple(tiers)
            after = evolve(before, **changes)
            uow.products.update(after, now)
            uow.record(
                AuditEntry(
                    entity_kind="product",
                    entity_id=sku,
                    action="product.update",
                    actor=actor,
                    at=now,
                    before=_product_audit(before),
                    after=_product_audit(after),
                    reason=reason,
                )
            )
            return after

        return self._run(work)

    def get(self, sku: str) -> Product:
        return self._read(lambda uow: uow.products.get(sku))

    def list(
        self, *, limit: int = 50, after_sku: str | None = None, active: bool | None = None
    ) -> list[Product]:
        return self._read(
            lambda uow: uow.products.list(limit=_limit(limit), after_sku=after_sku, active=active)
        )


def _product_audit(product: Product) -> dict[str, Any]:
    return {
        "name": product.name,
        "price": str(product.price.amount),
        "currency": product.price.currency.code,
        "specs": dict(product.specs),
        "stock": product.stock,
        "low_stock_threshold": product.low_stock_threshold,
        "active": product.active,
        "tiers": [[t.min_quantity, str(t.percent_off)] for t in product.tiers],
    }


# -------------------------------------------------------------------------------- wallet
class WalletService(_Service):
    """Balances and points. Every change is a ledger entry and an audit record."""

    def _apply(
        self,
        customer_id: int,
        asset: str,
        delta: int,
        *,
        reason: str,
        actor: Actor,
        idempotency_key: str | None,
        note: str | None,
    ) -> LedgerEntry:
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 64:
            raise InvalidField("a wallet change needs a reason (1-64 characters)", field="reason")

        def work(uow: UnitOfWork, now: datetime) -> LedgerEntry:
            self._check(actor, _P.WALLET_ADJUST, f"customer:{customer_id}")
            uow.customers.get(customer_id)
            entry, created = uow.wallet.apply_tracked(
                customer_id=customer_id,
                asset=asset,
                delta=delta,
                reason=reason,
                actor=actor,
                at=now,
                idempotency_key=idempotency_key,
                note=note,
            )
            if created:  # an idempotent repeat changed nothing and is not audited again
                uow.record(_wallet_audit(entry))
            return entry

        try:
            return self._run(work)
        except IntegrityError:
            # Two calls with one idempotency key raced; the first won. Answer as it did.
            if idempotency_key is None:
                raise
            existing = self._read(lambda uow: uow.wallet.by_idempotency_key(idempotency_key))
            if existing is None:  # pragma: no cover - the key's row must exist now
                raise
            return self._apply(
                customer_id,
                asset,
                delta,
                reason=reason,
                actor=actor,
                idempotency_key=idempotency_key,
                note=note,
            )

    def credit(
        self,
        customer_id: int,
        amount: Money,
        *,
        reason: str,
        actor: Actor,
        idempotency_key: str | None = None,
        note: str | None = None,
    ) -> LedgerEntry:
        """Add ``amount`` to the customer's balance in its currency."""
        if not amount.is_positive():
            raise InvalidAmount(f"a credit must be positive, not {amount}", field="amount")
        return self._apply(
            customer_id,
            amount.currency.code,
            amount.to_minor(),
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            note=note,
        )

    def debit(
        self,
        customer_id: int,
        amount: Money,
        *,
        reason: str,
        actor: Actor,
        idempotency_key: str | None = None,
        note: str | None = None,
    ) -> LedgerEntry:
        """Take ``amount`` from the balance; never below zero (InsufficientFunds)."""
        if not amount.is_positive():
            raise InvalidAmount(f"a debit must be positive, not {amount}", field="amount")
        return self._apply(
            customer_id,
            amount.currency.code,
            -amount.to_minor(),
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            note=note,
        )

    def credit_points(
        self,
        customer_id: int,
        points: int,
        *,
        reason: str,
        actor: Actor,
        idempotency_key: str | None = None,
        note: str | None = None,
    ) -> LedgerEntry:
        return self._apply(
            customer_id,
            POINTS,
            _points(points),
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            note=note,
        )

    def debit_points(
        self,
        customer_id: int,
        points: int,
        *,
        reason: str,
        actor: Actor,
        idempotency_key: str | None = None,
        note: str | None = None,
    ) -> LedgerEntry:
        return self._apply(
            customer_id,
            POINTS,
            -_points(points),
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            note=note,
        )

    def balance(self, customer_id: int, currency: str) -> Money:
        cur = get_currency(currency)
        return self._read(
            lambda uow: Money.from_minor(uow.wallet.balance(customer_id, cur.code), cur)
        )

    def points(self, customer_id: int) -> int:
        return self._read(lambda uow: uow.wallet.balance(customer_id, POINTS))

    def show(self, customer_id: int, *, limit: int = 20) -> WalletSnapshot:
        def work(uow: UnitOfWork) -> WalletSnapshot:
            uow.customers.get(customer_id)
            raw = uow.wallet.balances(customer_id)
            return WalletSnapshot(
                customer_id=customer_id,
                balances={a: Money.from_minor(v, a) for a, v in raw.items() if a != POINTS},
                points=raw.get(POINTS, 0),
                entries=tuple(uow.wallet.entries(customer_id, limit=_limit(limit))),
            )

        return self._read(work)

    def ledger(
        self, customer_id: int, *, limit: int = 50, before_id: int | None = None
    ) -> list[LedgerEntry]:
        return self._read(
            lambda uow: uow.wallet.entries(customer_id, limit=_limit(limit), before_id=before_id)
        )

    def ledger_sum(self, customer_id: int, asset: str) -> int:
        """Sum of the account's ledger entries (equals its stored balance)."""
        return self._read(lambda uow: uow.wallet.ledger_sum(customer_id, asset))


def _points(points: int) -> int:
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise InvalidField(f"points must be a whole number ≥ 1, not {points!r}", field="points")
    return points


def _wallet_audit(entry: LedgerEntry) -> AuditEntry:
    return AuditEntry(
        entity_kind="wallet",
        entity_id=f"{entry.customer_id}:{entry.asset}",
        action="wallet.credit" if entry.delta > 0 else "wallet.debit",
        actor=entry.actor,
        at=entry.at,
        before={"balance": entry.balance_after - entry.delta},
        after={"balance": entry.balance_after, "order": entry.order_number},
        reason=entry.reason,
    )


# ------------------------------------------------------------------------------- coupons
def return_deductions(uow: UnitOfWork, order: Order, actor: Actor, now: datetime, why: str) -> None:
    """Give back the balance and points deducted when ``order`` was priced (a cancellation,
    ``why="cancel"``, or a full refund, ``why="refund"``): ledger reason
    ``order.<why>_return``, idempotent per deduction entry. Part of the caller's transaction."""
    assert order.id is not None
    for entry in uow.wallet.for_order(order.id):
        if entry.reason in ("order.balance_deduction", "order.points_deduction"):
            back = uow.wallet.apply(
                customer_id=entry.customer_id,
                asset=entry.asset,
                delta=-entry.delta,
                reason=f"order.{why}_return",
                actor=actor,
                at=now,
                order_id=order.id,
                idempotency_key=f"{why}-return:{entry.id}",
            )
            uow.record(_wallet_audit(back))


class CouponService(_Service):
    """Coupons: add, disable, list, show."""

    def add(
        self,
        *,
        code: str,
        actor: Actor,
        currency: str,
        percent: Decimal | str | None = None,
        amount: Money | None = None,
        max_discount: Money | None = None,
        min_amount: Money | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        limit_total: int | None = None,
        limit_per_customer: int | None = None,
        skus: Sequence[str] = (),
    ) -> Coupon:
        """Add a coupon: ``percent`` off or a fixed ``amount`` off (exactly one)."""
        if (percent is None) == (amount is None):
            raise InvalidField("a coupon takes either a percent or an amount", field="percent")
        coupon = Coupon(
            code=code,
            kind=CouponKind.PERCENT if percent is not None else CouponKind.FIXED,
            currency=get_currency(currency).code,
            percent=None if percent is None else Decimal(str(percent)),
            amount=amount,
            max_discount=max_discount,
            min_amount=min_amount,
            valid_from=valid_from,
            valid_until=valid_until,
            limit_total=limit_total,
            limit_per_customer=limit_per_customer,
            skus=frozenset(skus),
        )

        def work(uow: UnitOfWork, now: datetime) -> Coupon:
            self._check(actor, _P.COUPONS_MANAGE, f"coupon:{code}")
            for sku in coupon.skus:
                uow.products.get(sku)
            stored = uow.coupons.add(coupon, now)
            uow.record(
                AuditEntry(
                    entity_kind="coupon",
                    entity_id=code,
                    action="coupon.add",
                    actor=actor,
                    at=now,
                    after=_coupon_audit(stored),
                )
            )
            return stored

        return self._run(work)

    def disable(self, code: str, *, actor: Actor, reason: str | None = None) -> Coupon:
        def work(uow: UnitOfWork, now: datetime) -> Coupon:
            self._check(actor, _P.COUPONS_MANAGE, f"coupon:{code}")
            coupon = uow.coupons.get(code, lock=True)
            uow.coupons.set_active(code, False, now)
            uow.record(
                AuditEntry(
                    entity_kind="coupon",
                    entity_id=code,
                    action="coupon.disable",
                    actor=actor,
                    at=now,
                    before={"active": coupon.active},
                    after={"active": False},
                    reason=reason,
                )
            )
            return evolve(coupon, active=False)

        return self._run(work)

    def get(self, code: str) -> tuple[Coupon, int]:
        """The coupon and its current uses (reserved + consumed)."""
        return self._read(lambda uow: (uow.coupons.get(code), uow.coupons.uses(code)))

    def list(self, *, limit: int = 50, after_code: str | None = None) -> list[tuple[Coupon, int]]:
        return self._read(lambda uow: uow.coupons.list(limit=_limit(limit), after_code=after_code))


def _coupon_audit(coupon: Coupon) -> dict[str, Any]:
    def m(value: Money | None) -> str | None:
        return None if value is None else str(value.amount)

    return {
        "kind": coupon.kind.value,
        "currency": coupon.currency,
        "percent": None if coupon.percent is None else str(coupon.percent),
        "amount": m(coupon.amount),
        "max_discount": m(coupon.max_discount),
        "min_amount": m(coupon.min_amount),
        "valid_from": coupon.valid_from,
        "valid_until": coupon.valid_until,
        "limit_total": coupon.limit_total,
        "limit_per_customer": coupon.limit_per_customer,
        "skus": sorted(coupon.skus),
    }


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
    log: tuple[AuditRecord, ...]
    coupons: tuple[tuple[str, str], ...] = ()
    wallet_entries: tuple[LedgerEntry, ...] = ()
    payments: tuple[PaymentAttempt, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    activation: Mapping[str, Any] | None = None
    refunds: tuple[Refund, ...] = ()
    issues: tuple[AfterSalesIssue, ...] = ()


def products_of(uow: UnitOfWork, lines: Sequence[OrderLine]) -> list[Product]:
    return [uow.products.get(sku) for sku in sorted({line.sku for line in lines})]


def _request_hash(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()


class OrderService(_Service):
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
        use_balance: Money | UseAll | None = None,
        use_points: int = 0,
        channel: str | None = None,
        note: str | None = None,
        tags: Sequence[str] = (),
        special: bool = False,
        payment_timeout: timedelta | None = None,
        idempotency_key: str | None = None,
        activation: str | None = None,
    ) -> Order:
        """Create an order, priced (tiers, coupon, manual discount, balance, points, fee).

        In one transaction: the customer is found or created, stock is reserved under the
        products' row locks, the coupon use is reserved under the coupon's row lock, balance
        and points are debited. An order whose payable is zero is paid at once. With an
        ``idempotency_key`` the same request returns the same order and a different request
        raises :class:`IdempotencyConflict`.
        """
        if (customer_id is None) == (new_customer is None):
            raise InvalidField("give either customer_id or new_customer", field="customer")
        if not items:
            raise InvalidField("an order needs at least one item", field="items")
        for _, qty in items:
            if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                raise InvalidQuantity(
                    f"quantity must be a whole number ≥ 1, not {qty!r}", value=qty
                )
        for tag in tags:
            validate_tag(tag)
        if idempotency_key is not None and not (
            isinstance(idempotency_key, str)
            and 1 <= len(idempotency_key) <= 128
            and idempotency_key == idempotency_key.strip()
        ):
            raise InvalidField("an idempotency key is 1-128 characters", field="idempotency_key")
        fee_rule = self._core.fee_rule(channel) if channel else None
        timeout = payment_timeout or timedelta(minutes=self._core.settings.payment_timeout_minutes)
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
            lines = self._reserve_stock(uow, items, now)
            currency = lines[0].unit_price.currency
            coupon_obj = uow.coupons.get(coupon, lock=True) if coupon else None
            balance_held = Money.from_minor(
                uow.wallet.balance(customer.id, currency.code, lock=use_balance is not None),
                currency,
            )
            points_held = uow.wallet.balance(customer.id, POINTS, lock=bool(use_points))
            priced = price_order(
                lines,
                now=now,
                coupon=coupon_obj,
                manual_discount=manual_discount,
                use_balance=use_balance,
                balance_available=balance_held,
                use_points=use_points,
                points_available=points_held,
                points_rate=self._core.settings.points_rate,
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
            )
            assert order.id is not None
            if channel:
                uow.orders.set_channel(order, channel)
            modes = {p.activation_mode for p in products_of(uow, lines)}
            plan = activation or next((m for m in ("manual", "delayed") if m in modes), "auto")
            if plan not in ("auto", "manual", "delayed"):
                raise InvalidField("activation must be auto, manual or delayed", field="activation")
            uow.payments.set_activation(order.id, mode=str(plan))
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
                uow.record(_wallet_audit(entry))
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
                uow.record(_wallet_audit(entry))
            if note:
                order.add_note(note, actor, now)
            if order.amounts.payable.is_zero():
                order.mark_paid(
                    order.amounts.payable,
                    Actor.system(),
                    now,
                    "covered by balance, points or discounts",
                )
                self._core.payments.after_paid(uow, order, now, channel=None, out_trade_no=None)
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

    @staticmethod
    def _reserve_stock(
        uow: UnitOfWork, items: Sequence[tuple[str, int]], now: datetime
    ) -> list[OrderLine]:
        # Lock products in sku order so that concurrent orders cannot deadlock.
        products = {sku: uow.products.get(sku, lock=True) for sku in sorted({s for s, _ in items})}
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
        for product in products.values():
            if product.stock is not None:
                uow.products.update(product, now)
        return lines

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
                uow.orders.add(order, idempotency_key=idempotency_key, request_hash=request_hash)
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
        from ordercore.adapters.sqlalchemy.listing import list_orders

        flt = flt or OrderFilter()

        def work(uow: UnitOfWork) -> Page:
            if actor is not None:
                if actor.kind is ActorKind.CUSTOMER:
                    if flt.customer_id is None or str(flt.customer_id) != actor.id:
                        self._check(actor, _P.ORDERS_VIEW, "orders:list", owner_id=-1)
                else:
                    self._check(actor, _P.ORDERS_VIEW, "orders:list")
            return list_orders(uow.conn, uow.tables, flt, limit=_limit(limit), cursor=cursor)

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
            self._core.payments.after_paid(uow, order, now, channel=None, out_trade_no=None)
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
            raise InvalidField(
                f"a {actor.kind.value} cancels with reason {names}, not {why.value}", field="reason"
            )
        if why is CancelReason.ADMIN and not (note and note.strip()):
            raise InvalidField("an operator's cancellation needs a reason text", field="note")

        def work(uow: UnitOfWork, now: datetime) -> Order:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.ORDERS_CANCEL, f"order:{number}", owner_id=order.customer_id)
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
        numbers = self._read(lambda uow: uow.orders.expired_pending(moment, limit=_limit(limit)))
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
                    self._core.payments.schedule_activation(number, actor=actor)
                else:
                    waiting = [
                        a
                        for a in self._core.payments.attempts(number)
                        if a.status.value == "awaiting_review"
                    ]
                    if not waiting:
                        raise InvalidField(
                            f"order {number} has no payment awaiting review", field="order"
                        )
                    self._core.payments.approve(waiting[-1].out_trade_no, actor=actor, note=reason)
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
            left = order.amounts.paid_amount - order.amounts.refunded_amount
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


# --------------------------------------------------------------------------------- audit
class AuditService(_Service):
    """The audit trail: verify the chain, read records."""

    def verify(self) -> ChainVerdict:
        """Recompute the whole chain; the verdict names the first broken record."""
        key = self._core.settings.audit_key

        def work(uow: UnitOfWork) -> ChainVerdict:
            # Read the head first and stop there: records past it were committed after it was
            # read (every append moves the head in its own transaction), not tampered with.
            head = uow.audit.head()
            upto = None if head is None else head[0]
            return verify_chain(uow.audit.records(upto=upto), key, head)

        return self._read(work)

    def records(self, entity_kind: str, entity_id: str) -> list[AuditRecord]:
        return self._read(lambda uow: uow.audit.for_entity(entity_kind, entity_id))

    def count(self) -> int:
        return self._read(lambda uow: uow.audit.count())
