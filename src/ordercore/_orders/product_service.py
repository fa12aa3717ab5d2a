"""The catalogue: products, their prices, stock, specs and quantity tiers.

Each public method is one unit of work: it commits everything or nothing. Every call that
changes something takes an :class:`~ordercore.Actor`, checks its permission, validates its
input before it writes, and leaves an audit record of the change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from attrs import evolve

from ordercore._actor import Actor
from ordercore._audit.chain import (
    AuditEntry,
)
from ordercore._context import Service, check_limit
from ordercore._errors import CurrencyMismatch, InvalidField
from ordercore._money import Money
from ordercore._permissions import Permission

from .domain import (
    Product,
    QuantityTier,
)

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork


_P = Permission


# ------------------------------------------------------------------------------ products
class ProductService(Service):
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
        activation: str = "auto",
        activation_delay_minutes: int | None = None,
    ) -> Product:
        """Add a product. The sku must be new; the price must not be negative.
        ``activation`` is how a paid order of it is activated: ``auto`` (at once), ``manual``
        (an operator runs ``orders activate``) or ``delayed`` (``activation_delay_minutes``
        after payment)."""
        _check_activation(activation, activation_delay_minutes)

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
                activation_mode=activation,
                activation_delay_minutes=activation_delay_minutes,
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
        activation: str | None = None,
        activation_delay_minutes: int | None = None,
        reason: str | None = None,
    ) -> Product:
        """Change a product; orders keep the snapshot they were sold with. Changing
        ``activation`` to anything but ``delayed`` clears the delay."""

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
            if activation is not None or activation_delay_minutes is not None:
                mode = activation or before.activation_mode
                delay = activation_delay_minutes
                if delay is None and mode == "delayed" and activation is None:
                    delay = before.activation_delay_minutes
                _check_activation(mode, delay)
                changes["activation_mode"] = mode
                changes["activation_delay_minutes"] = delay
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
            lambda uow: uow.products.list(
                limit=check_limit(limit), after_sku=after_sku, active=active
            )
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
        "activation": product.activation_mode,
        "activation_delay_minutes": product.activation_delay_minutes,
    }


def _check_activation(mode: object, delay: object) -> None:
    if mode not in ("auto", "manual", "delayed"):
        raise InvalidField(
            f"activation must be auto, manual or delayed, not {mode!r}", field="activation"
        )
    if mode == "delayed":
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
            raise InvalidField(
                "a delayed activation needs activation_delay_minutes, whole minutes ≥ 1",
                field="activation_delay_minutes",
            )
    elif delay is not None:
        raise InvalidField(
            f"activation_delay_minutes is only for a delayed activation, not {mode}",
            field="activation_delay_minutes",
        )
