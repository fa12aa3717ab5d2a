"""Coupons and their redemptions (reserved → consumed, or released)."""

from __future__ import annotations

import builtins
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ordercore._audit.chain import canonical_json
from ordercore._errors import CouponNotFound, CouponUnusable, DuplicateCoupon
from ordercore._money import Money, get_currency
from ordercore._orders.pricing import Coupon, CouponKind
from ordercore.adapters.sqlalchemy.tables import Tables

from . import _driver as driver
from ._built import built, insert_into

__all__ = ["CONSUMED", "RELEASED", "RESERVED", "CouponRepository"]

RESERVED = "reserved"
CONSUMED = "consumed"
RELEASED = "released"


def _minor(value: Money | None) -> int | None:
    return None if value is None else value.to_minor()


class CouponRepository:
    """``uses`` on the coupon row counts reserved and consumed redemptions; it is checked and
    raised under the coupon's row lock, so two orders cannot both take the last use."""

    def __init__(self, conn: Connection, tables: Tables) -> None:
        self.conn = conn
        self.t = tables.coupons
        self.r = tables.coupon_redemptions
        r = self.r
        self._consume = built(
            r,
            "consume",
            lambda: (
                update(r)
                .where(and_(r.c.order_id == bindparam("b_order_id"), r.c.status == RESERVED))
                .values(status=CONSUMED)
            ),
        )
        self._locked_uses: dict[str, int] = {}

    @staticmethod
    def _from_row(row: Row[Any]) -> Coupon:
        currency = get_currency(row.currency)

        def money(units: int | None) -> Money | None:
            return None if units is None else Money.from_minor(units, currency)

        return Coupon(
            id=row.id,
            code=row.code,
            kind=CouponKind(row.kind),
            currency=row.currency,
            percent=None if row.percent is None else Decimal(row.percent),
            amount=money(row.amount_minor),
            max_discount=money(row.max_discount_minor),
            min_amount=money(row.min_amount_minor),
            valid_from=row.valid_from,
            valid_until=row.valid_until,
            limit_total=row.limit_total,
            limit_per_customer=row.limit_per_customer,
            skus=frozenset(json.loads(row.skus)),
            active=bool(row.active),
        )

    def _values(self, coupon: Coupon) -> dict[str, Any]:
        return {
            "code": coupon.code,
            "kind": coupon.kind.value,
            "currency": coupon.currency,
            "percent": None if coupon.percent is None else str(coupon.percent),
            "amount_minor": _minor(coupon.amount),
            "max_discount_minor": _minor(coupon.max_discount),
            "min_amount_minor": _minor(coupon.min_amount),
            "valid_from": coupon.valid_from,
            "valid_until": coupon.valid_until,
            "limit_total": coupon.limit_total,
            "limit_per_customer": coupon.limit_per_customer,
            "skus": canonical_json(sorted(coupon.skus)),
            "active": coupon.active,
        }

    def add(self, coupon: Coupon, now: datetime) -> Coupon:
        if self.conn.execute(select(self.t.c.id).where(self.t.c.code == coupon.code)).first():
            raise DuplicateCoupon(
                f"a coupon with code {coupon.code!r} exists already", coupon=coupon.code
            )
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    insert(self.t).values(
                        **self._values(coupon), uses=0, created_at=now, updated_at=now
                    )
                )
        except IntegrityError:
            raise DuplicateCoupon(f"a coupon with code {coupon.code!r} exists already") from None
        return self.get(coupon.code)

    def get(self, code: str, *, lock: bool = False) -> Coupon:
        t = self.t
        query = built(
            t,
            "by_code_locked" if lock else "by_code",
            lambda: (
                select(t).where(t.c.code == bindparam("b_code")).with_for_update()
                if lock
                else select(t).where(t.c.code == bindparam("b_code"))
            ),
        )
        row = driver.execute(self.conn, query, {"b_code": code}).first()
        if row is None:
            raise CouponNotFound(f"no coupon with code {code!r}", coupon=code)
        if lock:  # its use count cannot change until this transaction ends
            self._locked_uses[code] = int(row.uses)
        return self._from_row(row)

    def uses(self, code: str) -> int:
        return int(
            self.conn.execute(select(self.t.c.uses).where(self.t.c.code == code)).scalar_one()
        )

    def set_active(self, code: str, active: bool, now: datetime) -> None:
        self.conn.execute(
            update(self.t).where(self.t.c.code == code).values(active=active, updated_at=now)
        )

    def list(self, *, limit: int, after_code: str | None = None) -> list[tuple[Coupon, int]]:
        query = select(self.t).order_by(self.t.c.code).limit(limit)
        if after_code is not None:
            query = query.where(self.t.c.code > after_code)
        return [(self._from_row(r), int(r.uses)) for r in self.conn.execute(query)]

    def reserve(
        self, coupon: Coupon, *, order_id: int, customer_id: int, discount: Money, now: datetime
    ) -> None:
        """Take one use for ``order_id``; the caller holds the coupon's row lock."""
        uses = self._locked_uses.get(coupon.code)
        if uses is None:
            uses = self.uses(coupon.code)
        if coupon.limit_total is not None and uses >= coupon.limit_total:
            raise CouponUnusable(
                f"coupon {coupon.code} has been used up ({coupon.limit_total} uses)",
                code="exhausted",
                coupon=coupon.code,
            )
        if coupon.limit_per_customer is not None:
            mine = self.conn.execute(
                select(func.count())
                .select_from(self.r)
                .where(
                    and_(
                        self.r.c.coupon_id == coupon.id,
                        self.r.c.customer_id == customer_id,
                        self.r.c.status.in_([RESERVED, CONSUMED]),
                    )
                )
            ).scalar_one()
            if mine >= coupon.limit_per_customer:
                raise CouponUnusable(
                    f"coupon {coupon.code} can be used {coupon.limit_per_customer} time(s) per "
                    "customer, and this customer has used it up",
                    code="customer_limit",
                    coupon=coupon.code,
                )
        t = self.t
        driver.defer(
            self.conn,
            built(
                t,
                "take_use",
                lambda: update(t).where(t.c.id == bindparam("b_id")).values(uses=t.c.uses + 1),
            ),
            {"b_id": coupon.id, "updated_at": now},
        )
        self._locked_uses[coupon.code] = uses + 1
        driver.defer(
            self.conn,
            insert_into(self.r),
            {
                "coupon_id": coupon.id,
                "order_id": order_id,
                "customer_id": customer_id,
                "status": RESERVED,
                "discount_minor": discount.to_minor(),
                "created_at": now,
                "updated_at": now,
            },
        )

    def for_order(self, order_id: int) -> builtins.list[tuple[str, str]]:
        """``(code, status)`` of the order's redemptions."""
        rows = self.conn.execute(
            select(self.t.c.code, self.r.c.status)
            .select_from(self.r.join(self.t, self.t.c.id == self.r.c.coupon_id))
            .where(self.r.c.order_id == order_id)
        )
        return [(r.code, r.status) for r in rows]

    def consume(self, order_id: int, now: datetime) -> None:
        """The order was paid: its reserved uses become consumed."""
        driver.defer(self.conn, self._consume, {"b_order_id": order_id, "updated_at": now})

    def release(self, order_id: int, now: datetime) -> int:
        """The order was cancelled: give its reserved uses back."""
        rows = self.conn.execute(
            select(self.r.c.id, self.r.c.coupon_id)
            .where(and_(self.r.c.order_id == order_id, self.r.c.status == RESERVED))
            .order_by(self.r.c.coupon_id)
        ).all()
        for row in rows:
            self.conn.execute(
                select(self.t.c.id).where(self.t.c.id == row.coupon_id).with_for_update()
            ).first()
            self.conn.execute(
                update(self.t)
                .where(self.t.c.id == row.coupon_id)
                .values(uses=self.t.c.uses - 1, updated_at=now)
            )
            self.conn.execute(
                update(self.r).where(self.r.c.id == row.id).values(status=RELEASED, updated_at=now)
            )
        return len(rows)
