"""Coupons: add, disable, look up and list.

Each public method is one unit of work: it commits everything or nothing. Every call that
changes something takes an :class:`~ordercore.Actor`, checks its permission, validates its
input before it writes, and leaves an audit record of the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from attrs import evolve

from ordercore._actor import Actor
from ordercore._audit.chain import (
    AuditEntry,
)
from ordercore._context import Service, check_limit
from ordercore._errors import (
    InvalidField,
)
from ordercore._money import Money, as_money, get_currency, to_decimal
from ordercore._permissions import Permission

from .pricing import Coupon, CouponKind

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork


_P = Permission


class CouponService(Service):
    """Coupons: add, disable, list, show."""

    def add(
        self,
        *,
        code: str,
        actor: Actor,
        currency: str,
        percent: Decimal | str | None = None,
        amount: Money | Decimal | str | None = None,
        max_discount: Money | Decimal | str | None = None,
        min_amount: Money | Decimal | str | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        limit_total: int | None = None,
        limit_per_customer: int | None = None,
        skus: Sequence[str] = (),
    ) -> Coupon:
        """Add a coupon: ``percent`` off or a fixed ``amount`` off (exactly one). Amounts
        are ``Money`` or decimal amounts in ``currency``; a float is refused."""
        if (percent is None) == (amount is None):
            raise InvalidField("a coupon takes either a percent or an amount", field="percent")

        def money(value: Money | Decimal | str | None, what: str) -> Money | None:
            return None if value is None else as_money(value, currency, what=what)

        coupon = Coupon(
            code=code,
            kind=CouponKind.PERCENT if percent is not None else CouponKind.FIXED,
            currency=get_currency(currency).code,
            percent=None if percent is None else to_decimal(percent, what="percent"),
            amount=money(amount, "amount"),
            max_discount=money(max_discount, "max_discount"),
            min_amount=money(min_amount, "min_amount"),
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
        return self._read(
            lambda uow: uow.coupons.list(limit=check_limit(limit), after_code=after_code)
        )


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
