"""Repositories: translate between rows and domain objects. They never commit."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from ordercore._actor import Actor, ActorKind
from ordercore._audit.chain import canonical_json
from ordercore._errors import (
    ConcurrentModification,
    CustomerNotFound,
    DuplicateCustomer,
    DuplicateSku,
    OrderNotFound,
    ProductNotFound,
)
from ordercore._money import Currency, Money, get_currency
from ordercore._orders.amounts import AdjustmentKind, AmountAdjustment, AmountBreakdown
from ordercore._orders.domain import (
    Communication,
    Customer,
    Note,
    Order,
    OrderLine,
    Product,
    QuantityTier,
    SpecValue,
)
from ordercore._state import CancelReason, OrderStatus

from .audit import AuditRepository
from .tables import Tables

__all__ = [
    "CustomerRepository",
    "OrderRepository",
    "ProductRepository",
]


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
        row = self.conn.execute(select(self.t).where(self.t.c.id == customer_id)).first()
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
        self.t = tables.products

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


def _dump_adjustments(adjustments: Sequence[AmountAdjustment]) -> str:
    return canonical_json(
        [
            {
                "kind": a.kind.value,
                "amount": a.amount.to_minor(),
                "label": a.label,
                "per_line": [p.to_minor() for p in a.per_line],
            }
            for a in adjustments
        ]
    )


def _load_adjustments(text: str, currency: Currency) -> tuple[AmountAdjustment, ...]:
    return tuple(
        AmountAdjustment(
            kind=AdjustmentKind(a["kind"]),
            amount=Money.from_minor(a["amount"], currency),
            label=a["label"],
            per_line=tuple(Money.from_minor(p, currency) for p in a["per_line"]),
        )
        for a in json.loads(text)
    )


class _Loaded:
    """What the repository read, to write back only what changed."""

    __slots__ = ("communications", "notes", "tags")

    def __init__(self, order: Order) -> None:
        self.notes = len(order.notes)
        self.communications = len(order.communications)
        self.tags = order.tags


class OrderRepository:
    """Orders with their lines, flags, notes and communications.

    ``seen`` holds every order this unit of work loaded or added; the unit of work saves the
    changed ones (optimistic version check) and stores their audit entries at commit.
    """

    def __init__(self, conn: Connection, tables: Tables, audit: AuditRepository) -> None:
        self.conn = conn
        self.tables = tables
        self.t = tables.orders
        self.audit = audit
        self.seen: dict[str, Order] = {}
        self._light: set[str] = set()
        self._loaded: dict[str, _Loaded] = {}

    def _row_values(self, order: Order) -> dict[str, Any]:
        a = order.amounts
        return {
            "number": order.number,
            "customer_id": order.customer_id,
            "currency": a.currency.code,
            "status": order.status.value,
            "cancel_reason": order.cancel_reason.value if order.cancel_reason else None,
            "original_minor": a.original.to_minor(),
            "payable_minor": a.payable.to_minor(),
            "paid_minor": a.paid.to_minor(),
            "refunded_minor": a.refunded.to_minor(),
            "adjustments": _dump_adjustments(a.adjustments),
            "special": order.special,
            "created_at": order.created_at,
            "paid_at": order.paid_at,
            "completed_at": order.completed_at,
            "canceled_at": order.canceled_at,
            "refunded_at": order.refunded_at,
            "payment_deadline": order.payment_deadline,
        }

    def add(
        self, order: Order, *, idempotency_key: str | None = None, request_hash: str | None = None
    ) -> Order:
        """Insert a new order with its lines and flags. Raises IntegrityError on a duplicate
        number or idempotency key (inside a savepoint, so the caller may retry)."""
        with self.conn.begin_nested():
            result = self.conn.execute(
                insert(self.t).values(
                    **self._row_values(order),
                    version=1,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            order.id = int(pk[0])
        order.version = 1
        lines = self.tables.order_lines
        self.conn.execute(
            insert(lines),
            [
                {
                    "order_id": order.id,
                    "position": i,
                    "product_id": line.product_id,
                    "sku": line.sku,
                    "name": line.name,
                    "specs": _dump_specs(line.specs),
                    "unit_price_minor": line.unit_price.to_minor(),
                    "quantity": line.quantity,
                    "tier_percent_off": None
                    if line.tier_percent_off is None
                    else str(line.tier_percent_off),
                    "order_created_at": order.created_at,
                }
                for i, line in enumerate(order.lines)
            ],
        )
        if order.tags:
            self.conn.execute(
                insert(self.tables.order_tags),
                [
                    {"order_id": order.id, "tag": t, "order_created_at": order.created_at}
                    for t in sorted(order.tags)
                ],
            )
        self._insert_children(order, 0, 0)
        self.seen[order.number] = order
        self._loaded[order.number] = _Loaded(order)
        return order

    def get(self, number: str, *, lock: bool = False, light: bool = False) -> Order:
        """Load an order; ``lock`` takes its row lock (``SELECT … FOR UPDATE``).

        ``light`` leaves out the notes, communications and status history (three queries the
        payment path does not need). Such an order saves correctly — new notes are appended
        to an empty list and inserted — but must not be shown; asking for the full order later
        in the same unit of work is a programming error.
        """
        if number in self.seen:
            if number in self._light and not light:
                raise AssertionError(f"order {number} was loaded light in this unit of work")
            return self.seen[number]
        query = select(self.t).where(self.t.c.number == number)
        if lock:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        if row is None:
            raise OrderNotFound(f"no order {number!r}", order=number)
        order = self._from_row(row, light=light)
        if light:
            self._light.add(number)
        self.seen[number] = order
        self._loaded[number] = _Loaded(order)
        return order

    def _from_row(self, row: Row[Any], *, light: bool = False) -> Order:
        tb = self.tables
        currency = get_currency(row.currency)
        lines = tuple(
            OrderLine(
                sku=r.sku,
                name=r.name,
                unit_price=Money.from_minor(r.unit_price_minor, currency),
                quantity=r.quantity,
                specs=_load_specs(r.specs),
                product_id=r.product_id,
                tier_percent_off=None
                if r.tier_percent_off is None
                else Decimal(r.tier_percent_off),
            )
            for r in self.conn.execute(
                select(tb.order_lines)
                .where(tb.order_lines.c.order_id == row.id)
                .order_by(tb.order_lines.c.position)
            )
        )
        tags = frozenset(
            self.conn.execute(
                select(tb.order_tags.c.tag).where(tb.order_tags.c.order_id == row.id)
            ).scalars()
        )
        notes = (
            []
            if light
            else [
                Note(text=r.text, author=_actor(r), at=r.at)
                for r in self.conn.execute(
                    select(tb.order_notes)
                    .where(tb.order_notes.c.order_id == row.id)
                    .order_by(tb.order_notes.c.id)
                )
            ]
        )
        comms = (
            []
            if light
            else [
                Communication(
                    channel=r.channel, text=r.text, author=_actor(r), at=r.at, direction=r.direction
                )
                for r in self.conn.execute(
                    select(tb.order_communications)
                    .where(tb.order_communications.c.order_id == row.id)
                    .order_by(tb.order_communications.c.id)
                )
            ]
        )
        amounts = AmountBreakdown(
            original=Money.from_minor(row.original_minor, currency),
            payable=Money.from_minor(row.payable_minor, currency),
            adjustments=_load_adjustments(row.adjustments, currency),
            paid=Money.from_minor(row.paid_minor, currency),
            refunded=Money.from_minor(row.refunded_minor, currency),
        )
        return Order(
            id=row.id,
            number=row.number,
            customer_id=row.customer_id,
            lines=lines,
            amounts=amounts,
            status=OrderStatus(row.status),
            cancel_reason=CancelReason(row.cancel_reason) if row.cancel_reason else None,
            created_at=row.created_at,
            paid_at=row.paid_at,
            completed_at=row.completed_at,
            canceled_at=row.canceled_at,
            refunded_at=row.refunded_at,
            payment_deadline=row.payment_deadline,
            special=bool(row.special),
            tags=tags,
            notes=notes,
            communications=comms,
            history=[] if light else self.audit.order_history(row.number),
            version=row.version,
        )

    def _insert_children(self, order: Order, notes_from: int, comms_from: int) -> None:
        tb = self.tables
        new_notes = order.notes[notes_from:]
        if new_notes:
            self.conn.execute(
                insert(tb.order_notes),
                [
                    {"order_id": order.id, "text": n.text, "at": n.at, **_actor_values(n.author)}
                    for n in new_notes
                ],
            )
        new_comms = order.communications[comms_from:]
        if new_comms:
            self.conn.execute(
                insert(tb.order_communications),
                [
                    {
                        "order_id": order.id,
                        "channel": c.channel,
                        "direction": c.direction,
                        "text": c.text,
                        "at": c.at,
                        **_actor_values(c.author),
                    }
                    for c in new_comms
                ],
            )

    def save(self, order: Order) -> None:
        """Write a loaded order back, if nobody else changed it since it was read."""
        loaded = self._loaded[order.number]
        result = self.conn.execute(
            update(self.t)
            .where(and_(self.t.c.id == order.id, self.t.c.version == order.version))
            .values(**self._row_values(order), version=order.version + 1)
        )
        if result.rowcount != 1:
            raise ConcurrentModification(
                f"order {order.number} was changed by someone else; reload it and try again",
                order=order.number,
            )
        order.version += 1
        tags = self.tables.order_tags
        removed = loaded.tags - order.tags
        added = order.tags - loaded.tags
        if removed:
            self.conn.execute(
                tags.delete().where(
                    and_(tags.c.order_id == order.id, tags.c.tag.in_(sorted(removed)))
                )
            )
        if added:
            self.conn.execute(
                insert(tags),
                [
                    {"order_id": order.id, "tag": t, "order_created_at": order.created_at}
                    for t in sorted(added)
                ],
            )
        self._insert_children(order, loaded.notes, loaded.communications)
        self._loaded[order.number] = _Loaded(order)

    def find_by_idempotency_key(self, key: str) -> tuple[str, str | None] | None:
        """``(number, request_hash)`` of the order created under ``key``, if any."""
        row = self.conn.execute(
            select(self.t.c.number, self.t.c.request_hash).where(self.t.c.idempotency_key == key)
        ).first()
        return None if row is None else (row.number, row.request_hash)

    def set_channel(self, order: Order, channel: str | None) -> None:
        self.conn.execute(update(self.t).where(self.t.c.id == order.id).values(channel=channel))

    def expired_pending(self, now: datetime, *, limit: int) -> list[str]:
        """Numbers of pending orders whose payment deadline is before ``now``, oldest first."""
        query = (
            select(self.t.c.number)
            .where(
                and_(
                    self.t.c.status == OrderStatus.PENDING.value,
                    self.t.c.payment_deadline < now,
                )
            )
            .order_by(self.t.c.payment_deadline)
            .limit(limit)
        )
        return list(self.conn.execute(query).scalars())

    def numbers(self) -> Iterator[str]:
        yield from self.conn.execute(
            select(self.t.c.number).order_by(self.t.c.created_at, self.t.c.id)
        ).scalars()
