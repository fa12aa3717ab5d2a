"""Repositories: translate between rows and domain objects. They never commit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from ordercore._actor import Actor, ActorKind
from ordercore._audit.chain import canonical_json
from ordercore._errors import (
    CustomerNotFound,
    DuplicateCustomer,
    DuplicateSku,
    ProductNotFound,
)
from ordercore._money import Money
from ordercore._orders.domain import (
    Customer,
    Product,
    QuantityTier,
    SpecValue,
)

from . import _driver as driver
from ._built import built
from .tables import Tables

__all__ = ["CustomerRepository", "ProductRepository"]


def _dump_specs(specs: Any) -> str:
    return canonical_json(
        {k: ["d", str(v)] if isinstance(v, Decimal) else v for k, v in specs.items()}
    )


def _load_specs(text: str) -> dict[str, SpecValue]:
    raw = json.loads(text)
    return {k: Decimal(v[1]) if isinstance(v, list) else v for k, v in raw.items()}


def _actor(row: Any) -> Actor:
    return Actor(ActorKind(row.actor_kind), row.actor_id, row.actor_role)


def _actor_values(actor: Actor) -> dict[str, Any]:
    return {"actor_kind": actor.kind.value, "actor_id": actor.id, "actor_role": actor.role}

#: Products read by sku with one statement per count up to this many skus (an order's lines).
_SKUS_MAX = 8


class CustomerRepository:
    def __init__(self, conn: Connection, tables: Tables) -> None:
        self.conn = conn
        self.t = tables.customers

    @staticmethod
    def _from_row(row: Row[Any]) -> Customer:
        return Customer(
            id=row.id,
            name=row.name,
            email=row.email,
            phone=row.phone,
            external_ref=row.external_ref,
            identity_verified=bool(row.identity_verified),
            created_at=row.created_at,
        )

    def add(self, customer: Customer, now: datetime) -> Customer:
        for column, value in (("external_ref", customer.external_ref), ("email", customer.email)):
            if value is not None and self.find(**{column: value}):
                raise DuplicateCustomer(
                    f"a customer with {column} {value!r} exists already", field=column
                )
        try:
            with self.conn.begin_nested():
                result = self.conn.execute(
                    insert(self.t).values(
                        name=customer.name,
                        email=customer.email,
                        phone=customer.phone,
                        external_ref=customer.external_ref,
                        identity_verified=customer.identity_verified,
                        created_at=now,
                    )
                )
        except IntegrityError:
            raise DuplicateCustomer(
                "a customer with that e-mail or reference exists already"
            ) from None
        pk = result.inserted_primary_key
        assert pk is not None
        return self.get(int(pk[0]))

    def set_verified(self, customer_id: int, verified: bool) -> None:
        self.conn.execute(
            update(self.t).where(self.t.c.id == customer_id).values(identity_verified=verified)
        )

    def get(self, customer_id: int) -> Customer:
        t = self.t
        query = built(t, "by_id", lambda: select(t).where(t.c.id == bindparam("b_id")))
        row = driver.execute(self.conn, query, {"b_id": customer_id}).first()
        if row is None:
            raise CustomerNotFound(f"no customer with id {customer_id}", customer_id=customer_id)
        return self._from_row(row)

    def find(
        self,
        *,
        email: str | None = None,
        external_ref: str | None = None,
        name: str | None = None,
    ) -> list[Customer]:
        """Customers matching every given criterion (exact match)."""
        query = select(self.t).order_by(self.t.c.id)
        if email is not None:
            query = query.where(self.t.c.email == email.lower())
        if external_ref is not None:
            query = query.where(self.t.c.external_ref == external_ref)
        if name is not None:
            query = query.where(self.t.c.name == name)
        return [self._from_row(r) for r in self.conn.execute(query)]

    def list(self, *, limit: int, after_id: int | None = None) -> list[Customer]:
        query = select(self.t).order_by(self.t.c.id).limit(limit)
        if after_id is not None:
            query = query.where(self.t.c.id > after_id)
        return [self._from_row(r) for r in self.conn.execute(query)]


class ProductRepository:
    def __init__(self, conn: Connection, tables: Tables) -> None:
        self.conn = conn
        self.t = t = tables.products
        self._by_skus = built(
            t, "by_skus", lambda: select(t).where(t.c.sku.in_(bindparam("b_skus", expanding=True)))
        )
        self._take_stock = built(
            t,
            "take_stock",
            lambda: (
                update(t)
                .where(and_(t.c.id == bindparam("b_id"), t.c.stock >= bindparam("b_quantity")))
                .values(stock=t.c.stock - bindparam("b_quantity"))
            ),
        )

    @staticmethod
    def _from_row(row: Row[Any]) -> Product:
        return Product(
            id=row.id,
            sku=row.sku,
            name=row.name,
            price=Money.from_minor(row.price_minor, row.currency),
            specs=_load_specs(row.specs),
            stock=row.stock,
            low_stock_threshold=row.low_stock_threshold,
            active=bool(row.active),
            tiers=tuple(
                QuantityTier(min_quantity=t[0], percent_off=Decimal(t[1]))
                for t in json.loads(row.tiers)
            ),
            activation_mode=row.activation_mode,
            activation_delay_minutes=row.activation_delay_minutes,
            created_at=row.created_at,
        )

    def _values(self, product: Product) -> dict[str, Any]:
        return {
            "sku": product.sku,
            "name": product.name,
            "currency": product.price.currency.code,
            "price_minor": product.price.to_minor(),
            "specs": _dump_specs(product.specs),
            "stock": product.stock,
            "low_stock_threshold": product.low_stock_threshold,
            "active": product.active,
            "tiers": canonical_json([[t.min_quantity, str(t.percent_off)] for t in product.tiers]),
            "activation_mode": product.activation_mode,
            "activation_delay_minutes": product.activation_delay_minutes,
        }

    def add(self, product: Product, now: datetime) -> Product:
        if self.conn.execute(select(self.t.c.id).where(self.t.c.sku == product.sku)).first():
            raise DuplicateSku(
                f"a product with sku {product.sku!r} exists already", sku=product.sku
            )
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    insert(self.t).values(**self._values(product), created_at=now, updated_at=now)
                )
        except IntegrityError:
            raise DuplicateSku(
                f"a product with sku {product.sku!r} exists already", sku=product.sku
            ) from None
        return self.get(product.sku)

    def get(self, sku: str, *, lock: bool = False) -> Product:
        query = select(self.t).where(self.t.c.sku == sku)
        if lock:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        if row is None:
            raise ProductNotFound(f"no product with sku {sku!r}", sku=sku)
        return self._from_row(row)

    def get_many(self, skus: Sequence[str]) -> dict[str, Product]:
        """The products of ``skus`` (unlocked), in one statement; a missing sku raises."""
        wanted = list(skus)
        if len(wanted) <= _SKUS_MAX:  # a statement per count, run on the driver's cursor
            t, n = self.t, len(wanted)
            query = built(
                t,
                f"by_skus_{n}",
                lambda: select(t).where(t.c.sku.in_([bindparam(f"b_sku_{i}") for i in range(n)])),
            )
            rows: Any = driver.execute(
                self.conn, query, {f"b_sku_{i}": sku for i, sku in enumerate(wanted)}
            )
        else:
            rows = self.conn.execute(self._by_skus, {"b_skus": wanted})
        found = {row.sku: self._from_row(row) for row in rows}
        for sku in skus:
            if sku not in found:
                raise ProductNotFound(f"no product with sku {sku!r}", sku=sku)
        return found

    def take_stock(self, product_id: int, quantity: int, now: datetime) -> bool:
        """Take ``quantity`` from a product's limited stock, atomically: False (and nothing
        changed) when less is left. The row stays locked until the transaction ends."""
        result = driver.execute(
            self.conn,
            self._take_stock,
            {"b_id": product_id, "b_quantity": quantity, "updated_at": now},
        )
        return int(result.rowcount) == 1

    def update(self, product: Product, now: datetime) -> None:
        self.conn.execute(
            update(self.t)
            .where(self.t.c.id == product.id)
            .values(**self._values(product), updated_at=now)
        )

    def list(
        self, *, limit: int, after_sku: str | None = None, active: bool | None = None
    ) -> list[Product]:
        query = select(self.t).order_by(self.t.c.sku).limit(limit)
        if after_sku is not None:
            query = query.where(self.t.c.sku > after_sku)
        if active is not None:
            query = query.where(self.t.c.active == active)
        return [self._from_row(r) for r in self.conn.execute(query)]
